"""JSON → typed dataclasses for the Admin API, with errors that say where.

A payload that does not match the documented schema raises ``MalformedResponse`` naming the
report, the bucket, the result and the field ("cost_report bucket 3, result 2: `amount` is not
a decimal"). Nothing here ever turns a bad value into zero.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from guard.core.limits import ProviderLimit
from guard.core.model import (
    ApiKey,
    BilledCost,
    CostBucket,
    CostRow,
    UsageBucket,
    UsageRow,
    Workspace,
)
from guard.errors import MalformedResponse

T = TypeVar("T")
MAX_CENTS = Decimal(10**10)
"""The largest amount one row may hold ($100 million): more is not a real bill, and would
overflow the store's integer units when summed."""
MAX_COUNT = 10**12
"""The largest token or request count one row may hold (a trillion)."""
_DIMENSIONS = ("model", "workspace_id", "api_key_id", "service_tier", "context_window",
               "inference_geo", "speed")
_COST_FIELDS = ("cost_type", "description", "model", "token_type", "service_tier",
                "context_window", "inference_geo", "workspace_id")


class Where:
    """A location inside a payload, rendered into error messages."""

    def __init__(self, text: str, nested: bool = False) -> None:
        self.text = text
        self.nested = nested

    def __truediv__(self, part: str) -> Where:
        """``cost_report`` / ``bucket 3`` / ``result 2`` → "cost_report bucket 3, result 2"."""
        return Where(f"{self.text}{', ' if self.nested else ' '}{part}", nested=True)

    def fail(self, problem: str) -> MalformedResponse:
        """The error for ``problem`` at this location."""
        return MalformedResponse(f"malformed Admin API response: {self.text}: {problem}")


def envelope(payload: object, where: Where,
             cursor: str) -> tuple[list[Any], bool, str | None]:
    """``data``, ``has_more`` and the ``cursor`` field of a page.

    Reports page with ``next_page``; lists (workspaces, API keys) with ``last_id``.
    """
    obj = _object(payload, where)
    data = _field(obj, "data", list, where)
    has_more = _field(obj, "has_more", bool, where)
    after = _optional(obj, cursor, str, where)
    if has_more and not after:
        raise where.fail(f"`has_more` is true but `{cursor}` is empty")
    return data, has_more, after


def report_page(payload: object,
                where: Where) -> tuple[list[Any], bool, str | None, datetime | None]:
    """An analytics page: ``data``, whether more follow, the cursor, ``data_refreshed_at``.

    ``has_more`` may be null (the SDK then goes by ``next_page``).
    """
    obj = _object(payload, where)
    data = _field(obj, "data", list, where)
    page = _optional(obj, "next_page", str, where)
    has_more = _optional(obj, "has_more", bool, where)
    more = bool(page) if has_more is None else has_more
    if more and not page:
        raise where.fail("`has_more` is true but `next_page` is empty")
    raw = obj.get("data_refreshed_at")
    refreshed = timestamp(raw, where / "`data_refreshed_at`") if raw is not None else None
    return data, more, page, refreshed


def billed_rows(data: Sequence[object], where: Where, first: int = 0) -> list[BilledCost]:
    """Flat ``/analytics/cost`` rows; ``first`` numbers them across pages.

    Rows take a fast path that checks every field inline (a page's timestamps parsed once
    each); only a row that fails it goes through ``billed_row``, which names the row and
    the field.
    """
    times: dict[str, datetime] = {}
    rows = []
    for i, item in enumerate(data):
        try:
            rows.append(_billed_row_fast(item, times))
        except _Slow:
            rows.append(billed_row(item, where / f"row {first + i}"))
    return rows


