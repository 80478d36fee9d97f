"""The Admin API client: the only code that knows URLs, query parameters and JSON.

All network I/O goes through one injected ``httpx.Client`` (tests swap its transport for
``httpx.MockTransport`` or respx). Every HTTP attempt, retries included, is counted in
``requests`` so a tick can report what it cost.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from guard.adapters.admin import parse
from guard.core.billed import API_PAGE_ROWS
from guard.core.limits import ProviderLimit
from guard.core.model import ApiKey, BilledCost, BilledPage, CostBucket, UsageBucket, Workspace
from guard.errors import (
    AdminKeyRejected,
    DeadlineExceeded,
    MalformedResponse,
    RateLimited,
    RequestRejected,
    SpendLimitsUnavailable,
    UpstreamError,
    UpstreamUnavailable,
)

API_VERSION = "2023-06-01"
USAGE_PATH = "/v1/organizations/usage_report/messages"
COST_PATH = "/v1/organizations/cost_report"
WORKSPACES_PATH = "/v1/organizations/workspaces"
API_KEYS_PATH = "/v1/organizations/api_keys"
SPEND_LIMITS_PATH = "/v1/organizations/spend_limits"
SPEND_LIMITS_BETA = "spend-limit-reads-2026-09-26"
ANALYTICS_COST_PATH = "/v1/organizations/analytics/cost"
ANALYTICS_BETA = "analytics-usage-cost-2026-08-24"
"""Every analytics request carries this beta header (reference §1)."""
ANALYTICS_GROUP_BY = ("api_key_id", "workspace_id", "model", "cost_type")
"""Billed cost per budget scope; ``cost_type`` (not counted toward the 5) splits tokens out."""
ANALYTICS_LIMIT = API_PAGE_ROWS
CURSOR_RESTARTS = 3
"""An expired cursor (410) restarts paging from page 1 at most this many times."""

WIDTHS = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
MAX_LIMIT = {"1m": 1440, "1h": 168, "1d": 31}
"""The API's largest page, in buckets, per bucket width."""

USAGE_GROUP_BY = ("workspace_id", "api_key_id", "model", "service_tier", "context_window",
                  "inference_geo", "speed")
"""Every usage dimension that changes the price, plus the two scopes budgets use."""
FAST_MODE_BETA = "fast-mode-2026-02-01"
"""Grouping the usage report by ``speed`` needs this beta header (reference §2.1, §8.3)."""

_RETRY_STATUSES = frozenset({408, 409, 500, 502, 503, 504, 529})
ANALYTICS_MAX_PAGES = 10_000
"""10 million rows for one range: past it paging is taken for a loop."""
LIST_MAX_PAGES = 1_000
"""A million workspaces or keys."""


