"""What is settled, what is due, and how fetched buckets become priced rows. Pure.

Settled data is never fetched twice. As of ``at``, a refresh re-reads only:

- usage hours not yet settled: an hour is read as 1-minute buckets ending at the minute of
  ``at`` until a read ``late_window`` after it ended (normally the current hour and, in its
  first minutes, the previous one; a daemon reads again only the minutes not final,
  ``guard.core.window``), then once more ``usage_revision`` later as one 1-hour bucket. The
  in-progress hour is never stored; a gap longer than ``minute_window_max`` is backfilled
  with 1-hour buckets first;
- cost days not yet final (a closed day is re-read about hourly for ``cost_final_after``, and
  once more after ``cost_settle``, when it becomes authoritative).

``guard.shell.sync`` reads what ``plan_usage`` and ``due_cost_days`` say, prices it here, and
writes it to the caches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from guard.core.model import CostBucket, CostDay, PricedUsage, UsageBucket
from guard.core.period import (
    DAY,
    HOUR,
    day_start,
    floor_day,
    floor_hour,
    floor_minute,
    hours_between,
    month_start,
    next_month,
)
from guard.core.pricing import PriceTable

_CENTS = Decimal(100)
ZERO = Decimal(0)
_Key = tuple[datetime, str | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """How long data takes to settle and how often unsettled data is re-read."""

    late_window: timedelta = timedelta(minutes=10)
    usage_revision: timedelta = timedelta(hours=1)
    """A complete hour is read once more this long after it settled: late revisions."""
    cost_settle: timedelta = timedelta(minutes=30)
    cost_final_after: timedelta = timedelta(days=3)
    cost_refresh: timedelta = timedelta(hours=1)
    cost_restated_until: timedelta = timedelta(days=7)
    """How long after its month ends a cost day can still be restated (reference §1.6)."""
    cost_restate_refresh: timedelta = timedelta(days=1)
    """How often a day past ``cost_final_after`` is read again while it can be restated."""
    minute_window_max: timedelta = timedelta(hours=2)
    hourly_page_buckets: int = 24
    cost_page_buckets: int = 3
    usage_history: timedelta = timedelta(days=14)
    cost_history: timedelta = timedelta(weeks=8)
    recent: timedelta = timedelta(hours=7)

    def usage_from(self, at: datetime) -> datetime:
        """Where the usage a snapshot needs starts: two weeks before the month."""
        return floor_day(month_start(at) - self.usage_history)

    def cost_from(self, at: datetime) -> date:
        """The first cost day a snapshot needs: the month, and at least eight weeks back."""
        return min(month_start(at).date(), (at - self.cost_history).date())

    def hour_settled(self, hour: datetime, fetched_at: datetime | None) -> bool:
        """Whether a stored usage hour was read late enough to be final: after its late
        rows, and once more an hour later for revisions."""
        return fetched_at is not None and fetched_at >= (
            hour + HOUR + self.late_window + self.usage_revision)

    def hour_read_late(self, hour: datetime, fetched_at: datetime | None) -> bool:
        """Whether a stored usage hour was read after its late rows (``late_window``)."""
        return fetched_at is not None and fetched_at >= hour + HOUR + self.late_window

    def hour_due(self, hour: datetime, fetched_at: datetime | None, at: datetime) -> bool:
        """Whether a complete hour should be read at ``at``: never read after its late rows
        (then every tick), or due for its one revision read."""
        late = hour + HOUR + self.late_window
        if fetched_at is None or fetched_at < late:
            return True
        return not self.hour_settled(hour, fetched_at) and at >= late + self.usage_revision

    def cost_settled(self, day: date, fetched_at: datetime | None) -> bool:
        """Whether a stored cost day was read late enough to count as billed."""
        return fetched_at is not None and fetched_at >= (
            day_start(day) + DAY + self.cost_settle)

    def cost_due(self, day: date, fetched_at: datetime | None, at: datetime) -> bool:
        """Whether a closed cost day should be read (again) at ``at``."""
        end = day_start(day) + DAY
        if fetched_at is None:
            return True
        if fetched_at >= month_end(day) + self.cost_restated_until:
            return False
        if fetched_at >= end + self.cost_final_after:  # final, unless restated: daily
            return at - fetched_at >= self.cost_restate_refresh
        if not self.cost_settled(day, fetched_at) and at >= end + self.cost_settle:
            return True
        return at - fetched_at >= self.cost_refresh


def month_end(day: date) -> datetime:
    """The end of the UTC month holding ``day``."""
    return next_month(day_start(day))


@dataclass(frozen=True, slots=True)
class UsagePlan:
    """What to read of usage: a 1-hour backfill (if any), then 1-minute buckets to ``through``,
    and complete hours once more for revisions (``revise``, 1-hour buckets).

    ``fresh_from`` is where the minute window starts: everything before it comes from the
    store; ``minutes`` is False when the window is empty.
    """

    backfill: tuple[datetime, datetime] | None
    fresh_from: datetime
    through: datetime
    revise: tuple[tuple[datetime, datetime], ...] = ()

    @property
    def minutes(self) -> bool:
        """Whether the 1-minute window has anything to read."""
        return self.through > self.fresh_from


def plan_usage(start: datetime, at: datetime, fetched: Mapping[datetime, datetime],
               policy: FetchPolicy) -> UsagePlan:
    """What to read of usage in ``[start, at)``, given when each stored hour was read.

    A complete hour is read every tick until a read after its late window (in the minute
    window: it starts at the previous hour in the first minutes of an hour, else at the
    current one), then once more for revisions ``usage_revision`` later, by the hour; in
    between, what is stored stands.
    """
    hour_now, through = floor_hour(at), floor_minute(at)
    hours = hours_between(start, hour_now)
    late = [h for h in hours if not policy.hour_read_late(h, fetched.get(h))]
    first = min(late, default=hour_now)
    revise = _runs([h for h in hours if h < first and policy.hour_due(h, fetched.get(h), at)])
    if hour_now - first > policy.minute_window_max:
        return UsagePlan((first, hour_now), hour_now, through, revise)
    return UsagePlan(None, first, through, revise)


def _runs(hours: Sequence[datetime]) -> tuple[tuple[datetime, datetime], ...]:
    """Consecutive hours as ``[start, end)`` ranges."""
    runs: list[tuple[datetime, datetime]] = []
    for hour in hours:
        if runs and runs[-1][1] == hour:
            runs[-1] = (runs[-1][0], hour + HOUR)
        else:
            runs.append((hour, hour + HOUR))
    return tuple(runs)


def due_cost_days(closed: Sequence[date], fetched: Mapping[date, datetime],
                  at: datetime, policy: FetchPolicy) -> list[date]:
    """The closed days whose cost report should be read at ``at``."""
    return [d for d in closed if policy.cost_due(d, fetched.get(d), at)]


def settled_days(closed: Sequence[date], fetched: Mapping[date, datetime],
                 policy: FetchPolicy) -> list[date]:
    """The closed days whose stored cost counts as billed."""
    return [d for d in closed if policy.cost_settled(d, fetched.get(d))]


def complete_hours(buckets: Sequence[UsageBucket], at: datetime) -> set[datetime]:
    """Hours before ``at``'s hour that 1-minute ``buckets`` cover entirely (60 buckets)."""
    minutes: dict[datetime, int] = defaultdict(int)
    for bucket in buckets:
        minutes[floor_hour(bucket.starting_at)] += 1
    hour_now = floor_hour(at)
    return {h for h, n in minutes.items() if h < hour_now and n == 60}


