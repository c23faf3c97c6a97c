"""A PoP whose service crash-loops, seen by a transit running route flap damping with RFC 7196's parameters (FRR,
``bgp dampening 15 750 6000 60``): without the agent's damping the transit suppresses the prefix within seconds; with
it the figure of merit stays at or below the agent's ``damping.max_penalty`` (5000) and nothing is suppressed. The
scenario lives in lab/scenarios/damping.py (`make bench` measures it too); this runs it and asserts.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.net.bgp_topology import Topology
from lab.scenarios.damping import crash_loop, missing
from tests.conftest import TEST_PASSWORD

pytestmark = [pytest.mark.skipif(missing() is not None, reason=missing() or ""), pytest.mark.slow]


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Topology]:
    t = Topology("dm", tmp_path)
    try:
        yield t
    finally:
        t.close()


@pytest.fixture
def frr_dir() -> Iterator[Path]:
    """FRR's state directory: readable by user frr (pytest's tmp_path is root's only)."""
    d = Path(tempfile.mkdtemp(prefix="acu-dm-frr-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("agent_damping", [False, True], ids=["without-agent-damping", "with-agent-damping"])
def test_crash_loop_at_a_damping_transit(topo: Topology, tmp_path: Path, frr_dir: Path, agent_damping: bool) -> None:
    r = crash_loop(topo, tmp_path, frr_dir, agent_damping, password=TEST_PASSWORD)
    print(f"FIGURE damping agent_damping={agent_damping} withdrawals={r.withdrawals} peak_penalty={r.peak_penalty} "
          f"suppressed={r.suppressed} in {r.seconds} s")
    assert r.withdrawals >= 5, r.log[-3000:]
    if agent_damping:
        assert not r.suppressed and 0 < r.peak_penalty <= 5000, (r.peak_penalty, r.log[-3000:])
        assert "figure of merit" in r.log
    else:
        assert r.suppressed and r.peak_penalty > 6000, (r.peak_penalty, r.log[-3000:])
