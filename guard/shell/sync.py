"""Incremental fetching: bring the store up to date as of ``at``, cheaply.

Settled data is never fetched twice. Each refresh re-reads only:

- usage hours not yet settled (an hour settles once it was read ``late_window`` after it ended;
  normally the current hour and, in its first minutes, the previous one), as 1-minute buckets
  ending at the minute of ``at``: one request. The in-progress hour is never stored;
- cost days not yet final (a closed day is re-read about hourly for ``cost_final_after``, and
  once more after ``cost_settle``, when it becomes authoritative): one request when due.

A first refresh backfills the month with 1-hour usage buckets a day per page and cost a few
days per page, so memory stays flat however large the organization is. No data after ``at``
is ever requested.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from guard.adapters.admin.client import AdminClient
from guard.adapters.store.engine import Store
from guard.core.model import CostBucket, CostDay, PricedUsage, UsageBucket
from guard.core.period import (
    DAY,
    HOUR,
    day_start,
    days_between,
    floor_day,
    floor_hour,
    floor_minute,
    hours_between,
    month_start,
)
from guard.core.pricing import PriceTable

COST_GROUP_BY = ("workspace_id", "description")
WATERMARK = "usage_read_through"
_CENTS = Decimal(100)


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """How long data takes to settle and how often unsettled data is re-read."""

    late_window: timedelta = timedelta(minutes=10)
    cost_settle: timedelta = timedelta(minutes=30)
    cost_final_after: timedelta = timedelta(days=3)
    cost_refresh: timedelta = timedelta(hours=1)
    minute_window_max: timedelta = timedelta(hours=2)
    hourly_page_buckets: int = 24
    cost_page_buckets: int = 3
    usage_history: timedelta = timedelta(days=14)
    cost_history: timedelta = timedelta(weeks=8)
    recent: timedelta = timedelta(hours=7)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the ledger and the forecast need, as of ``at``.

    ``settled``: the cost report of settled days, this month and ≥ 8 weeks back.
    ``usage``: priced usage per day from ``usage_from`` (two weeks before the month), the
    fresh window per hour. ``recent_hours`` (stored, per hour) and ``recent_minutes`` (the
    fresh window, per minute) cover the last hours, for burn rates. ``hourly``: organization
    spend per hour over two weeks, for the profile.
    """

    at: datetime
    settled: dict[date, CostDay]
    usage: list[PricedUsage]
    data_through: datetime | None
    api_requests: int
    usage_from: date | None = None
    recent_hours: list[PricedUsage] = field(default_factory=list)
    recent_minutes: list[PricedUsage] = field(default_factory=list)
    hourly: dict[datetime, Decimal] = field(default_factory=dict)


@dataclass
class _Sums:
    token_usd: Decimal = Decimal(0)
    web_search_usd: Decimal = Decimal(0)
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])


