"""``anycast catchment``: which PoP serves which part of the world, from RIPE Atlas or the lab, as a table, JSON and a
map (docs/catchment.md).

Sources (one of): no source option = create a one-off RIPE Atlas DNS measurement (shows the credit estimate; creates
only with ``--yes``); ``--measurement ID`` fetches existing ones; ``--results FILE`` analyses saved results offline;
``--lab`` queries from the lab's clients. Exit codes: 0 report written (or nothing created without --yes); 1 Atlas
refused or failed, or the lab is not running; 2 bad input (key, options, files).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from infra.catchment.analysis import DEFAULT_TOLERANCE_KM, ProbeInfo, Report, analyse, probes_from_atlas
from infra.catchment.atlas import (
    AREAS,
    ATLAS_URL,
    CREDITS_PER_RESULT,
    DEFAULT_AREAS,
    RUNNING,
    AtlasClient,
    Source,
    atlas_key,
    dns_definitions,
    estimate_credits,
)
from infra.catchment.output import write_outputs
from infra.catchment.results import Observation, ResultsError, parse_results
from infra.catchment.text import format_report
from infra.model import Network
from infra.model.stack import load_network, stack_file
from infra.ripe.errors import BadInput, RipeError
from infra.ripe.transport import RetryPolicy
from infra.untrusted.files import read_json
from infra.untrusted.text import printable

EXIT_OK, EXIT_REFUSED, EXIT_BAD_INPUT = 0, 1, 2
ATLAS_POLICY = RetryPolicy(attempts=3, budget=60)  # tests swap in short back-offs
POLL_SECONDS = 15.0  # how often --wait asks Atlas whether the measurement has finished


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "catchment", help="which PoP serves which part of the world (RIPE Atlas or the lab): table, JSON, map, advice",
        description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--stack", required=True, help="the stack whose network is measured (Pulumi.<stack>.yaml)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--results", type=Path, metavar="FILE", help="analyse saved Atlas DNS results (JSON list) offline")
    src.add_argument("--measurement", type=int, action="append", metavar="ID",
                     help="fetch existing Atlas measurement(s) (repeat for IPv4 and IPv6)")
    src.add_argument("--lab", action="store_true", help="the running lab's clients are the probes (needs root)")
    p.add_argument("--probes", type=Path, metavar="FILE",
                   help="with --results: Atlas probe metadata (/api/v2/probes/ JSON) for countries and coordinates")
    p.add_argument("--country", action="append", default=[], metavar="CC", help="select probes in this country (repeat)")
    p.add_argument("--area", action="append", default=[], choices=AREAS,
                   help=f"select probes in this Atlas area (repeat); default: {', '.join(DEFAULT_AREAS)}")
    p.add_argument("--per-source", type=int, default=10, metavar="N", help="probes per country/area (default 10)")
    p.add_argument("--af", choices=("4", "6", "both"), default="both", help="address families to measure")
    p.add_argument("--credits-per-result", type=int, default=CREDITS_PER_RESULT, metavar="N",
                   help=f"credit estimate per result (default {CREDITS_PER_RESULT}; see docs/catchment.md)")
    p.add_argument("--yes", action="store_true", help="really create the Atlas measurement (it spends credits)")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="wait up to this long for the measurement to finish before analysing (default: do not wait)")
    p.add_argument("--atlas-url", default=ATLAS_URL, help=argparse.SUPPRESS)
    p.add_argument("--tolerance-km", type=float, default=DEFAULT_TOLERANCE_KM,
                   help=f"a farther PoP counts as mis-routed beyond this extra distance (default {DEFAULT_TOLERANCE_KM:.0f})")
    p.add_argument("--out", type=Path, metavar="DIR", help="write catchment.json, catchment.svg, catchment.txt, advice.diff")
    p.add_argument("--limit", type=int, default=25, help="probe rows in the printed table (default 25)")
    p.set_defaults(func=cmd_catchment)


def _load_json(path: Path, option: str) -> Any:
    """A results or probes file, read as untrusted (regular file, size and depth bounds, strict UTF-8 JSON)."""
    return read_json(path, option)


def _targets(network: Network, af: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    if af in ("4", "both") and network.service.ipv4 is not None:
        out.append((4, str(network.service.ipv4)))
    if af in ("6", "both"):
        out.append((6, str(network.service.ipv6)))
    if not out:
        raise BadInput("--af 4: this network has no IPv4 service address")
    return out


def _sources(args: argparse.Namespace) -> list[Source]:
    if args.per_source < 1 or args.per_source > 1000:
        raise BadInput(f"--per-source: {args.per_source} is out of range (1-1000)")
    out = []
    for cc in args.country:
        if len(cc) != 2 or not cc.isalpha():
            raise BadInput(f"--country: '{cc}' is not an ISO 3166-1 alpha-2 code like DE")
        out.append(Source("country", cc.upper(), args.per_source))
    areas = args.area or ([] if args.country else list(DEFAULT_AREAS))
    out += [Source("area", a, args.per_source) for a in areas]
    return out


def _fetch(client: AtlasClient, ids: list[int], wait: float, say: Any) -> tuple[list[Any], list[str]]:
    """Results of the measurements; notes for the ones still running after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    notes: list[str] = []
    results: list[Any] = []
    for mid in ids:
        while True:
            status, _doc = client.status(mid)
            if status not in RUNNING or time.monotonic() >= deadline:
                break
            say(f"measurement {mid} is {status}; waiting")
            time.sleep(max(0.0, min(POLL_SECONDS, deadline - time.monotonic())))
        res = client.results(mid)
        if status in RUNNING:
            notes.append(f"measurement {mid} is still running (status {status}): the report covers the {len(res)} "
                         f"results so far; run again with --measurement {mid} later")
        results += res
    return results, notes


