"""Serve the lab's package mirror over HTTP inside several network namespaces from one process.

``python -m lab.cloud.mirror_server DIR NS=ADDRESS ...`` listens on ``ADDRESS:PORT`` inside each namespace ``NS`` (the
upstream's end of each PoP's link) and serves ``DIR`` read-only. Started by ``lab up --machines`` inside the first
upstream namespace, so ``lab down`` stops it with the namespaces. One process instead of one per upstream.
"""

from __future__ import annotations

import argparse
import functools
import socket
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from lab.net.netns import socket_in

PORT = 8080


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.client_address[0]} {format % args}\n")


def serve(directory: str, binds: list[tuple[str, str]], port: int = PORT) -> list[ThreadingHTTPServer]:
    handler = functools.partial(_Quiet, directory=directory)
    servers = []
    for ns, addr in binds:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        sock = socket_in(ns, family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr, port))
        sock.listen(64)
        srv = ThreadingHTTPServer((addr, port), handler, bind_and_activate=False)
        srv.socket.close()
        srv.socket = sock
        srv.address_family = family
        servers.append(srv)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    return servers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("directory")
    ap.add_argument("binds", nargs="+", help="NS=ADDRESS")
    ap.add_argument("--port", type=int, default=PORT)
    args = ap.parse_args(argv)
    binds = [tuple(b.split("=", 1)) for b in args.binds]
    serve(args.directory, [(ns, addr) for ns, addr in binds], args.port)
    print(f"serving {args.directory} on {len(binds)} addresses, port {args.port}", file=sys.stderr, flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
