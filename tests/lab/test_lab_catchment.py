"""The guide's step 8 in the lab, end to end: with India's provider "too well connected" (``--well-connected maa:EU``)
and maa's prepend removed, the catchment from the lab's clients shows Europe landing in Chennai; the advice is a
prepend diff of the stack file; applied (with ``git apply``, as an operator would) and re-booted, Europe is back on
Frankfurt and London. The same analysis code as for RIPE Atlas. Needs root; a reduced prod (7 PoPs) keeps it short.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.catchment.advice import advise
from infra.catchment.analysis import Report, analyse
from infra.catchment.output import write_outputs
from infra.model import Network
from infra.model.stack import load_network
from lab.boot.up import down, up
from lab.plan.topology import parse_well_connected
from lab.scenarios.catchment import lab_observations
from tests.conftest import ROOT
from tests.helpers.environment import LAB_REASON as REASON

pytestmark = [pytest.mark.lab, pytest.mark.slow]
STACK = "step8"
POPS = ["fra", "lhr", "maa", "ewr", "nrt", "syd", "sao"]


@pytest.fixture
def stack_dir(tmp_path: Path) -> Iterator[Path]:
    if REASON:
        pytest.skip(REASON)
    text = (ROOT / "Pulumi.prod.yaml").read_text()
    text = text.replace("        # The guide's \"selective announcement\": India is reached via long paths, so make it less preferred.\n"
                        "        announce: {prepend: 2}\n", "")
    assert "prepend" not in text
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / f"Pulumi.{STACK}.yaml").write_text(text)
    try:
        yield tmp_path
    finally:
        down(STACK)


def _measure(network: Network) -> Report:
    well = (parse_well_connected("maa:EU", network),)
    up(STACK, network, only=POPS, well_connected=well, quiet=True, timeout=60)
    observations, probes, running = lab_observations(STACK, network)
    assert sorted(running) == sorted(POPS)
    return analyse(network, observations, probes, source=f"lab {STACK}", running=running)


def test_step8_misrouting_found_and_fixed_by_the_advice(stack_dir: Path) -> None:
    network = load_network(STACK, stack_dir)
    before = _measure(network)
    rows = {(r.id, r.af): r for r in before.probes}
    assert len(before.probes) == 22 and before.summary()["no_answer"] == 0
    for name, expected in (("de", "fra"), ("gb", "lhr")):
        for af in (4, 6):
            r = rows[(name, af)]
            assert (r.pop, r.expected_pop, r.status) == ("maa", expected, "misrouted"), r
    assert before.summary()["misrouted"] == 4
    assert rows[("us", 4)].pop == "ewr" and rows[("in", 6)].pop == "maa"  # the rest keeps its nearest PoP
    items, diff = advise(network, before, stack_dir / f"Pulumi.{STACK}.yaml")
    assert [(i.kind, i.pop) for i in items] == [("prepend", "maa")]
    assert diff is not None and "+        announce: {prepend: 1}" in diff
    write_outputs(before, stack_dir / "before", "step 8 before", diff)

    subprocess.run(["git", "apply", "-p1"], input=diff, text=True, check=True, cwd=stack_dir)
    fixed = load_network(STACK, stack_dir)
    assert fixed.pop("maa").announce.prepend == 1
    after = _measure(fixed)
    assert after.summary()["misrouted"] == 0 and after.summary()["ok"] == 22
    served = {(r.id, r.af): r.pop for r in after.probes}
    assert served[("de", 4)] == "fra" and served[("gb", 6)] == "lhr" and served[("in", 4)] == "maa"
