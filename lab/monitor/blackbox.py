"""Monitoring in the lab, with the real consumer: stack outputs built from the lab's addresses, the blackbox-exporter
targets ``anycast monitoring targets`` makes of them, and Debian's ``prometheus-blackbox-exporter`` probing them
from one client namespace.

* :func:`lab_outputs`: the document ``pulumi stack output --json`` would print if the PoPs had the lab's unicast
  addresses, made by the program's own ``infra/derived/outputs.py`` functions (only the addresses, instance ids and the
  Route53 zone id differ: there are no instances and no Route53 in the lab);
* :func:`write_lab_targets`: ``.lab/<stack>/outputs.json`` and ``.lab/<stack>/monitoring/`` through
  ``infra.monitoring.targets.load_outputs`` + ``write_targets``, the code path of ``anycast monitoring targets``;
* :func:`probe_plan`: which ``/probe`` calls to make from one client and what each must give (pure, unit-tested);
* :func:`check_monitoring`: start the exporter in the client's namespace on 127.0.0.1:9115, call ``/probe`` for every
  planned probe from inside that namespace, read ``probe_success``, stop the exporter.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from infra.contracts import BLACKBOX_EXPORTER_PORT
from infra.derived.cost import estimate
from infra.derived.georules import geo_record_sets
from infra.derived.outputs import geodns_output, network_output, pops_output, probes_output
from infra.model import Network
from infra.model.stack import read_stack_config
from infra.monitoring.targets import file_sd, load_outputs, write_targets
from lab.net.netns import LabError, http_get
from lab.net.processes import alive, start, stop

EXPORTER = "prometheus-blackbox-exporter"
LISTEN = ("127.0.0.1", BLACKBOX_EXPORTER_PORT)
LAB_ZONE_ID = "lab-no-route53"
PREFERRED_CLIENT = "de"


def lab_addresses(network: Network, state: Mapping[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    """PoP code -> (IPv4, IPv6) unicast addresses from the lab state; PoPs not booted (``--pops``) get (None, None),
    which the output functions treat like a missing family: no targets for them."""
    pops = state["pops"]
    return {p.code: ((pops[p.code]["unicast_ipv4"], pops[p.code]["unicast_ipv6"]) if p.code in pops else (None, None))
            for p in network.pops}


def lab_outputs(network: Network, state: Mapping[str, Any],
                external_costs: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The stack outputs ``__main__.py`` exports (minus the secret ``externalCloudConfig``), with the lab's addresses."""
    addresses = lab_addresses(network, state)
    unicast = {p.code: addresses[p.code] for p in network.unicast_pops}
    probes = probes_output(network, addresses)
    if not state.get("tls"):
        # No ACME stand-ins in this lab (machine mode, docs/lab.md): no PoP holds a certificate, so there is nothing to
        # probe over HTTPS; the machine-mode row "HTTPS units from the user data active" reports that gap itself.
        probes["https"] = []
    return {
        "network": network_output(network),
        "pops": pops_output(network, addresses, {}),
        "geodns": geodns_output(network, geo_record_sets(network, unicast), LAB_ZONE_ID),
        "probes": probes,
        "cost": estimate(network, external_costs),
    }


