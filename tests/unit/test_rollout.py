"""Health-gated, wave-by-wave rollout under Pulumi mocks: the dependency chain between waves, the readiness gate's
inputs (no secret in plain text), its deliberate diff (replace with the instance, update for a timeout), its create
against a PoP impersonated on 127.0.0.1 (ready / timeout), and the overlap cost in the ``cost`` output."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from pulumi.runtime import rpc

from infra.components.gate import KIND, MARK_KIND, REPLACE_ON, RESTART_ON, PopGateProvider, RestartMarkProvider
from infra.derived.rollout import overlap_estimate, rollout_waves, worst_wave_minutes
from infra.model.regions import vultr_regions
from infra.model.stack import load_network, read_stack_config
from infra.readiness import NotReady
from tests.fake_pop import FakePop, FakePopState, status_document
from tests.helpers.program import mock_run
from tests.pulumi_mocks import TEST_BGP_PASSWORD, run_in_subprocess

INSTANCE = "vultr:index/instance:Instance"
DYNAMIC = "pulumi-python:dynamic:Resource"
GATE_INPUTS = {"kind", "pop", "mode", "instanceId", "userDataHash", "addresses", "zone", "sessions", "timeoutSeconds",
               "intervalSeconds", "statusPort", "statusPath", "restartAt", "__provider"}  # outputs seeded None are not sent


def gates(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["inputs"]["pop"]: r for r in run["resources"] if r["type"] == DYNAMIC and r["inputs"].get("kind") == KIND}


def marks(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["inputs"]["pop"]: r for r in run["resources"] if r["type"] == DYNAMIC and r["inputs"].get("kind") == MARK_KIND}


def instances(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"].removesuffix("-instance"): r for r in run["resources"] if r["type"] == INSTANCE}


def gate_urns(deps: list[str]) -> set[str]:
    return {u.rsplit("::", 1)[1].removesuffix("-gate") for u in deps if u.endswith("-gate")}


def test_waves_follow_the_document_order() -> None:
    prod = load_network("prod")
    assert prod.rollout.waves == [1, 2, 5, "all"]
    waves = rollout_waves(prod)
    assert [len(w) for w in waves] == [1, 2, 5, 10]
    assert waves[0] == ["ewr"] and waves[1] == ["ord", "dfw"] and waves[-1][-2:] == ["sao", "jnb"]
    assert not {"hkg", "maa"} & {c for w in waves for c in w}  # external PoPs are not created by Pulumi
    dev = load_network("dev")
    assert dev.rollout.waves == [1, "all"] and rollout_waves(dev) == [["ams"], ["ewr", "sao"]]
    assert rollout_waves(dev, only={"sao"}) == [["sao"]]
    short = dev.model_copy(update={"rollout": dev.rollout.model_copy(update={"waves": [1, 1]})})
    assert rollout_waves(short) == [["ams"], ["ewr"], ["sao"]]  # PoPs beyond the listed sizes form a last wave


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_instances_of_wave_k_plus_1_depend_on_every_gate_of_wave_k(stack: str) -> None:
    run, network = mock_run(stack), load_network(stack)
    waves = rollout_waves(network)
    inst = instances(run)
    assert set(inst) == {c for w in waves for c in w}
    for k, wave in enumerate(waves):
        for code in wave:
            deps = gate_urns(inst[code]["dependencies"])
            assert deps == (set(waves[k - 1]) if k else set()), f"{code} in wave {k}"


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_a_plan_change_re_arms_the_gate_before_the_next_wave(stack: str) -> None:
    """The chain an in-place resize travels: mark (plan) -> instance -> gate (restartAt) -> instances of wave k+1."""
    run, network = mock_run(stack), load_network(stack)
    inst, g, m = instances(run), gates(run), marks(run)
    waves = rollout_waves(network)
    assert set(m) == set(inst) == set(g)
    for k, wave in enumerate(waves):
        for code in wave:
            mark = m[code]
            assert mark["inputs"]["plan"] == inst[code]["inputs"]["plan"] == network.pop(code).plan
            assert any(u.endswith(f"::{code}-restart") for u in inst[code]["dependencies"]), "resized after the mark"
            assert gate_urns(mark["dependencies"]) == (set(waves[k - 1]) if k else set()), "marked when the wave starts"
            assert any(u.endswith(f"::{code}-restart") for u in g[code]["dependencies"])
            assert g[code]["inputs"]["restartAt"] == 1.7e9  # the mock mark's ``at``


def test_each_gate_waits_for_its_instance_and_carries_no_secret_in_plain_text() -> None:
    run, network = mock_run("prod"), load_network("prod")
    inst = instances(run)
    g = gates(run)
    assert set(g) == set(inst)
    for code, gate in g.items():
        i = gate["inputs"]
        assert set(i) == GATE_INPUTS
        assert gate["parent"].endswith(f"anycast:index:VultrPop::{code}") and gate["name"] == f"{code}-gate"
        assert any(u.endswith(f"::{code}-instance") for u in gate["dependencies"])
        assert i["instanceId"].endswith(network.pop(code).region or "?")
        index = list(vultr_regions()).index(str(network.pop(code).region))
        assert i["addresses"] == [f"203.0.113.{100 + index}"]  # the mock's IPv4 mainIp: the network has IPv4
        assert i["mode"] == network.pop(code).mode and i["zone"] == "cdn.example.com" and i["sessions"] == 2
        assert i["timeoutSeconds"] == 900 and i["statusPort"] == 9325 and i["statusPath"] == "/status"
        assert i["userDataHash"] == hashlib.sha256(inst[code]["inputs"]["userData"].encode()).hexdigest()
        assert "userDataHash" in gate["secretInputs"], "a hash of the password-bearing user data stays secret"
        assert TEST_BGP_PASSWORD not in json.dumps({k: v for k, v in i.items() if k != "__provider"})


def test_geodns_follows_a_unicast_pop_only_after_its_gate() -> None:
    run = mock_run("prod")
    records = [r for r in run["resources"] if r["type"] == "aws:route53/record:Record"
               and r["inputs"].get("records") and r["inputs"]["records"][0].startswith(("203.0.113.", "2001:db8:5000:"))]
    assert records, "GeoDNS records with unicast PoP addresses"
    for r in records:
        assert gate_urns(r["dependencies"]) & {"sao", "jnb"}, r["name"]


def test_gate_timeout_comes_from_the_stack() -> None:
    doc = read_stack_config("dev")["anycast:network"]
    run = run_in_subprocess("dev", network={**doc, "rollout": {"gateTimeout": 120, "waves": [2, "all"]}})
    assert {g["inputs"]["timeoutSeconds"] for g in gates(run).values()} == {120}
    assert gate_urns(instances(run)["sao"]["dependencies"]) == {"ams", "ewr"}


def test_gate_inputs_pass_the_providers_own_check() -> None:
    """Schema conformance for the dynamic resource: every registered gate passes PopGateProvider.check."""
    provider = PopGateProvider()
    for run in (mock_run("prod"), mock_run("dev")):
        for gate in gates(run).values():
            assert provider.check({}, dict(gate["inputs"])).failures == [], gate["name"]
    bad = provider.check({}, {"pop": "", "mode": "anycast", "zone": "z", "timeoutSeconds": "900", "intervalSeconds": 0})
    assert {(f.property, f.reason) for f in bad.failures} == {
        ("pop", "is required"), ("timeoutSeconds", "must be a positive number of seconds, got '900'"),
        ("intervalSeconds", "must be a positive number of seconds, got 0")}


# --- the provider's diff, update and create ----------------------------------------------------------------------

OLD = {"kind": KIND, "pop": "ams", "mode": "anycast", "instanceId": "i-old", "userDataHash": "a" * 64,
       "addresses": ["203.0.113.5"], "zone": "cdn.example.com", "sessions": 2, "timeoutSeconds": 900,
       "intervalSeconds": 5, "statusPort": 9325, "statusPath": "/status"}


def test_gate_is_replaced_whenever_its_instance_is() -> None:
    p = PopGateProvider()
    assert REPLACE_ON == ("pop", "instanceId", "userDataHash")
    new_instance = p.diff("g", OLD, {**OLD, "instanceId": "i-new", "addresses": ["203.0.113.9"]})
    assert new_instance.changes and new_instance.replaces == ["instanceId"] and new_instance.delete_before_replace is False
    preview = p.diff("g", OLD, {**OLD, "instanceId": rpc.UNKNOWN, "userDataHash": "b" * 64})  # pulumi preview
    assert preview.replaces == ["instanceId", "userDataHash"]
    assert p.diff("g", OLD, {**OLD, "userDataHash": "b" * 64}).replaces == ["userDataHash"]


def test_a_new_timeout_is_an_update_that_polls_nothing() -> None:
    p = PopGateProvider()
    d = p.diff("g", OLD, {**OLD, "timeoutSeconds": 1800, "intervalSeconds": 10})
    assert d.changes is True and d.replaces == []
    assert p.diff("g", OLD, dict(OLD)).changes is False
    # 203.0.113.5 is unreachable: an update that polled would take seconds and fail; this one returns at once.
    outs = p.update("g", {**OLD, "readySeconds": 42.0, "polls": 3}, {**OLD, "timeoutSeconds": 1800}).outs
    assert outs is not None and outs["timeoutSeconds"] == 1800 and outs["readySeconds"] == 42.0


def test_the_restart_mark_moves_only_when_a_reboot_input_changes() -> None:
    p = RestartMarkProvider()
    old = {"kind": MARK_KIND, "pop": "ams", "plan": "vc2-1c-1gb"}
    assert p.diff("m", old, dict(old)).changes is False
    resize = p.diff("m", old, {**old, "plan": "vc2-1c-2gb"})
    assert resize.changes is True and resize.replaces == []
    created = p.create(old).outs
    updated = p.update("m", {**old, "at": 1.0}, {**old, "plan": "vc2-1c-2gb"}).outs
    assert created is not None and updated is not None and created["at"] <= updated["at"] and updated["at"] > 1.0


def test_a_restart_request_is_an_update_of_the_gate() -> None:
    p = PopGateProvider()
    assert RESTART_ON == ("restartAt",)
    d = p.diff("g", {**OLD, "restartAt": 1.0}, {**OLD, "restartAt": 2.0})
    assert d.changes is True and d.replaces == []  # same instance: update, which polls (below)
    assert p.diff("g", {**OLD, "restartAt": 1.0}, {**OLD, "restartAt": rpc.UNKNOWN}).changes is True  # preview
    # A gate from before restart marks gets its first restartAt: nothing restarted, nothing polled (unreachable address).
    outs = p.update("g", {**OLD, "readySeconds": 42.0, "polls": 3}, {**OLD, "restartAt": 5.0}).outs
    assert outs is not None and outs["restartAt"] == 5.0 and outs["readySeconds"] == 42.0


def test_after_a_resize_the_gate_waits_for_the_restarted_pop() -> None:
    """Old PoP still up (agent started before the restart request): not ready; rebooted PoP: ready."""
    requested = 1_700_000_000.0
    old_agent = {**status_document("ams"), "agent": {"started": requested - 3600}}
    with FakePop(FakePopState("ams", status=old_agent)) as fake, pytest.raises(NotReady) as err:
        PopGateProvider().update("g", {**_props(fake, 0.3), "restartAt": requested - 60},
                                 {**_props(fake, 0.3), "restartAt": requested})
    assert "not restarted yet: the health agent started at 1699996400.0, before the restart requested at 1700000000" in str(err.value)
    new_agent = {**status_document("ams"), "agent": {"started": requested + 40}}
    with FakePop(FakePopState("ams", status=new_agent)) as fake:
        outs = PopGateProvider().update("g", {**_props(fake, 5, interval=0.5), "restartAt": requested - 60},
                                        {**_props(fake, 5, interval=0.5), "restartAt": requested}).outs
    assert outs is not None and outs["polls"] == 2 and outs["restartAt"] == requested and "__provider" not in outs


def _props(fake: FakePop, timeout: float, interval: float = 0.05) -> dict[str, Any]:
    return {**OLD, "addresses": ["127.0.0.1"], "timeoutSeconds": timeout, "intervalSeconds": interval,
            "statusPort": fake.http_port, "httpPort": fake.http_port, "__provider": "pickled"}


def test_create_returns_when_the_pop_serves() -> None:
    # Each poll's requests time out after min(2 s, interval): 0.05 s failed a poll now and then on a loaded machine
    # (the fake PoP answers from this process), which made it 4 polls instead of 2 (a full `make test`, 2026-12-06).
    with FakePop(FakePopState("ams", status=status_document("ams"))) as fake:
        result = PopGateProvider().create(_props(fake, 5, interval=0.5))
    assert result.id == "gate-ams-i-old"
    assert result.outs is not None and result.outs["polls"] == 2 and "__provider" not in result.outs


def test_create_fails_with_the_pop_and_what_is_missing() -> None:
    status = status_document("ams", sessions={"vultr4": "Established", "vultr6": "Active"}, exported=False)
    with FakePop(FakePopState("ams", status=status)) as fake, pytest.raises(NotReady) as err:
        PopGateProvider().create(_props(fake, 0.5))
    assert str(err.value).startswith("PoP ams not ready after ")
    assert "BGP sessions not Established: vultr6 active; anycast routes not exported (agent: withdrawn" in str(err.value)


def test_cost_output_shows_the_overlap_of_a_rollout() -> None:
    run, network = mock_run("prod"), load_network("prod")
    rollout = run["outputs"]["cost"]["value"]["rollout"]
    assert rollout == json.loads(json.dumps(overlap_estimate(network)))
    assert rollout["waves"] == rollout_waves(network) and rollout["extraInstances"] == 18
    # wave i's 5 $/month PoPs overlap (4 - i) waves of 5 minutes: (1*4 + 2*3 + 5*2 + 10*1) * 5/60 h * 5/730 $/h
    assert rollout["typicalExtraUsd"] == round(30 * 5 / 60 * 5 / 730, 4)
    # waves of 1, 2, 5, 10 PoPs, 4 gates polled at once: 1, 1, 2, 3 gate timeouts of 15 minutes, + 5 minutes each
    assert rollout["worstCaseMinutes"] == (1 + 1 + 2 + 3) * 15 + 4 * 5 == 125


def test_the_worst_case_counts_the_dynamic_provider_threads() -> None:
    """The figure rests on the installed SDK's provider server: at most 4 dynamic-resource calls at once."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("pulumi.dynamic.__main__")  # the server's source, not imported (it starts gRPC)
    assert spec is not None and spec.origin is not None
    assert "futures.ThreadPoolExecutor(max_workers=4)" in Path(spec.origin).read_text()
    assert [worst_wave_minutes(n, 900, 5) for n in (1, 4, 5, 8, 9, 10)] == [20, 20, 35, 35, 50, 50]
