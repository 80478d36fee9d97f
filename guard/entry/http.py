"""The HTTP endpoint of the daemon (DESIGN §4 ``[http]``): probes, metrics, status, on-call writes.

    GET  /healthz                200 "ok" while the process lives
    GET  /readyz                 200 or 503, the reason in the body
    GET  /metrics                Prometheus text format
    GET  /v1/status              the last tick's ``guard check --json`` object (503 before one)
    GET  /v1/fallback            the state-file JSON of the fallback in force (503 before one);
                                 ``?target=research`` that target's (404 for no such target)
    POST /v1/fallback/pin        {"tier": "haiku", "for": "4h", "reason": "...", "target": "..."}
    POST /v1/fallback/release    {"reason": "...", "target": "..."}

``target`` is optional: without it, the first target (``default`` without targets).

With several organizations (``OrganizationsState``), ``/v1/status`` and ``/v1/fallback`` are
JSON objects keyed by organization name, ``null`` for one without a completed tick yet, and
``/readyz`` answers 200 while any organization is ready, one line per organization.

The daemon runs ticks on its own thread and hands each result to ``HttpState.update``; the
server only reads what was handed over, so a request never waits for a tick and never touches
the Admin API. Writes need ``Authorization: Bearer <http.admin_token>`` and go through
``guard.shell.ops`` like the CLI's, audited as ``http:<client address>``; they are refused (403)
while no token is configured. The token is compared in constant time and never logged or
echoed. ``guard.entry.server`` serves it.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from guard.config import Settings
from guard.core.fallback import state_document, utc_text
from guard.core.policy import Override
from guard.core.summary import TickReport
from guard.entry.metrics import CONTENT_TYPE, Metrics
from guard.errors import ConfigError, GuardError
from guard.shell.ops import Ops

log = logging.getLogger(__name__)

READY_FAILURES = 3
WRITES_DISABLED = "writes are disabled: set http.admin_token"
_FIELDS = {"TIER": "tier", "--for": "for", "--reason": "reason",
           "--target": "target"}  # ops speaks CLI
_PIN_FIELDS = ("tier", "for", "reason")
_ERROR_CHARS = 300
MAX_BODY = 16 * 1024
"""The largest write body accepted (bytes); a longer one is refused before it is read."""
T = TypeVar("T")


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- what the daemon hands over ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Seen:
    """The last completed tick, already rendered, with what readiness needs of it."""

    status: bytes
    fallback: bytes
    at: datetime
    stale: bool
    data_through: datetime | None
    upstream_error: str | None
    notification_errors: tuple[str, ...] = ()
    standby: bool = False
    targets: dict[str, bytes] | None = None
    """Each target's state-file JSON, by name."""


class NoSuchTarget(LookupError):
    """``/v1/fallback?target=`` names no target of the last tick."""


class HttpState:
    """What the server shows, updated by the daemon after each tick; safe across threads."""

    def __init__(self, ready_failures: int = READY_FAILURES) -> None:
        if ready_failures < 1:
            raise ValueError(f"ready_failures must be at least 1, not {ready_failures}")
        self.ready_failures = ready_failures
        self._lock = threading.Lock()
        self._seen: _Seen | None = None
        self._failures = 0
        self._last_error: str | None = None

    def update(self, report: TickReport | None, now: datetime,
               error: Exception | None = None) -> None:
        """Record one tick: its report, or ``None`` and the ``error`` it failed with."""
        if report is None or error is not None:
            with self._lock:
                self._failures += 1
                self._last_error = describe_error(error)
            return
        seen = _Seen(_json(report.as_json()), _json(state_document(report.fallback)), now,
                     report.assessment.stale, report.assessment.ledger.data_through,
                     report.upstream_error, report.notification_errors, report.standby,
                     {t.name: _json(state_document(t.fallback)) for t in report.targets})
        with self._lock:
            self._seen, self._failures, self._last_error = seen, 0, None

    @property
    def consecutive_failures(self) -> int:
        """Failed ticks since the last one that completed."""
        with self._lock:
            return self._failures

    @property
    def last_success(self) -> datetime | None:
        """When the last completed tick was recorded."""
        with self._lock:
            return self._seen.at if self._seen else None

    def status_json(self) -> bytes | None:
        """The last tick's report JSON, or ``None`` before the first one."""
        with self._lock:
            return self._seen.status if self._seen else None

    def fallback_json(self, target: str | None = None) -> bytes | None:
        """The state-file JSON of the last tick's fallback (``target``'s, else the first
        target's), or ``None`` before the first one; ``NoSuchTarget`` for a name it has not."""
        with self._lock:
            seen = self._seen
        if seen is None:
            return None
        if target is None:
            return seen.fallback
        found = (seen.targets or {}).get(target)
        if found is None:
            raise NoSuchTarget(target)
        return found

    def readiness(self, now: datetime) -> tuple[bool, str]:
        """Whether to take traffic, and why in one line."""
        with self._lock:
            seen, failures, error = self._seen, self._failures, self._last_error
        if seen is None:
            tail = f" (last error: {error})" if error else ""
            return False, f"no tick has succeeded yet{tail}"
        if failures >= self.ready_failures:
            return False, f"the last {failures} ticks failed (last error: {error})"
        if seen.stale:
            through = utc_text(seen.data_through) if seen.data_through else "never"
            return False, f"data is stale: complete through {through}"
        if seen.upstream_error is not None:
            return False, f"the Admin API failed on the last tick: {seen.upstream_error}"
        ago = max(0, round((now - seen.at).total_seconds()))
        failed = f", {failures} failed since" if failures else ""
        slack = (f"; SLACK REJECTED NOTIFICATIONS: {seen.notification_errors[0]}"
                 if seen.notification_errors else "")
        if seen.standby:
            return True, (f"ok: standby, another replica holds the leader lease; last tick "
                          f"{ago} s ago read the shared store{failed}")
        return True, f"ok: last tick succeeded {ago} s ago{failed}{slack}"


