"""The repository stands alone: it cites public sources, never documents that live outside it, and carries its licence."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

# Built from parts so that this file does not match its own patterns.
_DOCS = "|".join(name + r"\.md" for name in ("REFERENCE", "DESIGN", "STYLE"))
INTERNAL = re.compile(
    rf"\b(?:{_DOCS})\b"                        # the session's reference sheet, design and style notes
    r"|\.\./" + "shared" + r"\b"               # their directory next to the work tree
    r"|/work/" + r"(?:shared|notes)\b"         # the same by absolute path
    r"|(?-i:\b[Tt]he " + "DESIGN" + r"\b)",     # that document named in capitals, without ".md"
    re.IGNORECASE,
)


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = [ROOT / name for name in out.decode().split("\0") if name]
    return [f for f in files if f.is_file() and b"\0" not in f.read_bytes()[:8192]]


def internal_mentions(text: str) -> list[str]:
    return [m.group(0) for m in INTERNAL.finditer(text)]


def test_no_tracked_file_cites_documents_outside_the_repository() -> None:
    files = tracked_text_files()
    assert len(files) > 50  # git ls-files worked
    hits = []
    for f in files:
        for no, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if internal_mentions(line):
                hits.append(f"{f.relative_to(ROOT)}:{no}: {line.strip()[:120]}")
    assert not hits, "cite the public source (URL, upstream repository and file) instead:\n" + "\n".join(hits)


def test_the_pattern_catches_each_kind_of_internal_citation() -> None:
    for text in ("see REFERENCE" + ".md 3.4", "(" + "design" + ".md)", "Style" + ".md rule", "../" + "shared/fixtures",
                 "/work/" + "shared/REFERENCE", "/work/" + "notes/x", "The " + "DESIGN's outputs"):
        assert internal_mentions(text), text
    for text in ("docs/deploy.md", "README.md", "the design of BIRD filters", "shared by all PoPs", "references"):
        assert not internal_mentions(text), text


def test_license_is_the_full_apache_2_text_pyproject_names() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License to your work." in text
    sections = re.findall(r"^\s+(\d)\. [A-Z][a-z]+", text, re.MULTILINE)
    assert sections == [str(n) for n in range(1, 10)]  # all nine sections, not a summary
    assert len(text) > 11000


def test_docs_say_as_root_not_sudo() -> None:
    # Debian's default root machine has no sudo; the lab only needs root.
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        assert not re.search(r"\bsudo\b", doc.read_text(encoding="utf-8")), f"{doc.name}: say 'as root' instead of sudo"