def write_lab_targets(stack: str, network: Network, state: Mapping[str, Any]) -> tuple[Path, Path, dict[str, Any]]:
    """Write ``<lab dir>/outputs.json`` and run the ``anycast monitoring targets`` code path into ``<lab dir>/monitoring``.

    Returns (outputs file, monitoring directory, the outputs as read back by ``load_outputs``).
    """
    base = Path(state["dir"])
    external = read_stack_config(stack).get("anycast:externalPopCosts")
    path = base / "outputs.json"
    path.write_text(json.dumps(lab_outputs(network, state, external), indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    outputs = load_outputs(path)
    out_dir = base / "monitoring"
    write_targets(outputs, out_dir, ca_file=(state.get("tls") or {}).get("ca_file"))  # HTTPS: the lab's Pebble root
    return path, out_dir, outputs


@dataclass(frozen=True)
class Probe:
    """One ``/probe`` call: ``kind`` http/dns, the file_sd ``target`` and ``module``, whether it must succeed."""

    kind: str
    name: str
    target: str
    module: str
    expect_success: bool
    why: str


def probe_plan(outputs: dict[str, Any], nearest_anycast: str | None) -> list[Probe]:
    """The probes one client makes: every generated target with its generated module (what Prometheus would scrape),
    then two lab-only uses of generated modules.

    * every HTTP and DNS target must succeed: per-PoP unicast targets expect ``X-PoP``/identity = that PoP from
      anywhere; the anycast targets' modules accept any anycast PoP, so they hold from every vantage point;
    * sharper, per vantage point: the anycast HTTP targets probed with ``http_xpop_<nearest anycast PoP>`` must succeed
      (BGP sends this client there);
    * negative: a unicast HTTP target probed with another PoP's ``http_xpop_`` module must fail.
    """
    groups = file_sd(outputs)
    probes: list[Probe] = []
    for kind, name in (("http", "http.json"), ("dns", "dns.json")):
        for g in groups[name]:
            labels = g["labels"]
            probes.append(Probe(kind, f"{labels['probe']} {labels['module']}", g["targets"][0], labels["module"], True,
                                f"generated target, pop {labels['pop']}"))
    http = [g for g in groups["http.json"]]
    if nearest_anycast is not None:
        for g in http:
            if g["labels"]["pop"] == "anycast":
                module = f"http_xpop_{nearest_anycast}"
                probes.append(Probe("http", f"{g['labels']['probe']} {module}", g["targets"][0], module, True,
                                    f"anycast answered by the nearest anycast PoP, {nearest_anycast}"))
    per_pop = [g for g in http if g["labels"]["pop"] != "anycast"]
    pops = sorted({g["labels"]["pop"] for g in per_pop})
    if len(pops) >= 2:
        victim = per_pop[0]
        wrong = next(p for p in pops if p != victim["labels"]["pop"])
        module = f"http_xpop_{wrong}"
        probes.append(Probe("http", f"{victim['labels']['probe']} {module}", victim["targets"][0], module, False,
                            f"negative: {victim['labels']['pop']} answers, the module wants X-PoP {wrong}"))
    return probes


def parse_probe_success(body: str) -> int | None:
    """``probe_success`` from the exporter's metrics text (None if absent)."""
    for line in body.splitlines():
        if line.startswith("probe_success "):
            return int(float(line.split()[1]))
    return None


def _http_get(ns: str, path: str, timeout: float) -> tuple[int, str]:
    """GET ``path`` from the exporter at 127.0.0.1:9115 with a socket opened inside ``ns`` (nothing else reachable)."""
    return http_get(ns, *LISTEN, path, timeout)


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    success: int | None
    seconds: float
    error: str | None

    @property
    def ok(self) -> bool:
        return self.success == (1 if self.probe.expect_success else 0)


def run_probe(ns: str, probe: Probe, timeout: float = 10) -> ProbeResult:
    t0 = time.monotonic()
    query = urlencode({"module": probe.module, "target": probe.target})
    try:
        status, body = _http_get(ns, f"/probe?{query}", timeout)
    except OSError as exc:
        return ProbeResult(probe, None, time.monotonic() - t0, f"exporter unreachable: {exc}")
    elapsed = time.monotonic() - t0
    if status != 200:
        return ProbeResult(probe, None, elapsed, f"HTTP {status}: {body.strip()[:120]}")
    return ProbeResult(probe, parse_probe_success(body), elapsed, None)


class Exporter:
    """``prometheus-blackbox-exporter`` inside one lab namespace, on 127.0.0.1:9115 there (a context manager)."""

    def __init__(self, ns: str, config: Path, log: Path) -> None:
        self.ns, self.config, self.log = ns, config, log
        self.pid: int | None = None

    def __enter__(self) -> Exporter:
        if shutil.which(EXPORTER) is None:
            raise LabError(f"{EXPORTER} is not installed (make debs installs it)")
        self.pid = start(self.ns, [EXPORTER, f"--config.file={self.config}",
                                   f"--web.listen-address={LISTEN[0]}:{LISTEN[1]}"], self.log)
        deadline = time.monotonic() + 10
        while True:
            try:
                if _http_get(self.ns, "/-/healthy", 1)[0] == 200:
                    return self
            except OSError:
                pass
            if not alive(self.pid) or time.monotonic() > deadline:
                self.__exit__()
                raise LabError(f"{EXPORTER} did not start in {self.ns} (see {self.log})")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.pid is not None:
            stop(self.pid)
            self.pid = None


def check_monitoring(ns: str, base: Path, outputs: dict[str, Any], nearest_anycast: str | None,
                     workers: int = 8) -> tuple[list[ProbeResult], dict[str, Any]]:
    """Probe every planned target through the exporter in ``ns``; return the results and timing figures."""
    probes = probe_plan(outputs, nearest_anycast)
    t0 = time.monotonic()
    with Exporter(ns, base / "monitoring" / "blackbox.yml", base / "monitoring" / "blackbox.log"):
        started = time.monotonic() - t0
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda p: run_probe(ns, p), probes))
    return results, {"exporter_start_s": round(started, 2), "total_s": round(time.monotonic() - t0, 2),
                     "probes": len(results)}
