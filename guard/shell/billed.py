"""The billed source: which one is in force, and keeping the billed hours current.

``[anthropic] source`` is ``analytics``, ``legacy`` or ``auto``. ``auto`` tries the analytics
API (a read it needs anyway, so the probe costs nothing extra) and, when that API answers 400
(e.g. an organization with HIPAA readiness), 403 or 404, uses the legacy reports, says so,
and tries again a day later. The decision and the billed watermark live in the store's named
values, so a restart neither re-probes nor re-reads what is current.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from guard.core import billed
from guard.core.billed import ANALYTICS, AUTO, LEGACY, BilledPolicy, BilledRead
from guard.core.model import BilledCost, BilledPage, CostDay
from guard.core.period import DAY, HOUR, day_start, floor_hour
from guard.core.plausible import Bounds, billed_rows, cost_rows
from guard.core.usage import COST
from guard.errors import MalformedResponse, UpstreamError
from guard.shell.ahead import ahead
from guard.shell.memo import DayMemo
from guard.shell.ports import AdminReports, CachePort
from guard.shell.spare import Spare, may_read

log = logging.getLogger("guard.sync")

THROUGH = "billed_through"
READ_AT = "billed_read_at"
FULL_AT = "billed_full_at"
FULL_NEXT = "billed_full_next"
"""Where an unfinished full read goes on from: every hour before it was read completely."""
DENSITY = "billed_rows_per_hour"
SWEEP_AT = "billed_sweep_at"
"""When the current (or last) revision sweep began."""
SWEEP_NEXT = "billed_sweep_next"
"""Where the sweep under way goes on down from (empty: none under way)."""
SWEEP_READ_AT = "billed_sweep_read_at"
SOURCE = "billed_source"
SOURCE_AT = "billed_source_at"
SOURCE_NOTE = "billed_source_note"
FALLBACK_STATUSES = frozenset({400, 403, 404})
"""What ``auto`` takes as "the analytics API is not for this organization"."""
HISTORY_BY_WORKSPACE = ("workspace_id",)
HISTORY_BY_MODEL = ("model", "cost_type")
"""A history day is read as these two marginals (a cost day holds no more): ~1,000 rows a
day at 1,000 workspaces, not the ~6,400 of workspaces × models."""


class WorkspaceListing:
    """The organization's workspace ids (archived too), listed again only when asked.

    The billed sync needs them to tell the default workspace; the directory to check budget
    matches. ``fresh`` says whether they were listed during the current refresh, so one
    refresh never lists them twice.
    """

    def __init__(self, client: AdminReports) -> None:
        self.client = client
        self.ids: frozenset[str] | None = None
        self.fresh = False

    def relist(self) -> frozenset[str]:
        """List the workspaces now."""
        self.ids = frozenset(w.id for w in self.client.workspaces(include_archived=True))
        self.fresh = True
        return self.ids

    def current(self) -> frozenset[str]:
        """The workspaces as listed during this refresh, listing them if they were not."""
        return self.ids if self.fresh and self.ids is not None else self.relist()


@dataclass(frozen=True, slots=True)
class Source:
    """The billed source in force, and why when ``auto`` fell back."""

    name: str
    note: str | None = None


class BilledSync:
    """Reads ``/analytics/cost`` into the billed-hours cache when it can have moved."""

    def __init__(self, client: AdminReports, caches: CachePort, configured: str = AUTO,
                 policy: BilledPolicy | None = None,
                 *, listing: WorkspaceListing | None = None,
                 bounds: Bounds | None = None) -> None:
        self.client = client
        self.bounds = bounds or Bounds()
        self.caches = caches
        self.configured = configured
        self.policy = policy or BilledPolicy()
        self.listing = listing or WorkspaceListing(client)
        self.memo: DayMemo | None = None
        """Where cost days read before are kept while unchanged (``None``: read each time)."""

    # --- which source ------------------------------------------------------------------------

    def refresh(self, at: datetime, spare: Spare | None = None) -> Source:
        """Bring the billed hours up to date as of ``at`` (a poll or a sweep can wait a tick
        for ``spare``); return the source in force."""
        if self.configured == LEGACY:
            return Source(LEGACY)
        decided = self.stored()
        read_at = self._time(READ_AT)
        if decided.name == ANALYTICS and read_at is not None and at < read_at:
            return decided  # an earlier ``--at``: what is stored, never moved back
        if self.configured == AUTO and decided.name == LEGACY and not billed.probe_due(
                self._time(SOURCE_AT), at, self.policy):
            return decided
        try:
            self._read_hours(at, decided.name != ANALYTICS, spare)
        except UpstreamError as error:
            if self.configured != AUTO or error.status not in FALLBACK_STATUSES:
                raise
            return self._fall_back(at, error)
        if decided.name != ANALYTICS:
            self._decide(at, Source(ANALYTICS))
        return Source(ANALYTICS)

    def stored(self) -> Source:
        """The source as last decided (``legacy`` before any decision unless configured)."""
        if self.configured in (ANALYTICS, LEGACY):
            return Source(self.configured)
        name = self.caches.get_meta(SOURCE)
        return Source(name, self.caches.get_meta(SOURCE_NOTE)) if name else Source(LEGACY)

    def _fall_back(self, at: datetime, error: UpstreamError) -> Source:
        note = (f"the analytics API answered HTTP {error.status} "
                f"({str(error)[:160]}); using the legacy usage and cost reports")
        if self.caches.get_meta(SOURCE) != LEGACY:
            log.warning("billing source: %s", note)
        source = Source(LEGACY, note)
        self._decide(at, source)
        return source

    def _decide(self, at: datetime, source: Source) -> None:
        self.caches.set_meta(SOURCE, source.name)
        self.caches.set_meta(SOURCE_AT, at.isoformat())
        self.caches.set_meta(SOURCE_NOTE, (source.note or "")[:250])

    # --- billed hours ------------------------------------------------------------------------

    def poll_requests(self, at: datetime, page_limit: int) -> int:
        """The requests a poll due at ``at`` will likely take (0: none due, or not a poll)."""
        if self.configured == LEGACY or self.stored().name != ANALYTICS:
            return 0
        read_at = self._time(READ_AT)
        if read_at is not None and at < read_at:
            return 0
        density = self._density()
        plan = billed.plan_read(at, self.through(), read_at, self._time(FULL_AT), self.policy,
                                rows_per_hour=density)
        if plan is None or plan.full or plan.end <= plan.start:
            return 0
        return billed.poll_pages(self._resumed(plan), density, page_limit)

    def _read_hours(self, at: datetime, force: bool, spare: Spare | None) -> None:
        """Poll the billed hours when due (a full read at first and at a new month), else
        read one page of older hours again for revisions."""
        density = self._density()
        plan = billed.plan_read(at, self.through(), self._time(READ_AT),
                                self._time(FULL_AT), self.policy, rows_per_hour=density)
        if plan is None and force:
            plan = BilledRead(billed.billed_from(at), floor_hour(at), full=True)
        if plan is None:
            self._sweep(at, density, spare)
            return
        if plan.end <= plan.start or (not plan.full and not may_read(spare)):
            return
        first, plan = plan.start, self._resumed(plan)
        through, rows, hours = plan.end, 0, 0
        chunks = plan.chunks()
        with closing(ahead(self.client.analytics_cost(start, end, "1h")
                           for start, end in chunks)) as pages:
            for (start, end), page in zip(chunks, pages, strict=False):
                mark, count = self._read_chunk(start, end, page)
                rows, hours = rows + count, hours + (mark - start) // HOUR
                if mark < end:
                    through = min(through, mark)
                elif plan.full and through == plan.end:  # a deadline may end the read here
                    self.caches.set_meta(FULL_NEXT, end.isoformat())
        self._store_whole_days(first, through, at)
        self.caches.set_meta(THROUGH, through.isoformat())
        self.caches.set_meta(READ_AT, at.isoformat())
        if hours > 0:
            self.caches.set_meta(DENSITY, str(Decimal(rows) / hours))
        if plan.full:
            self.caches.set_meta(FULL_AT, at.isoformat())
            self.caches.set_meta(FULL_NEXT, "")
            self.caches.set_meta(SWEEP_AT, at.isoformat())
            self.caches.set_meta(SWEEP_NEXT, "")

    def _read_chunk(self, start: datetime, end: datetime,
                    page: BilledPage | None = None) -> tuple[datetime, int]:
        """Read (unless ``page`` was read already) and store the billed hours of
        ``[start, end)``: how far the bill is complete there, and how many rows it had."""
        if page is None:
            page = self.client.analytics_cost(start, end, "1h")
        claimed = billed.watermark_of(page.refreshed_at, start, end)
        named = self._workspaces(page.rows)
        hours = billed.hours_of(page.rows, named, claimed)
        mark = billed.written_through(claimed, start, hours,
                                      self.caches.hourly_totals(start, claimed))
        if mark < claimed:
            log.warning("the analytics cost says it is complete through %s but has no row "
                        "for %s, which usage priced: billed only through that hour, the "
                        "rest estimated", claimed.isoformat(), mark.isoformat())
            hours = [h for h in hours if h.start < mark]
        plausible(self.bounds, billed_rows(hours), "the analytics cost")
        self.caches.replace_billed_hours(start, mark, hours)
        return mark, len(hours)

    def _sweep(self, at: datetime, density: Decimal | None, spare: Spare | None) -> None:
        """Read one page of the hours a poll no longer covers again (revisions), walking back
        through the range once a day."""
        through = self.through()
        if through is None:
            return
        below = billed.poll_start(at, through, self.policy, density)
        state = billed.Sweep(self._time(SWEEP_AT), self._time(SWEEP_NEXT),
                             self._time(SWEEP_READ_AT))
        plan = billed.plan_sweep(at, below, state, self.policy, density)
        if plan is None or not may_read(spare):
            return
        if state.cursor is None:
            self.caches.set_meta(SWEEP_AT, at.isoformat())
        self._read_chunk(plan.start, plan.end)
        self._store_whole_days(plan.start, plan.end, at)
        done = plan.start <= billed.billed_from(at)
        self.caches.set_meta(SWEEP_NEXT, "" if done else plan.start.isoformat())
        self.caches.set_meta(SWEEP_READ_AT, at.isoformat())

    def _density(self) -> Decimal | None:
        """Billed rows per hour, as last read."""
        value = self.caches.get_meta(DENSITY)
        return Decimal(value) if value else None

    def _resumed(self, plan: BilledRead) -> BilledRead:
        """A full read goes on where an unfinished one stopped (a tick's deadline), so a
        first read longer than one tick still completes over a few."""
        resume = self._time(FULL_NEXT) if plan.full else None
        if resume is not None and plan.start < resume < plan.end:
            return BilledRead(resume, plan.end, full=True)
        return plan

    def _store_whole_days(self, start: datetime, through: datetime, at: datetime) -> None:
        """Keep the whole days a read covered as cost days too (the forecast's history, the
        reconciliation), so no refresh sums a month of hours again."""
        first, end = day_start(start.date()), day_start(through.date())
        if end > first:
            days = self.caches.billed_days(first, end)
            wanted = [first.date() + DAY * i for i in range((end - first) // DAY)]
            self.caches.replace_cost_days(_with_empty(list(days.values()), wanted, end), at)

    def through(self) -> datetime | None:
        """The stored billed watermark."""
        return self._time(THROUGH)

    def calibration(self, at: datetime) -> Decimal:
        """Billed / list over the last billed day before ``at``."""
        through = self.through()
        if through is None:
            return Decimal(1)
        through = min(through, floor_hour(at))
        return billed.calibration(*self.caches.billed_totals(through - DAY, through))

    # --- history (closed days before the billed hours) ------------------------------------------

    def refresh_history(self, first: date, at: datetime, spare: Spare | None = None) -> None:
        """Read the history days that are due as 1-day billed buckets (they can wait a
        tick)."""
        days = billed.history_days(first, at)
        if not days:
            return
        fetched = self.caches.cost_fetched(days[0], days[-1])
        due = [d for d in days if billed.history_due(d, fetched.get(d), at, self.policy)]
        if not due or not may_read(spare):
            return
        first_day, end = day_start(min(due)), day_start(max(due)) + DAY
        ranges = [(cursor, min(end, cursor + billed.MAX_RANGE))
                  for cursor in _steps(first_day, end, billed.MAX_RANGE)]
        with closing(ahead(self.client.analytics_cost(cursor, stop, "1d", group_by)
                           for cursor, stop in ranges
                           for group_by in (HISTORY_BY_WORKSPACE, HISTORY_BY_MODEL))) as reads:
            for cursor, stop in ranges:
                spaces, models = next(reads), next(reads)
                mark = min(billed.watermark_of(spaces.refreshed_at, cursor, stop),
                           billed.watermark_of(models.refreshed_at, cursor, stop))
                wanted = [cursor.date() + DAY * i for i in range((stop - cursor) // DAY)]
                read = billed.marginal_cost_days(spaces.rows, models.rows,
                                                 self._workspaces(spaces.rows), mark)
                plausible(self.bounds, cost_rows(read), "the analytics cost history")
                self.caches.replace_cost_days(_with_empty(read, wanted, mark), at)

    def history(self, first: date, at: datetime) -> dict[date, CostDay]:
        """The stored history days and the whole billed days of the month, as cost days."""
        days = billed.history_days(first, at)
        through = self.through()
        if through is not None:
            start = billed.billed_from(at)
            whole = min(day_start(through.date()), day_start(at.date()))
            days += [start.date() + DAY * i for i in range(max(0, (whole - start) // DAY))]
        if self.memo is not None:
            return self.memo.days(COST, "history", days, self.caches.cost_days)
        return self.caches.cost_days(days) if days else {}

    # --- the default workspace ------------------------------------------------------------------

    def _workspaces(self, rows: Collection[BilledCost]) -> frozenset[str]:
        """The listed workspace ids, re-listed when a row names one not seen before.

        The analytics API shows the default workspace by its real id, which the listing
        leaves out: an id the listing does not name is the default workspace.
        """
        named = self.listing.ids
        default = self.caches.get_meta("default_workspace_id")
        if named is None and default:
            # not listed yet by this process, but the default workspace's id is known: every
            # other id is a named workspace, with no request (a restart lists nothing)
            return frozenset(r.workspace_id for r in rows if r.workspace_id) - {default}
        unlisted = billed.unlisted_workspaces(rows, named or ())
        if named is None or len(unlisted) > 1 or (
                unlisted and unlisted != {default}):
            named = self.listing.relist()
            unlisted = billed.unlisted_workspaces(rows, named)
            if len(unlisted) == 1:
                self.caches.set_meta("default_workspace_id", next(iter(unlisted)))
            elif len(unlisted) > 1:
                log.warning("analytics rows name %d workspaces the listing does not; all are "
                            "counted as the default workspace", len(unlisted))
        return named

    def _time(self, name: str) -> datetime | None:
        value = self.caches.get_meta(name)
        return datetime.fromisoformat(value) if value else None


def _steps(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """``start``, ``start + step``, … before ``end``."""
    return [start + step * i for i in range(-(-(end - start) // step))]


def plausible(bounds: Bounds, rows: Iterable[tuple[date, Decimal]], what: str) -> None:
    """Refuse a response with a row that cannot be true, before anything of it is stored."""
    problem = bounds.check(rows, what)
    if problem is not None:
        raise MalformedResponse(f"malformed Admin API response: {problem}")


def _with_empty(days: list[CostDay], wanted: list[date], through: datetime) -> list[CostDay]:
    """Every wanted day that is complete, a day without cost as an empty one."""
    have = {d.day for d in days}
    empty = [CostDay(d, {}, {}, Decimal(0)) for d in wanted
             if d not in have and day_start(d) + DAY <= through]
    return sorted([*days, *empty], key=lambda d: d.day)