def _billed_row_fast(payload: object, times: dict[str, datetime]) -> BilledCost:
    """``billed_row`` for a well-formed row, without building error context; ``_Slow`` for
    anything else. ``times`` keeps the timestamps already parsed on this page."""
    if type(payload) is not dict:
        raise _Slow
    group, cost = payload.get("group"), payload.get("cost")
    if type(group) is not dict or type(cost) is not dict or cost.get("currency") != "USD":
        raise _Slow
    start, end = _time_fast(payload.get("starting_at"), times), _time_fast(
        payload.get("ending_at"), times)
    if end <= start:
        raise _Slow
    dims = [group.get(name) for name in ("cost_type", "model", "workspace_id", "api_key_id")]
    for dim in dims:
        if dim is not None and type(dim) is not str:
            raise _Slow
    return BilledCost(start, end, _cents_fast(cost.get("amount")),
                      _cents_fast(cost.get("list_amount")), *dims)


def _time_fast(raw: object, times: dict[str, datetime]) -> datetime:
    if type(raw) is not str:
        raise _Slow
    known = times.get(raw)
    if known is not None:
        return known
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise _Slow from None
    if value.tzinfo is None:
        raise _Slow
    times[raw] = value
    return value


def _cents_fast(raw: object) -> Decimal:
    if type(raw) is not str:
        raise _Slow
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _Slow from None
    if not value.is_finite() or not 0 <= value <= MAX_CENTS:
        raise _Slow
    return value


def billed_row(payload: object, where: Where) -> BilledCost:
    """One analytics cost row; amounts stay in (fractional) cents."""
    obj = _object(payload, where)
    start = timestamp(obj.get("starting_at"), where / "`starting_at`")
    end = timestamp(obj.get("ending_at"), where / "`ending_at`")
    if end <= start:
        raise where.fail("`ending_at` is not after `starting_at`")
    group = _object(_field(obj, "group", dict, where), where / "`group`")
    cost = _object(_field(obj, "cost", dict, where), where / "`cost`")
    currency = _field(cost, "currency", str, where)
    if currency != "USD":
        raise where.fail(f"`currency` is {currency!r}; only USD is supported")
    dims = {name: _optional(group, name, str, where / "`group`")
            for name in ("cost_type", "model", "workspace_id", "api_key_id")}
    return BilledCost(starting_at=start, ending_at=end,
                      amount_cents=_decimal(cost, "amount", where),
                      list_cents=_decimal(cost, "list_amount", where), **dims)


def _decimal(obj: Mapping[str, Any], name: str, where: Where) -> Decimal:
    """A finite decimal string field of cents, from 0 to ``MAX_CENTS``: no documented amount
    is negative, and a negative one would lower spend and so relax the fallback."""
    raw = _field(obj, name, str, where)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise where.fail(f"`{name}` is not a decimal: {raw[:40]!r}") from None
    if not value.is_finite():
        raise where.fail(f"`{name}` is not a finite decimal: {raw[:40]!r}")
    if value < 0:
        raise where.fail(f"`{name}` is negative: {raw[:40]!r}")
    if value > MAX_CENTS:
        raise where.fail(f"`{name}` is {raw[:40]!r} cents, over ${MAX_CENTS / 100:,.0f} "
                         "for one row: not a real amount")
    return value


Seen = dict[tuple[object, object], tuple[object, UsageBucket]]
"""Buckets as parsed, by their ``(starting_at, ending_at)`` as sent: the ``results`` they
were parsed from, as decoded, and the bucket."""


def usage_buckets(data: Sequence[object], where: Where, first: int = 0, *,
                  seen: Seen | None = None, keep: Seen | None = None,
                  keep_from: datetime | None = None) -> list[UsageBucket]:
    """Usage buckets; ``first`` numbers the buckets across pages.

    Rows take a fast path that checks each field's type and range inline; only a row that
    fails it goes through ``usage_row``, which names the bucket, the row and the field.
    A bucket sent exactly as one in ``seen`` (its bounds and every result equal, compared
    as decoded) is that bucket again, not parsed twice: a steady tick reads the same late
    minutes again and again. ``keep`` collects the buckets of this read that start at or
    after ``keep_from`` (those that will be read again) for the next.
    """
    buckets = []
    for i, item in enumerate(data):
        raw = item if type(item) is dict else {}  # not an object: ``_bucket`` says so
        key, results = (raw.get("starting_at"), raw.get("ending_at")), raw.get("results")
        known = seen.get(key) if seen is not None else None
        if known is not None and known[0] == results:
            bucket = known[1]
        else:
            bucket = _bucket(item, where / f"bucket {first + i}", usage_row, UsageBucket,
                             fast=_usage_row_fast)
        if keep is not None and (keep_from is None or bucket.starting_at >= keep_from):
            keep[key] = (results, bucket)
        buckets.append(bucket)
    return buckets


