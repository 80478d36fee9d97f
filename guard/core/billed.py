"""The analytics (billed) source: what to read, and how rows become ledger figures. Pure.

``/analytics/cost`` gives billed, post-discount cost per hour, API key, workspace, model and
cost type, complete up to its ``data_refreshed_at`` watermark, and revisable until about a
week after the month ends (reference §1.6). As of ``at`` a refresh reads:

- **nothing**, when the billed hours were read less than ``billed_poll`` ago: the watermark
  moves every few hours, so a steady one-minute refresh costs no analytics request;
- the **recent** hours (from a day before the stored watermark) otherwise, which picks up a
  new watermark and late revisions of the last hours;
- the **whole** billed range (the month, and the day before it) once a day, for revisions of
  older hours, and whenever the range has never been read whole.

Closed days before that range (the forecast's history) are read as 1-day buckets and kept as
``CostDay``\\ s, re-read daily until the 8th of the month after them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from guard.core.model import BilledCost, CostDay
from guard.core.period import DAY, HOUR, day_start, floor_hour, month_start, next_month

ANALYTICS = "analytics"
LEGACY = "legacy"
AUTO = "auto"
SOURCES = (AUTO, ANALYTICS, LEGACY)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""The analytics API serves nothing before this instant (reference §1.1)."""
RETENTION = timedelta(days=365)
MAX_RANGE = timedelta(days=31)
API_PAGE_ROWS = 1000
"""Rows the analytics API returns a page at most (``limit``, fan-out rows not counted)."""
CHUNK = timedelta(days=3)
"""Hours per request of a whole read: pages stay few and memory flat."""
REVISION_GRACE = timedelta(days=8)
"""A day's billed figures can change until about this long after its month ends."""

_CENTS = Decimal(100)


@dataclass(frozen=True, slots=True)
class BilledPolicy:
    """How often the billed source is re-read."""

    poll: timedelta = timedelta(minutes=15)
    recent: timedelta = timedelta(hours=24)
    """How far behind the watermark a poll reads again (less when that would not fit one
    page: ``page_hours``)."""
    full_every: timedelta = timedelta(hours=24)
    """How often the whole range is read again for revisions, when it fits one page a
    poll; a larger organization's is swept a page per tick instead (``plan_sweep``)."""
    probe_every: timedelta = timedelta(hours=24)
    sweep_every: timedelta = timedelta(minutes=2)
    """How often one page of older hours is read again for revisions (never on a poll)."""
    page_rows: int = 600
    """Rows one request should hold at the rows per hour last seen: under the API's 1,000-row
    page, with room for hours busier than the average (``BUSIEST``) and for growth."""


def page_hours(rows_per_hour: Decimal | None, policy: BilledPolicy) -> int:
    """How many hours one request can cover in one page, from the rows per hour last seen
    (``None``: not known yet, so the largest chunk)."""
    most = CHUNK // HOUR
    if rows_per_hour is None or rows_per_hour <= 0:
        return most
    return max(1, min(most, int(policy.page_rows / rows_per_hour)))


@dataclass(frozen=True, slots=True)
class BilledRead:
    """One planned read of billed hours: ``[start, end)``, whole (``full``) or recent."""

    start: datetime
    end: datetime
    full: bool

    def chunks(self) -> list[tuple[datetime, datetime]]:
        """``[start, end)`` in pieces of at most ``CHUNK``, oldest first."""
        pieces, cursor = [], self.start
        while cursor < self.end:
            pieces.append((cursor, min(self.end, cursor + CHUNK)))
            cursor += CHUNK
        return pieces


@dataclass(frozen=True, slots=True)
class BilledHour:
    """Billed cost of one (hour, workspace, API key, model), in dollars.

    ``token_usd`` is the ``tokens`` cost type, ``other_usd`` every other one (web search, code
    execution, session time); ``list_usd`` is the whole at list price.
    """

    start: datetime
    workspace_id: str | None
    api_key_id: str | None
    model: str | None
    token_usd: Decimal
    other_usd: Decimal
    list_usd: Decimal


def billed_from(at: datetime) -> datetime:
    """Where billed hours are kept from: the day before the month (for the calibration on
    the 1st), never before the API's epoch or its retention."""
    return max(EPOCH, floor_hour(at - RETENTION) + HOUR, month_start(at) - DAY)


