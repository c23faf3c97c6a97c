"""``anycast lab up --machines``: the PoP side of the lab as Debian 12 containers (see :mod:`lab.drivers.machines`).

The topology, the upstreams (GoBGP) and the clients are the process mode's; only the PoPs change: instead of the lab
starting BIRD, NSD, Caddy and the health agent itself, each PoP's namespace boots a container whose cloud-init
installs the packages from the lab's mirror and applies the rendered user data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.contracts import BIRD_SOCKET
from lab.cloud.mirror import ensure_mirror
from lab.cloud.mirror_server import PORT
from lab.cloud.tls import LAB_CREDENTIALS
from lab.drivers import machines as m
from lab.drivers.image import ensure_image
from lab.net.netns import LabError
from lab.net.processes import start
from lab.plan.signing import render_lab_pop
from lab.plan.topology import LabPlan, PopPlan
from userdata.tls import TlsCredentials

# Containers booting at once: cloud-init's apt/dpkg runs are CPU-bound; more than this on 2 cores only queue.
PARALLEL = 6


@dataclass(frozen=True)
class Prepared:
    image: Path
    mirror: Path
    unknown: list[str]
    user_data: dict[str, bytes]


def user_data(plan: LabPlan, password: str) -> dict[str, bytes]:
    """Each PoP's rendered ``user-data.yaml`` (Vultr user data, or an external PoP's externalCloudConfig), as bytes.
    With ``tls.enabled`` the Pulumi program passes each PoP an AWS access key for the certificate store; the lab
    passes its own (the Route53/S3 stand-in accepts any), rendered into the user data the same way."""
    creds = TlsCredentials(**LAB_CREDENTIALS) if plan.network.tls.enabled else None
    return {p.code: render_lab_pop(plan.network, p.code, password, tls_credentials=creds)
            .files["user-data.yaml"].encode() for p in plan.pops}


def packages_of(data: dict[str, bytes]) -> list[str]:
    """Union of the user data's ``packages:`` (names only)."""
    out: set[str] = set()
    for code, text in data.items():
        doc = yaml.safe_load(text)
        for item in (doc or {}).get("packages") or []:
            if not isinstance(item, str):
                raise LabError(f"{code}: user data packages: only plain names are supported here, got {item!r}")
            out.add(item)
    return sorted(out)


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_PER_CONTAINER = 24  # systemd, journald, logind, dbus, ...; Debian's default 128 is shared by every root process


def raise_inotify_limit(pops: int, say: Callable[[str], None]) -> None:
    """Every container's systemd and friends take inotify instances from root's one budget
    (fs.inotify.max_user_instances, 128 on Debian): at about 19 containers a new one gets "Failed to create inotify
    object: Too many open files" and its boot stalls. Raise the host's limit (never lower it) and say so."""
    need = 128 + INOTIFY_PER_CONTAINER * pops
    have = int(INOTIFY_INSTANCES.read_text(encoding="ascii"))
    if have < need:
        INOTIFY_INSTANCES.write_text(str(need), encoding="ascii")
        say(f"host: fs.inotify.max_user_instances {have} -> {need} ({pops} containers' systemd; stays until reboot)")


def prepare(plan: LabPlan, password: str, say: Callable[[str], None]) -> Prepared:
    """The slow, cached parts: the image and the package mirror."""
    m.require_machines()
    raise_inotify_limit(len(plan.pops), say)
    data = user_data(plan, password)
    image = ensure_image(say)
    mirror, unknown = ensure_mirror(packages_of(data), image, say)
    if unknown:
        say(f"warning: user data packages not in Debian: {', '.join(unknown)} (the PoPs' cloud-init will fail on them)")
    return Prepared(image, mirror, unknown, data)


def mirror_address(pop: PopPlan) -> str:
    """The upstream's end of the PoP's link: reachable from the PoP before any of its own configuration runs."""
    s = pop.session(4) or pop.session(6)
    assert s is not None
    return str(s.link_gateway)


def mirror_url(pop: PopPlan) -> str:
    addr = mirror_address(pop)
    return f"http://[{addr}]:{PORT}/" if ":" in addr else f"http://{addr}:{PORT}/"