class _Slow(Exception):
    """A row the fast path does not vouch for: the checked path says what is wrong."""


def _usage_row_fast(payload: object) -> UsageRow:
    """``usage_row`` for a well-formed row, without building error context; ``_Slow`` for
    anything else (the caller then parses it the checked way)."""
    if type(payload) is not dict:
        raise _Slow
    cache = payload.get("cache_creation")
    tools = payload.get("server_tool_use") or {}
    if type(cache) is not dict or type(tools) is not dict:
        raise _Slow
    searches = tools.get("web_search_requests")
    counts = (payload.get("uncached_input_tokens"), cache.get("ephemeral_5m_input_tokens"),
              cache.get("ephemeral_1h_input_tokens"), payload.get("cache_read_input_tokens"),
              payload.get("output_tokens"), 0 if searches is None else searches)
    for count in counts:
        if type(count) is not int or not 0 <= count <= MAX_COUNT:
            raise _Slow
    dims = [payload.get(name) for name in _DIMENSIONS]
    for dim in dims:
        if dim is not None and type(dim) is not str:
            raise _Slow
    return UsageRow(*counts, *dims)  # type: ignore[arg-type]


def cost_buckets(data: Sequence[object], where: Where, first: int = 0) -> list[CostBucket]:
    """Cost buckets; ``first`` numbers the buckets across pages."""
    return [_bucket(item, where / f"bucket {first + i}", cost_row, CostBucket)
            for i, item in enumerate(data)]


def usage_row(payload: object, where: Where) -> UsageRow:
    """One usage result."""
    obj = _object(payload, where)
    cache = _object(_field(obj, "cache_creation", dict, where), where / "`cache_creation`")
    tools = obj.get("server_tool_use") or {}
    tools = _object(tools, where / "`server_tool_use`")
    dims = {name: _optional(obj, name, str, where) for name in _DIMENSIONS}
    return UsageRow(
        uncached_input_tokens=_count(obj, "uncached_input_tokens", where),
        cache_write_5m_tokens=_count(cache, "ephemeral_5m_input_tokens", where),
        cache_write_1h_tokens=_count(cache, "ephemeral_1h_input_tokens", where),
        cache_read_input_tokens=_count(obj, "cache_read_input_tokens", where),
        output_tokens=_count(obj, "output_tokens", where),
        web_search_requests=_count(tools, "web_search_requests", where, default=0),
        **dims,
    )


def cost_row(payload: object, where: Where) -> CostRow:
    """One cost result; ``amount`` stays in cents."""
    obj = _object(payload, where)
    amount = _decimal(obj, "amount", where)
    currency = _field(obj, "currency", str, where)
    if currency != "USD":
        raise where.fail(f"`currency` is {currency!r}; only USD is supported")
    fields = {name: _optional(obj, name, str, where) for name in _COST_FIELDS}
    return CostRow(amount_cents=amount, currency=currency, **fields)


def workspace(payload: object, where: Where) -> Workspace:
    """One workspace object."""
    obj = _object(payload, where)
    archived = _optional(obj, "archived_at", str, where)
    return Workspace(id=_field(obj, "id", str, where), name=_field(obj, "name", str, where),
                     archived_at=timestamp(archived, where / "`archived_at`") if archived else None)


def api_key(payload: object, where: Where) -> ApiKey:
    """One API key object; the workspace comes from ``scope`` (or the deprecated field)."""
    obj = _object(payload, where)
    scope = obj.get("scope")
    workspace_id = scope.get("workspace_id") if isinstance(scope, dict) else None
    if workspace_id is None:
        workspace_id = _optional(obj, "workspace_id", str, where)
    return ApiKey(id=_field(obj, "id", str, where), name=_field(obj, "name", str, where),
                  status=_field(obj, "status", str, where), workspace_id=workspace_id)