class StatusBoard(Protocol):
    """What the endpoints read: one organization's ``HttpState``, or several's."""

    def status_json(self) -> bytes | None:
        """The last tick's report JSON, or ``None`` before the first one."""
        ...

    def fallback_json(self, target: str | None = None) -> bytes | None:
        """The fallback in force as state-file JSON (``target``'s, else the first's), or
        ``None`` before the first tick; ``NoSuchTarget`` for a target it does not know."""
        ...

    def readiness(self, now: datetime) -> tuple[bool, str]:
        """Whether to take traffic, and why."""
        ...


class OrganizationsState:
    """The ``HttpState`` of each of several organizations, shown together."""

    def __init__(self, organizations: Sequence[str],
                 ready_failures: int = READY_FAILURES) -> None:
        self.states = {name: HttpState(ready_failures) for name in organizations}

    def update(self, report: TickReport | None, now: datetime,
               error: Exception | None = None, organization: str = "") -> None:
        """Record one tick of ``organization`` (one added by a reload is added here)."""
        if organization not in self.states:
            self.states[organization] = HttpState()
        self.states[organization].update(report, now, error)

    def status_json(self) -> bytes | None:
        """Each organization's last report, by name."""
        return self._joined({name: s.status_json() for name, s in self.states.items()})

    def fallback_json(self, target: str | None = None) -> bytes | None:
        """Each organization's fallback state document (``target``'s), by name."""
        parts = {}
        for name, s in self.states.items():
            try:
                parts[name] = s.fallback_json(target)
            except NoSuchTarget:
                parts[name] = None
        if target is not None and all(part is None for part in parts.values()) and any(
                s.last_success is not None for s in self.states.values()):
            raise NoSuchTarget(target)
        return self._joined(parts)

    def readiness(self, now: datetime) -> tuple[bool, str]:
        """Ready while any organization is; one line per organization."""
        answers = {name: s.readiness(now) for name, s in self.states.items()}
        lines = "\n".join(f"{name}: {why}" for name, (_, why) in answers.items())
        return any(ready for ready, _ in answers.values()), lines

    @staticmethod
    def _joined(parts: dict[str, bytes | None]) -> bytes | None:
        if all(part is None for part in parts.values()):
            return None
        body = ", ".join(f"{json.dumps(name)}: {(part or b'null').decode('utf-8')}"
                         for name, part in parts.items())
        return f"{{{body}}}".encode()


def describe_error(error: Exception | None) -> str:
    """An error for a probe: the guard's own messages (secret-free), else only the class."""
    if error is None:
        return "unknown error"
    if isinstance(error, GuardError):
        text = " ".join(str(error).split())
        return f"{type(error).__name__}: {text}"[:_ERROR_CHARS]
    return type(error).__name__


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


# --- the application ---------------------------------------------------------------------------


