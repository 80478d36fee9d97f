"""From the ledger and the snapshot to each budget's outlook: forecast and burn rate. Pure.

The forecast reads each budget's daily history across the month boundary (settled cost days
for organization, workspace and model budgets; priced usage for API-key budgets and for days
whose cost report has not settled), the organization's hour-of-week profile, and a conformal
band replayed from the complete months of that history.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from guard.core.forecast import (
    DEFAULT_TIERS,
    Band,
    Burn,
    BurnTier,
    Profile,
    Seasonal,
    burn,
    calibrate,
    forecast,
    hour_profile,
    seasonal,
)
from guard.core.kept import Kept, Value
from guard.core.ledger import ZERO, UsageIndex, day_spend
from guard.core.model import DEFAULT_WORKSPACE, Budget, BudgetSpend, CostDay, Ledger, Scope
from guard.core.period import HOUR, day_start, days_between
from guard.core.policy import BudgetInput
from guard.core.usage import Days, Period, Sums


@dataclass(frozen=True, slots=True)
class OutlookInputs:
    """The slices of a fetch snapshot the outlook reads."""

    settled: Mapping[date, CostDay]
    usage: Days
    usage_from: date | None
    recent: Sequence[Period]
    hourly: Mapping[datetime, Decimal]
    kept: Kept | None = None
    """Where each budget's parts of complete days are kept between ticks."""


def history(budget: Budget, first: date, today: date, data: OutlookInputs,
            index: UsageIndex, *, days: Sequence[date] | None = None) -> dict[date, Decimal]:
    """Known spend of ``budget`` per complete day in ``[first, today)``; unknown days absent
    (``days``: those days, when the caller has listed them for every budget)."""
    series: dict[date, Decimal] = {}
    for day in days if days is not None else days_between(first, today):
        billed = budget.scope is not Scope.API_KEY and day in data.settled
        covered = data.usage_from is not None and day >= data.usage_from
        if billed or covered:
            series[day] = day_spend(budget, day, data.settled, index)[0]
    return series


Row = tuple[datetime, datetime, Decimal]
"""A period's ``[start, end)`` and a budget's spend in it."""
Key = tuple[Scope, str | None]
"""A budget's (scope, match): budgets alike in both spend alike."""


def recent_rows(budgets: Iterable[Budget], recent: Sequence[Period],
                cuts: Sequence[datetime] = ()) -> dict[Key, list[Row]]:
    """Each budget's spend in each recent period, by (scope, match), in time order: one pass
    over the periods' sums for every budget at once (a budget whose key or workspace had no
    usage in a period costs nothing there).

    With ``cuts`` (the instants every window asked of ``spent_between`` starts or ends at),
    a budget's periods between two cuts come as one row: a window from cut to cut holds
    such a row whole or not at all, so its spend is the same to the cent, from a few rows
    rather than one a minute."""
    wanted = {(b.scope, b.match) for b in budgets}
    spaces: dict[str, Key] = {m or DEFAULT_WORKSPACE: (s, m) for s, m in wanted
                              if s is Scope.WORKSPACE}
    keys: dict[str, Key] = {m or "": (s, m) for s, m in wanted if s is Scope.API_KEY}
    models: list[tuple[str, Key]] = [(m or "", (s, m)) for s, m in wanted if s is Scope.MODEL]
    org = (Scope.ORGANIZATION, None) if any(s is Scope.ORGANIZATION for s, _ in wanted) else None
    rows: dict[Key, list[Row]] = {key: [] for key in wanted}
    space_rows = {name: rows[key] for name, key in spaces.items()}
    key_rows = {name: rows[key] for name, key in keys.items()}
    bounds = sorted(cuts)
    for period in sorted(recent, key=lambda p: p.start):
        index, start = period.index, period.start
        end = start + period.width
        after = _between_cuts(bounds, start, end)
        if org is not None and (usd := index.organization.usd):
            _put(rows[org], start, end, usd, after)
        for targets, sums in ((space_rows, index.workspace), (key_rows, index.api_key)):
            if targets and sums:
                _append_spend(targets, sums, start, end, after)
        for prefix, model_key in models:
            usd = sum((v.token_usd for m, v in (index.model or {}).items()
                       if m.startswith(prefix)), ZERO)
            if usd:
                _put(rows[model_key], start, end, usd, after)
    return rows


def _between_cuts(cuts: Sequence[datetime], start: datetime, end: datetime) -> datetime | None:
    """The cut a period ``[start, end)`` lies after, when no cut falls inside it (``None``:
    one does, or there are no cuts); before the first cut, the period's own start."""
    if not cuts:
        return None
    i = bisect.bisect_right(cuts, start)
    if i < len(cuts) and cuts[i] < end:
        return None
    return cuts[i - 1] if i else datetime.min.replace(tzinfo=start.tzinfo)


def _put(series: list[Row], start: datetime, end: datetime, usd: Decimal,
         after: datetime | None) -> None:
    """Add a period's spend to ``series``: into its last row when both lie between the same
    two cuts (``after``: the cut before them), else as a row of its own."""
    if after is not None and series and series[-1][0] >= after:
        first, _, known = series[-1]
        series[-1] = (first, end, known + usd)
    else:
        series.append((start, end, usd))


def _append_spend(targets: Mapping[str, list[Row]], sums: Mapping[str, Sums],
                  start: datetime, end: datetime, after: datetime | None) -> None:
    """Each target's spend in ``sums`` put in its rows, walking the smaller side (the
    budgets' keys, or the keys that had usage in the period)."""
    if len(targets) < len(sums):
        for name, series in targets.items():
            value = sums.get(name)
            if value is not None and (usd := value.usd):
                _put(series, start, end, usd, after)
    else:
        for name, value in sums.items():
            found = targets.get(name)
            if found is not None and (usd := value.usd):
                _put(found, start, end, usd, after)