_CENTS = re.compile(r"[0-9]{1,15}")
SPEND_LIMIT_PERIODS = ("daily", "weekly", "monthly")


def spend_limit(payload: object, where: Where) -> ProviderLimit:
    """One ``spend_limit`` object (reference §7.3): ``amount`` in integer cents or null."""
    obj = _object(payload, where)
    scope = _object(obj.get("scope"), where / "`scope`")
    kind = _field(scope, "type", str, where / "`scope`")
    workspace_id = _field(scope, "workspace_id", str, where / "`scope`") \
        if kind == "workspace" else None
    raw = obj.get("amount")
    if raw is not None and not (isinstance(raw, str) and _CENTS.fullmatch(raw)):
        raise where.fail(f"`amount` is not a whole number of cents: {str(raw)[:40]!r}")
    period = _field(obj, "period", str, where)
    if period not in SPEND_LIMIT_PERIODS:
        raise where.fail(f"`period` is not one of {', '.join(SPEND_LIMIT_PERIODS)}: "
                         f"{period[:40]!r}")
    return ProviderLimit(
        id=_field(obj, "id", str, where), scope=kind, workspace_id=workspace_id,
        amount_usd=Decimal(raw) / 100 if raw is not None else None, period=period,
        enabled=_field(obj, "is_enabled", bool, where),
        currency=_field(obj, "currency", str, where))


def timestamp(raw: object, where: Where) -> datetime:
    """An RFC 3339 timestamp with a zone."""
    if not isinstance(raw, str):
        raise where.fail(f"expected an RFC 3339 timestamp, got {type(raw).__name__}")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise where.fail(f"not an RFC 3339 timestamp: {raw[:40]!r}") from None
    if value.tzinfo is None:
        raise where.fail(f"timestamp has no zone: {raw[:40]!r}")
    return value


def _bucket(payload: object, where: Where, parse: Callable[[object, Where], Any],
            make: Callable[..., T], fast: Callable[[object], Any] | None = None) -> T:
    obj = _object(payload, where)
    start = timestamp(obj.get("starting_at"), where / "`starting_at`")
    end = timestamp(obj.get("ending_at"), where / "`ending_at`")
    if end <= start:
        raise where.fail("`ending_at` is not after `starting_at`")
    rows = _field(obj, "results", list, where)
    if fast is None:
        results = tuple(parse(row, where / f"result {i}") for i, row in enumerate(rows))
        return make(starting_at=start, ending_at=end, results=results)
    parsed = []
    for i, row in enumerate(rows):
        try:
            parsed.append(fast(row))
        except _Slow:
            parsed.append(parse(row, where / f"result {i}"))
    return make(starting_at=start, ending_at=end, results=tuple(parsed))


def _object(payload: object, where: Where) -> Mapping[str, Any]:
    if not isinstance(payload, dict):
        raise where.fail(f"expected an object, got {type(payload).__name__}")
    return payload


def _field(obj: Mapping[str, Any], name: str, kind: type[T], where: Where) -> T:
    if name not in obj:
        raise where.fail(f"`{name}` is missing")
    value = obj[name]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise where.fail(f"`{name}` is not a {kind.__name__}: {str(value)[:40]!r}")
    return value


def _optional(obj: Mapping[str, Any], name: str, kind: type[T], where: Where) -> T | None:
    value = obj.get(name)
    if value is None:
        return None
    return _field(obj, name, kind, where)


def _magnitude(value: int) -> str:
    """A huge integer in a few characters (no float can hold one over ~1.8e308)."""
    digits = len(str(value))
    return f"{value:.3g}" if digits <= 300 else f"a {digits}-digit number"


def _count(obj: Mapping[str, Any], name: str, where: Where, default: int | None = None) -> int:
    if default is not None and obj.get(name) is None:
        return default
    value = _field(obj, name, int, where)
    if value < 0:
        raise where.fail(f"`{name}` is negative: {value}")
    if value > MAX_COUNT:
        raise where.fail(f"`{name}` is {_magnitude(value)}, over {MAX_COUNT:.0e} for one "
                         "row: not a real count")
    return value
