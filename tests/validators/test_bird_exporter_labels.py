"""Debian's prometheus-bird-exporter on a real BIRD running the rendered bird.conf: the labels the alerts join on.

AnycastPopExportsNothing (infra/alerts.py) matches a BGP session's ``bird_protocol_prefix_export_count`` with its
``bird_protocol_up`` ``on (pop, name)`` and with the same family's anycast static protocol ``on (pop, ip_version)``;
the promtool tests (tests/unit/test_alerts.py) write those labels by hand. Here the exporter's own output must carry
them, or the join would silently never match. The sessions stay down (no peer in the throwaway namespace)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.contracts import BIRD_SOCKET
from infra.model import Network
from tests.conftest import TEST_PASSWORD
from userdata.render import BIRD_EXPORTER_DROPIN_TEXT, render_pop

OK = os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "bird", "birdc", "prometheus-bird-exporter"))
pytestmark = pytest.mark.skipif(not OK, reason="needs root, iproute2, bird2 and prometheus-bird-exporter")
SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def scrape(tmp_path: Path, dev_network: Network) -> Iterator[list[tuple[str, dict[str, str], float]]]:
    ns = f"acu-exporter-{os.getpid()}"
    conf = render_pop(dev_network, dev_network.pop("ams"), TEST_PASSWORD).files["bird.conf"]
    (tmp_path / "bird.conf").write_text(conf.replace("log syslog all;", f'log "{tmp_path}/bird.log" all;'))
    ctl = tmp_path / "bird.ctl"
    procs: list[subprocess.Popen[bytes]] = []
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "bird", "-f", "-c", str(tmp_path / "bird.conf"),
                                       "-s", str(ctl)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 5
        while not ctl.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        for proto in ("anycast4", "anycast6"):  # what the health agent does once the checks pass
            subprocess.run(["birdc", "-s", str(ctl), "enable", proto], check=True, capture_output=True, timeout=5)
        # The rendered drop-in's flags, with this test's socket and a free loopback port.
        line = next(x for x in BIRD_EXPORTER_DROPIN_TEXT.splitlines() if x.startswith("ExecStart=/"))
        port = _free_port()
        argv = [str(ctl) if a == BIRD_SOCKET else f"127.0.0.1:{port}" if a.startswith(":") else a
                for a in line.removeprefix("ExecStart=").split()]
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        text = ""
        deadline = time.monotonic() + 10
        while "bird_protocol_up" not in text and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    text = resp.read().decode()
            except OSError:
                time.sleep(0.1)
        samples = []
        for m in (SAMPLE.match(x) for x in text.splitlines()):
            if m:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
                samples.append((m.group(1), labels, float(m.group(3))))
        yield samples
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=5)
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_exporter_labels_carry_what_the_alerts_join_on(scrape: list[tuple[str, dict[str, str], float]]) -> None:
    up = {s[1]["name"]: s[1] | {"value": str(s[2])} for s in scrape if s[0] == "bird_protocol_up"}
    exported = {s[1]["name"]: s[1] for s in scrape if s[0] == "bird_protocol_prefix_export_count"}
    assert {"anycast4", "anycast6", "upstream4", "upstream6"} <= set(up), sorted(up)
    for v in ("4", "6"):
        static, session = up[f"anycast{v}"], up[f"upstream{v}"]
        assert (static["proto"], static["ip_version"], static["value"]) == ("Static", v, "1.0")  # enabled above
        assert (session["proto"], session["ip_version"]) == ("BGP", v)
        assert "state" in session  # the BGP state: rules aggregate it away (max without (state))
        assert exported[f"upstream{v}"]["ip_version"] == v and "state" not in exported[f"upstream{v}"]
