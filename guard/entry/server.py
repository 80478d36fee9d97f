"""The daemon's HTTP server: uvicorn serving an ASGI app on a daemon thread.

The socket is bound by the caller's thread, so that a busy port fails ``start`` instead of
dying quietly in the background; ``stop`` lets requests in flight finish.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger("guard.entry.http")


class HttpServer:
    """uvicorn serving an ASGI app on a daemon thread; ``stop`` finishes requests in flight."""

    def __init__(self, app: ASGIApp, *, startup_timeout_s: float = 10,
                 shutdown_timeout_s: float = 5) -> None:
        self.app = app
        self.startup_timeout_s = startup_timeout_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one picked, when started on port 0)."""
        if self._port is None:
            raise RuntimeError("the HTTP server is not started")
        return self._port

    def start(self, host: str, port: int) -> HttpServer:
        """Listen on ``host:port`` (0 picks a free port); returns once requests are served."""
        if self._thread is not None:
            raise RuntimeError("the HTTP server is already started")
        sock = _listen(host, port)
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off",
                                ws="none", http="h11", loop="asyncio", proxy_headers=False,
                                server_header=False,
                                timeout_graceful_shutdown=int(self.shutdown_timeout_s))
        self._server = uvicorn.Server(config)
        self._port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, args=(self._server, sock),
                                        name="guard-http", daemon=True)
        self._thread.start()
        self._wait_started(self._server)
        log.info("HTTP endpoint listening on %s:%d", host, self._port)
        return self

    def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to the timeout), join the thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(self.shutdown_timeout_s + 2)
        if thread.is_alive():
            server.force_exit = True
            thread.join(2)
        self._server = self._thread = None

    def __enter__(self) -> HttpServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @staticmethod
    def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException:  # uvicorn exits with SystemExit on startup failures
            log.exception("the HTTP server stopped")
        finally:
            sock.close()

    def _wait_started(self, server: uvicorn.Server) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while not server.started:
            if self._thread is None or not self._thread.is_alive() or \
                    time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, IPv4 or IPv6 as ``host`` resolves."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)