@dataclass
class PageGuard:
    """Ends paging that would never end: a cursor seen before, or more pages than the
    range can need. Either is a malformed response, named."""

    what: str
    max_pages: int
    seen: set[str] = field(default_factory=set)

    def follow(self, number: int, cursor: str | None) -> None:
        """Check the cursor page ``number`` handed on, before it is requested."""
        if cursor is None:
            return
        if cursor in self.seen:
            raise MalformedResponse(f"malformed Admin API response: {self.what} page {number} "
                                    "repeats an earlier cursor; paging would never end")
        if number >= self.max_pages:
            raise MalformedResponse(f"malformed Admin API response: {self.what} wants more "
                                    f"than {self.max_pages} pages for its range; paging would "
                                    "never end")
        self.seen.add(cursor)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: attempts per request, exponential backoff with jitter, longest wait."""

    attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_wait_s: float = 120.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds before retry ``attempt`` (1-based): full exponential, half of it jittered."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (attempt - 1))
        return float(ceiling * (0.5 + rng.random() / 2))


CLOCK_SKEW = timedelta(hours=1)
"""How far ahead of this host's clock the API's ``data_refreshed_at`` may be."""
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
"""The largest response body read (a month of hours for a very large organization fits)."""


@dataclass
class AdminClient:
    """Reads the Usage & Cost reports, workspaces and API keys of one organization.

    Inside ``within(seconds)`` every request, retry wait and body read counts against one
    deadline: bodies are read as a stream, so a server trickling a byte at a time cannot hold
    the tick past it (httpx's read timeout is per read). Past the deadline a request raises
    ``DeadlineExceeded``.
    """

    http: httpx.Client
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    requests: int = 0
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] | None = None
    """The wall clock, against which a watermark from the future is refused (the entry
    points hand it in; ``None``: not checked)."""
    _until: float | None = field(default=None, init=False, repr=False)
    _budget_s: float = field(default=0.0, init=False, repr=False)
    _counting: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    """Requests are counted from a reader thread too (``guard.shell.ahead``)."""
    _seen: dict[tuple[str, tuple[str, ...]], parse.Seen] = field(
        default_factory=dict, init=False, repr=False)
    """The minute buckets of the last complete read of each shape, as sent and as parsed:
    read again unchanged, a bucket is not parsed again (``parse.usage_buckets``)."""

    def _count(self) -> None:
        with self._counting:
            self.requests += 1

    @contextmanager
    def within(self, seconds: float | None) -> Iterator[None]:
        """Bound every Admin API use inside the block to ``seconds`` in all (``None``: none)."""
        if seconds is None:
            yield
            return
        outer = self._until, self._budget_s
        self._until, self._budget_s = self.clock() + seconds, seconds
        try:
            yield
        finally:
            self._until, self._budget_s = outer

    def _check_deadline(self, path: str) -> None:
        if self._until is not None and self.clock() >= self._until:
            raise DeadlineExceeded(
                f"Admin API reads passed the {self._budget_s:.0f} s deadline of one tick "
                f"(anthropic.tick_deadline_s) at {path}; what was read so far is kept and the "
                "next tick continues")

    def _remaining(self) -> float | None:
        return None if self._until is None else self._until - self.clock()

    def usage_pages(self, start: datetime, end: datetime, width: str,
                    group_by: Sequence[str] = USAGE_GROUP_BY,
                    page_buckets: int | None = None, *,
                    again_from: datetime | None = None) -> Iterator[list[UsageBucket]]:
        """Usage buckets in ``[start, end)``, one page at a time, every page followed.

        Minute buckets starting at or after ``again_from`` (``None``: all) are remembered as
        sent: read again unchanged by the next read of the same shape, they are handed back
        as parsed, not parsed again."""
        params = _report_params(start, end, width, group_by, page_buckets)
        beta = {"anthropic-beta": FAST_MODE_BETA} if "speed" in group_by else None
        first = 0
        pages = _most_pages(start, end, width)
        shape = (width, tuple(group_by))
        seen = self._seen.get(shape) if width == "1m" else None
        keep: parse.Seen | None = {} if width == "1m" else None
        for data in self._report_pages(USAGE_PATH, params, "usage_report", pages, beta):
            buckets = parse.usage_buckets(data, parse.Where("usage_report"), first,
                                          seen=seen, keep=keep, keep_from=again_from)
            first += len(buckets)
            yield buckets
        if keep is not None:
            self._seen[shape] = keep

    def cost_pages(self, start: datetime, end: datetime, group_by: Sequence[str] = (),
                   page_buckets: int | None = None) -> Iterator[list[CostBucket]]:
        """Daily cost buckets in ``[start, end)``, amounts in cents, one page at a time."""
        params = _report_params(start, end, "1d", group_by, page_buckets)
        first = 0
        pages = _most_pages(start, end, "1d")
        for data in self._report_pages(COST_PATH, params, "cost_report", pages):
            buckets = parse.cost_buckets(data, parse.Where("cost_report"), first)
            first += len(buckets)
            yield buckets

    def analytics_cost(self, start: datetime, end: datetime, width: str,
                       group_by: Sequence[str] = ANALYTICS_GROUP_BY) -> BilledPage:
        """Every billed row of ``[start, end)`` in ``width`` buckets, all pages followed.

        The range must fit the API's limits (31 days; 24 hours for ``1m``). An expired cursor
        (HTTP 410, when the data refreshes mid-paging) restarts from the first page, so no
        row is counted twice or lost.
        """
        params = [("starting_at", rfc3339(start)), ("ending_at", rfc3339(end)),
                  ("time_bucket_width", width), ("order_by", "time"), ("order", "asc"),
                  ("limit", str(ANALYTICS_LIMIT))] + [("group_by[]", g) for g in group_by]
        for restart in range(CURSOR_RESTARTS + 1):
            try:
                return self._analytics_pages(params)
            except RequestRejected as error:
                if error.status != 410 or restart == CURSOR_RESTARTS:
                    raise
        raise AssertionError("unreachable: the last restart returns or raises")

    def _analytics_pages(self, params: list[tuple[str, str]]) -> BilledPage:
        rows: list[BilledCost] = []
        refreshed: datetime | None = None
        headers = {"anthropic-beta": ANALYTICS_BETA}
        page: str | None = None
        guard = PageGuard("analytics/cost", ANALYTICS_MAX_PAGES)
        for number in itertools.count(1):
            query = params + ([("page", page)] if page else [])
            payload = self._request("GET", ANALYTICS_COST_PATH, query, None, headers)
            where = parse.Where(f"analytics/cost page {number}")
            data, has_more, page, refreshed = parse.report_page(payload, where)
            self._not_ahead(refreshed, where)
            rows.extend(parse.billed_rows(data, where, len(rows)))
            if not has_more:
                return BilledPage(tuple(rows), refreshed)
            guard.follow(number, page)
        raise AssertionError("unreachable: paging returns or raises")

    def _not_ahead(self, refreshed: datetime | None, where: parse.Where) -> None:
        """A ``data_refreshed_at`` past the wall clock (beyond a skew) is malformed: taken at
        its word, the hours not yet exported would be stored as billed at nothing."""
        if self.wall is None or refreshed is None:
            return
        now = self.wall()
        if refreshed > now + CLOCK_SKEW:
            raise where.fail(f"`data_refreshed_at` {refreshed.isoformat()} is after now "
                             f"({now.isoformat(timespec='seconds')}): an export cannot be "
                             "complete past the present")

    def workspaces(self, include_archived: bool = False) -> list[Workspace]:
        """Every workspace (the default workspace is not listed: it has no id)."""
        params = {"include_archived": str(include_archived).lower()}
        return [parse.workspace(item, parse.Where(f"workspaces item {i}"))
                for i, item in enumerate(self._list(WORKSPACES_PATH, params, "workspaces"))]

    def api_keys(self, status: str | None = None,
                 workspace_id: str | None = None) -> list[ApiKey]:
        """API keys, optionally only those with ``status`` or in ``workspace_id``."""
        params = {k: v for k, v in (("status", status), ("workspace_id", workspace_id)) if v}
        return [parse.api_key(item, parse.Where(f"api_keys item {i}"))
                for i, item in enumerate(self._list(API_KEYS_PATH, params, "api_keys"))]

    def set_api_key_status(self, key_id: str, status: str) -> ApiKey:
        """Set a key ``active`` or ``inactive``; returns the key as the API now has it."""
        payload = self._request("POST", f"{API_KEYS_PATH}/{key_id}", None, {"status": status})
        return parse.api_key(payload, parse.Where(f"api_keys/{key_id}"))

    def spend_limits(self) -> list[ProviderLimit]:
        """The organization's configured spend limits (reference §7.2: the beta list, every
        page). ``SpendLimitsUnavailable`` when the organization has no access (403, 404, or
        400 for an organization type without it)."""
        limits: list[ProviderLimit] = []
        page: str | None = None
        guard = PageGuard("spend_limits", LIST_MAX_PAGES)
        for number in itertools.count(1):
            query = [("limit", "1000")] + ([("page", page)] if page else [])
            try:
                payload = self._request("GET", SPEND_LIMITS_PATH, query, None,
                                        {"anthropic-beta": SPEND_LIMITS_BETA})
            except (AdminKeyRejected, RequestRejected) as exc:
                if exc.status in (400, 403, 404):
                    raise SpendLimitsUnavailable(str(exc), status=exc.status,
                                                 request_id=exc.request_id) from None
                raise
            where = parse.Where(f"spend_limits page {number}")
            data, more, page, _ = parse.report_page(payload, where)
            limits += [parse.spend_limit(row, where / f"row {i}") for i, row in enumerate(data)]
            if not more:
                return limits
            guard.follow(number, page)
        raise AssertionError("unreachable: the last page returns")

    def set_spend_limit(self, workspace_id: str, cents: int) -> ProviderLimit:
        """Set ``workspace_id``'s monthly Anthropic spend limit to ``cents`` (the upsert of
        reference §7.2); ``SpendLimitsUnavailable`` when this organization may not write."""
        body = {"amount": str(cents), "period": "monthly",
                "scope": {"type": "workspace", "workspace_id": workspace_id}}
        payload = self._limits_call("POST", SPEND_LIMITS_PATH, body)
        return parse.spend_limit(payload, parse.Where("spend_limits (set)"))

    def delete_spend_limit(self, limit_id: str) -> None:
        """Remove one spend limit (a workspace then falls back to the organization's)."""
        self._limits_call("DELETE", f"{SPEND_LIMITS_PATH}/{limit_id}", None)

    def _limits_call(self, method: str, path: str, body: dict[str, Any] | None) -> object:
        try:
            return self._request(method, path, None, body)
        except (AdminKeyRejected, RequestRejected) as exc:
            if exc.status in (400, 403, 404):
                raise SpendLimitsUnavailable(str(exc), status=exc.status,
                                             request_id=exc.request_id) from None
            raise

    def _report_pages(self, path: str, params: list[tuple[str, str]], what: str,
                      max_pages: int,
                      headers: dict[str, str] | None = None) -> Iterator[list[Any]]:
        page: str | None = None
        guard = PageGuard(what, max_pages)
        for number in itertools.count(1):
            query = params + ([("page", page)] if page else [])
            payload = self._request("GET", path, query, None, headers)
            where = parse.Where(f"{what} page {number}")
            data, has_more, page = parse.envelope(payload, where, "next_page")
            yield data
            if not has_more:
                return
            guard.follow(number, page)

    def _list(self, path: str, params: dict[str, str], what: str) -> Iterator[Any]:
        after: str | None = None
        guard = PageGuard(what, LIST_MAX_PAGES)
        for number in itertools.count(1):
            query = [*params.items(), ("limit", "1000")] + ([("after_id", after)] if after else [])
            payload = self._request("GET", path, query, None)
            data, has_more, after = parse.envelope(payload, parse.Where(what), "last_id")
            yield from data
            if not has_more:
                return
            guard.follow(number, after)

    def _request(self, method: str, path: str, query: Sequence[tuple[str, str]] | None,
                 body: dict[str, Any] | None, headers: dict[str, str] | None = None) -> object:
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            self._check_deadline(path)
            try:
                self._count()
                response = self._send(method, path, query, body, headers)
            except httpx.TransportError as exc:
                self._check_deadline(path)  # a read cut by the capped timeout: the deadline
                if last:
                    raise UpstreamUnavailable(
                        f"Admin API unreachable after {attempt} attempts: {_describe(exc)}"
                    ) from None
                self._wait(self.retry.backoff(attempt, self.rng), path)
                continue
            wait = self._retry_wait(response, attempt, last)
            if wait is None:
                return _decode(response, path)
            self._wait(wait, path)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(self, method: str, path: str, query: Sequence[tuple[str, str]] | None,
              body: dict[str, Any] | None, headers: dict[str, str] | None) -> httpx.Response:
        """One request; inside a deadline it runs in a reader thread that is waited for only
        until the deadline, since httpx's timeouts are per read: a server sending a byte just
        inside each read's timeout could otherwise hold the tick long past it. A reader left
        behind ends within its own timeouts, capped to what was left of the deadline."""
        remaining = self._remaining()
        if remaining is None:
            return self._exchange(method, path, query, body, headers, remaining=None)
        outcome: list[httpx.Response | BaseException] = []

        def read() -> None:
            try:
                outcome.append(self._exchange(method, path, query, body, headers,
                                              remaining=remaining))
            except BaseException as exc:  # handed to the waiting thread as it is
                outcome.append(exc)

        reader = threading.Thread(target=read, name="admin-api-read", daemon=True)
        reader.start()
        reader.join(max(remaining, 0.0))
        if not outcome:
            raise DeadlineExceeded(
                f"Admin API reads passed the {self._budget_s:.0f} s deadline of one tick "
                f"(anthropic.tick_deadline_s) at {path}, inside a read; what was read so far "
                "is kept and the next tick continues")
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def _exchange(self, method: str, path: str, query: Sequence[tuple[str, str]] | None,
                  body: dict[str, Any] | None, headers: dict[str, str] | None, *,
                  remaining: float | None) -> httpx.Response:
        """One request, its body read chunk by chunk against the deadline and the size cap."""
        request = self.http.build_request(method, path, params=list(query or ()), json=body,
                                          headers=headers,
                                          timeout=_capped(self.http.timeout, remaining))
        response = self.http.send(request, stream=True)
        try:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise MalformedResponse(f"malformed Admin API response: {path} is larger "
                                            f"than {MAX_RESPONSE_BYTES // 2**20} MiB")
                chunks.append(chunk)
                self._check_deadline(path)
        finally:
            response.close()
        return httpx.Response(response.status_code, headers=response.headers,
                              content=b"".join(chunks), request=request)

    def _wait(self, seconds: float, path: str) -> None:
        """Sleep before a retry, unless the wait would pass the deadline."""
        remaining = self._remaining()
        if remaining is not None and seconds >= remaining:
            self._check_deadline(path)
            raise DeadlineExceeded(
                f"Admin API retry at {path} would wait {seconds:.0f} s, past the "
                f"{self._budget_s:.0f} s deadline of one tick (anthropic.tick_deadline_s)")
        self.sleep(seconds)

    def _retry_wait(self, response: httpx.Response, attempt: int, last: bool) -> float | None:
        """``None`` when ``response`` is final; else seconds to wait before trying again."""
        status = response.status_code
        if status < 400:
            return None
        if status == 429:
            wait = retry_after_seconds(response.headers, _sent_at(response))
            if wait is not None and wait > self.retry.max_wait_s:
                raise _error(RateLimited, response,
                             f"rate limited; retry-after {wait:.0f}s exceeds the "
                             f"{self.retry.max_wait_s:.0f}s retry budget")
            if last:
                raise _error(RateLimited, response, f"still rate limited after {attempt} attempts")
            return wait if wait is not None else self.retry.backoff(attempt, self.rng)
        if status in (401, 403):
            raise _error(AdminKeyRejected, response,
                         "admin key rejected: check anthropic.admin_api_key "
                         "(it must be an admin key, sk-ant-admin…)")
        if status in _RETRY_STATUSES or status >= 500:
            if last:
                raise _error(UpstreamUnavailable, response,
                             f"Admin API unavailable after {attempt} attempts")
            return self.retry.backoff(attempt, self.rng)
        raise _error(RequestRejected, response, "Admin API rejected the request")


def retry_after_seconds(headers: httpx.Headers, now: datetime | None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds, or an HTTP date measured
    from ``now``; without ``now`` an HTTP date cannot be read and gives ``None``)."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    if now is None:
        return None
    try:
        return max(0.0, (parsedate_to_datetime(raw) - now).total_seconds())
    except (TypeError, ValueError):
        return None


def _sent_at(response: httpx.Response) -> datetime | None:
    """When the server answered (its ``Date`` header): what an HTTP-date ``retry-after`` is
    measured against, so the guard's own clock is never read here."""
    try:
        return parsedate_to_datetime(response.headers["date"])
    except (KeyError, TypeError, ValueError):
        return None


def _report_params(start: datetime, end: datetime, width: str, group_by: Sequence[str],
                   page_buckets: int | None) -> list[tuple[str, str]]:
    buckets = max(1, int((end - start) / WIDTHS[width]))
    limit = min(MAX_LIMIT[width], buckets, page_buckets or MAX_LIMIT[width])
    params = [("starting_at", rfc3339(start)), ("ending_at", rfc3339(end)),
              ("bucket_width", width), ("limit", str(limit))]
    return params + [("group_by[]", name) for name in group_by]


def _most_pages(start: datetime, end: datetime, width: str) -> int:
    """The most pages a report of ``[start, end)`` can need: one bucket a page, and one more."""
    return max(1, int((end - start) / WIDTHS[width])) + 1


def rfc3339(moment: datetime) -> str:
    """``2026-03-12T14:05:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decode(response: httpx.Response, path: str) -> object:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        raise MalformedResponse(
            f"malformed Admin API response: {path} (HTTP {response.status_code}) is not JSON",
            request_id=response.headers.get("request-id"),
        ) from None


def _error(kind: type[UpstreamError], response: httpx.Response, summary: str) -> UpstreamError:
    detail = _api_message(response)
    message = f"{summary} (HTTP {response.status_code}{detail})"
    return kind(message, status=response.status_code,
                request_id=response.headers.get("request-id"))


def _api_message(response: httpx.Response) -> str:
    try:
        error = json.loads(response.content).get("error", {})
        kind, message = str(error.get("type", "")), str(error.get("message", ""))
    except (ValueError, AttributeError, UnicodeDecodeError):
        return ""
    return f" {kind}: {message[:200]}" if kind or message else ""


def _describe(exc: httpx.TransportError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _capped(timeout: httpx.Timeout, remaining: float | None) -> httpx.Timeout:
    """``timeout`` with no part longer than ``remaining`` seconds (``None``: unchanged)."""
    if remaining is None:
        return timeout
    left = max(remaining, 0.01)

    def cap(value: float | None) -> float:
        return left if value is None else min(value, left)

    return httpx.Timeout(connect=cap(timeout.connect), read=cap(timeout.read),
                         write=cap(timeout.write), pool=cap(timeout.pool))
