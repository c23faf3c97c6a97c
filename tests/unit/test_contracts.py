"""The wire contracts (infra/contracts.py) against the stdlib agents that ship in the user data and cannot import them
(userdata/files/anycast-health.py, userdata/files/anycast-tls.py), and against the renderers and readers that can.

Each agent is loaded from its file: its built-in defaults, the health.json / tls.json keys it reads, the /status keys
and the metric names it writes must be the contract's, so changing one side alone fails here."""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import re
import sys
import types
from pathlib import Path
from types import ModuleType
from typing import Any, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from infra import contracts
from infra.model import Network

ROOT = Path(__file__).resolve().parents[2]
HEALTH_AGENT = ROOT / "userdata" / "files" / "anycast-health.py"
TLS_AGENT = ROOT / "userdata" / "files" / "anycast-tls.py"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


agent = _load(HEALTH_AGENT, "anycast_health_contract")


def problems(value: Any, tp: Any, where: str) -> list[str]:
    """Where ``value`` (parsed JSON) does not fit ``tp`` exactly: a key the contract lacks is a problem too."""
    if is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {value!r}"]
        hints = get_type_hints(tp)
        out = [f"{where}.{k}: not in the contract" for k in value if k not in hints]
        out += [f"{where}.{k}: missing" for k in sorted(tp.__required_keys__) if k not in value]
        for k, v in value.items():
            if k in hints:
                out += problems(v, hints[k], f"{where}.{k}")
        return out
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return [] if any(not problems(value, a, where) for a in args) else [f"{where}: {value!r} is not {tp}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {value!r}"]
        return [p for i, v in enumerate(value) for p in problems(v, args[0], f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {value!r}"]
        return [p for k, v in value.items() for p in problems(v, args[1], f"{where}.{k}")]
    ok = {type(None): value is None, bool: isinstance(value, bool),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, int | float) and not isinstance(value, bool),
          str: isinstance(value, str)}[tp]
    return [] if ok else [f"{where}: {value!r} is not {tp.__name__}"]


def test_the_checker_finds_what_it_should() -> None:
    good = {"address": "::", "port": 9325}
    assert problems(good, contracts.StatusConfig, "status") == []
    assert problems({"address": "::", "port": "9325"}, contracts.StatusConfig, "status") == ["status.port: '9325' is not int"]
    assert problems({"address": "::"}, contracts.StatusConfig, "status") == ["status.port: missing"]
    assert problems({**good, "extra": 1}, contracts.StatusConfig, "status") == ["status.extra: not in the contract"]
    assert problems({"ok": True, "detail": None, "latency_ms": 1, "checked_at": None, "failures": 0, "events": 0,
                     "watch": 3}, contracts.CheckStatus, "c") == ["c.watch: 3 is not str"]


# --- health.json ------------------------------------------------------------------------------------------------------

def _agent_kind(tp: Any) -> Any:
    """The agent's spelling (SCHEMA) of a contract type."""
    return {int: agent._INT, float: agent._NUM, str: agent._STR}.get(tp) or {
        "list[str]": agent._STRS, "list[int]": [agent._INT]}[str(tp)]


def _schema_rows(td: Any, defaults: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """key path -> (agent kind, default or None when required); sections -> "section" / "optional section"."""
    rows: dict[str, Any] = {}
    for key, tp in get_type_hints(td).items():
        if is_typeddict(tp):
            rows[prefix + key] = "optional section" if key in td.__optional_keys__ else "section"
            rows.update(_schema_rows(tp, defaults.get(key, {}), f"{prefix}{key}."))
        else:
            rows[prefix + key] = (_agent_kind(tp), defaults.get(key))
    return rows


def _agent_rows(schema: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for key, spec in schema.items():
        if isinstance(spec, dict):
            rows[prefix + key] = "optional section" if key in agent.OPTIONAL_SECTIONS else "section"
            rows.update(_agent_rows(spec, f"{prefix}{key}."))
        else:
            rows[prefix + key] = spec
    return rows


def test_health_agent_reads_the_contracts_keys_types_and_defaults() -> None:
    """The agent's SCHEMA (keys, types, defaults, which are required) is the contract's HealthConfig + defaults."""
    want = _schema_rows(contracts.HealthConfig, contracts.HEALTH_DEFAULTS)
    got = _agent_rows(agent.SCHEMA)
    assert sorted(got) == sorted(want)
    wrong = {k: {"agent": got[k], "contract": want[k]} for k in want if got[k] != want[k]}
    assert wrong == {}


def test_health_agent_dataclass_defaults_are_the_contracts() -> None:
    """The agent's Config dataclasses carry defaults of their own (used by the lab and tests): the same values."""
    d = contracts.HEALTH_DEFAULTS
    fields = {f.name: f.default for f in agent.dataclasses.fields(agent.Config)}
    assert fields["status_port"] == d["status"]["port"] == contracts.HEALTH_STATUS_PORT
    assert fields["status_address"] == d["status"]["address"]
    assert fields["bird_timeout"] == d["bird"]["timeout_ms"] / 1000
    assert agent.Damping() == agent.Damping(*(float(d["damping"][k]) for k in ("stable_s", "min_hold_down_s", "max_hold_down_s",
                                                                                 "half_life_s", "max_penalty")))
    assert agent.DrainConfig() == agent.DrainConfig(d["drain"]["file"], d["drain"]["quiet_s"], d["drain"]["timeout_s"],
                                                    tuple(d["drain"]["ports"]), tuple(d["drain"]["gshut_protocols"]),
                                                    d["drain"]["gshut_s"], d["drain"]["quiet_fraction"],
                                                    d["drain"]["quiet_per_s"])


def test_a_minimal_health_json_gets_the_contracts_defaults() -> None:
    cfg = agent.load_config({"pop": "ams", "http": {"host": "192.0.2.1"},
                             "bird": {"socket": contracts.BIRD_SOCKET, "protocols": ["anycast4"]}})
    d = contracts.HEALTH_DEFAULTS
    assert (cfg.interval, cfg.rise, cfg.fall) == (d["interval_ms"] / 1000, d["rise"], d["fall"])
    assert cfg.http == agent.HttpCheck("192.0.2.1", contracts.HTTP_PORT, contracts.HEALTHZ_PATH, d["http"]["timeout_ms"] / 1000)
    assert (cfg.status_address, cfg.status_port) == ("::", contracts.HEALTH_STATUS_PORT)
    assert cfg.bird_timeout == d["bird"]["timeout_ms"] / 1000
    assert cfg.drain.file == contracts.DRAIN_FILE and cfg.drain.ports == contracts.SERVICE_PORTS


def _option_default(path: Path, option: str) -> Any:
    """The ``default=`` of ``parser.add_argument(option, ...)`` in an agent's source."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
                and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == option):
            return next(ast.literal_eval(k.value) for k in node.keywords if k.arg == "default")
    raise AssertionError(f"{path.name}: no add_argument({option!r})")


def test_agents_default_config_paths_are_where_the_user_data_writes_them() -> None:
    from userdata.render import HOST_PATHS

    assert _option_default(HEALTH_AGENT, "--config") == contracts.HEALTH_CONFIG_FILE == HOST_PATHS["health.json"]
    assert _option_default(TLS_AGENT, "--config") == contracts.TLS_CONFIG_FILE


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_rendered_health_json_fits_the_contract_and_the_agent(stack: str, request: pytest.FixtureRequest) -> None:
    from userdata.health_config import health_config

    net: Network = request.getfixturevalue(f"{stack}_network")
    anycast = [p for p in net.pops if p.is_anycast]
    assert anycast
    for pop in anycast:
        doc = json.loads(json.dumps(health_config(net, pop)))
        assert problems(doc, contracts.HealthConfig, "health.json") == []
        cfg = agent.load_config(doc)
        assert cfg.status_port == contracts.HEALTH_STATUS_PORT and cfg.bird_socket == contracts.BIRD_SOCKET


# --- /status and /metrics ---------------------------------------------------------------------------------------------

BIRD_REPLY = ("2002-Name       Proto      Table      State  Since         Info\n"
              "1002-anycast4   Static     master4    up     08:14:25.496  \n"
              "1002-upstream4  BGP        ---        up     08:14:24.489  Established   \n"
              "1006-  Description:    Vultr AS64515 (IPv4)\n"
              "   BGP state:          Established\n"
              "   Channel ipv4\n"
              "     Routes:         0 imported, 1 exported, 0 preferred\n"
              "0000 \n")


def _status(tmp_path: Path, announced: bool) -> dict[str, Any]:
    """The agent's status document after one round (no servers: the checks fail) with BIRD's reply parsed."""
    cfg = agent.load_config({"pop": "ams", "interval_ms": 20,
                             "http": {"host": "127.0.0.1", "port": 9, "timeout_ms": 50},
                             "dns": {"server": "127.0.0.1", "port": 9, "qname": "cdn.example.com", "timeout_ms": 50},
                             "bird": {"socket": str(tmp_path / "bird.ctl"), "protocols": ["anycast4", "anycast6"]},
                             "status": {"address": "127.0.0.1", "port": 0}, "drain": {"file": str(tmp_path / "drain")}})
    a = agent.Agent(cfg, log=io.StringIO())
    a.cycle()
    if announced:
        a.bird_problem, a.bird_protocols, a.wanted = None, agent.parse_protocols(BIRD_REPLY), True
        a._publish()
    status: dict[str, Any] = a.status()
    return status


@pytest.mark.parametrize("announced", [False, True])
def test_health_agent_status_document_is_the_contracts(tmp_path: Path, announced: bool) -> None:
    from infra.readiness import parse_status

    status = _status(tmp_path, announced)
    assert problems(status, contracts.HealthStatus, "status") == []
    assert status["schema"] == contracts.STATUS_SCHEMA == agent.STATUS_SCHEMA
    assert status["state"] in contracts.STATUS_STATES
    assert tuple(status["announce"]["withdrawals"]) == contracts.WITHDRAWAL_CAUSES
    assert set(status["checks"]) == {"http", "dns"}
    parsed = parse_status(status)  # the readiness gate reads it
    assert parsed.pop == "ams" and parsed.drained is False
    if announced:
        assert status["bird"]["sessions"]["upstream4"]["bgp_state"] == "Established"
        assert parsed.sessions == {"upstream4": "established"}
        assert status["bird"]["protocols"]["anycast6"] is None  # configured, but BIRD does not have it


def test_health_agent_metric_names_are_the_contracts(tmp_path: Path) -> None:
    text = agent.metrics(_status(tmp_path, announced=True))
    declared = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert declared == contracts.HEALTH_METRICS


def test_monitoring_uses_only_metrics_the_agent_exports() -> None:
    """Alerts and the dashboard name the agent's metrics by string: each must be one the agent exports."""
    from infra.monitoring.alerts import alerts
    from infra.monitoring.dashboard import dashboard

    outputs = json.loads((ROOT / "tests" / "fixtures" / "stack-outputs-prod.json").read_text(encoding="utf-8"))
    text = json.dumps(dashboard(outputs)) + json.dumps([a.expr for a in alerts(outputs)])
    used = set(re.findall(r"\banycast_health_[a-z_]+", text))
    assert used, "no anycast_health_* metric in the dashboard or alerts: the check below would prove nothing"
    assert used <= set(contracts.HEALTH_METRICS)


# --- tls.json ---------------------------------------------------------------------------------------------------------

def _tls_reads() -> dict[str, bool]:
    """Every tls.json key path anycast-tls reads -> True if it reads it with ``[...]`` (must be there), False with
    ``.get`` (may be absent). Its sections are bound to ``cfg``, ``store`` (cfg["store"]) and ``acme`` (cfg["acme"])."""
    roots = {"cfg": (), "store": ("store",), "acme": ("acme",), "peers": ("peers",)}

    def path_of(node: ast.AST) -> tuple[str, ...] | None:
        if isinstance(node, ast.Name):
            return roots.get(node.id)
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            base = path_of(node.value)
            return None if base is None else (*base, node.slice.value)
        return None

    reads: dict[str, bool] = {}
    for node in ast.walk(ast.parse(TLS_AGENT.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Subscript):
            p = path_of(node)
            if p:
                reads[".".join(p)] = True
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Constant)):
            base = path_of(node.func.value)
            if base is not None:
                reads.setdefault(".".join((*base, str(node.args[0].value))), False)
    return reads


def _tls_keys(td: Any, prefix: str = "") -> dict[str, bool]:
    """Contract key path -> required."""
    out: dict[str, bool] = {}
    for key, tp in get_type_hints(td).items():
        out[prefix + key] = key in td.__required_keys__
        if is_typeddict(tp):
            out.update(_tls_keys(tp, f"{prefix}{key}."))
    return out


def test_tls_agent_reads_exactly_the_contracts_keys() -> None:
    reads, keys = _tls_reads(), _tls_keys(contracts.TlsConfig)
    assert len(reads) > 10  # the scan found the agent's reads
    assert sorted(set(reads) - set(keys)) == []  # every key it reads is in the contract
    assert sorted(set(keys) - set(reads)) == ["pop"]  # and the contract has no other key nobody reads
    # a key read with [...] must be required, or under an optional section the agent checks first ("acme", "peers")
    assert sorted(k for k, must in reads.items() if must and not keys[k] and k not in ("acme", "peers")) == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_rendered_tls_json_fits_the_contract(stack: str, request: pytest.FixtureRequest) -> None:
    from userdata.tls import tls_config

    net: Network = request.getfixturevalue(f"{stack}_network")
    issuers = 0
    for pop in net.pops:
        doc = json.loads(json.dumps(tls_config(net, pop)))
        assert problems(doc, contracts.TlsConfig, "tls.json") == []
        issuers += "acme" in doc
    assert issuers == (1 if net.tls.enabled else 0)


# --- where the contracts live -----------------------------------------------------------------------------------------

def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("path", [ROOT / "infra" / "contracts.py", HEALTH_AGENT, TLS_AGENT], ids=lambda p: p.name)
def test_contracts_and_agents_import_the_standard_library_only(path: Path) -> None:
    """The contract sits below every layer; the agents run on a PoP with python3 alone."""
    imported = _imports(path)
    assert imported and imported <= set(sys.stdlib_module_names), sorted(imported - set(sys.stdlib_module_names))


WIRE_LITERALS = re.compile(r"\b932[45]\b|/run/bird/bird\.ctl|/etc/anycast/health\.json|/usr/local/sbin/anycast-health")


def test_wire_literals_live_in_the_contract() -> None:
    """No code repeats the exporter ports or the PoP's paths of the BIRD socket, health.json and the agent as a
    literal (docstrings and help texts may name them for the reader; the lab's own per-PoP sockets are its business);
    the shipped agents keep their copies, checked above."""
    found = []
    for pkg in ("infra", "userdata", "lab", "policies"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path.name == "contracts.py" or path.parent.name == "files":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Constant) and isinstance(node.value, str | int) and not isinstance(node.value, bool)
                        and WIRE_LITERALS.search(str(node.value)) and not _docstring_like(node)):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {str(node.value)[:60]!r}")
    assert found == []


def _docstring_like(node: ast.Constant) -> bool:
    """Prose: a string with a space and longer than a path (a docstring or a help text), not a value."""
    return isinstance(node.value, str) and " " in node.value.strip() and len(node.value) > 40


def test_json_schemas_validate_what_the_agents_and_renderers_write(tmp_path: Path, dev_network: Network) -> None:
    """The same contracts as JSON Schema, checked by an independent validator (jsonschema)."""
    from jsonschema import Draft202012Validator

    from userdata.health_config import health_config
    from userdata.tls import tls_config

    def errors(tp: Any, doc: Any, closed: bool = True) -> list[str]:
        schema = contracts.json_schema(tp, closed)
        Draft202012Validator.check_schema(schema)
        return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft202012Validator(schema).iter_errors(doc)]

    status = _status(tmp_path, announced=True)
    assert errors(contracts.HealthStatus, status) == []
    assert errors(contracts.HealthStatus, _status(tmp_path, announced=False)) == []
    assert errors(contracts.HealthStatus, {**status, "new_field": 1}) == [": Additional properties are not allowed ('new_field' was unexpected)"]
    assert errors(contracts.HealthStatus, {**status, "new_field": 1}, closed=False) == []  # what a reader accepts
    assert errors(contracts.HealthStatus, {**status, "exported": {"anycast": "yes", "routes": 1}}) == [
        "exported.anycast: 'yes' is not of type 'boolean'"]
    pop = dev_network.pop("ams")
    assert errors(contracts.HealthConfig, json.loads(json.dumps(health_config(dev_network, pop)))) == []
    assert errors(contracts.TlsConfig, json.loads(json.dumps(tls_config(dev_network, pop)))) == []
