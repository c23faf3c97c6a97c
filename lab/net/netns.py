"""Network namespaces: create, run commands in, list and delete; and sockets opened inside a namespace."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000


class LabError(RuntimeError):
    """A lab step failed; the message says which and why."""


def run(cmd: Sequence[str], check: bool = True, timeout: float = 30, input_text: str | None = None) -> str:
    """Run a command, return stdout; raise LabError with stderr on failure (when ``check``)."""
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, input=input_text)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(cmd)}: timed out after {timeout} s") from exc
    if check and res.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: exit {res.returncode}: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def nsrun(ns: str, cmd: Sequence[str], check: bool = True, timeout: float = 30) -> str:
    return run(["ip", "netns", "exec", ns, *cmd], check=check, timeout=timeout)


def ip_batch(lines: list[str]) -> None:
    """Run many ``ip`` commands in one process (``ip -batch -``): much faster than one process each."""
    if lines:
        run(["ip", "-batch", "-"], input_text="\n".join(lines) + "\n", timeout=60)


def list_namespaces(prefix: str) -> list[str]:
    out = run(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return sorted(n for n in names if n.startswith(prefix))


def namespace_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in out.split() if x.isdigit()]


def kill_namespaces(names: Sequence[str], grace: float = 1.0) -> int:
    """Stop every process inside ``names`` (SIGCONT + SIGTERM, then SIGKILL) and delete the namespaces.

    Returns the number of processes signalled. Idempotent: missing namespaces are fine.
    """
    pids: list[int] = []
    for ns in names:
        pids += namespace_pids(ns)
    pids = [p for p in pids if p != os.getpid()]
    for sig in (signal.SIGCONT, signal.SIGTERM):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for pid in pids:  # reap our own children, if any
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    if names:
        ip_batch([f"netns delete {ns}" for ns in names if (NETNS_DIR / ns).exists()])
    return len(pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def socket_in(ns: str, family: int, kind: int) -> socket.socket:
    """A socket created inside namespace ``ns`` (setns in a short-lived thread; the socket stays in ``ns``)."""
    result: list[socket.socket | BaseException] = []

    def worker() -> None:
        try:
            fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
            try:
                _setns(fd)  # affects only this thread, which ends right after
            finally:
                os.close(fd)
            result.append(socket.socket(family, kind))
        except BaseException as exc:
            result.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    value = result[0]
    if isinstance(value, BaseException):
        raise LabError(f"socket in {ns}: {value}")
    return value


def http_get(ns: str, host: str, port: int, path: str, timeout: float = 3.0) -> tuple[int, str]:
    """GET over a socket opened inside ``ns`` (HTTP/1.0, whole body)."""
    sock = socket_in(ns, socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    finally:
        sock.close()
    head, _, body = b"".join(chunks).decode("utf-8", "replace").partition("\r\n\r\n")
    return (int(head.split()[1]) if head.startswith("HTTP/") else 0), body
