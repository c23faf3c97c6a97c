"""Run ``__main__.py`` under Pulumi mocks and capture every resource, option and stack output as JSON.

Pulumi's runtime keeps global state (settings, the root stack, config), so each run happens in a fresh process:
``run_in_subprocess(stack)`` starts ``python tests/pulumi_mocks.py STACK`` and parses its JSON. ``run_program`` is the
in-process body (used by that script and by ``bench/program.py``).

The mocks answer like the providers: a Vultr instance gets ``mainIp``/``v6MainIp`` from documentation ranges
(203.0.113.100+i, 2001:db8:5000:i::1, i = the region's index in the catalogue, so addresses are stable), a health
check and a zone get ids, and ``aws:route53/getZone:getZone`` returns a hosted zone.
"""

from __future__ import annotations

import ipaddress
import json
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEST_BGP_PASSWORD = "Mock-BGP-Password-4f9c2e"  # what tests search for in outputs; never a real secret
TEST_VULTR_API_KEY = "MOCK-VULTR-API-KEY-0000"
ZONE_ID = "Z0123456789EXAMPLE"
SECRET_MARK = "[secret]"
TEST_TLS_SECRET = "Mock-TLS-Access-Secret-9b3f1a"  # the mocked IAM access keys' secret
REGISTERED: list[dict[str, Any]] = []


def stack_config(stack: str, network: dict[str, Any] | None = None) -> dict[str, str]:
    """``set_all_config`` input: the stack file's config (objects as JSON) plus the two secrets."""
    sys.path.insert(0, str(ROOT))
    from infra.model.stack import NETWORK_KEY, read_stack_config

    raw = dict(read_stack_config(stack)) if network is None else {NETWORK_KEY: network}
    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}
    config.update(json.loads(os.environ.get("ANYCAST_MOCK_EXTRA_CONFIG", "{}")))  # run_in_subprocess(extra_config=)
    config.setdefault("anycast:bgpPassword", TEST_BGP_PASSWORD)
    config.setdefault("vultr:apiKey", TEST_VULTR_API_KEY)
    return config