def _advice(network: Network, report: Report, stack: str) -> str | None:
    try:
        from infra.catchment.advice import advise
    except ModuleNotFoundError:
        return None
    items, diff = advise(network, report, stack_file(stack))
    report.advice = [i.to_json() for i in items]
    return diff


def cmd_catchment(args: argparse.Namespace) -> int:
    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        if not math.isfinite(args.tolerance_km) or args.tolerance_km < 0:
            raise BadInput(f"--tolerance-km: {args.tolerance_km} is not a distance in km (a finite number >= 0)")
        network = load_network(args.stack)
        notes: list[str] = []
        probes: dict[str, ProbeInfo] = {}
        running: list[str] | None = None
        observations: list[Observation]
        if args.lab:
            from lab.api import LabError, lab_observations

            try:
                observations, probes, running = lab_observations(args.stack, network)
            except LabError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_REFUSED
            source = f"lab {args.stack}"
        elif args.results is not None:
            observations = parse_results(_load_json(args.results, "--results"), f"--results: {printable(args.results, 200)}")
            if args.probes is not None:
                probes = probes_from_atlas(_load_json(args.probes, "--probes"), f"--probes: {printable(args.probes, 200)}")
            else:
                notes.append("no --probes FILE: probe countries and coordinates unknown, nothing is judged")
            source = f"RIPE Atlas results {printable(args.results.name, 100)}"
        else:
            key = atlas_key() if not args.measurement else (atlas_key() if _has_key() else None)
            client = AtlasClient(key, args.atlas_url, ATLAS_POLICY)
            if args.measurement:
                ids = list(args.measurement)
            else:
                ids = _create(client, network, args, say)
                if not ids:
                    return EXIT_OK
            raw, notes = _fetch(client, ids, args.wait, say)
            observations = parse_results(raw, "RIPE Atlas results")
            probes = client.probes({o.probe_id for o in observations})
            source = "RIPE Atlas measurement " + ", ".join(str(i) for i in ids)
        report = analyse(network, observations, probes, source=source, tolerance_km=args.tolerance_km, running=running)
        diff = _advice(network, report, args.stack)
    except (BadInput, ResultsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(format_report(report, limit=args.limit), end="")
    for note in notes:
        print(f"note: {note}")
    if report.advice:
        print("\nadvice (a diff of the stack file; nothing was applied):")
        for item in report.advice:
            print(f"  - {item['text']}")
        if diff:
            print(diff, end="")
    if args.out:
        written = write_outputs(report, args.out, f"anycast catchment: {source}", diff)
        print(f"wrote {', '.join(str(p) for p in written)}")
    return EXIT_OK


def _has_key() -> bool:
    import os

    from infra.catchment.atlas import ATLAS_KEY_ENV

    return bool(os.environ.get(ATLAS_KEY_ENV, "").strip())


def _create(client: AtlasClient, network: Network, args: argparse.Namespace, say: Any) -> list[int]:
    definitions = dns_definitions(_targets(network, args.af), f"anycast catchment {args.stack}")
    sources = _sources(args)
    cost = estimate_credits(definitions, sources, args.credits_per_result)
    balance = client.credits()
    print(f"RIPE Atlas one-off DNS measurement: CHAOS TXT id.server with NSID to "
          f"{', '.join(d['target'] for d in definitions)}")
    print(f"probes: {', '.join(f'{s.requested} in {s.type} {s.value}' for s in sources)} "
          f"({sum(s.requested for s in sources)} in all)")
    print(f"estimated cost: {cost} credits ({len(definitions)} definition(s) x {sum(s.requested for s in sources)} "
          f"probes x {args.credits_per_result}); balance: {'unknown' if balance is None else balance}")
    if balance is not None and balance < cost:
        raise BadInput(f"not enough credits: the estimate {cost} exceeds the balance {balance}; "
                       "use fewer probes (--per-source) or one family (--af 4)")
    if not args.yes:
        print("nothing created: add --yes to create it")
        return []
    ids = client.create(definitions, sources)
    say(f"created measurement(s) {', '.join(str(i) for i in ids)} (https://atlas.ripe.net/measurements/{ids[0]}/)")
    return ids
