"""Anchors for the health agent's figures: the same Caddy-crash failover on the same lab PoP, driven by
``anycast-healthchecker`` (PyPI; it drives BIRD through an included prefix list and ``birdc configure``) and by
ExaBGP's ``healthcheck`` (PyPI ``exabgp``; it drives only ExaBGP, so on that PoP ExaBGP replaces BIRD as the BGP
speaker towards the same upstream, IPv4 session, same TCP-MD5 password and multihop), each with its documented
defaults and with its fastest supported settings. Measured, not asserted; called by bench/health.py with the lab up.

Both tools are installed into their own virtualenv under /var/cache/anycast-bench/anchors with pip (not project
dependencies). While an anchor runs, the PoP's own agent (and its supervisor) is stopped; afterwards the PoP is put
back exactly as `lab up` made it (BIRD with the rendered config, the supervised agent).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.drivers.health import AdjInStream
from lab.net.netns import LabError
from lab.net.probes import Prober
from lab.net.processes import alive, start
from lab.scenarios.faults import FaultResult, Fixture, _wait

VENV = Path("/var/cache/anycast-bench/anchors")
PACKAGES = ("anycast-healthchecker==0.9.10", "exabgp==5.0.15")
FAST_RUNS = 3
DEFAULT_WINDOW_S = 40.0  # how long a default-settings anchor gets to withdraw


def ensure_venv(say: Any) -> Path:
    """The anchors' own virtualenv (created once, reused); raises LabError naming what failed."""
    if not (VENV / "bin" / "anycast-healthchecker").exists() or not (VENV / "bin" / "exabgp").exists():
        say(f"installing {', '.join(PACKAGES)} into {VENV} (pip)")
        VENV.parent.mkdir(parents=True, exist_ok=True)
        base = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        for cmd in ([base, "-m", "venv", str(VENV)],
                    [str(VENV / "bin" / "pip"), "install", "-q", *PACKAGES]):
            res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
            if res.returncode != 0:
                raise LabError(f"{' '.join(cmd[:3])}: {(res.stderr or res.stdout).strip().splitlines()[-1:]}")
    return VENV


# ---------------------------------------------------------------------------------------------------------------------
# Taking the PoP's own control out of the way, and putting it back

def _stop_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 8.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _stop_agent(fx: Fixture) -> None:
    _stop_pid(fx.pst["pids"]["health"])  # the supervisor stops the agent and runs ExecStopPost (withdraws)


def _restore(fx: Fixture) -> None:
    """BIRD with the rendered config and the supervised agent, as `lab up` started them; wait until stable."""
    if alive(fx.pst["pids"]["bird"]):
        _stop_pid(fx.pst["pids"]["bird"])
    (fx.dir / "bird.ctl").unlink(missing_ok=True)
    fx.restart("bird")
    for _ in range(100):
        if (fx.dir / "bird.ctl").exists():
            break
        time.sleep(0.05)
    if not alive(fx.pst["pids"]["caddy"]):
        fx.restart("caddy")
    fx.pst["pids"]["health"] = start(fx.pop.namespace, fx.pst["commands"]["health"], fx.dir / "health.log")
    fx.wait_stable(timeout=60)


# ---------------------------------------------------------------------------------------------------------------------
# One measured Caddy kill under an anchor

def _kill_measure(fx: Fixture, label: str, window_s: float, announce_timeout: float) -> FaultResult:
    http = Prober(fx.client.namespace, fx.service).start()
    stream = AdjInStream(fx.pop.upstream_namespace).start()
    try:
        if _wait(lambda: fx.on_pop(http), announce_timeout, step=0.1) is None:
            raise LabError(f"{label}: {fx.client.name} is not served by {fx.code} (the anchor does not announce)")
        time.sleep(1.0)
        t0 = time.monotonic()
        fx.kill("caddy")
        t_w = stream.wait(fx.prefix, True, t0, window_s)
        t_s = _wait(lambda: http.first_after(t0, fx.nxt) is not None, 5 if t_w else 0.1)
        t_s = http.first_after(t0, fx.nxt) if t_s else None
        end = (t_s + 0.1) if t_s else t0 + window_s
        time.sleep(max(0.0, end - time.monotonic()))
        lost, probes = http.lost(t0, end)
        med = [e for e in stream.events if e[0] >= t0 and not e[2]]
        fx.restart("caddy")
        t1 = time.monotonic()
        t_a = stream.wait(fx.prefix, False, t1, announce_timeout)
    finally:
        http.stop()
        stream.stop()
    w = None if t_w is None else t_w - t0
    s = None if t_s is None else t_s - t0
    detail = (f"{label}: " + (f"withdrawn at upstream {w * 1000:.0f} ms after the kill" if w is not None
                              else f"NOT withdrawn within {window_s:g} s"
                              + (" (re-announced instead: the down-metric MED, traffic keeps coming)" if med else ""))
              + f", lost {lost}/{probes} HTTP" + ("" if t_a else "; not re-announced after the restart"))
    return FaultResult(label, fx.code, fx.client.name, fx.nxt, w is not None, w, s, lost, probes, detail=detail)


