"""The signed zone of every PoP passes the real tools: ldns-verify-zone (Debian's ldnsutils) from the DS as trust anchor,
and nsd-checkzone; a tampered record and a signature within the alert margin of expiry are caught by the same tool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.dnssec_data import ENV, LAB_DS, NEXT_DS, NOW, signed_network
from userdata import dnssec
from userdata.render import render_network, zone_file_name

TOOLS = ("ldns-verify-zone", "nsd-checkzone")
MISSING = [t for t in TOOLS if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"validators not installed ({MISSING}); `make deps` installs them")
ZONE = "cdn.example.com"
AT = (NOW.strftime("%Y%m%d%H%M%S"))  # validate at the render time: the signatures are for that period


def _zones(tmp: Path, keys: list[dict[str, str]] | None = None) -> dict[str, Path]:
    net = signed_network(keys)
    out = {}
    for code, rendered in render_network(net, "pw", dnssec.signing_from_env(net, ENV, NOW)).items():
        out[code] = tmp / f"{code}.zone"
        out[code].write_text(rendered.files[zone_file_name(net)], encoding="utf-8")
    return out


def _verify(zone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ldns-verify-zone", "-t", AT, *args, str(zone)], capture_output=True, text=True,
                          timeout=60, check=False)


def _anchor(tmp: Path, ds: str) -> Path:
    path = tmp / f"ds-{ds.split()[0]}"
    path.write_text(f"{ZONE}. 3600 IN DS {ds}\n", encoding="utf-8")
    return path


def test_every_pop_zone_verifies_from_the_ds(tmp_path: Path) -> None:
    anchor = _anchor(tmp_path, LAB_DS)
    for code, zone in _zones(tmp_path).items():
        verified = _verify(zone, "-k", str(anchor))
        assert verified.returncode == 0, f"{code}: {verified.stdout}{verified.stderr}"
        checked = subprocess.run(["nsd-checkzone", ZONE, str(zone)], capture_output=True, text=True, timeout=60, check=False)
        assert checked.returncode == 0, f"{code}: {checked.stdout}{checked.stderr}"


def test_tampered_zone_fails(tmp_path: Path) -> None:
    zone = _zones(tmp_path)["ams"]
    zone.write_text(zone.read_text(encoding="utf-8").replace("192.0.2.1", "192.0.2.66"), encoding="utf-8")
    verified = _verify(zone)
    assert verified.returncode != 0 and "Bogus DNSSEC signature" in verified.stdout + verified.stderr


def test_wrong_anchor_fails(tmp_path: Path) -> None:
    verified = _verify(_zones(tmp_path)["ams"], "-k", str(_anchor(tmp_path, NEXT_DS)))
    assert verified.returncode != 0


def test_rollover_zone_verifies_from_either_ds(tmp_path: Path) -> None:
    zones = _zones(tmp_path, [{"env": "ANYCAST_DNSSEC_KEY", "ds": LAB_DS}, {"env": "ANYCAST_DNSSEC_KEY_NEXT", "ds": NEXT_DS}])
    for ds in (LAB_DS, NEXT_DS):
        verified = _verify(zones["ams"], "-k", str(_anchor(tmp_path, ds)))
        assert verified.returncode == 0, verified.stdout + verified.stderr


def test_expiry_margin(tmp_path: Path) -> None:
    """ldns-verify-zone -e agrees with the window: more than 23 days left at render, fewer than 14 two periods on."""
    zone = _zones(tmp_path)["ams"]
    assert _verify(zone, "-e", "P23D").returncode == 0
    later = (NOW + 2 * dnssec.SIGNING_PERIOD).strftime("%Y%m%d%H%M%S")
    late = subprocess.run(["ldns-verify-zone", "-t", later, "-e", "P14D", str(zone)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert late.returncode != 0
