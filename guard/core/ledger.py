"""Month-to-date spend per budget: a pure function of priced data.

Each UTC day of the month takes its figures from exactly one source:

- a closed day whose cost report has settled is **authoritative** (billed cents);
- any other day (today, or a day whose cost report is not in yet) is **estimated** from usage
  × prices.

So no hour is ever counted twice. ``api_key`` budgets are always estimated, because the cost
report has no key dimension. ``model`` budgets count token costs only: the cost report does not
attribute web searches or code execution to a model, and estimates follow the same rule.

With the **analytics** source (``ledger_of`` picks), the split is by hour instead: every hour
before the billed watermark is billed fact for every scope, API keys included; the tail after
it is usage × prices scaled by the billed/list ratio of the last billed day.

Usage comes summed per day (``guard.core.usage``): no function here walks rows, so a budget's
figure costs a few lookups per day whatever the size of the organization.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from guard.core.kept import Value
from guard.core.model import (
    DEFAULT_WORKSPACE,
    Budget,
    BudgetSpend,
    CostDay,
    Ledger,
    PricedUsage,
    Scope,
    Snapshot,
)
from guard.core.period import DAY, days_between, floor_day, month_start
from guard.core.usage import Days, days_of

ZERO = Decimal(0)


class UsageIndex:
    """Estimated spend per day along every budget dimension: a day's ``PeriodIndex`` looked up.
    """

    def __init__(self, days: Days) -> None:
        self.days = days

    @classmethod
    def of_rows(cls, rows: Iterable[PricedUsage]) -> UsageIndex:
        """The index of priced rows (any granularity)."""
        return cls(days_of(rows))

    def spend(self, budget: Budget, day: date) -> Decimal:
        """Estimated spend of ``budget`` on ``day``."""
        index = self.days.get(day)
        return index.spend(budget) if index is not None else ZERO


def authoritative_spend(budget: Budget, cost: CostDay) -> Decimal | None:
    """Billed spend of ``budget`` on a settled day; ``None`` when the report cannot say."""
    scope = budget.scope
    if scope is Scope.ORGANIZATION:
        return cost.total_usd
    if scope is Scope.WORKSPACE:
        workspace = None if budget.match == DEFAULT_WORKSPACE else budget.match
        return cost.by_workspace.get(workspace, ZERO)
    if scope is Scope.MODEL:
        prefix = budget.match or ""
        return sum((usd for model, usd in cost.by_model.items() if model.startswith(prefix)),
                   ZERO)
    return None


def day_spend(budget: Budget, day: date, settled: Mapping[date, CostDay],
              usage: UsageIndex) -> tuple[Decimal, bool]:
    """Spend of ``budget`` on ``day`` and whether it is billed fact (else estimated)."""
    billed = authoritative_spend(budget, settled[day]) if day in settled else None
    if billed is None:
        return usage.spend(budget, day), False
    return billed, True


def budget_spend(budget: Budget, days: Iterable[date], settled: Mapping[date, CostDay],
                 usage: UsageIndex) -> BudgetSpend:
    """Month-to-date spend of one budget over ``days``."""
    authoritative, estimated, daily = ZERO, ZERO, []
    for day in days:
        amount, billed = day_spend(budget, day, settled, usage)
        if billed:
            authoritative += amount
        else:
            estimated += amount
        daily.append(amount)
    return BudgetSpend(budget, authoritative, estimated, tuple(daily))


def attributable(budget: Budget, row: PricedUsage) -> Decimal:
    """The part of one usage row that counts toward ``budget`` (zero if none does)."""
    match budget.scope:
        case Scope.ORGANIZATION:
            return row.usd
        case Scope.WORKSPACE:
            hit = (row.workspace_id or DEFAULT_WORKSPACE) == budget.match
            return row.usd if hit else ZERO
        case Scope.API_KEY:
            return row.usd if row.api_key_id == budget.match else ZERO
        case Scope.MODEL:
            hit = row.model is not None and row.model.startswith(budget.match or "")
            return row.token_usd if hit else ZERO


def includes_unpriced(budget: Budget, snapshot: Snapshot) -> bool:
    """Whether ``budget``'s month-to-date contains an estimate of a model with no card.

    Billed days are fact whatever the price table says; only days the ledger estimates (for
    an ``api_key`` budget, every day) can hold an unpriced estimate.
    """
    if not snapshot.unpriced_models:
        return False
    start = month_start(snapshot.at)
    if snapshot.source == "analytics":
        return any(index.unpriced(budget) for index in snapshot.tail.values())
    billed = set(snapshot.settled) if budget.scope is not Scope.API_KEY else set()
    return any(index.unpriced(budget) for day, index in snapshot.usage.items()
               if start.date() <= day <= snapshot.at.date() and day not in billed)


def budget_api_keys(budgets: Iterable[Budget]) -> frozenset[str]:
    """The API keys that ``api_key`` budgets name: the only keys the ledger needs apart."""
    return frozenset(b.match for b in budgets if b.scope is Scope.API_KEY and b.match)


def budget_workspaces(budgets: Iterable[Budget]) -> frozenset[str]:
    """The named workspaces that ``workspace`` budgets match (the default one is always apart)."""
    return frozenset(b.match for b in budgets if b.scope is Scope.WORKSPACE and b.match
                     and b.match != DEFAULT_WORKSPACE)


def month_to_date(budgets: Iterable[Budget], *, at: datetime,
                  settled: Mapping[date, CostDay], usage: Iterable[PricedUsage],
                  data_through: datetime | None) -> Ledger:
    """The ledger of every budget for the UTC month containing ``at``.

    ``settled`` holds the cost report of closed days that are final enough to trust;
    ``usage`` holds priced usage (any granularity) up to ``data_through``.
    """
    start = month_start(at)
    return month_to_date_of(budgets, at=at, settled=settled,
                            usage=days_of(r for r in usage if start <= r.start < at),
                            data_through=data_through)


def month_to_date_of(budgets: Iterable[Budget], *, at: datetime,
                     settled: Mapping[date, CostDay], usage: Days,
                     data_through: datetime | None) -> Ledger:
    """``month_to_date`` from usage per day (days outside the month are left out)."""
    start = month_start(at)
    days = [*days_between(start.date(), at.date()), at.date()]
    index = UsageIndex(usage)
    in_month = {day: cost for day, cost in settled.items() if start.date() <= day < at.date()}
    spends = tuple(budget_spend(b, days, in_month, index) for b in budgets)
    through = max(in_month) if in_month else None
    return Ledger(at=at, period_start=start, data_through=data_through, budgets=spends,
                  authoritative_through=through)


def ledger_of(budgets: Iterable[Budget], snapshot: Snapshot) -> Ledger:
    """The ledger of ``snapshot``'s month, by the rules of its billing source."""
    if snapshot.source == "analytics":
        return billed_month_to_date(budgets, snapshot)
    ledger = month_to_date_of(budgets, at=snapshot.at, settled=snapshot.settled,
                              usage=snapshot.usage, data_through=snapshot.data_through)
    return replace(ledger, billed_through=snapshot.billed_through)


