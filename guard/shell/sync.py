"""Incremental fetching: bring the caches up to date as of ``at``, cheaply. Plan → read → write.

``guard.core.settle`` says what is due (unsettled usage hours, cost days not yet final); this
module reads exactly that from the Admin API, prices it, writes it to the caches, and
assembles the ``Snapshot`` the tick decides on.

A first refresh backfills the month with 1-hour usage buckets a day per page and cost a few
days per page, so memory stays flat however large the organization is. No data after ``at``
is ever requested.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from guard.core import settle
from guard.core.billed import ANALYTICS, API_PAGE_ROWS, LEGACY, BilledPolicy
from guard.core.kept import Kept
from guard.core.model import CostDay, PricedUsage, Snapshot, UsageBucket
from guard.core.period import (
    DAY,
    HOUR,
    MINUTE,
    day_start,
    days_between,
    floor_day,
    floor_hour,
    floor_minute,
    hours_between,
    month_start,
)
from guard.core.plausible import Bounds, cost_rows, usage_rows
from guard.core.pricing import PriceTable
from guard.core.settle import FetchPolicy, UsagePlan
from guard.core.usage import (
    BILLED,
    COST,
    USAGE,
    Days,
    Period,
    PeriodIndex,
    days_of,
    merged_days,
    periods_of,
)
from guard.core.window import MinuteWindow
from guard.shell.ahead import ahead
from guard.shell.billed import BilledSync, Source, WorkspaceListing, plausible
from guard.shell.directory import DirectorySync
from guard.shell.limits import LimitsSync
from guard.shell.memo import DayMemo
from guard.shell.ports import AdminReports, CachePort
from guard.shell.spare import STEADY_REQUESTS, Spare, may_read

COST_GROUP_BY = ("workspace_id", "description")
DAY_S = 86_400
STEADY_COST_DAYS = 7
"""A cost re-read of at most this many days is one request (the API allows 31 buckets)."""
WATERMARK = "usage_read_through"


@dataclass(frozen=True, slots=True)
class Window:
    """The fresh window's usage as read, summed per hour (the minutes are kept in the
    fetcher's ``MinuteWindow``)."""

    hours: list[PricedUsage] = field(default_factory=list)
    indexes: dict[datetime, PeriodIndex] = field(default_factory=dict)
    """Each hour's index of ``hours`` (the fetcher's unpriced models, keys and workspaces
    apart), kept by the ``MinuteWindow`` while the hour stands."""

    def days(self, picked: Callable[[datetime], bool]) -> dict[date, PeriodIndex]:
        """The indexes of the hours ``picked`` keeps, merged per UTC day."""
        return merged_days(*({hour.date(): index} for hour, index in self.indexes.items()
                             if picked(hour)))


class Unpriced:
    """The models the price table has no card for, as a container."""

    def __init__(self, prices: PriceTable) -> None:
        self.prices = prices
        self._known: dict[str, bool] = {}

    def __contains__(self, model: object) -> bool:
        if not isinstance(model, str):
            return False
        known = self._known.get(model)
        if known is None:
            known = self._known[model] = self.prices.known(model)
        return not known


