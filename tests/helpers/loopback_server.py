"""A fake HTTP API on 127.0.0.1 (an ephemeral port), served from a thread for the length of a ``with`` block.

A fake subclasses ``LoopbackServer`` and starts with ``self.serve(HandlerClass)`` in its ``__enter__``; the handler
reaches the fake as ``self.fake``."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class LoopbackServer:
    _server: ThreadingHTTPServer | None = None

    def serve(self, handler_class: type[BaseHTTPRequestHandler]) -> None:
        handler = type("Handler", (handler_class,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"