def billed_month_to_date(budgets: Iterable[Budget], snapshot: Snapshot) -> Ledger:
    """Billed cost through the watermark, then the calibrated estimate of the tail."""
    at, start = snapshot.at, month_start(snapshot.at)
    days = [*days_between(start.date(), at.date()), at.date()]
    billed, tail = UsageIndex(snapshot.billed), UsageIndex(snapshot.tail)
    settled, recent = days[:-2], days[-2:]  # the last two days move tick by tick
    kept: dict[Hashable, Any] = {}
    if snapshot.kept is not None:
        sources: list[object] = [Value((start, snapshot.calibration))]
        for day in settled:
            sources += (snapshot.billed.get(day), snapshot.tail.get(day))
        kept = snapshot.kept.parts(sources, "ledger")
    spends = []
    for budget in budgets:
        key = (budget.scope, budget.match)
        early = kept.get(key)
        if early is None:
            early = kept[key] = _billed_spend(budget, settled, billed, tail,
                                              snapshot.calibration)
        spends.append(_joined(budget, early, _billed_spend(budget, recent, billed, tail,
                                                           snapshot.calibration)))
    return Ledger(at=at, period_start=start, data_through=snapshot.data_through,
                  budgets=tuple(spends), authoritative_through=_complete_day(snapshot, start),
                  source="analytics", billed_through=snapshot.billed_through)


def _billed_spend(budget: Budget, days: Iterable[date], billed: UsageIndex, tail: UsageIndex,
                  calibration: Decimal) -> BudgetSpend:
    authoritative, estimated, daily = ZERO, ZERO, []
    for day in days:
        fact, guess = billed.spend(budget, day), tail.spend(budget, day) * calibration
        authoritative += fact
        estimated += guess
        daily.append(fact + guess)
    return BudgetSpend(budget, authoritative, estimated, tuple(daily))


def _joined(budget: Budget, early: BudgetSpend, late: BudgetSpend) -> BudgetSpend:
    """``budget``'s spend over the days of ``early`` then those of ``late``."""
    return BudgetSpend(budget, early.authoritative_usd + late.authoritative_usd,
                       early.estimated_usd + late.estimated_usd,
                       early.daily_usd + late.daily_usd)


def _complete_day(snapshot: Snapshot, start: datetime) -> date | None:
    """The last day of the month the bill covers whole."""
    through = snapshot.billed_through
    if through is None or floor_day(through) <= start:
        return None
    return (floor_day(through) - DAY).date()
