"""The Debian 12 root file system every machine-mode PoP boots: built once with ``debootstrap`` and cached.

The cache key is a hash of everything that goes into the image (suite, mirror, variant, package list, the cloud-init
settings file and :data:`IMAGE_VERSION`), so a change to any of them builds a new image next to the old one and an
unchanged one is reused. The image holds what a Vultr Debian 12 image holds before its user data runs (systemd,
cloud-init, OpenSSH, python3), not the PoP's daemons: those come from the user data's ``packages:`` through the lab's
package mirror (:mod:`lab.cloud.mirror`), so a wrong package name fails as it would at Vultr.

Debian's debootstrap: https://manpages.debian.org/bookworm/debootstrap/debootstrap.8.en.html
cloud-init NoCloud: https://cloudinit.readthedocs.io/en/22.4/topics/datasources/nocloud.html
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from lab.net.netns import LabError

CACHE = Path(os.environ.get("ANYCAST_LAB_CACHE", "/var/cache/anycast-lab"))
IMAGE_VERSION = 2  # bump when the build steps below change in a way the inputs do not show
SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
VARIANT = "minbase"
# What a Debian 12 cloud image brings before user data: init, D-Bus, cloud-init and its optional crypto backend
# (without python3-cffi-backend python3-cryptography stays unconfigured), SSH, ip (the rendered units call
# /sbin/ip), procps (sysctl, ps) and the "important" bits apt needs to verify nothing (no keyring fetches).
INCLUDE = ("systemd", "systemd-sysv", "dbus", "cloud-init", "python3", "python3-cffi-backend", "iproute2",
           "openssh-server", "procps", "ca-certificates")
# /etc/cloud/cloud.cfg.d/90-anycast-lab.cfg: NoCloud only (no probing of EC2/OpenStack/... metadata services),
# no network configuration (the lab's namespace already has the PoP's addresses, as Vultr's DHCP would), and the
# C.UTF-8 locale (the default en_US.UTF-8 is not generated in a debootstrap image: update-locale fails and cloud-config
# ends in error).
#
# Two settings only save CPU, which decides how fast 20 PoPs boot on 2 cores (docs/lab.md lists them as
# substitutions): SSH host keys of the fast types only (cloud-init 22.4's default [rsa, dsa, ecdsa, ed25519] spends
# about 0.8 s of CPU per boot on RSA-3072 and DSA keys), and grub_dpkg off (a container has no boot loader; the
# module runs debconf-set-selections for grub-pc, about 0.15 s of CPU).
# https://cloudinit.readthedocs.io/en/22.4/topics/modules.html#ssh, .../modules.html#grub-dpkg
CLOUD_CFG = """\
# anycast lab: the machine-mode image (lab/drivers/image.py). Not part of any PoP's user data.
datasource_list: [ NoCloud, None ]
network:
  config: disabled
locale: C.UTF-8
ssh_genkeytypes: [ ecdsa, ed25519 ]
grub_dpkg:
  enabled: false
"""
CLOUD_CFG_PATH = "etc/cloud/cloud.cfg.d/90-anycast-lab.cfg"
# debootstrap copies the host's /etc/resolv.conf into the image: the image would depend on the host and every
# lookup inside would go to a resolver the lab's network cannot reach (a timeout per query). No nameserver instead:
# the resolver library then asks 127.0.0.1, which refuses at once. lab/cloud/tls.py writes the lab resolver's where it runs.
RESOLV_CONF = "# anycast lab (lab/drivers/image.py): no resolver in the image; lab/cloud/tls.py sets the lab's where it runs one\n"


def image_inputs() -> dict[str, object]:
    return {"version": IMAGE_VERSION, "suite": SUITE, "mirror": DEBIAN_MIRROR, "variant": VARIANT,
            "include": sorted(INCLUDE), "cloud_cfg": CLOUD_CFG, "resolv_conf": RESOLV_CONF}


def image_key() -> str:
    return hashlib.sha256(json.dumps(image_inputs(), sort_keys=True, allow_nan=False).encode()).hexdigest()[:16]


def image_dir(cache: Path | None = None) -> Path:
    return (cache or CACHE) / f"image-{image_key()}"


def image_root(cache: Path | None = None) -> Path:
    return image_dir(cache) / "root"


def ensure_image(say: Callable[[str], None], cache: Path | None = None) -> Path:
    """The root file system of the current inputs: reused when built, else built (about two minutes)."""
    d = image_dir(cache)
    d.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(d, say):
        return _ensure_image(d, say)


@contextlib.contextmanager
def build_lock(d: Path, say: Callable[[str], None]) -> Iterator[None]:
    """One builder per cache entry: a second ``lab up`` (another stack, another shell) waits for the first one's
    build and then reuses it, instead of deleting its half-built directory."""
    with open(d.with_name(d.name + ".lock"), "w", encoding="ascii") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"{d.name}: another process is building it; waiting")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _ensure_image(d: Path, say: Callable[[str], None]) -> Path:
    root = d / "root"
    if (d / "done.json").exists():
        say(f"image {d.name}: cached ({root})")
        return root
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is missing (make debs installs it)")
    tmp = d.with_name(d.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    t0 = time.monotonic()
    say(f"image {d.name}: debootstrap --variant={VARIANT} {SUITE} from {DEBIAN_MIRROR} (about 2 minutes, once)")
    cmd = ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}", SUITE, str(tmp / "root"),
           DEBIAN_MIRROR]
    log = tmp / "debootstrap.log"
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        seen: set[str] = set()
        for line in proc.stdout:
            fh.write(line)
            # debootstrap's own phases, one progress line each (not one per package)
            for word in ("Retrieving", "Validating", "Extracting", "Installing core", "Unpacking the base",
                         "Configuring the base", "Base system installed"):
                if line.startswith("I: " + word) and word not in seen:
                    seen.add(word)
                    say(f"image: {line[3:].strip()}" + (" ..." if word in ("Retrieving", "Validating") else ""))
        rc = proc.wait()
    if rc != 0:
        raise LabError(f"debootstrap failed (exit {rc}); see {log}")
    r = tmp / "root"
    (r / CLOUD_CFG_PATH).write_text(CLOUD_CFG, encoding="utf-8")
    # Every container gets its own machine id on first boot, as a fresh VM does.
    (r / "etc/machine-id").write_text("", encoding="utf-8")
    dbus_id = r / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    # The containers' apt sources are the lab's mirror, written per container (lab/drivers/machines.py); Debian's lists,
    # fetched by debootstrap, would only be deleted again by every container's first apt-get update.
    (r / "etc/apt/sources.list").write_text("", encoding="utf-8")
    subprocess.run(["chroot", str(r), "apt-get", "clean"], check=False, capture_output=True)
    for f in (r / "var/lib/apt/lists").iterdir():
        if f.is_file() and f.name != "lock":
            f.unlink()
    resolv = r / "etc/resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    resolv.write_text(RESOLV_CONF, encoding="utf-8")
    size = subprocess.run(["du", "-sm", str(r)], capture_output=True, text=True).stdout.split()[0]
    seconds = round(time.monotonic() - t0, 1)
    (tmp / "done.json").write_text(json.dumps({**image_inputs(), "seconds": seconds, "size_mb": int(size)},
                                              indent=2, allow_nan=False) + "\n", encoding="utf-8")
    if d.exists():
        shutil.rmtree(d)
    tmp.rename(d)
    say(f"image {d.name}: built in {seconds} s, {size} MB")
    return d / "root"
