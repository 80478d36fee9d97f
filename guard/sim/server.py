"""The simulated Admin API over real HTTP on loopback.

``SimServer`` serves the usage report, the cost report, workspaces and API keys of a ``SimOrg``
from a ``ThreadingHTTPServer`` in a daemon thread. Its notion of now is a ``SimClock`` the test
moves; data of a minute is visible once ``minute_end <= now - lag``. It records every request
(admin key redacted) and can be told to misbehave with ``inject(Fault(...))``.

    with SimServer(org, clock, admin_key="sk-ant-admin01-test") as server:
        client = httpx.Client(base_url=server.base_url)
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from guard.sim import directory, reports
from guard.sim.clock import SimClock
from guard.sim.faults import Fault, FaultQueue
from guard.sim.org import SimOrg
from guard.sim.params import ApiError
from guard.sim.wire import Incoming, Json, Response, error_response

_PREFIX = "/v1/organizations"
_KEY_PATH = re.compile(rf"{_PREFIX}/api_keys/([^/]+)")
_WORKSPACE_PATH = re.compile(rf"{_PREFIX}/workspaces/([^/]+)")
_SECRET_HEADERS = ("x-api-key", "authorization")
REDACTED = "<redacted>"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the server received; secret header values are replaced by ``<redacted>``."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    received_at: datetime


class SimServer:
    """The simulated Admin API of ``org``, on ``host:port`` (0 picks a free port)."""

    def __init__(self, org: SimOrg, clock: SimClock, *, admin_key: str,
                 lag: timedelta = timedelta(minutes=3), host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.org = org
        self.clock = clock
        self.lag = lag
        self.keys = directory.KeyBook(org)
        self._admin_key = admin_key
        self._address = (host, port)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults = FaultQueue()
        self._ids = itertools.count(1)
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> SimServer:
        """Bind and serve in a daemon thread."""
        self._http = _HttpServer(self._address, self)
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={
            "poll_interval": 0.05}, name="sim-admin-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._http, self._thread = None, None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self._http is None:
            raise RuntimeError("the server is not started")
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- test controls -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    def inject(self, fault: Fault) -> None:
        """Queue a fault; faults are consumed in the order they were injected."""
        self._faults.inject(fault)

    def clear_faults(self) -> None:
        """Drop every fault not yet consumed."""
        self._faults.clear()

    def key_status(self, key_id: str) -> str:
        """The current status of an API key (after any ``POST`` updates)."""
        return self.keys.status(key_id)

    # --- the application -----------------------------------------------------------------------

    def handle(self, request: Incoming) -> Response:
        """Answer one request: record it, apply a pending fault, or route it."""
        request_id = self._next_request_id()
        self._record(request)
        fault = self._faults.take(request.path)
        if fault is not None and fault.corrupt is None:
            return fault.response(request_id)
        response = self._answer(request, request_id)
        if fault is not None and fault.corrupt is not None and response.payload is not None:
            fault.corrupt(response.payload)
        return response

    def _answer(self, request: Incoming, request_id: str) -> Response:
        try:
            self._authorize(request.headers)
            return Response(200, request_id, self._route(request))
        except ApiError as error:
            return error_response(error.status, error.message, request_id)
        except Exception as error:  # a simulator bug must still look like an API 500
            return error_response(500, f"simulator failure: {error!r}", request_id)

    def _authorize(self, headers: dict[str, str]) -> None:
        key = headers.get("x-api-key") or _bearer(headers.get("authorization", ""))
        if not hmac.compare_digest(key.encode(), self._admin_key.encode()):
            if key.startswith("sk-ant-api"):
                raise ApiError(403, "this API key is not an admin key; use an Admin API key")
            raise ApiError(401, "invalid x-api-key")
        if "anthropic-version" not in headers:
            raise ApiError(400, "anthropic-version: header is required")

    def _route(self, request: Incoming) -> Json:
        path, query, method = request.path.rstrip("/"), request.query, request.method
        now = self.clock.now()
        view = reports.View(now, now - self.lag)
        if method == "GET" and path == f"{_PREFIX}/usage_report/messages":
            return reports.usage_report(self.org, query, view)
        if method == "GET" and path == f"{_PREFIX}/cost_report":
            return reports.cost_report(self.org, query, view)
        return self._route_directory(method, path, query, request.body)

    def _route_directory(self, method: str, path: str, query: dict[str, list[str]],
                         body: bytes) -> Json:
        if method == "GET" and path == f"{_PREFIX}/workspaces":
            return directory.list_workspaces(self.org, query)
        if method == "GET" and path == f"{_PREFIX}/api_keys":
            return self.keys.listing(query)
        if method == "GET" and (found := _WORKSPACE_PATH.fullmatch(path)):
            return directory.get_workspace(self.org, found[1])
        if (found := _KEY_PATH.fullmatch(path)) and method in ("GET", "POST"):
            return self.keys.get(found[1]) if method == "GET" else self.keys.update(found[1], body)
        raise ApiError(404, f"{method} {path}: not found")

    def _record(self, request: Incoming) -> None:
        headers = {name: REDACTED if name in _SECRET_HEADERS else value
                   for name, value in request.headers.items()}
        recorded = RecordedRequest(request.method, request.path, request.query, headers,
                                   self.clock.now())
        with self._lock:
            self._requests.append(recorded)

    def _next_request_id(self) -> str:
        with self._lock:
            number = next(self._ids)
        return "req_01" + hashlib.sha256(f"sim:{number}".encode()).hexdigest()[:22]


def _bearer(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: SimServer) -> None:
        super().__init__(address, _Handler)
        self.app = app


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "budget-guard-sim/0.1"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        query = parse_qs(url.query, keep_blank_values=True)
        app = cast(_HttpServer, self.server).app
        response = app.handle(Incoming(method, url.path, query, headers, body))
        self._write(response)

    def _write(self, response: Response) -> None:
        data = response.body()
        self.send_response(response.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", response.request_id)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read the request log instead."""