class _Refused(Exception):
    """A request refused with ``status`` and a JSON body."""

    def __init__(self, status: int, error: str, problems: Sequence[tuple[str, str]] = (),
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.problems, self.headers = status, error, problems, headers


def _refused(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, _Refused)
    body: dict[str, Any] = {"error": exc.error}
    if exc.problems:
        body["problems"] = [{"field": f, "reason": r} for f, r in exc.problems]
    return JSONResponse(body, exc.status, headers=exc.headers)


def build_app(state: StatusBoard, metrics: Metrics, settings_provider: Callable[[], Settings],
              ops_provider: Callable[[], Ops], *,
              now: Callable[[], datetime] = _utcnow) -> Starlette:
    """The ASGI application; both providers are asked per write, so reloads take effect."""
    endpoints = _Endpoints(state, metrics, settings_provider, ops_provider, now)
    routes = [
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Route("/readyz", endpoints.readyz, methods=["GET"]),
        Route("/metrics", endpoints.metrics, methods=["GET"]),
        Route("/v1/status", endpoints.status, methods=["GET"]),
        Route("/v1/fallback", endpoints.fallback, methods=["GET"]),
        Route("/v1/fallback/pin", endpoints.pin, methods=["POST"]),
        Route("/v1/fallback/release", endpoints.release, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={_Refused: _refused})


@dataclass(frozen=True, slots=True)
class _Endpoints:
    """The handlers, bound to what they read."""

    state: StatusBoard
    registry: Metrics
    settings_provider: Callable[[], Settings]
    ops_provider: Callable[[], Ops]
    now: Callable[[], datetime]

    async def healthz(self, _: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, _: Request) -> Response:
        ready, reason = self.state.readiness(self.now())
        return PlainTextResponse(reason, 200 if ready else 503)

    async def metrics(self, _: Request) -> Response:
        return Response(self.registry.render(), media_type=CONTENT_TYPE)

    async def status(self, _: Request) -> Response:
        return _stored(self.state.status_json())

    async def fallback(self, request: Request) -> Response:
        target = request.query_params.get("target")
        try:
            return _stored(self.state.fallback_json(target))
        except NoSuchTarget:
            raise _Refused(404, "no such fallback target", [("target", "unknown")]) from None

    async def pin(self, request: Request) -> Response:
        self._authorize(request)
        body = await _body(request, required=_PIN_FIELDS, optional=("target",))
        who, target = _who(request), body.get("target")
        pinned = await run_in_threadpool(
            _ops_call, lambda: self.ops_provider().pin(body["tier"], body["for"],
                                                       reason=body["reason"], who=who,
                                                       now=self.now(), target=target))
        log.info("fallback%s pinned to %s until %s by %s: %s", _on(target), pinned.tier,
                 utc_text(pinned.expires_at), who, pinned.reason)
        return JSONResponse(_pin_document(pinned, target))

    async def release(self, request: Request) -> Response:
        self._authorize(request)
        body = await _body(request, required=(), optional=("reason", "target"))
        who, reason, target = _who(request), body.get("reason") or "released", body.get("target")
        released = await run_in_threadpool(
            _ops_call, lambda: self.ops_provider().release(reason=reason, who=who,
                                                           now=self.now(), target=target))
        log.info("fallback%s pin %s released by %s: %s", _on(target),
                 released.tier if released else "(none)", who, reason)
        return JSONResponse({"released": _pin_document(released, target) if released
                             else None})

    def _authorize(self, request: Request) -> None:
        """Refuse the request unless its bearer token matches ``http.admin_token``."""
        settings = self.settings_provider()
        expected = settings.http_admin_token_value()
        if not expected:
            raise _Refused(403, WRITES_DISABLED)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode("utf-8"), expected.encode("utf-8")):
            raise _Refused(401, "a valid bearer token is required",
                           headers={"WWW-Authenticate": 'Bearer realm="budget-guard"'})


def _stored(document: bytes | None) -> Response:
    if document is None:
        return JSONResponse({"error": "no tick has completed yet"}, 503)
    return Response(document, media_type="application/json")


async def _body(request: Request, *, required: tuple[str, ...],
                optional: tuple[str, ...]) -> dict[str, str]:
    """The JSON object of a write: known string fields only; problems name the field."""
    raw = await _bounded_body(request)
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _Refused(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise _Refused(400, "the body is not a JSON object")
    problems = [(f, "required") for f in required if f not in body]
    problems += [(f, "unknown field") for f in body if f not in (*required, *optional)]
    problems += [(f, "must be a string") for f, v in body.items()
                 if f in (*required, *optional) and not isinstance(v, str)]
    if problems:
        raise _Refused(400, "invalid request", problems)
    return body


async def _bounded_body(request: Request) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``MAX_BODY``: by its
    Content-Length before a byte is read, or while streaming when there is none."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise _Refused(413, f"the body is larger than {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _Refused(413, f"the body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _ops_call(call: Callable[[], T]) -> T:
    """Run an ``ops`` function; its errors become 400 (what was asked) or 503 (the store)."""
    try:
        return call()
    except ConfigError as exc:
        raise _Refused(400, "invalid request",
                       [(_FIELDS.get(p, p), r) for p, r in exc.problems]) from None
    except GuardError as exc:
        raise _Refused(503, describe_error(exc)) from None


def _who(request: Request) -> str:
    return f"http:{request.client.host if request.client else 'unknown'}"


def _pin_document(pin: Override, target: str | None = None) -> dict[str, str]:
    return {"tier": pin.tier, "expires_at": utc_text(pin.expires_at), "by": pin.who,
            "reason": pin.reason} | ({"target": target} if target is not None else {})


def _on(target: str | None) -> str:
    return f" of target {target}" if target is not None else ""
