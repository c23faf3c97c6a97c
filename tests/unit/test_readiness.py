"""The readiness gate's checks and loop against a PoP impersonated on 127.0.0.1 (tests/fake_pop.py): ready, never
ready (the timeout error), partially ready, becoming ready, and status documents that break the contract."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from infra.readiness import GateTarget, NotReady, observe, parse_status, status_problems, wait_ready
from tests.fake_pop import FakePop, FakePopState, status_document


def target(fake: FakePop, mode: str = "anycast", sessions: int = 2) -> GateTarget:
    return GateTarget(pop="ams", mode=mode, addresses=("127.0.0.1",), zone="cdn.example.com", sessions=sessions,
                      http_port=fake.http_port, dns_port=fake.dns_port, status_port=fake.http_port)


def test_ready_anycast_pop_passes() -> None:
    with FakePop(FakePopState("ams", status=status_document("ams"))) as fake:
        result = wait_ready(target(fake), timeout=5, interval=0.05, consecutive=2)
    assert result.pop == "ams" and result.polls == 2 and result.seconds < 2
    assert result.log == [result.log[0]] and result.log[0].endswith("ams: ready")
    assert fake.state.requests.count("/status") == 2 and fake.state.requests.count("/healthz") == 2


def test_ready_unicast_pop_needs_http_and_nsid_not_the_status_endpoint() -> None:
    with FakePop(FakePopState("ams")) as fake:  # no status endpoint: unicast PoPs run no health agent
        assert observe(target(fake, "unicast")) == []
        assert "/status" not in fake.state.requests
        fake.state.nsid = "fra"
        assert observe(target(fake, "unicast")) == ["DNS on 127.0.0.1: NSID 'fra' (want 'ams')"]
        fake.state.nsid = ""
        assert observe(target(fake, "unicast"), timeout=0.2) == [
            "DNS on 127.0.0.1: no NOERROR answer with an NSID for cdn.example.com SOA"]


def test_never_ready_times_out_naming_the_pop_and_what_is_missing() -> None:
    status = status_document("ams", checks_ok=False, sessions={"vultr4": "Active", "vultr6": "Connect"}, exported=False)
    with FakePop(FakePopState("ams", status=status)) as fake, pytest.raises(NotReady) as err:
        wait_ready(target(fake), timeout=0.4, interval=0.05, consecutive=2)
    text = str(err.value)
    assert text.startswith("PoP ams not ready after 0 s: ")
    assert "health checks failing: http" in text
    assert "BGP sessions not Established: vultr4 active, vultr6 connect" in text
    assert "anycast routes not exported" in text
    assert "the old PoP keeps serving" in text
    assert err.value.pop == "ams" and 0.4 <= err.value.waited < 1.5


def test_nothing_listening_is_not_ready() -> None:
    with FakePop(FakePopState("ams")) as fake:
        t = target(fake)
    problems = observe(t, timeout=0.3)  # the servers are closed now
    assert problems[0].startswith("HTTP on 127.0.0.1: ConnectionRefusedError")
    assert "status endpoint http://127.0.0.1:" in problems[1] and "ConnectionRefusedError" in problems[1]


def test_partially_ready_pop_reports_only_what_is_missing() -> None:
    state = FakePopState("ams", status=status_document("ams", sessions={"vultr4": "Established", "vultr6": "Active"}))
    with FakePop(state) as fake:
        assert observe(target(fake)) == ["BGP sessions not Established: vultr6 active"]
        state.status = status_document("ams", sessions={"vultr4": "Established"})
        assert observe(target(fake)) == ["1 BGP sessions, expected 2"]
        state.status = status_document("ams", exported=False)
        assert observe(target(fake)) == ["anycast routes not exported (agent: withdrawn, rise 1/3)"]
        assert observe(target(fake, "unicast")) == []  # unicast PoPs announce nothing
        state.status, state.xpop = status_document("ams", drained=True), "fra"
        assert observe(target(fake)) == ["HTTP on 127.0.0.1: status 200, X-PoP 'fra' (want 200, 'ams')", "the PoP is drained"]
        state.status, state.xpop = status_document("fra"), None
        assert observe(target(fake)) == ["status endpoint answers for PoP 'fra', not 'ams'"]
        state.status = None
        assert observe(target(fake)) == [f"status endpoint http://127.0.0.1:{fake.http_port}/status: HTTP 404"]
        state.http_status, state.status = 503, status_document("ams")
        assert observe(target(fake)) == ["HTTP on 127.0.0.1: status 503, X-PoP 'ams' (want 200, 'ams')"]


def test_becoming_ready_passes_and_logs_each_change_once() -> None:
    state = FakePopState("ams", status=status_document("ams", sessions={"vultr4": "Connect", "vultr6": "Connect"},
                                                        exported=False))
    polls: list[int] = []

    with FakePop(state) as fake:
        def probe(t: GateTarget) -> list[str]:
            polls.append(1)
            if len(polls) == 4:  # BIRD establishes, the agent announces
                state.status = status_document("ams")
            return observe(t)

        lines: list[str] = []
        result = wait_ready(target(fake), timeout=5, probe=probe, say=lines.append, interval=0.05, consecutive=2)
    assert result.polls == 5  # polls 1-3 not ready, 4 and 5 ready
    assert lines == ["ams: BGP sessions not Established: vultr4 connect, vultr6 connect; "
                     "anycast routes not exported (agent: withdrawn, rise 1/3)",
                     "ams: ready"]


def test_a_flap_resets_the_consecutive_count() -> None:
    answers = iter([[], ["x"], [], [], ["never reached"]])
    result = wait_ready(replace(GateTarget("ams", "anycast", ("192.0.2.1",), "z")), timeout=5, interval=0.001,
                        consecutive=2, probe=lambda _t: next(answers))
    assert result.polls == 4


def test_timeout_uses_the_given_clock() -> None:
    now = [0.0]
    with pytest.raises(NotReady) as err:
        wait_ready(GateTarget("fra", "anycast", ("192.0.2.1",), "z"), timeout=900, interval=5,
                   probe=lambda _t: ["anycast routes not exported"], clock=lambda: now[0],
                   sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert str(err.value).startswith("PoP fra not ready after 900 s: anycast routes not exported")
    assert now[0] == 900


def test_status_contract_errors_name_the_field() -> None:
    good = status_document("ams")
    s = parse_status(good)
    assert (s.pop, s.state, s.exported, s.drained, s.bird_reachable) == ("ams", "announced", True, False, True)
    assert s.sessions == {"vultr4": "established", "vultr6": "established"} and s.checks == {"http": True, "dns": True}
    unknown = {**good, "checks": {"http": {"ok": None}}, "bird": {**good["bird"], "reachable": False,
                                                                  "sessions": {"vultr4": {"bgp_state": None}}}}
    assert status_problems(parse_status(unknown), GateTarget("ams", "anycast", (), "z", sessions=1)) == [
        "health checks failing: http", "BIRD's control socket does not answer the agent", "BGP sessions not Established: vultr4 down"]
    for doc, field in ((["x"], "status"), ({**good, "schema": 2}, "status.schema"), ({**good, "pop": 1}, "status.pop"),
                       ({**good, "exported": {"routes": 2}}, "status.exported.anycast"), ({**good, "drain": None}, "status.drain"),
                       ({**good, "bird": {"reachable": True}}, "status.bird.sessions"), ({**good, "checks": []}, "status.checks")):
        with pytest.raises(ValueError, match=f"^{field.replace('.', '[.]')}"):
            parse_status(doc)


def test_status_that_is_not_json_is_a_problem_not_a_crash() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]

    import threading

    def serve() -> None:
        for _ in range(2):
            conn, _ = srv.accept()
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nX-PoP: ams\r\n\r\nnot json")
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    problems = observe(GateTarget("ams", "anycast", ("127.0.0.1",), "z", http_port=port, status_port=port), timeout=1)
    t.join(2)
    srv.close()
    assert len(problems) == 1 and "JSONDecodeError" in problems[0]


def test_the_real_agents_status_document_fits_the_gate() -> None:
    """The contract is the agent's own code: a just-started agent's /status parses and is not ready, for reasons."""
    import importlib.util
    import sys
    from pathlib import Path

    from infra.contracts import HEALTH_STATUS_PORT as STATUS_PORT
    from infra.model.stack import load_network
    from userdata.health_config import health_config

    path = Path(__file__).resolve().parents[2] / "userdata" / "files" / "anycast-health.py"
    spec = importlib.util.spec_from_file_location("anycast_health_for_gate", path)
    assert spec is not None and spec.loader is not None
    agent_mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = agent_mod
    spec.loader.exec_module(agent_mod)
    network = load_network("dev")
    config = health_config(network, network.pop("ams"))
    assert config["status"]["port"] == STATUS_PORT == 9325
    agent = agent_mod.Agent(agent_mod.load_config(config))
    agent._publish()
    status = parse_status(agent.status())
    assert status_problems(status, GateTarget("ams", "anycast", (), "z", sessions=2)) == [
        "health checks failing: dns, http", "BIRD's control socket does not answer the agent", "0 BGP sessions, expected 2",
        "anycast routes not exported (agent: unknown, starting: no checks yet)"]


def test_a_restarted_unicast_pop_counts_only_after_an_outage_or_the_settle_time() -> None:
    """Unicast PoPs run no agent to say when they started: after a restart request the gate wants to see them down
    (or waits ``settle`` s) before ready polls count, so it cannot pass on the PoP before its reboot."""
    now = [1000.0]
    seen = iter([[], [], ["HTTP on 192.0.2.1: ConnectionRefusedError"], [], []])
    t = GateTarget("sao", "unicast", ("192.0.2.1",), "z", restarted_after=1000.0)
    result = wait_ready(t, timeout=100, interval=1, consecutive=2, probe=lambda _t: next(seen),
                        clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s), wall=lambda: now[0])
    assert result.polls == 5 and result.log[0].endswith("not restarted yet: no outage seen since the restart request; "
                                                        "counting from 180 s after it")
    now[0] = 1000.0
    always = GateTarget("sao", "unicast", ("192.0.2.1",), "z", restarted_after=1000.0)
    result = wait_ready(always, timeout=400, interval=30, consecutive=2, probe=lambda _t: [], clock=lambda: now[0],
                        sleep=lambda s: now.__setitem__(0, now[0] + s), wall=lambda: now[0])
    assert result.seconds == 210  # good polls count from 180 s on (polls at 180 and 210 s)
