#!/usr/bin/env python3
"""The process-mode lab's stand-in for systemd around the health agent (stdlib only, runs inside the PoP namespace).

It applies the semantics of the rendered ``anycast-health.service`` (``userdata/health_config.py: health_unit``):

* ``Type=notify``: a datagram socket is the agent's ``$NOTIFY_SOCKET``; ``READY=1`` and ``WATCHDOG=1`` are read from it;
* ``WatchdogSec=`` / ``WatchdogSignal=SIGKILL``: no ``WATCHDOG=1`` for that long -> SIGKILL the agent;
* ``ExecStopPost=``: whenever the agent is gone (exit, crash, watchdog kill, stop), run the same commands
  (``birdc -s <socket> disable anycast4`` ...); ``Restart=always`` + ``RestartSec=``: start it again.

Usage: ``supervise.py --watchdog-sec 2 --restart-sec 1 --stop-post 'birdc -s X disable anycast4' --pidfile F -- CMD...``
Events go to stdout, one line each, with a wall-clock timestamp. SIGTERM stops the agent, runs the stop-post
commands and exits.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time


def log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} supervise: {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="supervise")
    p.add_argument("--watchdog-sec", type=float, required=True)
    p.add_argument("--restart-sec", type=float, required=True)
    p.add_argument("--stop-post", action="append", default=[])
    p.add_argument("--pidfile", required=True)
    p.add_argument("--notify-socket", required=True)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if os.path.exists(args.notify_socket):
        os.unlink(args.notify_socket)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(args.notify_socket)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))

    def stop_post(why: str) -> None:
        for line in args.stop_post:
            res = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=10, check=False)
            log(f"ExecStopPost ({why}): {line} -> {res.stdout.strip().splitlines()[-1:] or res.stderr.strip()}")

    while not stopping:
        env = {**os.environ, "NOTIFY_SOCKET": args.notify_socket, "WATCHDOG_USEC": str(int(args.watchdog_sec * 1e6))}
        child = subprocess.Popen(cmd, env=env)
        with open(args.pidfile, "w", encoding="ascii") as fh:
            fh.write(f"{child.pid}\n")
        log(f"started pid {child.pid}: {' '.join(cmd)}")
        last = time.monotonic()
        why = ""
        while not stopping:
            sock.settimeout(0.05)
            try:
                msg = sock.recv(4096).decode(errors="replace")
                if "WATCHDOG=1" in msg.split("\n"):
                    last = time.monotonic()
                if "READY=1" in msg.split("\n"):
                    log("READY=1")
            except (TimeoutError, InterruptedError):
                pass
            if child.poll() is not None:
                why = f"exited with {child.returncode}"
                break
            if time.monotonic() - last > args.watchdog_sec:
                why = f"watchdog: no WATCHDOG=1 for {args.watchdog_sec:g} s, SIGKILL"
                child.kill()
                child.wait()
                break
        if stopping:
            child.terminate()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            why = "stopped"
        log(f"agent {why}")
        stop_post(why)
        if not stopping:
            time.sleep(args.restart_sec)
    sock.close()
    os.unlink(args.notify_socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
