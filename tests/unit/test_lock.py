"""requirements.lock pins, with hashes, everything pyproject.toml asks for: CI, `make venv` and deploys install only it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent.parent
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)==(?P<version>\S+)(?P<rest>(?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)",
                 re.MULTILINE)


def pins(text: str) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes)."""
    return {canonicalize_name(m["name"]): (m["version"], m["rest"].count("--hash=")) for m in PIN.finditer(text)}


def wanted() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def problems(lock_text: str) -> list[str]:
    locked = pins(lock_text)
    out = []
    for req in wanted():
        name = canonicalize_name(req.name)
        if name not in locked:
            out.append(f"{req.name} is in pyproject.toml but not in requirements.lock: run `make lock`")
        elif not req.specifier.contains(locked[name][0], prereleases=True):
            out.append(f"{req.name}=={locked[name][0]} in requirements.lock does not satisfy '{req}': run `make lock`")
    out += [f"{n}=={v} has no sha256 hash" for n, (v, hashes) in locked.items() if hashes == 0]
    # Lines that look like requirements but escaped the pin pattern (a range, a URL, an editable) are not locked.
    for line in lock_text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#") and not PIN.match(line + "\n"):
            out.append(f"not a pinned requirement: {line[:80]}")
    return out


def test_lock_pins_every_requirement_with_hashes() -> None:
    text = LOCK.read_text(encoding="utf-8")
    assert problems(text) == []
    locked = pins(text)
    assert len(locked) > 40 and {"pulumi", "ediri-vultr", "pulumi-aws", "pulumi-policy", "setuptools"} <= set(locked)
    assert "-e " not in text and "--index-url" not in text and "file://" not in text  # no local mirror, no editable


def test_lock_check_catches_drift() -> None:
    text = LOCK.read_text(encoding="utf-8")
    dropped = re.sub(r"^pydantic==.*?(?=^\S)", "", text, count=1, flags=re.MULTILINE | re.DOTALL)
    assert any("pydantic is in pyproject.toml but not in requirements.lock" in p for p in problems(dropped))
    old = re.sub(r"^pulumi==\S+", "pulumi==3.100.0", text, count=1, flags=re.MULTILINE)
    assert any("pulumi==3.100.0" in p and "does not satisfy" in p for p in problems(old))
    unhashed = text + "extra-package==1.0\n"
    assert "extra-package==1.0 has no sha256 hash" in problems(unhashed)
    ranged = text + "floating>=1\n"
    assert "not a pinned requirement: floating>=1" in problems(ranged)


def test_make_venv_installs_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    venv = makefile[makefile.index("$(VENV)/.installed:"):makefile.index("@touch $@", makefile.index("$(VENV)/.installed:"))]
    assert "requirements.lock" in venv.splitlines()[0]  # a new lock rebuilds .venv
    assert "pip install -q --require-hashes -r requirements.lock" in venv
    assert "pip install -q --no-deps --no-build-isolation -e ." in venv
