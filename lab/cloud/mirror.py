"""The lab's package mirror: a flat apt repository of exactly the .debs the user data's ``packages:`` needs on top of
the image (with their dependencies and recommends, as cloud-init's ``apt-get install`` takes them), downloaded once
from Debian and cached, keyed by the package list and the image.

Debian's apt resolves the download against the image's own dpkg status, so the repository holds what those
``apt-get install`` calls will fetch and nothing else. ``apt-ftparchive`` (package apt-utils) writes ``Packages`` and
``Release``, so cloud-init's ``package_update: true`` (``apt-get update``) runs against a real index.
https://manpages.debian.org/bookworm/apt-utils/apt-ftparchive.1.en.html

The repository is unsigned: each container's apt source says ``[trusted=yes]`` (a documented lab substitution).
Names Debian does not have are left out and reported: the PoP's cloud-init then fails on them as it would at Vultr.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from lab.drivers.image import CACHE, DEBIAN_MIRROR, SUITE, build_lock, image_key
from lab.net.netns import LabError

MIRROR_VERSION = 1
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
UNKNOWN = re.compile(r"E: (?:Unable to locate package |Package '?)([A-Za-z0-9.+:~-]+)")


def mirror_key(packages: Iterable[str]) -> str:
    data = {"version": MIRROR_VERSION, "packages": sorted(set(packages)), "image": image_key(), "suite": SUITE,
            "mirror": DEBIAN_MIRROR}
    return hashlib.sha256(json.dumps(data, sort_keys=True, allow_nan=False).encode()).hexdigest()[:16]


def mirror_dir(packages: Iterable[str], cache: Path | None = None) -> Path:
    return (cache or CACHE) / f"mirror-{mirror_key(packages)}"


def _apt(conf: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {"APT_CONFIG": str(conf), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", "-q", *args], capture_output=True, text=True, env=env, timeout=timeout)


def ensure_mirror(packages: list[str], image: Path, say: Callable[[str], None],
                  cache: Path | None = None) -> tuple[Path, list[str]]:
    """The repository directory for ``packages`` and the names Debian does not have (built once per key)."""
    d = mirror_dir(packages, cache)
    d.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(d, say):
        return _ensure_mirror(d, packages, image, say)


def _ensure_mirror(d: Path, packages: list[str], image: Path, say: Callable[[str], None]) -> tuple[Path, list[str]]:
    done = d / "done.json"
    if done.exists():
        info = json.loads(done.read_text(encoding="utf-8"))
        say(f"mirror {d.name}: cached, {info['debs']} .debs for {' '.join(info['packages'])}")
        return d, list(info["unknown"])
    for tool in ("apt-get", "apt-ftparchive"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is missing (make debs installs apt-utils)")
    t0 = time.monotonic()
    tmp = d.with_name(d.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    work = tmp / "apt"
    for sub in ("lists/partial", "archives/partial", "etc/parts", "etc/preferences.d", "etc/sources.list.d"):
        (work / sub).mkdir(parents=True)
    (work / "etc/sources.list").write_text(f"deb [signed-by={KEYRING}] {DEBIAN_MIRROR} {SUITE} main\n", encoding="utf-8")
    conf = work / "apt.conf"
    # Host apt with its own state: the image's dpkg status decides what is already there; nothing of the host's
    # apt configuration, lists or cache is read or written.
    conf.write_text("\n".join([
        f'Dir::State "{work}";', f'Dir::State::Lists "{work}/lists";', f'Dir::State::status "{image}/var/lib/dpkg/status";',
        f'Dir::Cache "{work}";', f'Dir::Cache::archives "{work}/archives";', f'Dir::Etc "{work}/etc";',
        f'Dir::Etc::SourceList "{work}/etc/sources.list";', 'Dir::Etc::SourceParts "sources.list.d";',
        'Dir::Etc::Parts "parts";', 'Dir::Etc::Preferences "preferences";', 'Dir::Etc::PreferencesParts "preferences.d";',
        'APT::Install-Recommends "true";', 'Debug::NoLocking "true";',
        'APT::Sandbox::User "root";', ""]), encoding="utf-8")
    say(f"mirror: apt-get update from {DEBIAN_MIRROR} {SUITE} (against the image's package status)")
    res = _apt(conf, "update")
    if res.returncode != 0:
        raise LabError(f"mirror: apt-get update failed: {res.stderr.strip()[-400:]}")
    wanted = sorted(set(packages))
    unknown: list[str] = []
    while True:
        res = _apt(conf, "install", "--download-only", "-y", *wanted)
        if res.returncode == 0:
            break
        missing = sorted(set(UNKNOWN.findall(res.stderr)) & set(wanted))
        if not missing:
            raise LabError(f"mirror: apt-get install --download-only {' '.join(wanted)} failed: "
                           f"{res.stderr.strip()[-400:]}")
        unknown += missing
        wanted = [p for p in wanted if p not in missing]
        if not wanted:
            break
    debs = sorted((work / "archives").glob("*.deb"))
    for deb in debs:
        deb.rename(tmp / deb.name)
    shutil.rmtree(work)
    packages_text = subprocess.run(["apt-ftparchive", "packages", "."], cwd=tmp, capture_output=True, text=True,
                                   check=True).stdout
    (tmp / "Packages").write_text(packages_text, encoding="utf-8")
    subprocess.run(["gzip", "-k9", "Packages"], cwd=tmp, check=True)
    release = subprocess.run(["apt-ftparchive", "-o", "APT::FTPArchive::Release::Origin=anycast-lab",
                              "-o", f"APT::FTPArchive::Release::Suite={SUITE}", "release", "."], cwd=tmp,
                             capture_output=True, text=True, check=True).stdout
    (tmp / "Release").write_text(release, encoding="utf-8")
    seconds = round(time.monotonic() - t0, 1)
    size = sum(p.stat().st_size for p in tmp.glob("*.deb")) // 2**20
    (tmp / "done.json").write_text(json.dumps({"packages": sorted(set(packages)), "unknown": unknown,
                                               "debs": len(debs), "size_mb": size, "seconds": seconds},
                                              indent=2, allow_nan=False) + "\n", encoding="utf-8")
    if d.exists():
        shutil.rmtree(d)
    tmp.rename(d)
    say(f"mirror {d.name}: {len(debs)} .debs ({size} MB) in {seconds} s"
        + (f"; not in Debian {SUITE}: {', '.join(unknown)}" if unknown else ""))
    return d, unknown
