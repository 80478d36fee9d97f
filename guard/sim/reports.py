"""The usage and cost reports, as pure functions of the organization, the query and the view.

A ``View`` is what the server can see: buckets that start at or after ``now`` are not returned,
and data of a minute is visible only once ``minute_end <= cutoff`` (``cutoff = now - lag``), so
the in-progress bucket is partial and the last few minutes are missing, as in the real API.

Grouping or filtering the usage report by ``speed`` needs ``anthropic-beta:
fast-mode-2026-02-01`` (reference §2.1); rows always carry ``speed``, ``null`` unless grouped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from guard.sim import params, timegrid
from guard.sim.costs import cost_results
from guard.sim.org import SimOrg
from guard.sim.params import Query, bad_request
from guard.sim.usage import ZERO, Counts, SimUsage, add_counts

USAGE_WIDTHS = {
    "1m": (timegrid.MINUTE, 60, 1440),
    "1h": (timegrid.HOUR, 24, 168),
    "1d": (timegrid.DAY, 7, 31),
}
"""``bucket_width`` → (width, default limit, maximum limit) of the usage report."""

COST_WIDTHS = {"1d": (timegrid.DAY, 7, 31)}

USAGE_DIMENSIONS = ("model", "workspace_id", "api_key_id", "service_tier", "context_window",
                    "inference_geo", "speed")
NULL_DIMENSIONS = ("account_id", "service_account_id")
"""Accepted in ``group_by[]`` and always ``null``: the simulator has no OAuth users."""

USAGE_FILTERS = {"models": "model", "workspace_ids": "workspace_id", "api_key_ids": "api_key_id",
                 "service_tiers": "service_tier", "context_window": "context_window",
                 "inference_geos": "inference_geo", "speeds": "speed"}
"""Filter parameter → the row attribute it matches."""

FAST_MODE_BETA = "fast-mode-2026-02-01"
"""The beta that grouping or filtering the usage report by ``speed`` needs."""

COST_GROUPS = ("workspace_id", "description")

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class View:
    """The server's notion of now, and the end of the data it has received."""

    now: datetime
    cutoff: datetime


@dataclass(frozen=True, slots=True)
class Plan:
    """The buckets of one page, and where the next page starts."""

    starts: tuple[datetime, ...]
    width: timedelta
    next_start: datetime | None

    def envelope(self, buckets: list[Json]) -> Json:
        """``{data, has_more, next_page}`` around the page's buckets."""
        token = params.page_token(self.next_start) if self.next_start else None
        return {"data": buckets, "has_more": token is not None, "next_page": token}


def plan(query: Query, widths: dict[str, tuple[timedelta, int, int]], now: datetime) -> Plan:
    """Which buckets a page holds: snapped to the width, ``start ≥ starting_at``,
    ``end ≤ ending_at``, starting before ``now``, at most ``limit`` of them."""
    name = params.single(query, "bucket_width") or "1d"
    if name not in widths:
        raise bad_request(f"bucket_width: must be one of {', '.join(widths)}, got {name!r}")
    width, default_limit, max_limit = widths[name]
    count = params.limit(query, default_limit, max_limit)
    start = params.required_time(query, "starting_at")
    end = params.optional_time(query, "ending_at")
    if end is not None and end <= start:
        raise bad_request("ending_at: must be after starting_at")
    first = _first_bucket(query, start, width)

    def fits(bucket: datetime) -> bool:
        return bucket < now and (end is None or bucket + width <= end)

    starts: list[datetime] = []
    bucket = first
    while len(starts) < count and fits(bucket):
        starts.append(bucket)
        bucket += width
    return Plan(tuple(starts), width, bucket if fits(bucket) else None)


def _first_bucket(query: Query, start: datetime, width: timedelta) -> datetime:
    first = timegrid.ceil(start, width)
    page = params.single(query, "page")
    if page is None:
        return first
    resumed = params.parse_page(page)
    if resumed < first or timegrid.floor(resumed, width) != resumed:
        raise bad_request("page: the token does not belong to this query")
    return resumed


def visible(bucket: datetime, width: timedelta, view: View) -> tuple[datetime, datetime]:
    """The part of a bucket whose data the server has received."""
    return bucket, max(bucket, min(bucket + width, view.cutoff))


def bucket_json(start: datetime, width: timedelta, results: list[Json]) -> Json:
    """One ``TimeBucket``."""
    return {"starting_at": params.iso(start), "ending_at": params.iso(start + width),
            "results": results}