_Acc = list[Any]
"""[token_usd, web_search_usd, input, cache_write, cache_read, output, web_search_requests]:
a plain list, the cheapest accumulator for the thousands of rows of a minute window."""


def price_buckets(buckets: Iterable[UsageBucket], prices: PriceTable,
                  by_minute: bool = False) -> list[PricedUsage]:
    """Price every row and sum per (hour or minute, workspace, API key, model)."""
    sums: dict[_Key, _Acc] = {}
    for bucket in buckets:
        start = bucket.starting_at if by_minute else floor_hour(bucket.starting_at)
        day = start.date()
        for row in bucket.results:
            key = (start, row.workspace_id, row.api_key_id, row.model)
            acc = sums.get(key)
            if acc is None:
                acc = sums[key] = [ZERO, ZERO, 0, 0, 0, 0, 0]
            tokens, searches = prices.price(row, day)
            acc[0] += tokens
            acc[1] += searches
            acc[2] += row.uncached_input_tokens
            acc[3] += row.cache_write_5m_tokens + row.cache_write_1h_tokens
            acc[4] += row.cache_read_input_tokens
            acc[5] += row.output_tokens
            acc[6] += row.web_search_requests
    return [_priced(key, acc) for key, acc in sums.items()]


def by_hour(rows: Iterable[PricedUsage]) -> list[PricedUsage]:
    """Sum finer-grained priced rows per (hour, workspace, API key, model)."""
    sums: dict[_Key, _Acc] = {}
    hours: dict[datetime, datetime] = {}
    for row in rows:
        hour = hours.get(row.start)
        if hour is None:
            hour = hours[row.start] = floor_hour(row.start)
        key = (hour, row.workspace_id, row.api_key_id, row.model)
        acc = sums.get(key)
        if acc is None:
            acc = sums[key] = [ZERO, ZERO, 0, 0, 0, 0, 0]
        accumulate(acc, row)
    return [_priced(key, acc) for key, acc in sums.items()]


def accumulate(acc: list[Any], row: PricedUsage) -> None:
    """Add ``row``'s dollars and counts to ``acc`` ([token_usd, web_search_usd, input,
    cache_write, cache_read, output, web_search_requests], as ``price_buckets`` lays out)."""
    acc[0] += row.token_usd
    acc[1] += row.web_search_usd
    acc[2] += row.input_tokens
    acc[3] += row.cache_write_tokens
    acc[4] += row.cache_read_tokens
    acc[5] += row.output_tokens
    acc[6] += row.web_search_requests


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


def _priced(key: _Key, acc: _Acc) -> PricedUsage:
    hour, workspace_id, api_key_id, model = key
    tok, web, inp, cache_write, cache_read, out, searches = acc
    return PricedUsage(hour, workspace_id, api_key_id, model, tok, web, inp, cache_write,
                       cache_read, out, searches)