class Fetcher:
    """Keeps the store's usage and cost caches current and assembles a ``Snapshot``."""

    def __init__(self, client: AdminClient, store: Store, prices: PriceTable,
                 policy: FetchPolicy | None = None) -> None:
        self.client = client
        self.store = store
        self.prices = prices
        self.policy = policy or FetchPolicy()

    def refresh(self, at: datetime, api_keys: Collection[str] | None = None) -> Snapshot:
        """Fetch what is missing or unsettled as of ``at`` and return the month's data.

        With ``api_keys`` (the keys budgets name), stored usage of other keys comes back summed
        under no key, which keeps every other total exact and the snapshot small.
        """
        before = self.client.requests
        usage_from = self._usage_from(at)
        fresh_from, minutes = self._refresh_usage(usage_from, at)
        settled = self._refresh_cost(self._cost_from(at), at)
        self._advance_watermark(floor_minute(at))
        return self._assemble(at, settled, usage_from=usage_from, fresh_from=fresh_from,
                              minutes=minutes, api_keys=api_keys, through=floor_minute(at),
                              requests=self.client.requests - before)

    def cached(self, at: datetime, api_keys: Collection[str] | None = None) -> Snapshot:
        """The month's data as the store has it, without a single request (an outage).

        ``data_through`` is the stored watermark, so staleness shows; nothing is invented for
        the hours that could not be read.
        """
        usage_from = self._usage_from(at)
        known = self.store.get_meta(WATERMARK)
        through = min(datetime.fromisoformat(known), at) if known else None
        closed = days_between(self._cost_from(at), at.date())
        fetched = self.store.cost_fetched(closed[0], closed[-1]) if closed else {}
        settled_days = [d for d in closed if self._cost_settled(d, fetched.get(d))]
        settled = self.store.cost_days(settled_days) if settled_days else {}
        fresh_from = min(floor_hour(at), floor_hour(through)) if through else usage_from
        return self._assemble(at, settled, usage_from=usage_from, fresh_from=fresh_from,
                              minutes=[], api_keys=api_keys, through=through, requests=0)

    def _usage_from(self, at: datetime) -> datetime:
        return floor_day(month_start(at) - self.policy.usage_history)

    def _cost_from(self, at: datetime) -> date:
        return min(month_start(at).date(), (at - self.policy.cost_history).date())

    def _assemble(self, at: datetime, settled: dict[date, CostDay], *, usage_from: datetime,
                  fresh_from: datetime, minutes: list[PricedUsage],
                  api_keys: Collection[str] | None, through: datetime | None,
                  requests: int) -> Snapshot:
        fresh = _by_hour(minutes)
        usage = self.store.usage_by_day(usage_from, fresh_from, api_keys) + fresh
        recent_from = max(usage_from, floor_hour(at - self.policy.recent))
        recent = self.store.usage_by_hour(recent_from, fresh_from, api_keys)
        hourly = self.store.hourly_totals(max(usage_from, floor_day(at) - 14 * DAY), fresh_from)
        for row in fresh:
            hourly[row.start] = hourly.get(row.start, Decimal(0)) + row.usd
        return Snapshot(at=at, settled=settled, usage=usage, data_through=through,
                        api_requests=requests, usage_from=usage_from.date(),
                        recent_hours=recent, recent_minutes=minutes, hourly=hourly)

    def _advance_watermark(self, through: datetime) -> None:
        """Record how far usage has been read, never moving it back (``--at`` in the past)."""
        known = self.store.get_meta(WATERMARK)
        if known is None or datetime.fromisoformat(known) < through:
            self.store.set_meta(WATERMARK, through.isoformat())

    # --- usage -------------------------------------------------------------------------------

    def _refresh_usage(self, start: datetime,
                       at: datetime) -> tuple[datetime, list[PricedUsage]]:
        """Re-read unsettled hours; return where the fresh minute window starts, and its rows.

        Complete hours of the window are stored; the in-progress hour never is. The ledger takes
        the window from the fresh rows and everything before it from the store.
        """
        hour_now, through = floor_hour(at), floor_minute(at)
        fetched = self.store.usage_fetched(start, hour_now)
        unsettled = [h for h in hours_between(start, hour_now)
                     if not self._hour_settled(h, fetched.get(h))]
        first = min(unsettled, default=hour_now)
        if hour_now - first > self.policy.minute_window_max:
            self._backfill_hours(first, hour_now, at)
            first = hour_now
        if through <= first:
            return first, []
        return first, self._read_minutes(first, through, at)

    def _hour_settled(self, hour: datetime, fetched_at: datetime | None) -> bool:
        return fetched_at is not None and fetched_at >= hour + HOUR + self.policy.late_window

    def _backfill_hours(self, first: datetime, end: datetime, at: datetime) -> None:
        pages = self.client.usage_pages(first, end, "1h",
                                        page_buckets=self.policy.hourly_page_buckets)
        for buckets in pages:
            hours = [b.starting_at for b in buckets if b.ending_at - b.starting_at == HOUR]
            self.store.replace_usage_hours(hours, self._price(buckets), at)

    def _read_minutes(self, first: datetime, through: datetime,
                      at: datetime) -> list[PricedUsage]:
        """Priced rows per minute of ``[first, through)``; complete hours are also stored."""
        buckets = [b for page in self.client.usage_pages(first, through, "1m") for b in page]
        minutes: dict[datetime, int] = defaultdict(int)
        for bucket in buckets:
            minutes[floor_hour(bucket.starting_at)] += 1
        priced = self._price(buckets, by_minute=True)
        hour_now = floor_hour(at)
        complete = {h for h, n in minutes.items() if h < hour_now and n == 60}
        stored = _by_hour(r for r in priced if floor_hour(r.start) in complete)
        self.store.replace_usage_hours(complete, stored, at)
        return priced

    def _price(self, buckets: Iterable[UsageBucket],
               by_minute: bool = False) -> list[PricedUsage]:
        """Price every row and sum per (hour or minute, workspace, API key, model)."""
        sums: dict[tuple[datetime, str | None, str | None, str | None], _Sums] = {}
        for bucket in buckets:
            start = bucket.starting_at if by_minute else floor_hour(bucket.starting_at)
            for row in bucket.results:
                key = (start, row.workspace_id, row.api_key_id, row.model)
                acc = sums.get(key) or sums.setdefault(key, _Sums())
                tokens, searches = self.prices.price(row)
                acc.token_usd += tokens
                acc.web_search_usd += searches
                c = acc.counts
                c[0] += row.uncached_input_tokens
                c[1] += row.cache_write_5m_tokens + row.cache_write_1h_tokens
                c[2] += row.cache_read_input_tokens
                c[3] += row.output_tokens
                c[4] += row.web_search_requests
        return [_priced(key, acc) for key, acc in sums.items()]

    # --- cost --------------------------------------------------------------------------------

    def _refresh_cost(self, first: date, at: datetime) -> dict[date, CostDay]:
        """Re-read due cost days; return the settled ones."""
        closed = days_between(first, at.date())
        if not closed:
            return {}
        fetched = self.store.cost_fetched(first, closed[-1])
        due = [d for d in closed if self._cost_due(d, fetched.get(d), at)]
        if due:
            for days in self._read_cost(day_start(min(due)), day_start(at.date())):
                self.store.replace_cost_days(days, at)
                fetched.update({d.day: at for d in days})
        settled = [d for d in closed if self._cost_settled(d, fetched.get(d))]
        return self.store.cost_days(settled) if settled else {}

    def _cost_due(self, day: date, fetched_at: datetime | None, at: datetime) -> bool:
        end = day_start(day) + DAY
        if fetched_at is None:
            return True
        if fetched_at >= end + self.policy.cost_final_after:
            return False
        if not self._cost_settled(day, fetched_at) and at >= end + self.policy.cost_settle:
            return True
        return at - fetched_at >= self.policy.cost_refresh

    def _cost_settled(self, day: date, fetched_at: datetime | None) -> bool:
        return fetched_at is not None and fetched_at >= (
            day_start(day) + DAY + self.policy.cost_settle)

    def _read_cost(self, start: datetime, end: datetime) -> Iterator[list[CostDay]]:
        pages = self.client.cost_pages(start, end, COST_GROUP_BY,
                                       page_buckets=self.policy.cost_page_buckets)
        for buckets in pages:
            yield [cost_day(b) for b in buckets if b.ending_at - b.starting_at == DAY]