def run_program(stack: str, config: dict[str, str]) -> dict[str, Any]:
    """Run the program once in this process (call only once per process) and return what it registered."""
    sys.path.insert(0, str(ROOT))
    import pulumi
    from google.protobuf import struct_pb2
    from pulumi.runtime import mocks as pmocks
    from pulumi.runtime import rpc
    from pulumi.runtime.sync_await import _sync_await

    from infra.model.regions import vultr_regions

    region_index = {r: i for i, r in enumerate(vultr_regions())}
    resources = REGISTERED  # module-level, so that a failed run still reports what it had registered

    class Mocks(pmocks.Mocks):
        def new_resource(self, args: pmocks.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
            state = dict(args.inputs)
            rid = f"{args.name}-id"
            if args.typ == "vultr:index/instance:Instance":
                i = region_index.get(str(args.inputs.get("region")), 99)
                rid = f"0000{i:04d}-mock-instance-{args.inputs.get('region')}"
                state.update(mainIp=f"203.0.113.{100 + i}", v6MainIp=str(ipaddress.IPv6Address(f"2001:db8:5000:{i:x}::1")), status="active",
                             powerStatus="running", defaultPassword="mock-root-password", v6Network=f"2001:db8:5000:{i:x}::",
                             v6NetworkSize=64)
                # a provider answering something else for one region (run_in_subprocess(main_ips=...))
                state.update(json.loads(os.environ.get("ANYCAST_MOCK_MAIN_IPS", "{}")).get(str(args.inputs.get("region")), {}))
            elif args.typ == "aws:route53/healthCheck:HealthCheck":
                rid = f"hc-{args.name}"
            elif args.typ == "aws:route53/zone:Zone":
                rid = "Z0CREATED0000"
                state.update(zoneId=rid, nameServers=["ns-1.awsdns-00.com", "ns-2.awsdns-00.net"])
            elif args.typ == "aws:iam/accessKey:AccessKey":
                rid = f"AKIAMOCK{args.name.upper().replace('-', '')[:12]}"
                state.update(secret=TEST_TLS_SECRET, status="Active")
            elif args.typ == "aws:route53/record:Record":
                state.update(fqdn=args.inputs.get("name"))
            elif args.inputs.get("kind") == "anycast:rollout:RestartMark":
                state.update(at=1.7e9)  # the wall-clock time the mark's create records
            return rid, state

        def call(self, args: pmocks.MockCallArgs) -> dict[Any, Any]:  # type: ignore[override]
            if args.token == "aws:route53/getZone:getZone":
                name = args.args.get("name")
                return {"id": ZONE_ID, "zoneId": ZONE_ID, "name": name, "arn": f"arn:aws:route53:::hostedzone/{ZONE_ID}",
                        "nameServers": ["ns-1.awsdns-00.com", "ns-2.awsdns-00.net"], "privateZone": False,
                        "resourceRecordSetCount": 2, "comment": "", "callerReference": "mock", "tags": {},
                        "linkedServiceDescription": "", "linkedServicePrincipal": "", "primaryNameServer": "ns-1.awsdns-00.com",
                        "enableAcceleratedRecovery": False}
            raise NotImplementedError(f"mock has no answer for {args.token}")

    class Monitor(pmocks.MockMonitor):
        def RegisterResource(self, request: Any) -> Any:
            if request.type != "pulumi:pulumi:Stack":
                inputs: dict[str, Any] = {}
                secret_inputs: list[str] = []
                for key in request.object.fields:
                    one = struct_pb2.Struct()
                    one.fields[key].CopyFrom(request.object.fields[key])
                    value, secret = rpc.deserialize_properties_unwrap_secrets(one)
                    if key in value:
                        inputs[key] = value[key]
                    if secret:
                        secret_inputs.append(key)
                resources.append({
                    "type": request.type, "name": request.name, "parent": request.parent, "custom": request.custom,
                    "inputs": inputs, "secretInputs": sorted(secret_inputs),
                    "deleteBeforeReplace": request.deleteBeforeReplace if request.deleteBeforeReplaceDefined else None,
                    "replaceOnChanges": list(request.replaceOnChanges),
                    "additionalSecretOutputs": list(request.additionalSecretOutputs),
                    "ignoreChanges": list(request.ignoreChanges),
                    "dependencies": sorted(request.dependencies),  # depends_on and property dependencies (URNs)
                })
            return super().RegisterResource(request)

    pulumi.runtime.set_all_config(config, secret_keys=["anycast:bgpPassword", "vultr:apiKey", "anycast:ripeApiKey"])
    pmocks.set_mocks(Mocks(), project="anycast", stack=stack, preview=False, monitor=Monitor(Mocks()))

    exports: dict[str, Any] = {}
    pulumi.export = lambda name, value: exports.__setitem__(name, value)
    outputs: dict[str, pulumi.Output[Any]] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        outputs.update({k: pulumi.Output.from_input(v) for k, v in exports.items()})
        return pulumi.Output.all(*outputs.values())

    start = time.perf_counter()
    program()
    elapsed = time.perf_counter() - start
    result: dict[str, Any] = {}
    for key, out in outputs.items():
        result[key] = {"value": _sync_await(out.future()), "secret": bool(_sync_await(out.is_secret()))}
    return {"stack": stack, "seconds": elapsed, "resources": resources, "outputs": result}


def run_in_subprocess(stack: str, network: dict[str, Any] | None = None, timeout: float = 300,
                      extra_config: dict[str, str] | None = None, expect_failure: bool = False,
                      main_ips: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """Run the program for ``stack`` (or a stack named ``stack`` holding ``network``) in a fresh interpreter.

    ``extra_config`` overrides config keys (``anycast:bgpPassword``...); ``main_ips`` the mocked instance outputs of
    a region (``{"ams": {"mainIp": ...}}``). With ``expect_failure`` a program that raised returns ``{"errorType",
    "error", "resources"}``; otherwise any failure raises RuntimeError."""
    cmd = [sys.executable, str(Path(__file__).resolve()), stack]
    stdin = json.dumps(network) if network is not None else ""
    if network is not None:
        cmd.append("--network-from-stdin")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="0",
               ANYCAST_MOCK_EXTRA_CONFIG=json.dumps(extra_config or {}), ANYCAST_MOCK_MAIN_IPS=json.dumps(main_ips or {}))
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout, check=False)
    if proc.returncode == 3 and not expect_failure:
        raise RuntimeError(f"mock run of {stack} refused its config: {proc.stdout[-2000:]}")
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"mock run of {stack} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout))


def stack_output_json(outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What ``pulumi stack output --json`` prints: values, with secrets shown as ``[secret]``."""
    return {k: (SECRET_MARK if v["secret"] else v["value"]) for k, v in sorted(outputs.items())}


def record_outputs(stack: str) -> Path:
    """Rewrite ``tests/fixtures/stack-outputs-<stack>.json`` from a fresh mock run."""
    path = ROOT / "tests" / "fixtures" / f"stack-outputs-{stack}.json"
    outputs = stack_output_json(run_in_subprocess(stack)["outputs"])
    path.write_text(json.dumps(outputs, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def main(argv: list[str]) -> int:
    stack = argv[0]
    network = json.loads(sys.stdin.read()) if "--network-from-stdin" in argv else None
    try:
        result = run_program(stack, stack_config(stack, network))
    except Exception as exc:  # the program refused its config: say how, and what exists already
        failure = {"errorType": type(exc).__name__, "error": str(exc), "resources": REGISTERED}
        sys.stdout.write(json.dumps(failure, sort_keys=True, default=str))
        return 3
    sys.stdout.write(json.dumps(result, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