# ---------------------------------------------------------------------------------------------------------------------
# anycast-healthchecker: BIRD exports only what its generated `define ACAST_PS_ADVERTISE` lists

def _ahc_bird_conf(fx: Fixture, prefixes_file: Path) -> Path:
    text = (fx.dir / "bird.conf").read_text()
    text = text.replace("  disabled;\n", "")  # static routes always there: the list decides what is exported
    router_line = next(line for line in text.splitlines() if line.startswith("router id"))
    text = text.replace(router_line, f'{router_line}\ninclude "{prefixes_file}";', 1)
    guard = "  if ! (net ~ ANYCAST_V4) then reject;\n"
    if guard not in text:
        raise LabError("anycast-healthchecker anchor: the export filter changed (no ANYCAST_V4 guard)")
    text = text.replace(guard, guard + "  if ! (net ~ ACAST_PS_ADVERTISE) then reject;\n", 1)
    path = fx.dir / "bird-anchor-ahc.conf"
    path.write_text(text)
    return path


def run_ahc(fx: Fixture, venv: Path, settings: dict[str, Any], label: str, window_s: float) -> FaultResult:
    d = fx.dir / "ahc"
    shutil.rmtree(d, ignore_errors=True)
    (d / "checks").mkdir(parents=True)
    prefixes = d / "anycast-prefixes.conf"
    prefixes.write_text("define ACAST_PS_ADVERTISE =\n    [\n        10.189.200.255/32\n    ];\n")
    conf = _ahc_bird_conf(fx, prefixes)
    v4 = fx.plan.network.prefixes.ipv4
    if v4 is None or fx.plan.network.service.ipv4 is None:
        raise LabError("anycast-healthchecker anchor: needs an IPv4 prefix (it measures the IPv4 session)")
    (d / "ahc.conf").write_text("\n".join([
        "[daemon]", f"pidfile = {d}/ahc.pid", "ipv4 = true", "ipv6 = false", f"bird_conf = {prefixes}",
        "bird_variable = ACAST_PS_ADVERTISE", f"bird_reconfigure_cmd = /usr/sbin/birdc -s {fx.dir}/bird.ctl configure",
        "purge_ip_prefixes = true", "loglevel = info", f"log_file = {d}/ahc.log", f"stderr_file = {d}/stderr.log",
        "json_stdout = false", ""]))
    check = f"curl -A anycast-healthchecker --fail --silent -o /dev/null --max-time 1 http://{fx.service}/healthz"
    for name, prefix in (("prefix", str(v4)), ("service", f"{fx.plan.network.service.ipv4}/32")):
        lines = [f"[{name}]", f"check_cmd = {check}", "check_disabled = false", "on_disabled = withdraw",
                 f"ip_prefix = {prefix}", "ip_check_disabled = true", *(f"{k} = {v}" for k, v in settings.items()), ""]
        (d / "checks" / f"{name}.conf").write_text("\n".join(lines))
    _stop_agent(fx)
    _stop_pid(fx.pst["pids"]["bird"])
    (fx.dir / "bird.ctl").unlink(missing_ok=True)
    bird_cmd = ["bird", "-f", "-c", str(conf), "-s", str(fx.dir / "bird.ctl"), "-P", str(fx.dir / "bird.pid")]
    fx.pst["pids"]["bird"] = start(fx.pop.namespace, bird_cmd, fx.dir / "bird.log")
    time.sleep(0.5)
    ahc = start(fx.pop.namespace, [str(venv / "bin" / "anycast-healthchecker"), "-f", str(d / "ahc.conf"),
                                   "-d", str(d / "checks")], d / "ahc.out")
    try:
        return _kill_measure(fx, label, window_s, announce_timeout=60)
    finally:
        _stop_pid(ahc)
        _restore(fx)


# ---------------------------------------------------------------------------------------------------------------------
# ExaBGP + healthcheck: ExaBGP is the PoP's BGP speaker (IPv4 session) while it runs

