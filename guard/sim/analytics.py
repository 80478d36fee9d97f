"""``GET /v1/organizations/analytics/{cost,usage}``: flat rows, ranked, paged (reference §1).

Rows are ``{starting_at, ending_at, group, cost | usage}``; ``group`` has every key, null unless
grouped. Only (bucket, combination) pairs with cost or usage come back: no empty buckets. In
these rows the default workspace has its real id, keyless usage has ``api_key_id: null``, an
unset geo is ``inference_geo: null``, web-search rows carry the model and key of their usage,
and code execution has neither (``cost_type: "code_execution"``).

A *unit* is one bucket × group without ``cost_type``/``token_type``; its fan-out rows stay
together on one page and count once toward ``limit``. Units are ranked by the metric (``amount``
desc by default) or, with ``order_by=time`` and a width, by bucket (``order``), then by the
default metric descending; ties go by bucket, then by group values.

**Amounts** are computed exactly in Decimal cents (``list_amount`` at list prices of each
usage day with ``price_errors``; ``amount = list_amount × (1 − discount)``) and written with six
decimals, rounded half-even: a sum of written rows may differ from the exact total (say
``SimServer.billed_truth_cents``) by less than 0.000001 cent per row. ``requests`` counts the
group's API requests (code-execution sessions for code execution), ``null`` on fan-out rows.

**Paging** is by units (``guard.sim.cursor``): a token from another query is a 400, one minted
before the data was refreshed (the watermark has moved) a 410: restart from the first page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from guard.sim import params, prices
from guard.sim.analytics_query import (
    COST,
    FAN_OUT,
    GROUP_KEYS,
    ROW_DIMENSIONS,
    AnalyticsQuery,
    parse,
)
from guard.sim.billing import Billing, Export, watermark
from guard.sim.cursor import UnitCache, offset_of, token
from guard.sim.org import SimOrg
from guard.sim.params import Query
from guard.sim.units import Fan, Unit, Values
from guard.sim.usage import ZERO, Counts, SimUsage, add_counts

Json = dict[str, Any]

ANALYTICS_BETA = "analytics-usage-cost-2026-08-24"
_SIX_PLACES = Decimal("0.000001")
_COST_TYPES = ("tokens", "web_search", "code_execution")


@dataclass(frozen=True, slots=True)
class Context:
    """Everything an answer depends on besides the query string."""

    org: SimOrg
    now: datetime
    lag: timedelta
    billing: Billing


def report(query: Query, endpoint: str, context: Context, cache: UnitCache) -> Json:
    """The answer to one analytics request (beta header, HIPAA and availability aside)."""
    request = parse(query, endpoint, context.now)
    mark = watermark(context.now, context.lag)
    key = (endpoint, request.fingerprint(), mark, context.billing.key)
    units = cache.get(key, lambda: build_units(request, context, mark))
    offset = offset_of(params.single(query, "page"), request.fingerprint(), mark)
    page = units[offset:offset + request.limit]
    following = offset + request.limit
    more = following < len(units)
    return {
        "data": [row for unit in page for row in _rows_json(unit, request, context.billing)],
        "has_more": more,
        "next_page": token(following, request.fingerprint(), mark) if more else None,
        "data_refreshed_at": params.iso(mark) if mark > request.requested_start else None,
    }


# --- aggregation -------------------------------------------------------------------------------


def build_units(request: AnalyticsQuery, context: Context, mark: datetime) -> list[Unit]:
    """Every unit of the answer, ranked."""
    export = Export(context.org, mark, context.billing.revision_hours)
    build = _cost_units if request.endpoint == COST else _usage_units
    units = [unit for bounds in request.buckets()
             for unit in build(request, export, context.billing, bounds)]
    return _ranked(units, request)


def row_values(row: SimUsage, default_workspace_id: str) -> Values:
    """A usage row's values of ``ROW_DIMENSIONS`` as the analytics API reports them."""
    geo = None if row.inference_geo == "not_available" else row.inference_geo
    return (row.workspace_id or default_workspace_id, row.api_key_id, row.model,
            row.service_tier, row.context_window, geo, row.speed)


class _Shape:
    """Which values a query keeps and which rows it filters out."""

    def __init__(self, request: AnalyticsQuery) -> None:
        self.kept = tuple(dim in request.group for dim in ROW_DIMENSIONS)
        self.filters = [(ROW_DIMENSIONS.index(key), allowed) for key, allowed in request.filters]
        self.fan = tuple(dim in request.group for dim in FAN_OUT)

    def passes(self, values: Values) -> bool:
        return all(values[index] in allowed for index, allowed in self.filters)

    def project(self, values: Values) -> Values:
        return tuple(value if kept else None for value, kept in zip(values, self.kept,
                                                                    strict=True))

    def fan_of(self, cost_type: str, token_type: str | None) -> Fan:
        return (cost_type if self.fan[0] else None, token_type if self.fan[1] else None)