def _days(start: datetime, end: datetime) -> list[date]:
    """The UTC days ``[start, end)`` touches."""
    if end <= start:
        return []
    first, last = floor_day(start), floor_day(end - MINUTE)
    return [first.date() + DAY * i for i in range((last - first) // DAY + 1)]


class Fetcher:
    """Keeps the usage and cost caches current and assembles a ``Snapshot``."""

    def __init__(self, client: AdminReports, caches: CachePort, prices: PriceTable,
                 policy: FetchPolicy | None = None, *, source: str = LEGACY,
                 billed_policy: BilledPolicy | None = None,
                 workspaces: Collection[str] | None = None,
                 bounds: Bounds | None = None, deadline_s: float | None = None,
                 limits: bool = False) -> None:
        self.workspaces = workspaces
        """The workspaces budgets name (``None``: all): billed rows of others are summed."""
        self.deadline_s = deadline_s
        """All of one refresh's Admin API use (``None``: unbounded)."""
        self.client = client
        self.caches = caches
        self.prices = prices
        self.policy = policy or FetchPolicy()
        self.bounds = bounds or Bounds()
        """What one row may plausibly hold: more is a malformed response, never stored."""
        self.listing = WorkspaceListing(client)
        self.billed = BilledSync(client, caches, source, billed_policy, listing=self.listing,
                                 bounds=self.bounds)
        self.directory = DirectorySync(client, caches, self.listing)
        self.limits = LimitsSync(client, caches) if limits else None
        """Anthropic's spend limits, read when some budget's scope can have one."""
        self.memo = DayMemo(caches)
        """What this fetcher read of the store, per day, while the day has not changed."""
        self.billed.memo = self.memo
        self.unpriced = Unpriced(prices)
        self.window = MinuteWindow(self.policy.late_window)
        """The minutes read, kept between refreshes: only those not final are read again."""
        self._minutes: dict[datetime, UsageBucket] = {}
        """The minute buckets of the last read, as parsed: one the client hands back again
        (unchanged) keeps the rows the window priced from it."""
        self._window_as: tuple[frozenset[str] | None, datetime] | None = None
        """The keys the window's indexes keep apart, and the last ``at`` it took."""
        self.spaces = frozenset(workspaces) if workspaces is not None else None
        self.kept = Kept()
        """Each budget's forecast parts of complete days, while those days stand."""

    def refresh(self, at: datetime, api_keys: Collection[str] | None = None) -> Snapshot:
        """Fetch what is missing or unsettled as of ``at`` and return the month's data.

        With ``api_keys`` (the keys budgets name), stored usage of other keys comes back summed
        under no key, which keeps every other total exact and the snapshot small. Everything
        read counts against ``deadline_s``; past it ``DeadlineExceeded`` ends the refresh,
        and what was stored by then stays.
        """
        with self.client.within(self.deadline_s):
            return self._refresh(at, api_keys)

    def _refresh(self, at: datetime, api_keys: Collection[str] | None) -> Snapshot:
        before = self.client.requests
        spare = Spare(self.client)
        self.caches.ensure_sums(self.prices.known)
        self.listing.fresh = False
        read_through = self.watermark()
        usage_from = self.policy.usage_from(at)
        plan, window, through = self._refresh_usage(usage_from, at, api_keys,
                                                    read=not self._window_waits(at))
        if plan.backfill is not None:
            spare.limit = None  # not a steady tick: nothing waits
        fresh_from = plan.fresh_from
        source = self.billed.refresh(at, spare)
        if source.name == ANALYTICS:
            self.billed.refresh_history(self.policy.cost_from(at), at, spare)
            settled = self.billed.history(self.policy.cost_from(at), at)
        else:
            settled = self._refresh_cost(self.policy.cost_from(at), at, spare)
        self._revise(plan, at, spare)
        self._advance_watermark(through)
        directory = self.directory.refresh(
            at, self.workspaces or (), api_keys or (),
            keep=read_through is None or at >= read_through, spare=spare)
        snapshot = self._assemble(at, settled, usage_from=usage_from, fresh_from=fresh_from,
                                  window=window, api_keys=api_keys, through=through,
                                  requests=self.client.requests - before)
        limits = () if self.limits is None else self.limits.refresh(
            at, keep=read_through is None or at >= read_through, spare=spare)
        snapshot = replace(snapshot, directory=directory, provider_limits=limits,
                           api_requests=self.client.requests - before)
        return self._with_source(snapshot, source, fresh_from, window, api_keys)

    def cached(self, at: datetime, api_keys: Collection[str] | None = None) -> Snapshot:
        """The month's data as the store has it, without a single request (an outage).

        ``data_through`` is the stored watermark, so staleness shows; nothing is invented for
        the hours that could not be read.
        """
        usage_from = self.policy.usage_from(at)
        known = self.caches.get_meta(WATERMARK)
        through = min(datetime.fromisoformat(known), at) if known else None
        source = self.billed.stored()
        if source.name == ANALYTICS:
            settled = self.billed.history(self.policy.cost_from(at), at)
        else:
            closed = days_between(self.policy.cost_from(at), at.date())
            fetched = self.caches.cost_fetched(closed[0], closed[-1]) if closed else {}
            settled = self._stored_cost(settle.settled_days(closed, fetched, self.policy))
        fresh_from = min(floor_hour(at), floor_hour(through)) if through else usage_from
        snapshot = self._assemble(at, settled, usage_from=usage_from, fresh_from=fresh_from,
                                  window=Window(), api_keys=api_keys, through=through,
                                  requests=0)
        snapshot = replace(snapshot, directory=self.directory.stored(),
                           provider_limits=self.limits.stored() if self.limits else ())
        return self._with_source(snapshot, source, fresh_from, Window(), api_keys)

    def _with_source(self, snapshot: Snapshot, source: Source, fresh_from: datetime,
                     window: Window, api_keys: Collection[str] | None) -> Snapshot:
        """The snapshot with its billing source; for analytics, the billed days and the
        estimated tail after them."""
        if source.name != ANALYTICS:
            billed_days = [d for d in snapshot.settled if day_start(d) + DAY <= snapshot.at]
            through = day_start(max(billed_days)) + DAY if billed_days else None
            return replace(snapshot, source=LEGACY, source_note=source.note,
                           billed_through=through)
        at, start = snapshot.at, month_start(snapshot.at)
        stored = self.billed.through()
        through = min(stored, floor_hour(at)) if stored is not None else None
        billed = (self._billed_days(start, through, api_keys)
                  if through is not None and through > start else {})
        since = max(start, through or start)
        keys = self._fold(api_keys)
        stored_tail: Days = (self.memo.span(
            USAGE, "tail", _days(since, fresh_from), (since, fresh_from, keys),
            lambda: days_of(self.caches.usage_rows(since, fresh_from, 3600, api_keys,
                                                   self.workspaces), self.unpriced, keys,
                            self.spaces))
            if fresh_from > since else {})
        tail = merged_days(stored_tail, window.days(lambda hour: hour >= since))
        return replace(snapshot, source=ANALYTICS, billed=billed,
                       billed_through=through, tail=tail,
                       calibration=self.billed.calibration(at))

    def _billed_days(self, start: datetime, through: datetime,
                     api_keys: Collection[str] | None) -> dict[date, PeriodIndex]:
        """Billed cost per day of the month before ``through``: whole days from the running
        sums, the day ``through`` cuts from its hours."""
        whole = _days(start, floor_day(through))
        days = self.memo.days(BILLED, ("days", self._fold(api_keys)), whole,
                              lambda d: self.caches.billed_sums(d, self.workspaces, api_keys))
        if through > floor_day(through):
            cut = floor_day(through)
            cut_day: Days = self.memo.span(
                BILLED, "cut", [cut.date()], (through, self._fold(api_keys)),
                lambda: days_of(self.caches.billed_by_day(cut, through, api_keys,
                                                          self.workspaces)))
            days = merged_days(days, cut_day)
        return days

    def _assemble(self, at: datetime, settled: dict[date, CostDay], *, usage_from: datetime,
                  fresh_from: datetime, window: Window,
                  api_keys: Collection[str] | None, through: datetime | None,
                  requests: int) -> Snapshot:
        """The snapshot from the running sums per day and the fresh window.

        A stored hour counts from the store, the fresh window only for the hours it has that
        are not stored (the hour in progress): a complete hour of the window was stored from
        these same rows. An ``at`` before the stored data (a what-if) takes its own day from
        the hours before the window instead, as the data stood then.
        """
        fresh, keys = window.hours, self._fold(api_keys)
        today = floor_day(at)
        what_if = self._what_if(at)
        before = _days(usage_from, today if what_if else today + DAY)
        usage: dict[date, PeriodIndex] = self.memo.days(
            USAGE, ("days", self._fold(api_keys)), before,
            lambda d: self.caches.usage_days(d, self.workspaces, api_keys))
        stored: set[datetime] = set()
        if what_if:
            cut = self.caches.usage_rows(today, fresh_from, DAY_S, api_keys)
            today_rows = [*cut, *self._folded([r for r in fresh if r.start >= today], api_keys)]
        else:
            stored = set(self.caches.usage_fetched(fresh_from, floor_hour(at) + HOUR))
            unstored = [r for r in fresh if r.start not in stored]
            today_rows = [*self.memo.span(
                USAGE, "today", [today.date()], (today, self._fold(api_keys)),
                lambda: self.caches.usage_rows(today, today + DAY, DAY_S, api_keys)),
                *self._folded([r for r in unstored if r.start >= today], api_keys)]
            cut = []
        usage = merged_days(usage, days_of(cut, self.unpriced, keys, self.spaces),
                            window.days(lambda hour: what_if or hour not in stored))
        recent = self._recent(at, usage_from, fresh_from, api_keys)
        hourly = self.caches.hourly_totals(max(usage_from, today - 14 * DAY), fresh_from)
        for row in fresh:
            hourly[row.start] = hourly.get(row.start, Decimal(0)) + row.usd
        this_month, unknown = self._unpriced(usage, month_start(at))
        return Snapshot(at=at, settled=settled, usage=usage, data_through=through,
                        api_requests=requests, usage_from=usage_from.date(),
                        recent=recent, hourly=hourly, today=today_rows,
                        unpriced_models=this_month, unknown_models=unknown,
                        priced_models=self.prices.names(), kept=self.kept)

    def _recent(self, at: datetime, usage_from: datetime, fresh_from: datetime,
                api_keys: Collection[str] | None) -> list[Period]:
        """The last hours for burn rates: per minute where this fetcher read every minute of
        an hour (and for the window's hours), else per stored hour."""
        keys = self._fold(api_keys)
        recent_from = max(usage_from, floor_hour(at - self.policy.recent))
        stored = self.memo.span(
            USAGE, "recent", _days(recent_from, fresh_from), (recent_from, fresh_from, keys),
            lambda: periods_of(self.caches.usage_rows(recent_from, fresh_from, 3600, api_keys,
                                                      self.workspaces), HOUR, self.unpriced))
        whole = {p.start for p in stored if self.window.whole(p.start)}
        end = floor_minute(at)
        return [*(p for p in stored if p.start not in whole),
                *(p for p in self.window.periods(recent_from, end)
                  if p.start >= fresh_from or floor_hour(p.start) in whole)]

    def _what_if(self, at: datetime) -> bool:
        known = self.caches.get_meta(WATERMARK)
        return known is not None and floor_minute(at) < datetime.fromisoformat(known)

    def _fold(self, api_keys: Collection[str] | None) -> frozenset[str] | None:
        return frozenset(api_keys) if api_keys is not None else None

    @staticmethod
    def _folded(rows: list[PricedUsage], api_keys: Collection[str] | None) -> list[PricedUsage]:
        """``rows`` with keys other than ``api_keys`` under no key (as the store reads them)."""
        if api_keys is None:
            return rows
        return [r if r.api_key_id is None or r.api_key_id in api_keys else PricedUsage(
            r.start, r.workspace_id, None, r.model, r.token_usd, r.web_search_usd,
            r.input_tokens, r.cache_write_tokens, r.cache_read_tokens, r.output_tokens,
            r.web_search_requests) for r in rows]

    def _unpriced(self, usage: Days,
                  since: datetime) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Models the price table has no card for: those of usage since ``since`` (this
        month), and those of any usage the snapshot holds."""
        latest: dict[str, date] = {}
        for day, index in usage.items():
            for model in index.models():
                if model not in latest or day > latest[model]:
                    latest[model] = day
        unknown = sorted(m for m in latest if not self.prices.known(m))
        return tuple(m for m in unknown if latest[m] >= since.date()), tuple(unknown)

    def watermark(self) -> datetime | None:
        """How far usage has been read: an ``at`` before it is a what-if."""
        known = self.caches.get_meta(WATERMARK)
        return datetime.fromisoformat(known) if known else None

    def _advance_watermark(self, through: datetime) -> None:
        """Record how far usage has been read, never moving it back (``--at`` in the past)."""
        known = self.caches.get_meta(WATERMARK)
        if known is None or datetime.fromisoformat(known) < through:
            self.caches.set_meta(WATERMARK, through.isoformat())

    # --- usage -------------------------------------------------------------------------------

    def _refresh_usage(self, start: datetime, at: datetime, api_keys: Collection[str] | None,
                       *, read: bool = True) -> tuple[UsagePlan, Window, datetime]:
        """Backfill missing hours, read the minutes not final (``read`` false: none, the
        window waits a tick); return the plan, the fresh window's rows per hour and how far
        usage has been read."""
        plan = settle.plan_usage(start, at, self.caches.usage_fetched(start, floor_hour(at)),
                                 self.policy)
        if plan.backfill is not None:
            self._backfill_hours(*plan.backfill, at)
        if not plan.minutes:
            return plan, Window(), plan.through
        window = self._read_minutes(plan, at, api_keys, read=read)
        kept = self.window.through()
        through = plan.through if read or kept is None else max(plan.fresh_from,
                                                                min(kept, plan.through))
        return plan, window, through

    def _window_waits(self, at: datetime) -> bool:
        """Whether the minute window waits a tick for a billed poll that needs a steady
        tick's every request (an hour busier than one page): read a minute or two ago, it
        is read again next tick, from where it stopped."""
        kept = self.window.through()
        if kept is None or not timedelta(0) <= floor_minute(at) - kept <= 2 * MINUTE:
            return False
        return self.billed.poll_requests(at, API_PAGE_ROWS) >= STEADY_REQUESTS

    def _backfill_hours(self, first: datetime, end: datetime, at: datetime) -> None:
        pages = ahead(self.client.usage_pages(first, end, "1h",
                                              page_buckets=self.policy.hourly_page_buckets))
        with closing(pages):
            for buckets in pages:
                hours = [b.starting_at for b in buckets if b.ending_at - b.starting_at == HOUR]
                priced = settle.price_buckets(buckets, self.prices)
                plausible(self.bounds, usage_rows(priced), "the usage report")
                self.caches.replace_usage_hours(hours, priced, at, self.prices.known)

    def _revise(self, plan: UsagePlan, at: datetime, spare: Spare | None = None) -> None:
        """Read complete hours once more for late revisions, an hour a bucket (a revision
        can wait a tick)."""
        for first, end in plan.revise:
            if not may_read(spare):
                return
            self._backfill_hours(first, end, at)
            for hour in hours_between(first, end):
                self.window.forget_hour(hour)  # the store has the revised hour

    def _read_minutes(self, plan: UsagePlan, at: datetime,
                      api_keys: Collection[str] | None, *, read: bool = True) -> Window:
        """Read the window's minutes not final yet (all of it on a first refresh); store its
        complete hours that this read touched; the window's rows per hour."""
        window = self._window_for(at, api_keys)
        first = window.read_from(plan.fresh_from, plan.through) if read else plan.through
        if first < plan.through:
            again = floor_minute(at - self.policy.late_window - MINUTE)  # not final after
            buckets = [b for page in self.client.usage_pages(first, plan.through, "1m",
                                                             again_from=again)
                       for b in page]
            same = [b for b in buckets if self._minutes.get(b.starting_at) is b
                    and window.holds(b.starting_at)]
            kept = {b.starting_at for b in same}
            changed = [b for b in buckets if b.starting_at not in kept]
            priced = settle.price_buckets(changed, self.prices, by_minute=True)
            plausible(self.bounds, usage_rows(priced), "the usage report")
            window.take(priced, [b.starting_at for b in changed], at, unpriced=self.unpriced,
                        keys=self._fold(api_keys), workspaces=self.spaces)
            window.again([b.starting_at for b in same], at)
            self._minutes = {b.starting_at: b for b in buckets}
        hour_now = floor_hour(at)
        rows = {h: window.hour_rows(h) for h in hours_between(plan.fresh_from, hour_now + HOUR)}
        complete = [h for h in rows if h < hour_now and h + HOUR > first and window.complete(h)]
        if complete:
            self._store_hours(window, complete, rows, at)
        keys = self._fold(api_keys)
        indexes = {h: window.hour_index(h, self.unpriced, keys, self.spaces) for h in rows}
        window.forget(plan.fresh_from, floor_hour(at - self.policy.recent))
        return Window([r for hour_rows in rows.values() for r in hour_rows], indexes)

    def _store_hours(self, window: MinuteWindow, hours: list[datetime],
                     rows: dict[datetime, list[PricedUsage]], at: datetime) -> None:
        """Store complete hours of the window: one stored as it stands only has its read time
        moved (unless the store holds it otherwise now), the others are written."""
        standing = {h: digest for h in hours if (digest := window.stored_as(h)) is not None}
        missed = set(self.caches.touch_usage_hours(standing, at)) if standing else set()
        due = [h for h in hours if h not in standing or h in missed]
        if due:
            window.stored(self.caches.replace_usage_hours(
                due, [r for h in due for r in rows[h]], at, self.prices.known))

    def _window_for(self, at: datetime, api_keys: Collection[str] | None) -> MinuteWindow:
        """The kept window, or a new one when the keys it keeps apart changed or ``at``
        went back (what was kept may be later than ``at``)."""
        keys = self._fold(api_keys)
        if self._window_as is not None and (self._window_as[0] != keys
                                            or at < self._window_as[1]):
            self.window = MinuteWindow(self.policy.late_window)
            self._minutes = {}
        self._window_as = (keys, at)
        return self.window

    # --- cost --------------------------------------------------------------------------------

    def _refresh_cost(self, first: date, at: datetime,
                      spare: Spare | None = None) -> dict[date, CostDay]:
        """Re-read due cost days (that can wait a tick); return the settled ones."""
        closed = days_between(first, at.date())
        if not closed:
            return {}
        fetched = self.caches.cost_fetched(first, closed[-1])
        due = settle.due_cost_days(closed, fetched, at, self.policy)
        if due and may_read(spare):
            for days in self._read_cost(day_start(min(due)), day_start(at.date())):
                plausible(self.bounds, cost_rows(days), "the cost report")
                self.caches.replace_cost_days(days, at)
                fetched.update({d.day: at for d in days})
        return self._stored_cost(settle.settled_days(closed, fetched, self.policy))

    def _stored_cost(self, days: list[date]) -> dict[date, CostDay]:
        return self.memo.days(COST, "settled", days, self.caches.cost_days)

    def _read_cost(self, start: datetime, end: datetime) -> Iterator[list[CostDay]]:
        """The cost days of ``[start, end)``: a re-read of the last week in one page, a
        backfill a few days a page (memory stays flat)."""
        days = (end - start) // DAY
        per_page = days if 0 < days <= STEADY_COST_DAYS else self.policy.cost_page_buckets
        pages = self.client.cost_pages(start, end, COST_GROUP_BY, page_buckets=per_page)
        for buckets in pages:
            yield [settle.cost_day(b) for b in buckets if b.ending_at - b.starting_at == DAY]
