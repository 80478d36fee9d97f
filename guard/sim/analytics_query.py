"""The query of the Usage and Cost Analytics API, validated as reference §1.1 says.

* ``starting_at`` is required, with a zone, not before 2026-01-01T00:00:00Z and within the last
  365 days; ``ending_at`` is exclusive and required when ``time_bucket_width`` is set (otherwise
  it defaults to ``min(now, starting_at + 31 days)``); the range is at most 31 days, and at most
  24 hours with ``1m`` buckets.
* Without a bucket width there is one row per combination for the whole range, both ends
  rounded down to the hour; with one, rows carry their bucket's bounds (UTC-aligned slots) and
  hold the data of the bucket that lies in ``[starting_at, ending_at)``.
* ``group_by[]`` takes every key of the ``group`` object, at most 5 of them not counting
  ``cost_type``/``token_type`` (which only the cost endpoint has).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from guard.sim import params, timegrid
from guard.sim.params import Query, bad_request

COST = "cost"
USAGE = "usage"
FAN_OUT = ("cost_type", "token_type")
"""Cost dimensions whose rows do not count toward ``limit``."""

GROUP_KEYS = ("actor", "actor_type", "agent_id", "api_key_id", "claude_tag_category",
              "claude_tag_user_id", "context_window", "cost_type", "deployment_id",
              "environment_id", "inference_geo", "model", "organization_id", "product",
              "rbac_group_id", "service_tier", "session_id", "slack_channel_id", "speed",
              "token_type", "user_profile_id", "workspace_id")
"""The 22 keys of a cost row's ``group``; a usage row's has all but ``FAN_OUT``."""

ROW_DIMENSIONS = ("workspace_id", "api_key_id", "model", "service_tier", "context_window",
                  "inference_geo", "speed")
"""The group keys the simulator has values for (besides ``FAN_OUT``); the others are null."""

WIDTHS = {"1m": timegrid.MINUTE, "1h": timegrid.HOUR, "1d": timegrid.DAY}
METRICS = {COST: ("amount", "list_amount"),
           USAGE: ("total_tokens", "output_tokens", "requests", "uncached_input_tokens")}
"""Each endpoint's ``order_by`` metrics, the default first (``time`` is accepted too)."""

FILTERS = {"api_key_ids": "api_key_id", "workspace_ids": "workspace_id", "models": "model",
           "speeds": "speed", "service_tiers": "service_tier",
           "context_windows": "context_window", "inference_geos": "inference_geo"}
"""Filter parameter → the group key it matches."""

_ALLOWED = {"speed": ("fast", "standard"),
            "service_tier": ("batch", "flex", "flex_discount", "priority",
                             "priority_on_demand", "standard"),
            "context_window": ("0-200k", "200k-1M"),
            "inference_geo": ("global", "us", "not_available")}
_EARLIEST = datetime(2026, 1, 1, tzinfo=UTC)
_MAX_RANGE = timedelta(days=31)
_MAX_MINUTE_RANGE = timedelta(hours=24)
_HISTORY = timedelta(days=365)
_MAX_GROUPS = 5

Filters = tuple[tuple[str, frozenset[str | None]], ...]
"""``(group key, allowed values)``; ``None`` stands for a null value (keyless usage...)."""