def spent_between(budget: Budget, data: OutlookInputs,
                  rows: list[Row] | None = None) -> Callable[[datetime, datetime], Decimal]:
    """Spend of ``budget`` in a window, hours pro-rated where the window cuts them
    (``rows``: its ``recent_rows``, when the caller has them for every budget)."""
    if rows is None:
        rows = sorted((p.start, p.start + p.width, usd) for p in data.recent
                      if (usd := p.index.spend(budget)))
    if not rows:
        return _nothing
    starts, ends = [r[0] for r in rows], [r[1] for r in rows]
    prefix = [ZERO, *itertools.accumulate(r[2] for r in rows)]

    def between(start: datetime, end: datetime) -> Decimal:
        first, stop = bisect.bisect_right(ends, start), bisect.bisect_left(starts, end)
        if stop <= first:
            return ZERO
        total = prefix[stop] - prefix[first]  # the periods the window holds whole…
        for i in {first, stop - 1}:  # …less what it cuts off the first and the last
            row_start, row_end, usd = rows[i]
            overlap = min(end, row_end) - max(start, row_start)
            if overlap < row_end - row_start:
                total += usd * Decimal(overlap / (row_end - row_start)) - usd
        return total

    return between


def _nothing(start: datetime, end: datetime) -> Decimal:
    """The spend of a budget with no recent spend, in any window."""
    return ZERO


@dataclass(frozen=True, slots=True)
class _Context:
    data: OutlookInputs
    index: UsageIndex
    profile: Profile
    first: date
    now: datetime
    lag: timedelta
    tiers: Sequence[BurnTier]
    days: Sequence[date]
    parts: dict[Hashable, Any]
    """Each budget's history, band and seasonal baseline, by (scope, match)."""
    recent: dict[Key, list[Row]]


def outlooks(ledger: Ledger, data: OutlookInputs, *, lag: timedelta,
             tiers: Sequence[BurnTier] = DEFAULT_TIERS) -> list[BudgetInput]:
    """Forecast and burn rate of every budget in ``ledger``, as of its ``data_through``."""
    now = ledger.data_through or ledger.at
    today = now.date()
    first = min([*data.settled, *([data.usage_from] if data.usage_from else [])], default=today)
    profile = hour_profile({h: v for h, v in data.hourly.items() if h < day_start(today)})
    days = days_between(first, today)
    ctx = _Context(data, UsageIndex(data.usage), profile, first, now, lag, tiers, days,
                   _parts(data, days, Value((first, today, data.usage_from, profile))),
                   recent_rows((s.budget for s in ledger.budgets), data.recent,
                               burn_cuts(now - lag, tiers)))
    return [_one(spend, ctx) for spend in ledger.budgets]


def burn_cuts(end: datetime, tiers: Sequence[BurnTier]) -> list[datetime]:
    """Where the windows ``burn`` asks of ``spent_between`` begin and end."""
    return sorted({end, end - HOUR, *(end - t.long for t in tiers),
                   *(end - t.short for t in tiers)})


def _parts(data: OutlookInputs, days: Sequence[date], key: Value) -> dict[Hashable, Any]:
    """The kept parts while the tick's complete days are the same objects as last time."""
    if data.kept is None:
        return {}
    sources: list[object] = [key]
    for day in days:
        sources += (data.settled.get(day), data.usage.get(day))
    return data.kept.parts(sources)


def _one(spend: BudgetSpend, ctx: _Context) -> BudgetInput:
    budget, today = spend.budget, ctx.now.date()
    known = ctx.parts.get((budget.scope, budget.match))
    if known is None:
        series = history(budget, ctx.first, today, ctx.data, ctx.index, days=ctx.days)
        key = tuple(series.items())
        known = ctx.parts[(budget.scope, budget.match)] = (
            series, _calibrated(key, today.replace(day=1), ctx.profile), _seasonal(key, today))
    series, band, season = known
    outlook = forecast(mtd=spend.spend_usd, history=series, profile=ctx.profile, band=band,
                       now=ctx.now, hard_limit=budget.hard_limit_usd, season=season)
    rates = burn(spent_between=spent_between(budget, ctx.data,
                                             ctx.recent[(budget.scope, budget.match)]),
                 season=season, profile=ctx.profile, end=ctx.now - ctx.lag,
                 mtd=spend.spend_usd, hard_limit=budget.hard_limit_usd, tiers=ctx.tiers)
    return BudgetInput(spend, outlook, rates)


@functools.lru_cache(maxsize=4096)
def _calibrated(series: tuple[tuple[date, Decimal], ...], before: date,
                profile: Profile) -> Band:
    """``calibrate`` of a budget's complete days: the same all day until one of them moves,
    so a daemon replays each budget's months once a day, not once a tick."""
    return calibrate(dict(series), before, profile)


@functools.lru_cache(maxsize=4096)
def _seasonal(series: tuple[tuple[date, Decimal], ...], before: date) -> Seasonal:
    """``seasonal`` of a budget's complete days, kept likewise."""
    return seasonal(dict(series), before)


def describe_burn(rates: Burn) -> dict[str, object]:
    """Burn rates for JSON: per tier the long and short multiples of the expected spend."""
    return {
        "tiers": {name: {"long": _num(long), "short": _num(short)}
                  for name, long, short in rates.rates},
        "tripped": rates.tripped.name if rates.tripped else None,
        "hours_to_hard_limit": _num(rates.tte_hours) if rates.tte_hours is not None else None,
    }


def _num(value: Decimal) -> float | None:
    return round(float(value), 3) if value.is_finite() else None