def _clip(request: AnalyticsQuery, bounds: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    return max(bounds[0], request.start), min(bounds[1], request.end)


def _cost_units(request: AnalyticsQuery, export: Export, billing: Billing,
                bounds: tuple[datetime, datetime]) -> list[Unit]:
    """The bucket's cost per group: tokens summed per group, price line and day first, then
    priced once per sum (exact in Decimal, so the same cents as pricing row by row)."""
    shape = _Shape(request)
    sums = _CostSums(shape)
    default = export.org.default_workspace_id
    for day, rows in export.pieces(*_clip(request, bounds)):
        for row in rows:
            values = row_values(row, default)
            if shape.passes(values):
                sums.take(shape.project(values), row, day)
    totals = sums.priced(billing)
    for session in export.code_executions(*_clip(request, bounds)):
        values = (session.workspace_id or default, None, None, None, None, None, None)
        if shape.passes(values):
            slot = totals.setdefault((shape.project(values),
                                      shape.fan_of("code_execution", None)), [Decimal(0), 0])
            slot[0] += session.cents
            slot[1] += 1
    return _units(bounds, {key: (slot[0], slot[1]) for key, slot in totals.items() if slot[0]},
                  request)


class _CostSums:
    """A cost query's rows summed: tokens per (group, price line, day), requests per fan-out
    row (the first token type a row has tokens of carries its requests, else its web
    searches), web searches per group."""

    def __init__(self, shape: _Shape) -> None:
        self.shape = shape
        self.tokens: dict[tuple[Values, date, prices.PriceLine], list[int]] = {}
        self.requests: dict[tuple[Values, Fan], int] = {}
        self.searches: dict[Values, int] = {}

    def take(self, kept: Values, row: SimUsage, day: date) -> None:
        counts = (row.uncached_input_tokens, row.output_tokens, row.cache_read,
                  row.cache_write_5m, row.cache_write_1h)  # in prices.TOKEN_TYPES order
        if any(counts):
            key = (kept, day, row.line)
            sums = self.tokens.get(key)
            if sums is None:
                self.tokens[key] = list(counts)
            else:
                for i, count in enumerate(counts):
                    sums[i] += count
            first = next(i for i, count in enumerate(counts) if count)
            self._count(kept, self.shape.fan_of("tokens", prices.TOKEN_TYPES[first]),
                        row.requests)
        elif row.web_search_requests:
            self._count(kept, self.shape.fan_of("web_search", None), row.requests)
        if row.web_search_requests:
            self.searches[kept] = self.searches.get(kept, 0) + row.web_search_requests

    def _count(self, kept: Values, fan: Fan, requests: int) -> None:
        self.requests[kept, fan] = self.requests.get((kept, fan), 0) + requests

    def priced(self, billing: Billing) -> dict[tuple[Values, Fan], list[Any]]:
        """``[cents, requests]`` per (group, fan-out row)."""
        totals: dict[tuple[Values, Fan], list[Any]] = {}
        fan_of = self.shape.fan_of
        for (kept, day, line), sums in self.tokens.items():
            for token_type, count in zip(prices.TOKEN_TYPES, sums, strict=True):
                if count:
                    slot = totals.setdefault((kept, fan_of("tokens", token_type)),
                                             [Decimal(0), 0])
                    slot[0] += billing.line_cents(line, token_type, count, day)
        for kept, count in self.searches.items():
            slot = totals.setdefault((kept, fan_of("web_search", None)), [Decimal(0), 0])
            slot[0] += prices.web_search_cents(count)
        for key, count in self.requests.items():
            totals.setdefault(key, [Decimal(0), 0])[1] += count
        return totals


def _usage_units(request: AnalyticsQuery, export: Export, _: Billing,
                 bounds: tuple[datetime, datetime]) -> list[Unit]:
    shape = _Shape(request)
    totals: dict[tuple[Values, Fan], Counts] = {}
    default = export.org.default_workspace_id
    for _day, rows in export.pieces(*_clip(request, bounds)):
        for row in rows:
            values = row_values(row, default)
            if shape.passes(values):
                key = (shape.project(values), (None, None))
                totals[key] = add_counts(totals.get(key, ZERO), row.counts)
    return _units(bounds, {key: counts for key, counts in totals.items() if any(counts[:6])},
                  request)


def _units(bounds: tuple[datetime, datetime], totals: dict[tuple[Values, Fan], Any],
           request: AnalyticsQuery) -> list[Unit]:
    grouped: dict[Values, list[tuple[Fan, Any]]] = {}
    for (values, fan), metrics in totals.items():
        grouped.setdefault(values, []).append((fan, metrics))
    metric = _METRICS[request.metric]
    units = []
    for values, rows in grouped.items():
        rows.sort(key=lambda row: _fan_order(row[0]))
        rows.sort(key=lambda row: metric(row[1]), reverse=True)
        rank = sum((metric(m) for _, m in rows), Decimal(0))
        units.append(Unit(bounds[0], bounds[1], values, tuple(rows), rank))
    return units


def _fan_order(fan: Fan) -> tuple[int, int]:
    cost_type, token_type = fan
    return (_COST_TYPES.index(cost_type) if cost_type else -1,
            prices.TOKEN_TYPES.index(token_type) if token_type else -1)


def total_tokens(counts: Counts) -> int:
    """Every token of a usage total (uncached, cache writes, cache reads, output)."""
    return sum(counts[:5])


_METRICS: dict[str, Callable[[Any], Decimal | int]] = {
    "amount": lambda m: m[0],
    "list_amount": lambda m: m[0],  # amount is list_amount times one constant: same order
    "total_tokens": total_tokens,
    "output_tokens": lambda c: c[4],
    "uncached_input_tokens": lambda c: c[0],
    "requests": lambda c: c[6],
}


def _ranked(units: list[Unit], request: AnalyticsQuery) -> list[Unit]:
    ordered = sorted(units, key=lambda unit: (unit.start, _values_order(unit.values)))
    ordered.sort(key=lambda unit: unit.rank, reverse=request.by_time or request.descending)
    if request.by_time:
        ordered.sort(key=lambda unit: unit.start, reverse=request.descending)
    return ordered


def _values_order(values: Values) -> tuple[tuple[bool, str], ...]:
    return tuple((value is None, value or "") for value in values)


# --- JSON --------------------------------------------------------------------------------------


def _rows_json(unit: Unit, request: AnalyticsQuery, billing: Billing) -> list[Json]:
    rows = []
    start, end = _iso(unit.start), _iso(unit.end)
    for fan, metrics in unit.rows:
        row: Json = {"starting_at": start, "ending_at": end,
                     "group": _group_json(unit.values, fan, request)}
        if request.endpoint == COST:
            row["cost"] = _cost_json(metrics, billing, request.fans_out)
        else:
            row["usage"] = usage_json(metrics)
        rows.append(row)
    return rows


@functools.lru_cache(maxsize=1024)
def _iso(moment: datetime) -> str:
    """``params.iso``, remembered: a page's rows share a few bucket bounds."""
    return params.iso(moment)


_COST_GROUP = dict.fromkeys(GROUP_KEYS)
_USAGE_GROUP = dict.fromkeys(k for k in GROUP_KEYS if k not in FAN_OUT)


def _group_json(values: Values, fan: Fan, request: AnalyticsQuery) -> Json:
    group: Json = dict(_COST_GROUP if request.endpoint == COST else _USAGE_GROUP)
    group.update(zip(ROW_DIMENSIONS, values, strict=True))
    if request.endpoint == COST:
        group.update(zip(FAN_OUT, fan, strict=True))
    return group


def cents_text(cents: Decimal) -> str:
    """Fractional cents as the analytics API writes them: six decimals (``"530.000000"``)."""
    return format(cents.quantize(_SIX_PLACES), "f")


def _cost_json(metrics: tuple[Decimal, int], billing: Billing, fans_out: bool) -> Json:
    list_cents, requests = metrics
    return {"amount": cents_text(billing.billed(list_cents)), "currency": "USD",
            "list_amount": cents_text(list_cents), "requests": None if fans_out else requests}


def usage_json(counts: Counts) -> Json:
    """A usage row's ``usage`` object."""
    return {"cache_creation": {"ephemeral_1h_input_tokens": counts[2],
                               "ephemeral_5m_input_tokens": counts[1]},
            "cache_read_input_tokens": counts[3], "output_tokens": counts[4],
            "requests": counts[6], "server_tool_use": {"web_search_requests": counts[5]},
            "total_tokens": total_tokens(counts), "uncached_input_tokens": counts[0]}