def plan_read(at: datetime, watermark: datetime | None, read_at: datetime | None,
              full_at: datetime | None, policy: BilledPolicy, *,
              rows_per_hour: Decimal | None = None) -> BilledRead | None:
    """What to read of billed hours at ``at``, or ``None`` when nothing can have moved.

    A poll reads from a little behind the watermark to now: as far back as ``recent``, but no
    more hours than fit one page, so a steady poll is one request however large the
    organization. The whole range is read at first and at a new month; after that,
    ``plan_sweep`` reads it again daily, a page per tick.
    """
    start, end = billed_from(at), floor_hour(at)
    if end <= start:
        return None
    if full_at is None or full_at < start or full_at > at:
        return BilledRead(start, end, full=True)
    if read_at is not None and timedelta(0) <= at - read_at < policy.poll:
        return None
    return BilledRead(poll_start(at, watermark, policy, rows_per_hour), end, full=False)


BUSIEST = Decimal("1.5")
"""How much busier than the average hour the hours a poll reads may be (an evening)."""


def poll_pages(plan: BilledRead, rows_per_hour: Decimal | None, page_limit: int) -> int:
    """The requests a poll ``plan`` may take, from the rows per hour last seen, its hours
    taken as busy as ``BUSIEST`` (an hour busier than one page takes two, however few hours
    a poll reads)."""
    if rows_per_hour is None or rows_per_hour <= 0:
        return len(plan.chunks())
    pages = 0
    for start, end in plan.chunks():
        rows = rows_per_hour * BUSIEST * ((end - start) // HOUR)
        pages += max(1, math.ceil(rows / page_limit))
    return pages


def poll_start(at: datetime, watermark: datetime | None, policy: BilledPolicy,
               rows_per_hour: Decimal | None) -> datetime:
    """Where a poll's read starts: ``recent`` behind the watermark, or as many hours as fit
    one page with the next hour to be exported (at a page an hour, the watermark itself)."""
    start, end = billed_from(at), floor_hour(at)
    back = min(policy.recent, HOUR * (page_hours(rows_per_hour, policy) - 1))
    recent = (watermark - back) if watermark is not None else start
    return max(start, min(recent, end - HOUR))


def plan_sweep(at: datetime, below: datetime, sweep: Sweep, policy: BilledPolicy,
               rows_per_hour: Decimal | None) -> BilledRead | None:
    """One page of the hours before ``below`` (where a poll starts) to read again for
    revisions, or ``None``. A sweep walks back from ``below`` to the start of the range, a
    page at most every ``sweep_every``, and starts again ``full_every`` after it began."""
    start = billed_from(at)
    if below <= start:
        return None
    if sweep.cursor is None:
        if sweep.began is not None and timedelta(0) <= at - sweep.began < policy.full_every:
            return None
        top = below
    else:
        if sweep.read_at is not None and timedelta(0) <= at - sweep.read_at < policy.sweep_every:
            return None
        top = min(sweep.cursor, below)
    hours = page_hours(rows_per_hour, policy)
    return BilledRead(max(start, top - HOUR * hours), top, full=False)


@dataclass(frozen=True, slots=True)
class Sweep:
    """Where a revision sweep stands: when it began (or the last whole read), where its last
    page started (``None``: no sweep under way), and when that page was read."""

    began: datetime | None
    cursor: datetime | None
    read_at: datetime | None


def watermark_of(refreshed_at: datetime | None, start: datetime, end: datetime) -> datetime:
    """How far a read of ``[start, end)`` is billed: ``data_refreshed_at`` on the hour,
    within the range (``None`` from the API: nothing exported yet, so ``start``)."""
    if refreshed_at is None:
        return start
    return min(end, max(start, floor_hour(refreshed_at)))


UNWRITTEN_WINDOW = timedelta(hours=6)
"""How far behind its ``data_refreshed_at`` an export's missing hour is taken as not written
yet (rather than billed at nothing); older empty hours are believed, so a genuinely empty
hour never holds the watermark back for long."""
UNWRITTEN_LEAST = Decimal("0.10")
"""The least usage estimate, in dollars, that an hour without a billed row must have to be
taken as not written yet."""


def written_through(mark: datetime, start: datetime, hours: Iterable[BilledHour],
                    estimated: Mapping[datetime, Decimal]) -> datetime:
    """``mark``, pulled back to the first recent hour that the usage report priced but the
    bill has no row for: an export cannot be complete through an hour it has not written,
    and taking it at its word would bill that hour at nothing, lowering month-to-date."""
    billed = {h.start for h in hours}
    recent = max(start, mark - UNWRITTEN_WINDOW)
    for hour in sorted(estimated):
        if recent <= hour < mark and estimated[hour] >= UNWRITTEN_LEAST and hour not in billed:
            return hour
    return mark


def hours_of(rows: Iterable[BilledCost], named: Collection[str],
             before: datetime) -> list[BilledHour]:
    """Sum billed rows per (hour, workspace, API key, model), keeping hours before ``before``.

    A workspace id not among ``named`` (the listed workspaces) is the default workspace,
    which the analytics API reports by its real id and budgets call ``default``.
    """
    sums: dict[tuple[datetime, str | None, str | None, str | None], list[Decimal]] = {}
    for row in rows:
        hour = floor_hour(row.starting_at)
        if hour >= before:
            continue
        workspace = row.workspace_id if row.workspace_id in named else None
        acc = sums.setdefault((hour, workspace, row.api_key_id, row.model),
                              [Decimal(0), Decimal(0), Decimal(0)])
        acc[0 if row.cost_type == "tokens" else 1] += row.amount_cents
        acc[2] += row.list_cents
    return [BilledHour(h, ws, key, model, t / _CENTS, o / _CENTS, lst / _CENTS)
            for (h, ws, key, model), (t, o, lst) in sums.items()]


def unlisted_workspaces(rows: Iterable[BilledCost], named: Collection[str]) -> set[str]:
    """Workspace ids of ``rows`` that the workspace listing does not name."""
    return {r.workspace_id for r in rows if r.workspace_id and r.workspace_id not in named}


def cost_days(rows: Iterable[BilledCost], named: Collection[str],
              through: datetime) -> list[CostDay]:
    """1-day analytics rows → ``CostDay``\\ s of the days complete before ``through``."""
    by_workspace: dict[date, dict[str | None, Decimal]] = defaultdict(
        lambda: defaultdict(Decimal))
    by_model: dict[date, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    listed: dict[date, Decimal] = defaultdict(Decimal)
    for row in rows:
        day = row.starting_at.date()
        if day_start(day) + DAY > through:
            continue
        workspace = row.workspace_id if row.workspace_id in named else None
        by_workspace[day][workspace] += row.amount_cents / _CENTS
        listed[day] += row.list_cents / _CENTS
        if row.cost_type == "tokens" and row.model is not None:
            by_model[day][row.model] += row.amount_cents / _CENTS
    return [CostDay(day, dict(by_workspace[day]), dict(by_model[day]), listed[day])
            for day in sorted(listed)]


def marginal_cost_days(by_workspace: Iterable[BilledCost], by_model: Iterable[BilledCost],
                       named: Collection[str], through: datetime) -> list[CostDay]:
    """``CostDay``\\ s from two 1-day reads of the same days: one grouped by workspace (every
    cost, and its list price), one by model and cost type (the token cost per model).

    A cost day holds only those two sums, so reading them apart is exact and takes a fraction
    of the rows of a read grouped by both (workspaces × models).
    """
    days = {d.day: d for d in cost_days(by_workspace, named, through)}
    models: dict[date, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in by_model:
        day = row.starting_at.date()
        if day in days and row.cost_type == "tokens" and row.model is not None:
            models[day][row.model] += row.amount_cents / _CENTS
    return [CostDay(day, d.by_workspace, dict(models[day]), d.list_usd)
            for day, d in sorted(days.items())]


def history_days(first: date, at: datetime) -> list[date]:
    """The closed days before the billed hours that the forecast's history needs."""
    start = max(first, EPOCH.date(), (at - RETENTION).date() + timedelta(days=1))
    end = billed_from(at).date()
    return [start + timedelta(days=i) for i in range(max(0, (end - start).days))]


def history_due(day: date, fetched_at: datetime | None, at: datetime,
                policy: BilledPolicy) -> bool:
    """Whether a history day is read (again): never read, or revisable and a day old."""
    if fetched_at is None:
        return True
    if fetched_at >= next_month(day_start(day)) + REVISION_GRACE:
        return False
    return at - fetched_at >= policy.full_every


def calibration(billed: Decimal, listed: Decimal) -> Decimal:
    """Billed / list (1 when nothing was billed): what the tail's list estimate is scaled by."""
    return billed / listed if listed > 0 else Decimal(1)


def probe_due(decided_at: datetime | None, at: datetime, policy: BilledPolicy) -> bool:
    """Whether ``auto`` should try the analytics API again after falling back to legacy."""
    return decided_at is None or at - decided_at >= policy.probe_every or decided_at > at
