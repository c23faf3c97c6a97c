"""Every file of every prod PoP passes the real tool that will read it: bird, cloud-init, nsd, caddy, nft."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.cli.render import write_rendered
from infra.model import Network
from infra.model.stack import load_network
from tests.conftest import TEST_PASSWORD
from userdata.render import LOCAL_ADDRESSES_INCLUDE

PROD_POPS = [p.code for p in load_network("prod").pops]
FREE_POPS = [p.code for p in load_network("free").pops]
TOOLS = ("bird", "nsd-checkconf", "nsd-checkzone", "caddy", "cloud-init", "nft")

MISSING = [t for t in TOOLS if shutil.which(t) is None]
# `make test` installs them first; a bare `pytest` on a machine without them says so instead of failing obscurely.
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"validators not installed ({MISSING}); `make deps` installs them")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("render")
    for stack in ("prod", "free"):
        write_rendered(load_network(stack), TEST_PASSWORD, root / stack)
    return root


def _run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def _pop_dirs(out: Path) -> list[Path]:
    return [out / "prod" / c for c in PROD_POPS] + [out / "free" / c for c in FREE_POPS]


def test_bird_parses_every_config(out: Path) -> None:
    for pop in _pop_dirs(out):
        r = _run("bird", "-p", "-c", str(pop / "bird.conf"))
        assert r.returncode == 0, f"{pop}: {r.stderr}"


def test_bird_rejects_a_broken_config(tmp_path: Path, out: Path) -> None:
    broken = tmp_path / "bird.conf"
    broken.write_text((out / "prod" / "ams" / "bird.conf").read_text().replace("import none;", "import nothing;"))
    r = _run("bird", "-p", "-c", str(broken))
    assert r.returncode != 0 and "syntax error" in r.stderr


def test_nsd_checkconf_every_config(out: Path) -> None:
    for pop in _pop_dirs(out):
        r = _run("nsd-checkconf", str(pop / "nsd.conf"))
        assert r.returncode == 0, f"{pop}: {r.stdout}{r.stderr}"


def test_nsd_checkzone_every_zone(out: Path, tmp_path: Path) -> None:
    for pop in _pop_dirs(out):
        zone_file = next(pop.glob("*.zone"))
        text = zone_file.read_text()
        if LOCAL_ADDRESSES_INCLUDE in text:
            # What anycast-local-addresses writes at boot on a Vultr unicast PoP.
            inc = tmp_path / f"{pop.name}.inc"
            inc.write_text("@ IN A 198.51.100.20\nwww IN A 198.51.100.20\n@ IN AAAA 2001:db8:ff00::20\nwww IN AAAA 2001:db8:ff00::20\n")
            zone_file = tmp_path / f"{pop.name}.zone"
            zone_file.write_text(text.replace(LOCAL_ADDRESSES_INCLUDE, str(inc)))
        zone = load_network(pop.parent.name).dns.zone
        r = _run("nsd-checkzone", zone, str(zone_file))
        assert r.returncode == 0, f"{pop}: {r.stdout}{r.stderr}"
        assert "is ok" in r.stdout


def test_caddy_validates_every_caddyfile(out: Path, tmp_path: Path) -> None:
    # With tls.enabled Caddy loads /etc/caddy/tls/{cert,key}.pem: validate against the self-signed pair the PoP's own
    # `anycast-tls bootstrap` writes before Caddy's first start (userdata/files/anycast-tls.py).
    certs = tmp_path / "tls"
    cfg = {"names": ["cdn.example.com"], "cert_file": str(certs / "cert.pem"), "key_file": str(certs / "key.pem")}
    (tmp_path / "tls.json").write_text(json.dumps(cfg))
    script = Path(__file__).resolve().parents[2] / "userdata" / "files" / "anycast-tls.py"
    r = _run("python3", str(script), "bootstrap", "--config", str(tmp_path / "tls.json"))
    assert r.returncode == 0, r.stderr
    tls_sites = 0
    for pop in _pop_dirs(out):
        text = (pop / "Caddyfile").read_text()
        tls_sites += "/etc/caddy/tls/" in text
        conf = tmp_path / f"{pop.parent.name}-{pop.name}.Caddyfile"
        conf.write_text(text.replace("/etc/caddy/tls/", f"{certs}/"))
        r = _run("caddy", "validate", "--config", str(conf), "--adapter", "caddyfile")
        assert r.returncode == 0, f"{pop}: {r.stderr}"
        assert "Valid configuration" in r.stdout + r.stderr
    assert tls_sites == len(PROD_POPS)  # prod serves HTTPS, free does not


def test_cloud_init_schema_every_user_data(out: Path) -> None:
    for pop in _pop_dirs(out):
        r = _run("cloud-init", "schema", "--config-file", str(pop / "user-data.yaml"))
        assert r.returncode == 0, f"{pop}: {r.stdout}{r.stderr}"


def test_cloud_init_knows_every_top_level_key(out: Path) -> None:
    # `cloud-init schema` (even strict, in 22.4) lets a misspelled top-level key through: check keys against the
    # properties its own schema defines, with Debian's python where cloud-init lives.
    script = (
        "import sys, yaml\n"
        "from cloudinit.config.schema import get_schema, validate_cloudconfig_schema\n"
        "schema = get_schema()\n"
        "known = {k for d in schema['$defs'].values() for k in d.get('properties', {})}\n"
        "bad = 0\n"
        "for path in sys.argv[1:]:\n"
        "    doc = yaml.safe_load(open(path))\n"
        "    validate_cloudconfig_schema(doc, schema, strict=True)\n"
        "    unknown = sorted(set(doc) - known)\n"
        "    if unknown:\n"
        "        print(path, 'unknown keys', unknown); bad += 1\n"
        "sys.exit(bad)\n"
    )
    files = [str(p / "user-data.yaml") for p in _pop_dirs(out)]
    r = _run("/usr/bin/python3", "-c", script, *files)
    assert r.returncode == 0, r.stdout + r.stderr
    typo = out / "typo.yaml"
    typo.write_text((out / "prod" / "ams" / "user-data.yaml").read_text().replace("packages:", "pakages:"))
    r = _run("/usr/bin/python3", "-c", script, str(typo))
    assert r.returncode == 1 and "pakages" in r.stdout


def test_nft_checks_every_ruleset(out: Path) -> None:
    for pop in _pop_dirs(out):
        r = _run("nft", "-c", "-f", str(pop / "nftables.conf"))
        assert r.returncode == 0, f"{pop}: {r.stderr}"


def test_summary_lists_twenty_pops(out: Path) -> None:
    data = json.loads((out / "prod" / "summary.json").read_text())
    assert len(data["pops"]) == 20
    assert TEST_PASSWORD not in (out / "prod" / "summary.json").read_text()


def test_prod_network_fixture_matches(prod_network: Network) -> None:
    assert [p.code for p in prod_network.pops] == PROD_POPS