# --- usage_report/messages ---------------------------------------------------------------------


def betas(headers: Mapping[str, str]) -> frozenset[str]:
    """The names in the request's ``anthropic-beta`` header (comma-separated)."""
    return frozenset(name.strip() for name in headers.get("anthropic-beta", "").split(",")
                     if name.strip())


def usage_report(org: SimOrg, query: Query, view: View,
                 enabled: frozenset[str] = frozenset()) -> Json:
    """``GET /v1/organizations/usage_report/messages``; ``enabled`` are the request's betas."""
    page = plan(query, USAGE_WIDTHS, view.now)
    group = _usage_group(query)
    if ("speed" in group or params.values(query, "speeds")) and FAST_MODE_BETA not in enabled:
        raise bad_request(f"speed: grouping or filtering by speed requires the "
                          f"'anthropic-beta: {FAST_MODE_BETA}' header")
    filters = [(attr, set(params.values(query, name))) for name, attr in USAGE_FILTERS.items()
               if params.values(query, name)]
    buckets = []
    for start in page.starts:
        rows = _filtered(org.usage(*visible(start, page.width, view)), filters)
        buckets.append(bucket_json(start, page.width, _usage_results(rows, group)))
    return page.envelope(buckets)


def _usage_group(query: Query) -> tuple[str, ...]:
    group = tuple(params.values(query, "group_by"))
    unknown = [g for g in group if g not in USAGE_DIMENSIONS + NULL_DIMENSIONS]
    if unknown:
        raise bad_request(f"group_by: unknown dimension {unknown[0]!r}")
    return group


def _filtered(rows: Iterable[SimUsage], filters: list[tuple[str, set[str]]]) -> Iterator[SimUsage]:
    for row in rows:
        if all(getattr(row, attr) in allowed for attr, allowed in filters):
            yield row


def _usage_results(rows: Iterable[SimUsage], group: tuple[str, ...]) -> list[Json]:
    totals: dict[tuple[str | None, ...], Counts] = {}
    for row in rows:
        key = tuple(getattr(row, d) if d in group else None for d in USAGE_DIMENSIONS)
        totals[key] = add_counts(totals.get(key, ZERO), row.counts)
    ordered = sorted(totals.items(), key=lambda item: sort_key(item[0]))
    return [_usage_item(key, counts) for key, counts in ordered]


def sort_key(key: tuple[str | None, ...]) -> tuple[tuple[bool, str], ...]:
    """Order group keys with ``None`` last in each position."""
    return tuple((part is None, part or "") for part in key)


def _usage_item(key: tuple[str | None, ...], counts: Counts) -> Json:
    return {
        "uncached_input_tokens": counts[0],
        "cache_creation": {"ephemeral_5m_input_tokens": counts[1],
                           "ephemeral_1h_input_tokens": counts[2]},
        "cache_read_input_tokens": counts[3],
        "output_tokens": counts[4],
        "server_tool_use": {"web_search_requests": counts[5]},
        "model": key[0],
        "workspace_id": key[1],
        "api_key_id": key[2],
        "service_tier": key[3],
        "context_window": key[4],
        "inference_geo": key[5],
        "speed": key[6],
        "account_id": None,
        "service_account_id": None,
    }


# --- cost_report -------------------------------------------------------------------------------


def cost_report(org: SimOrg, query: Query, view: View,
                price_errors: Mapping[str, Decimal] | None = None) -> Json:
    """``GET /v1/organizations/cost_report`` (amounts in cents, as decimal strings), at list
    prices of each bucket's day, ``price_errors`` (model → factor) applied to token costs."""
    page = plan(query, COST_WIDTHS, view.now)
    group = tuple(params.values(query, "group_by"))
    unknown = [g for g in group if g not in COST_GROUPS]
    if unknown:
        raise bad_request(f"group_by: cost_report cannot group by {unknown[0]!r}")
    buckets = []
    for start in page.starts:
        since, until = visible(start, page.width, view)
        results = cost_results(org.usage(since, until), org.code_executions(since, until),
                               day=start.date(), price_errors=price_errors,
                               by_workspace="workspace_id" in group,
                               by_description="description" in group,
                               salt=start.toordinal())
        buckets.append(bucket_json(start, page.width, results))
    return page.envelope(buckets)
