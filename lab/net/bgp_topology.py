"""A few network namespaces wired with veth pairs (optional netem delay), each running a real BGP speaker: the small
multi-hop topologies of the graceful-shutdown and damping validators (tests/validators/test_gshut_transit.py,
tests/validators/test_damping_transit.py) and of the damping bench (lab/scenarios/damping.py, `make bench`).
Everything lives in namespaces named ``acu-<tag>-<pid>-<node>``; ``close`` kills what was started and deletes them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# RFC 8326 section 4.1: a receiver that honours GRACEFUL_SHUTDOWN sets LOCAL_PREF to 0 on those paths.
HONOUR_GSHUT = "if (65535, 0) ~ bgp_community then bgp_local_pref = 0;"

# A UDP responder on the anycast address: answers each datagram with its payload and the PoP's name.
RESPONDER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, peer = s.recvfrom(512)
    s.sendto(data + b" " + sys.argv[3].encode(), peer)
"""

# A TCP relay that delays every byte by a fixed time each way: carries one BGP session, so an update (a withdrawal)
# reaches the far side that much later, as on a path through several busy routers (the kernel here has no netem).
# Listens on argv[1]:argv[2], connects to argv[3]:179 from the namespace's own address, delay argv[4] seconds.
RELAY = """
import socket, sys, threading, time, queue
listen, port, target, delay = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); srv.bind((listen, port)); srv.listen(4)
def pump(a, b):
    q = queue.Queue()
    def sender():
        while True:
            at, data = q.get()
            time.sleep(max(0.0, at - time.monotonic()))
            if not data:
                b.close(); return
            try: b.sendall(data)
            except OSError: return
    threading.Thread(target=sender, daemon=True).start()
    while True:
        try: data = a.recv(65536)
        except OSError: data = b""
        q.put((time.monotonic() + delay, data))
        if not data: return
while True:
    c, _ = srv.accept()
    try: u = socket.create_connection((target, 179), timeout=3)
    except OSError: c.close(); continue
    u.settimeout(None)
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
"""

# A client sending one numbered datagram every interval until the stop file exists; prints "sent answered" and the
# answering PoP of each reply seen (a datagram is lost when no answer arrived within 0.5 s of the last send).
PROBER = """
import os, select, socket, sys, time
addr, port, interval, stop = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent, answered, by = 0, set(), {}
nxt = time.monotonic()
end = None
while end is None or time.monotonic() < end:
    now = time.monotonic()
    if end is None and os.path.exists(stop):
        end = now + 0.5
    if end is None and now >= nxt:
        s.sendto(str(sent).encode(), (addr, port))
        sent += 1
        nxt += interval
    if select.select([s], [], [], max(0.0, min(nxt - time.monotonic(), 0.01)))[0]:
        seq, pop = s.recv(512).decode().split()
        answered.add(int(seq))
        by[pop] = by.get(pop, 0) + 1
print(sent, len(answered), " ".join(f"{k}={v}" for k, v in sorted(by.items())))
"""


def until(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


class Topology:
    def __init__(self, tag: str, d: Path) -> None:
        self.prefix = f"acu-{tag}-{os.getpid()}-"
        self.d = d
        self.nodes: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def ns(self, node: str) -> str:
        return self.prefix + node

    def add(self, node: str) -> None:
        subprocess.run(["ip", "netns", "add", self.ns(node)], check=True)
        self.nodes.append(node)
        self.ip(node, "link", "set", "lo", "up")

    def ip(self, node: str, *args: str) -> None:
        subprocess.run(["ip", "-n", self.ns(node), *args], check=True, capture_output=True)

    def link(self, a: str, a_addr: str, b: str, b_addr: str, delay_ms: int = 0) -> None:
        """veth a<->b named after the peer (``to-<b>`` in a), /30 addresses, netem delay each way if asked."""
        ia, ib = f"to-{b}", f"to-{a}"
        subprocess.run(["ip", "-n", self.ns(a), "link", "add", ia, "type", "veth", "peer", "name", ib,
                        "netns", self.ns(b)], check=True)
        for node, ifname, addr in ((a, ia, a_addr), (b, ib, b_addr)):
            self.ip(node, "addr", "add", f"{addr}/30", "dev", ifname)
            self.ip(node, "link", "set", ifname, "up")
            if delay_ms:
                subprocess.run(["ip", "netns", "exec", self.ns(node), "tc", "qdisc", "add", "dev", ifname, "root",
                                "netem", "delay", f"{delay_ms}ms"], check=True)

    def sysctl_forward(self, node: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.ns(node), "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)

    def spawn(self, node: str, *cmd: str, log: str) -> subprocess.Popen[bytes]:
        out = open(self.d / log, "ab")  # noqa: SIM115 - owned by the process
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(node), *cmd], stdout=out, stderr=out)
        self.procs.append(p)
        return p

    def run(self, node: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns(node), *cmd], capture_output=True, text=True,
                              timeout=timeout, check=False)

    def bird(self, node: str, conf: str) -> Path:
        """BIRD with ``conf`` (its log in the test directory); waits for the control socket."""
        path, sock = self.d / f"{node}.bird.conf", self.d / f"{node}.ctl"
        path.write_text(conf.replace("log syslog all;", f'log "{self.d}/{node}.bird.log" all;'))
        check = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        self.spawn(node, "bird", "-f", "-c", str(path), "-s", str(sock), log=f"{node}.bird.out")
        assert until(lambda: self.birdc(sock, "show status").startswith("BIRD"), 5), self.log(f"{node}.bird.out")
        return sock

    @staticmethod
    def birdc(sock: Path, command: str) -> str:
        r = subprocess.run(["birdc", "-s", str(sock), *command.split()], capture_output=True, text=True, timeout=5,
                           check=False)
        return r.stdout

    def python(self, node: str, script: str, *args: str, log: str) -> subprocess.Popen[bytes]:
        return self.spawn(node, sys.executable, "-c", script, *args, log=log)

    def log(self, name: str) -> str:
        path = self.d / name
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(timeout=5)
        for node in self.nodes:
            subprocess.run(["ip", "netns", "del", self.ns(node)], check=False)


def transit_bird(router_id: str, asn: int, peers: list[tuple[str, str, int, str]], honour_gshut: bool = True,
                 kernel: bool = True, session: dict[str, str] | None = None, channel: dict[str, str] | None = None) -> str:
    """A transit AS in BIRD: one eBGP session per (name, neighbour address, neighbour AS, extra import statements),
    exporting everything, the best routes into the kernel (its forwarding table), fast timers; ``session`` adds
    options to a named session (a relayed one: ``port``, ``multihop``, ``passive``), ``channel`` to its ipv4 channel
    (``gateway direct``)."""
    lines = [f"router id {router_id};", "log syslog all;", "protocol device { scan time 1; }"]
    if kernel:
        lines.append("protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; }")
    # Connected networks: the IGP table a multihop (relayed) session resolves its next hops in.
    lines.append("protocol direct { ipv4; }")
    for name, addr, peer_as, extra in peers:
        gshut = HONOUR_GSHUT if honour_gshut else ""
        lines.append(f"protocol bgp {name} {{ local as {asn}; neighbor {addr} as {peer_as}; hold time 9; "
                     f"keepalive time 3; connect retry time 1; error wait time 1, 2; {(session or {}).get(name, '')} "
                     f"ipv4 {{ import filter {{ {extra} {gshut} accept; }}; export all; {(channel or {}).get(name, '')} }}; }}")
    return "\n".join(lines) + "\n"