def run_exabgp(fx: Fixture, venv: Path, args: list[str], label: str, window_s: float) -> FaultResult:
    s = fx.pop.session(4)
    if s is None or fx.plan.network.prefixes.ipv4 is None:
        raise LabError("ExaBGP anchor: needs the PoP's IPv4 session")
    d = fx.dir / "exabgp"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    check = f"curl -A exabgp-healthcheck --fail --silent -o /dev/null --max-time 1 http://{fx.service}/healthz"
    hc = [str(venv / "bin" / "exabgp-healthcheck"), "--no-syslog", "--no-ip-setup",
          "--cmd", check, "--ip", str(fx.plan.network.prefixes.ipv4), *args]
    run = " ".join(f"'{a}'" if " " in a else a for a in hc)
    password = next(line.split('"')[1] for line in (fx.dir / "bird.conf").read_text().splitlines()
                    if line.strip().startswith("password "))
    multihop = [f"    outgoing-ttl {s.multihop};"] if s.on_loopback and s.multihop else []
    (d / "exabgp.conf").write_text("\n".join([
        "process healthcheck {", f"    run {run};", "    encoder text;", "}", "",
        f"neighbor {s.upstream_address} {{", f"    router-id {fx.plan.network.pop(fx.code).router_id};",
        f"    local-address {s.pop_address};", f"    local-as {fx.plan.network.asn};",
        f"    peer-as {fx.pop.upstream_asn};", f'    md5-password "{password}";', "    hold-time 9;",
        *multihop, "    family { ipv4 unicast; }", "    api { processes [ healthcheck ]; }", "}", ""]))
    _stop_agent(fx)
    _stop_pid(fx.pst["pids"]["bird"])
    (fx.dir / "bird.ctl").unlink(missing_ok=True)
    env = {"exabgp_daemon_user": "root", "exabgp_daemon_drop": "false", "exabgp_api_cli": "false",
           "exabgp_log_destination": str(d / "exabgp.log"), "exabgp_api_ack": "true", "exabgp_log_level": "INFO"}
    proc = start(fx.pop.namespace, [str(venv / "bin" / "exabgp"), str(d / "exabgp.conf")], d / "exabgp.out", env=env)
    try:
        return _kill_measure(fx, label, window_s, announce_timeout=60)
    finally:
        _stop_pid(proc)
        _restore(fx)


def _ratio(anchor: float | None, ours: float) -> str:
    if anchor is None or ours <= 0:
        return "n/a"
    return f"{anchor / ours:.0f}x ours"


def run_anchors(fx: Fixture, ours: dict[str, Any], say: Any) -> list[tuple[str, float, str]]:
    """Rows for both anchors, defaults and fastest settings, next to our median Caddy-kill figures."""
    try:
        venv = ensure_venv(say)
    except LabError as exc:
        return [("anchors: skipped", 0.0, str(exc))]
    our_w = statistics.median([r.withdraw_s for r in ours["caddy"] if r.withdraw_s is not None])
    our_lost = statistics.median([r.lost for r in ours["caddy"]])
    configs: list[tuple[str, Any, int, float]] = [
        ("anycast-healthchecker defaults (check_interval 10, rise 2, fail 2, timeout 2)",
         lambda fx_, lbl, win: run_ahc(fx_, venv, {}, lbl, win), 1, DEFAULT_WINDOW_S),
        ("anycast-healthchecker fastest (check_interval 0.1, rise 1, fail 1, timeout 1)",
         lambda fx_, lbl, win: run_ahc(fx_, venv, {"check_interval": 0.1, "check_timeout": 1, "check_rise": 1,
                                                  "check_fail": 1}, lbl, win), FAST_RUNS, 10.0),
        ("exabgp healthcheck defaults (interval 5, fast-interval 1, rise 3, fall 3, down = MED 1000)",
         lambda fx_, lbl, win: run_exabgp(fx_, venv, [], lbl, win), 1, DEFAULT_WINDOW_S),
        ("exabgp healthcheck fastest (interval 0.1, fast-interval 0.1, rise 1, fall 1, --withdraw-on-down)",
         lambda fx_, lbl, win: run_exabgp(fx_, venv, ["--interval", "0.1", "--fast-interval", "0.1", "--rise", "1",
                                                      "--fall", "1", "--timeout", "1", "--withdraw-on-down"], lbl, win),
         FAST_RUNS, 10.0),
    ]
    rows: list[tuple[str, float, str]] = []
    for label, fn, runs, window in configs:
        results: list[FaultResult] = []
        for i in range(runs):
            say(f"anchor {label} {i + 1}/{runs}")
            try:
                results.append(fn(fx, label, window))
                say(results[-1].detail)
            except (LabError, OSError, ValueError) as exc:
                say(f"{label}: {exc}")
                rows.append((f"anchor: {label.split(' (')[0]}: failed", float("nan"), str(exc)[:200]))
                break
        if not results:
            continue
        ws = [r.withdraw_s for r in results if r.withdraw_s is not None]
        w = statistics.median(ws) if len(ws) == len(results) else None
        lost = statistics.median([r.lost for r in results])
        name = label.split(" (")[0]
        rows.append((f"anchor: {name}: Caddy killed -> withdrawn", (w * 1000) if w is not None else float("nan"),
                     (f"ms median of {len(results)}" if w is not None else f"ms: not withdrawn within {window:g} s")
                     + f"; {_ratio(w, our_w)} ({our_w * 1000:.0f} ms); {label}"))
        rows.append((f"anchor: {name}: HTTP requests lost", float(lost),
                     f"median of {len(results)}; ours {our_lost:g}" + ("" if w is not None else f" (counted over {window:g} s)")))
    return rows
