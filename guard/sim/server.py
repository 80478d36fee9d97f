"""The simulated Admin API over real HTTP on loopback.

``SimServer`` serves the legacy usage and cost reports, the Usage and Cost Analytics API
(``/analytics/cost``, ``/analytics/usage``), workspaces and API keys of a ``SimOrg`` from a
``ThreadingHTTPServer`` in a daemon thread. Its notion of now is a ``SimClock`` the test moves.
It records every request (admin key redacted) and can be told to misbehave with
``inject(Fault(...))`` (``Fault(410, path="/analytics/")`` expires the next cursor).

* Legacy reports: data of a minute is visible once ``minute_end <= now - lag``; list prices
  (``price_errors`` applied: ``list_truth_cents``), no discount.
* Analytics: the hourly watermark ``data_refreshed_at = floor_hour(now - analytics_lag)``
  (``null`` when it is not after ``starting_at``); only minutes ending by then are in answers,
  late groups arrive ``revision_hours`` after their hour (``billing``); ``amount`` is
  ``list_amount × (1 - discount)``. The final bill of a scope is ``billed_truth_cents``.
  ``analytics=False`` makes the paths 404 (an org without the API); ``hipaa=True`` makes them
  400, as for an organization with HIPAA readiness. Both are plain attributes a test may flip.

    with SimServer(org, clock, admin_key="sk-ant-admin01-test") as server:
        client = httpx.Client(base_url=server.base_url)
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from types import TracebackType

from guard.sim import analytics as analytics_api
from guard.sim import directory, reports
from guard.sim.billing import Billing, watermark
from guard.sim.clock import SimClock
from guard.sim.cursor import UnitCache
from guard.sim.faults import Fault, FaultQueue
from guard.sim.httpd import HttpServer
from guard.sim.org import SimOrg
from guard.sim.params import ApiError
from guard.sim.spend_limits import SpendLimitBook
from guard.sim.wire import Incoming, Json, Response, error_response

_PREFIX = "/v1/organizations"
_KEY_PATH = re.compile(rf"{_PREFIX}/api_keys/([^/]+)")
_WORKSPACE_PATH = re.compile(rf"{_PREFIX}/workspaces/([^/]+)")
_ANALYTICS_PATH = re.compile(rf"{_PREFIX}/analytics/(cost|usage)")
HIPAA_MESSAGE = ("The Usage and Cost Analytics API is not available to organizations with "
                 "HIPAA readiness enabled")
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
    """The simulated Admin API of ``org``, on ``host:port`` (0 picks a free port).

    ``lag`` delays the legacy reports; ``analytics_lag``, ``discount``, ``price_errors`` and
    ``revision_hours`` shape the analytics API (and ``price_errors`` the legacy cost report
    too); ``analytics``/``hipaa`` switch the analytics API off (404) or refuse it (400).
    """

    def __init__(self, org: SimOrg, clock: SimClock, *, admin_key: str,
                 lag: timedelta = timedelta(minutes=3), host: str = "127.0.0.1",
                 port: int = 0, analytics_lag: timedelta = timedelta(hours=4),
                 discount: Decimal = Decimal(0),
                 price_errors: Mapping[str, Decimal] | None = None, revision_hours: int = 0,
                 analytics: bool = True, hipaa: bool = False,
                 spend_limits: SpendLimitBook | None = None) -> None:
        self.org = org
        self.clock = clock
        self.lag = lag
        self.analytics_lag = analytics_lag
        self.discount = discount
        self.price_errors = dict(price_errors or {})
        self.revision_hours = revision_hours
        self.analytics = analytics
        self.hipaa = hipaa
        Billing(discount, self.price_errors, revision_hours)  # refuse bad knobs now
        self.keys = directory.KeyBook(org)
        self.spend_limits = spend_limits
        """The Spend Limits API (``None``: 404, an organization that has none)."""
        self._units = UnitCache()
        self._admin_key = admin_key
        self._address = (host, port)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults = FaultQueue()
        self._ids = itertools.count(1)
        self._http: HttpServer | None = None
        self._thread: threading.Thread | None = None
        self.latency_s = 0.0
        """How long every answer takes (a real API is not on loopback); a plain attribute."""

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> SimServer:
        """Bind and serve in a daemon thread."""
        self._http = HttpServer(self._address, self.handle)
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

    # --- billing and ground truth --------------------------------------------------------------

    @property
    def billing(self) -> Billing:
        """The discount, price errors and revision delay in force now."""
        return Billing(self.discount, dict(self.price_errors), self.revision_hours)

    def watermark(self) -> datetime:
        """The analytics export's ``data_refreshed_at`` at the clock's now (before the
        ``starting_at`` rule that turns it into ``null``)."""
        return watermark(self.clock.now(), self.analytics_lag)

    def list_truth_cents(self, start: datetime, end: datetime, scope: str,
                         match: str | None = None) -> Decimal:
        """The exact list cost of a budget scope over the whole minutes of ``[start, end)``,
        ``price_errors`` applied: what the legacy cost report adds up to."""
        return self.org.truth_cents(start, end, scope, match, price_errors=self.price_errors)

    def billed_truth_cents(self, start: datetime, end: datetime, scope: str,
                           match: str | None = None) -> Decimal:
        """The final billed cost of a budget scope over ``[start, end)``: every revision in,
        ``price_errors`` and ``discount`` applied, exact. Scopes mean what they mean for
        ``SimOrg.truth_cents`` (``organization``; ``workspace``, ``"default"`` the default
        workspace; ``api_key``: tokens and web searches; ``model``: tokens, by prefix).

        Equals the exact sum of the analytics ``amount``s of that selection once the watermark
        is ``revision_hours`` past ``end``; written rows round to 6 decimals (see
        ``guard.sim.analytics``)."""
        return self.billing.billed(self.list_truth_cents(start, end, scope, match))

    # --- the application -----------------------------------------------------------------------

    def handle(self, request: Incoming) -> Response:
        """Answer one request: record it, apply a pending fault, or route it."""
        request_id = self._next_request_id()
        self._record(request)
        if self.latency_s:
            time.sleep(self.latency_s)
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
            return error_response(error.status, error.message, request_id, error.code)
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
            return reports.usage_report(self.org, query, view, reports.betas(request.headers))
        if method == "GET" and path == f"{_PREFIX}/cost_report":
            return reports.cost_report(self.org, query, view, self.price_errors)
        if method == "GET" and (found := _ANALYTICS_PATH.fullmatch(path)):
            return self._analytics(found[1], request, now)
        if path.startswith(f"{_PREFIX}/spend_limits") and self.spend_limits is not None:
            return self._spend_limits(request, path, now)
        return self._route_directory(method, path, query, request.body)

    def _spend_limits(self, request: Incoming, path: str, now: datetime) -> Json:
        book, method = self.spend_limits, request.method
        assert book is not None
        if method == "GET" and path == f"{_PREFIX}/spend_limits":
            return book.listing(request.query, reports.betas(request.headers))
        if method == "GET" and path == f"{_PREFIX}/spend_limits/effective":
            return book.effective()
        if method == "POST" and path == f"{_PREFIX}/spend_limits":
            return book.upsert(request.body, now)
        if method == "DELETE" and path.startswith(f"{_PREFIX}/spend_limits/"):
            return book.delete(path.rsplit("/", 1)[1])
        raise ApiError(404, f"{method} {path}: not found")

    def _analytics(self, endpoint: str, request: Incoming, now: datetime) -> Json:
        if not self.analytics:
            raise ApiError(404, f"GET {request.path}: not found")
        if analytics_api.ANALYTICS_BETA not in reports.betas(request.headers):
            raise ApiError(400, f"analytics/{endpoint}: requires the "
                                f"'anthropic-beta: {analytics_api.ANALYTICS_BETA}' header")
        if self.hipaa:
            raise ApiError(400, HIPAA_MESSAGE)
        context = analytics_api.Context(self.org, now, self.analytics_lag, self.billing)
        return analytics_api.report(request.query, endpoint, context, self._units)

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