@dataclass(frozen=True, slots=True)
class AnalyticsQuery:
    """One validated analytics request, ``page`` aside.

    ``requested_start`` is ``starting_at`` as sent; ``start``/``end`` bound the data;
    ``buckets`` are the ``(start, end)`` bounds rows may carry, oldest first.
    """

    endpoint: str
    requested_start: datetime
    start: datetime
    end: datetime
    width: timedelta | None
    group: tuple[str, ...]
    filters: Filters
    limit: int
    order_by: str
    descending: bool

    @property
    def fans_out(self) -> bool:
        """Whether rows are split by ``cost_type`` or ``token_type``."""
        return any(key in self.group for key in FAN_OUT)

    @property
    def by_time(self) -> bool:
        """Whether rows are ordered by bucket first (``order_by=time`` with a width)."""
        return self.order_by == "time" and self.width is not None

    @property
    def metric(self) -> str:
        """The metric rows are ranked by (within a bucket when ordered by time)."""
        return METRICS[self.endpoint][0] if self.order_by == "time" else self.order_by

    def buckets(self) -> list[tuple[datetime, datetime]]:
        """The bucket bounds that cover ``[start, end)``."""
        if self.width is None:
            return [(self.start, self.end)] if self.start < self.end else []
        slot = timegrid.floor(self.start, self.width)
        bounds = []
        while slot < self.end:
            bounds.append((slot, slot + self.width))
            slot += self.width
        return bounds

    def fingerprint(self) -> str:
        """A digest of everything that decides the rows and their order (not ``limit``)."""
        text = json.dumps([self.endpoint, params.iso(self.requested_start), self.start.isoformat(),
                           self.end.isoformat(), str(self.width), self.group,
                           [(key, sorted(v or "" for v in allowed))
                            for key, allowed in self.filters],
                           self.order_by, self.descending])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse(query: Query, endpoint: str, now: datetime) -> AnalyticsQuery:
    """Validate an analytics query string; 400 ``invalid_request_error`` says what is wrong."""
    start = params.required_time(query, "starting_at")
    if start < _EARLIEST:
        raise bad_request("starting_at: must not be before 2026-01-01T00:00:00Z")
    if start < now - _HISTORY:
        raise bad_request("starting_at: must be within the last 365 days")
    width = _width(query)
    end = _ending_at(query, start, width, now)
    data_start, data_end = start, end
    if width is None:
        data_start = timegrid.floor(start, timegrid.HOUR)
        data_end = timegrid.floor(end, timegrid.HOUR)
    descending = _order(query)
    return AnalyticsQuery(endpoint, start, data_start, data_end, width,
                          _group(query, endpoint), _filters(query),
                          params.limit(query, 20, 1000), _order_by(query, endpoint), descending)


def _width(query: Query) -> timedelta | None:
    name = params.single(query, "time_bucket_width")
    if name is None:
        return None
    if name not in WIDTHS:
        raise bad_request(f"time_bucket_width: must be one of {', '.join(WIDTHS)}, got {name!r}")
    return WIDTHS[name]


def _ending_at(query: Query, start: datetime, width: timedelta | None,
               now: datetime) -> datetime:
    end = params.optional_time(query, "ending_at")
    if end is None:
        if width is not None:
            raise bad_request("ending_at: required when time_bucket_width is set")
        end = min(now, start + _MAX_RANGE)
    elif end <= start:
        raise bad_request("ending_at: must be after starting_at")
    if end - start > _MAX_RANGE:
        raise bad_request("ending_at: the range may span at most 31 days")
    if width == timegrid.MINUTE and end - start > _MAX_MINUTE_RANGE:
        raise bad_request("ending_at: with time_bucket_width=1m the range may span at most 24 "
                          "hours")
    return end


def _group(query: Query, endpoint: str) -> tuple[str, ...]:
    keys = GROUP_KEYS if endpoint == COST else tuple(k for k in GROUP_KEYS if k not in FAN_OUT)
    group: list[str] = []
    for name in params.values(query, "group_by"):
        if name not in keys:
            raise bad_request(f"group_by: unknown dimension {name!r} for analytics/{endpoint}")
        if name not in group:
            group.append(name)
    if len([name for name in group if name not in FAN_OUT]) > _MAX_GROUPS:
        raise bad_request(f"group_by: at most {_MAX_GROUPS} dimensions, not counting "
                          "cost_type and token_type")
    return tuple(group)


def _filters(query: Query) -> Filters:
    found: list[tuple[str, frozenset[str | None]]] = []
    for name, key in FILTERS.items():
        given = params.values(query, name)
        if not given:
            continue
        for value in given:
            if key in _ALLOWED and value not in _ALLOWED[key]:
                raise bad_request(f"{name}: {value!r} is not one of {', '.join(_ALLOWED[key])}")
        found.append((key, frozenset(_filter_value(key, value) for value in given)))
    return tuple(found)


def _filter_value(key: str, value: str) -> str | None:
    """An empty ``api_key_ids[]`` entry matches keyless usage; ``not_available`` an unset geo."""
    if (key, value) in (("api_key_id", ""), ("inference_geo", "not_available")):
        return None
    return value


def _order_by(query: Query, endpoint: str) -> str:
    name = params.single(query, "order_by") or METRICS[endpoint][0]
    allowed = (*METRICS[endpoint], "time")
    if name not in allowed:
        raise bad_request(f"order_by: must be one of {', '.join(allowed)}, got {name!r}")
    return name


def _order(query: Query) -> bool:
    name = params.single(query, "order") or "desc"
    if name not in ("asc", "desc"):
        raise bad_request(f"order: must be asc or desc, got {name!r}")
    return name == "desc"
