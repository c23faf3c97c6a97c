"""`systemd-analyze security` exposure of a PoP's services (0.0 locked down .. 10.0), ours beside Debian's stock units.

Offline (``--offline=true --root=DIR``, systemd 252): DIR holds Debian's unit files from /lib/systemd/system and the
units and drop-ins the rendered user data writes under /etc/systemd/system, so systemd merges them as on a PoP.
"""

from __future__ import annotations

import base64
import gzip
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from infra.contracts import HEALTH_UNIT, ONESHOT_UNITS, REBOOT_UNIT, STATUS_PEERS_UNIT, TLS_FETCH_UNIT, TLS_ISSUE_UNIT
from infra.model.stack import load_network
from userdata.render import render_pop

DEBIAN_UNITS = ("bird.service", "nsd.service", "caddy.service")  # packages bird2, nsd, caddy
OURS = (HEALTH_UNIT, TLS_FETCH_UNIT, TLS_ISSUE_UNIT, REBOOT_UNIT, STATUS_PEERS_UNIT, *ONESHOT_UNITS)
GOAL = 2.0  # issue 21: every unit we ship at or below this
_SCORE = re.compile(r"Overall exposure level for \S+: (\d+\.\d)")


class ScoreError(RuntimeError):
    pass


def _score(root: Path | None, unit: str) -> float:
    cmd = ["systemd-analyze", "security", "--offline=true", "--no-pager"]
    cmd += [f"--root={root}", unit] if root else [f"/lib/systemd/system/{unit}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    m = _SCORE.search(proc.stdout)
    if not m:
        raise ScoreError(f"systemd-analyze security {unit}: no score ({(proc.stderr or proc.stdout).strip()[:200]})")
    return float(m.group(1))


def exposure(user_data: str) -> dict[str, dict[str, float | None]]:
    """unit -> {"ours": score with the user data's files, "stock": Debian's unit alone (None for our own units)}."""
    doc: dict[str, Any] = yaml.safe_load(user_data)
    with tempfile.TemporaryDirectory(prefix="anycast-exposure-") as tmp:
        root = Path(tmp)
        (root / "lib/systemd/system").mkdir(parents=True)
        for unit in DEBIAN_UNITS:
            shutil.copy(f"/lib/systemd/system/{unit}", root / "lib/systemd/system" / unit)
        written = set()
        for f in doc["write_files"]:
            if f["path"].startswith("/etc/systemd/system/"):
                path = root / f["path"].lstrip("/")
                path.parent.mkdir(parents=True, exist_ok=True)
                text = (gzip.decompress(base64.b64decode(f["content"])).decode() if f.get("encoding") == "gz+b64"
                        else f["content"])  # as cloud-init writes it
                path.write_text(text, encoding="utf-8")
                written.add(path.name)
        out: dict[str, dict[str, float | None]] = {}
        for unit in DEBIAN_UNITS:
            out[unit] = {"ours": _score(root, unit), "stock": _score(None, unit)}
        for unit in OURS:
            if unit in written:
                out[unit] = {"ours": _score(root, unit), "stock": None}
    return out


def issuer_user_data() -> str:
    """The dev stack's TLS issuer (it carries every unit: health agent, both TLS units, the three drop-ins)."""
    network = load_network("dev")
    return render_pop(network, network.pop(network.tls_issuer or network.pops[0].code), "bench-password").user_data


def unicast_user_data() -> str:
    """prod's Vultr unicast PoP sao: the units an issuer lacks (anycast-local-addresses, anycast-neighbor-route)."""
    network = load_network("prod")
    return render_pop(network, network.pop("sao"), "bench-password").user_data


def every_unit() -> dict[str, dict[str, float | None]]:
    """The exposure of every unit we ship: the dev issuer's, then what only a unicast PoP carries."""
    return {**exposure(unicast_user_data()), **exposure(issuer_user_data())}


def run() -> list[tuple[str, float, str]]:
    rows: list[tuple[str, float, str]] = []
    for unit, s in every_unit().items():
        rows.append((f"exposure {unit} (ours)", float(s["ours"] or 0.0), "systemd-analyze security, 0-10"))
        if s["stock"] is not None:
            rows.append((f"exposure {unit} (Debian stock)", s["stock"], "systemd-analyze security, 0-10"))
    return rows


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:<45}  {value:4.1f}  {unit}")
