"""Two small processes of the multi-AS topology's provider edge (lab/plan/multias.py), standard library only, each
run as ``python3 lab/net/edge.py <command> ...`` inside a namespace:

* ``relay DELAY LISTEN_HOST:PORT=TARGET_HOST:PORT[@SOURCE] ...``: a TCP relay that delays every byte by DELAY seconds
  each way. It carries the BGP sessions between a transit and its edge customers, so an update (a withdrawal, a
  65535:0 re-announcement) reaches the transit DELAY later, as over a loaded route processor and a few iBGP hops
  inside a real transit (this kernel has no netem). The transit's BIRD connects to LISTEN; the relay connects to
  TARGET from SOURCE (the transit's own backbone address, so the edge sees the transit's address).
* ``fib FAMILY PREFIX VIA DEV [FAMILY PREFIX VIA DEV ...]``: the edge's FIB follows its BGP RIB. GoBGP has no FIB,
  and in the default topology a static route to the PoP stands in for one; here the route to PREFIX via VIA exists
  only while GoBGP holds a path for PREFIX (learnt from the PoP), as on a real provider edge: when the PoP withdraws,
  packets still sent to the edge by transits that have not heard of it yet are dropped there.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import subprocess
import sys
import threading
import time


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


def _pump(a: socket.socket, b: socket.socket, delay: float) -> None:
    q: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def sender() -> None:
        while True:
            at, data = q.get()
            time.sleep(max(0.0, at - time.monotonic()))
            if not data:
                with contextlib.suppress(OSError):
                    b.shutdown(socket.SHUT_WR)
                return
            try:
                b.sendall(data)
            except OSError:
                return

    out = threading.Thread(target=sender, daemon=True)
    out.start()
    while True:
        try:
            data = a.recv(65536)
        except OSError:
            data = b""
        q.put((time.monotonic() + delay, data))
        if not data:
            out.join()
            return


def _pair(c: socket.socket, u: socket.socket, delay: float) -> None:
    """Both directions of one relayed session; the sockets are closed once both have ended (a reset BGP session
    would otherwise leave two descriptors behind, and a crash loop resets many)."""
    ways = [threading.Thread(target=_pump, args=(x, y, delay), daemon=True) for x, y in ((c, u), (u, c))]
    for w in ways:
        w.start()
    for w in ways:
        w.join()
    c.close()
    u.close()


def _listen(spec: str, delay: float) -> None:
    listen, _, rest = spec.partition("=")
    target, _, source = rest.partition("@")
    lhost, lport = _split(listen)
    thost, tport = _split(target)
    family = socket.AF_INET6 if ":" in lhost else socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((lhost, lport))
    srv.listen(4)
    while True:
        c, _ = srv.accept()
        try:
            u = socket.create_connection((thost, tport), timeout=3, source_address=(source, 0) if source else None)
        except OSError:
            c.close()
            continue
        u.settimeout(None)
        threading.Thread(target=_pair, args=(c, u, delay), daemon=True).start()


def relay(delay: float, specs: list[str]) -> None:
    for spec in specs:
        threading.Thread(target=_listen, args=(spec, delay), daemon=True).start()
    while True:
        time.sleep(3600)


def _in_rib(family: str, prefix: str) -> bool | None:
    r = subprocess.run(["gobgp", "global", "rib", "-a", family, prefix, "-j"], capture_output=True, text=True,
                       timeout=10, check=False)
    try:
        return bool(json.loads(r.stdout)) if r.returncode == 0 else None
    except ValueError:
        return None


def _sync(family: str, prefix: str, via: str, dev: str) -> None:
    """Follow GoBGP's RIB for ``prefix``: re-read it on every event of ``gobgp monitor`` (and at start)."""
    installed: bool | None = None
    while True:
        mon = subprocess.Popen(["gobgp", "monitor", "global", "rib", "-a", family, "--current", "-j"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert mon.stdout is not None
        for _line in mon.stdout:
            want = _in_rib(family, prefix)
            if want is None or want == installed:
                continue
            cmd = ["replace", prefix, "via", via, "dev", dev] if want else ["del", prefix]
            r = subprocess.run(["ip", f"-{family[-1]}", "route", *cmd], capture_output=True, text=True, check=False)
            if r.returncode == 0 or not want:
                installed = want
                print(f"{time.strftime('%H:%M:%S')} {prefix}: {'route via ' + via if want else 'no route'}", flush=True)
        mon.wait()
        time.sleep(0.5)  # gobgpd not up yet, or restarted: monitor again


def fib(args: list[str]) -> None:
    groups = [args[i:i + 4] for i in range(0, len(args), 4)]
    for family, prefix, via, dev in groups:
        threading.Thread(target=_sync, args=(family, prefix, via, dev), daemon=True).start()
    while True:
        time.sleep(3600)


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "relay":
        relay(float(argv[1]), argv[2:])
    elif len(argv) >= 4 and argv[0] == "fib" and (len(argv) - 1) % 4 == 0:
        fib(argv[1:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