def _by_hour(rows: Iterable[PricedUsage]) -> list[PricedUsage]:
    """Sum finer-grained priced rows per (hour, workspace, API key, model)."""
    sums: dict[tuple[datetime, str | None, str | None, str | None], _Sums] = {}
    for row in rows:
        key = (floor_hour(row.start), row.workspace_id, row.api_key_id, row.model)
        acc = sums.get(key) or sums.setdefault(key, _Sums())
        acc.token_usd += row.token_usd
        acc.web_search_usd += row.web_search_usd
        for i, n in enumerate((row.input_tokens, row.cache_write_tokens, row.cache_read_tokens,
                               row.output_tokens, row.web_search_requests)):
            acc.counts[i] += n
    return [_priced(key, acc) for key, acc in sums.items()]


def cost_day(bucket: CostBucket) -> CostDay:
    """One day of the cost report (grouped by workspace and description) in dollars."""
    day = CostDay(bucket.starting_at.date())
    by_workspace: dict[str | None, Decimal] = defaultdict(Decimal)
    by_model: dict[str, Decimal] = defaultdict(Decimal)
    for row in bucket.results:
        usd = row.amount_cents / _CENTS
        by_workspace[row.workspace_id] += usd
        if row.cost_type == "tokens" and row.model is not None:
            by_model[row.model] += usd
    day.by_workspace.update(by_workspace)
    day.by_model.update(by_model)
    return day


def _priced(key: tuple[datetime, str | None, str | None, str | None],
            acc: _Sums) -> PricedUsage:
    hour, workspace_id, api_key_id, model = key
    inp, cache_write, cache_read, out, searches = acc.counts
    return PricedUsage(start=hour, workspace_id=workspace_id, api_key_id=api_key_id,
                       model=model, token_usd=acc.token_usd, web_search_usd=acc.web_search_usd,
                       input_tokens=inp, cache_write_tokens=cache_write,
                       cache_read_tokens=cache_read, output_tokens=out,
                       web_search_requests=searches)