def start_mirror_server(plan: LabPlan, mirror: Path, base: Path) -> int:
    """One HTTP server process (in the first upstream's namespace) listening in every upstream namespace."""
    binds = [f"{p.upstream_namespace}={mirror_address(p)}" for p in plan.pops]
    import sys
    pid = start(plan.pops[0].upstream_namespace, [sys.executable, "-m", "lab.cloud.mirror_server", str(mirror), *binds],
                base / "mirror.log", env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if "serving" in (base / "mirror.log").read_text(encoding="utf-8", errors="replace"):
            return pid
        time.sleep(0.05)
    raise LabError(f"the mirror server did not start (see {base / 'mirror.log'})")


def _boot_one(plan: LabPlan, prep: Prepared, pop: PopPlan, base: Path, timeout: float,
              files: dict[str, bytes]) -> dict[str, Any]:
    t0 = time.monotonic()
    spec = m.MachineSpec(pop.code, pop.namespace, pop.namespace, prep.user_data[pop.code], mirror_url(pop),
                         tuple(sorted(files.items())))
    mdir = base / "machines" / pop.code
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / "user-data.yaml").write_bytes(spec.user_data)  # what was booted, for people
    root = m.prepare(spec, prep.image, mdir, plan.stack)
    m.precreate_anycast0(pop.namespace)
    nspawn = m.launch(spec, root, mdir / "console.log")
    leader = m.wait_leader(pop.namespace, nspawn)
    ci = m.wait_cloud_init(leader, timeout)
    seconds = round(time.monotonic() - t0, 2)
    if ci.status != "done":
        raise LabError(f"{pop.code}: cloud-init status {ci.status}: {ci.detail}")
    return {"pids": {"nspawn": nspawn, "leader": leader}, "commands": {},
            "machine": {"name": spec.name, "root": str(root), "dir": str(mdir), "cloud_init": ci.status,
                        "boot_seconds": seconds, "mirror": spec.mirror_url},
            "bird_socket": f"/proc/{leader}/root{BIRD_SOCKET}"}


def boot(plan: LabPlan, prep: Prepared, base: Path, say: Callable[[str], None],
         timeout: float = 300, files: dict[str, bytes] | None = None) -> dict[str, dict[str, Any]]:
    """Boot every PoP container (``PARALLEL`` at a time) and wait for cloud-init; raise on the first failure.
    ``files``: root-relative path -> content, written into every container beside the seed (lab/cloud/tls.py's
    MACHINE_FILES)."""
    pid = start_mirror_server(plan, prep.mirror, base)
    say(f"package mirror served in every upstream namespace on port {PORT} (pid {pid})")
    done: dict[str, dict[str, Any]] = {}
    errors: list[str] = []

    def one(pop: PopPlan) -> None:
        try:
            done[pop.code] = _boot_one(plan, prep, pop, base, timeout, files or {})
            say(f"{pop.code}: cloud-init done in {done[pop.code]['machine']['boot_seconds']} s")
        except LabError as exc:
            errors.append(str(exc))
            say(f"{pop.code}: FAILED: {exc}")

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        list(pool.map(one, plan.pops))
    if errors:
        raise LabError("; ".join(sorted(errors)))
    return {code: done[code] for code in (p.code for p in plan.pops)}


def monitoring_source_lines(plan: LabPlan, mon_v4: str, mon_v6: str) -> tuple[list[str], dict[str, list[str]]]:
    """``ip -batch`` lines that make the lab's Prometheus scrape the PoPs from an address inside
    ``admin.monitoringCidrs`` (the PoPs' nftables opens the exporter ports to those only): the first host of each
    monitoring CIDR on the monitoring namespace's ``lo``, used as the source towards every PoP link, and a route
    back to it in every upstream. Returns (monitoring namespace lines, upstream namespace -> lines)."""
    import ipaddress

    inside: list[str] = []
    upstream: dict[str, list[str]] = {p.upstream_namespace: [] for p in plan.pops}
    for version, via_mon in ((4, mon_v4), (6, mon_v6)):
        cidr = next((n for n in plan.network.admin.monitoring_cidrs if n.version == version), None)
        if cidr is None:
            continue
        src = next(iter(cidr.hosts())) if cidr.num_addresses > 1 else cidr.network_address
        plen = 32 if version == 4 else 128
        inside.append(f"addr add {src}/{plen} dev lo" + (" nodad" if version == 6 else ""))
        for p in plan.pops:
            for s in p.sessions:
                if s.version == version:
                    via = p.backbone_v4 if version == 4 else p.backbone_v6
                    inside.append(f"route replace {s.link} via {via} dev eth0 src {src}")
            upstream[p.upstream_namespace].append(f"route replace {ipaddress.ip_network(f'{src}/{plen}')} "
                                                  f"via {via_mon} dev bb0")
    return inside, upstream


def add_monitoring_source(plan: LabPlan, ns: str, mon_v4: str, mon_v6: str) -> None:
    """Apply :func:`monitoring_source_lines` (machine mode; process-mode PoPs have no firewall)."""
    from lab.net.netns import run

    inside, upstream = monitoring_source_lines(plan, mon_v4, mon_v6)
    if inside:
        run(["ip", "-n", ns, "-batch", "-"], input_text="\n".join(inside) + "\n")
    for uns, lines in upstream.items():
        if lines:
            run(["ip", "-n", uns, "-batch", "-"], input_text="\n".join(lines) + "\n")
