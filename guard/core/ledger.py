"""Month-to-date spend per budget: a pure function of priced data.

Each UTC day of the month takes its figures from exactly one source:

- a closed day whose cost report has settled is **authoritative** (billed cents);
- any other day (today, or a day whose cost report is not in yet) is **estimated** from usage
  × prices.

So no hour is ever counted twice. ``api_key`` budgets are always estimated, because the cost
report has no key dimension. ``model`` budgets count token costs only: the cost report does not
attribute web searches or code execution to a model, and estimates follow the same rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal

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
from guard.core.period import days_between, month_start

ZERO = Decimal(0)


class UsageIndex:
    """Estimated spend per day along every budget dimension, built in one pass over usage."""

    def __init__(self, rows: Iterable[PricedUsage]) -> None:
        self.organization: dict[date, Decimal] = defaultdict(Decimal)
        self.workspace: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
        self.api_key: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
        self.model: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
        for row in rows:
            day, usd = row.start.date(), row.usd
            self.organization[day] += usd
            self.workspace[day, row.workspace_id or DEFAULT_WORKSPACE] += usd
            if row.api_key_id is not None:
                self.api_key[day, row.api_key_id] += usd
            if row.model is not None:
                self.model[day, row.model] += row.token_usd

    def spend(self, budget: Budget, day: date) -> Decimal:
        """Estimated spend of ``budget`` on ``day``."""
        match budget.scope:
            case Scope.ORGANIZATION:
                return self.organization.get(day, ZERO)
            case Scope.WORKSPACE:
                return self.workspace.get((day, budget.match or DEFAULT_WORKSPACE), ZERO)
            case Scope.API_KEY:
                return self.api_key.get((day, budget.match or ""), ZERO)
            case Scope.MODEL:
                prefix = budget.match or ""
                return sum((usd for (d, model), usd in self.model.items()
                            if d == day and model.startswith(prefix)), ZERO)


def authoritative_spend(budget: Budget, cost: CostDay) -> Decimal | None:
    """Billed spend of ``budget`` on a settled day; ``None`` when the report cannot say."""
    match budget.scope:
        case Scope.ORGANIZATION:
            return cost.total_usd
        case Scope.WORKSPACE:
            workspace = None if budget.match == DEFAULT_WORKSPACE else budget.match
            return cost.by_workspace.get(workspace, ZERO)
        case Scope.MODEL:
            prefix = budget.match or ""
            return sum((usd for model, usd in cost.by_model.items() if model.startswith(prefix)),
                       ZERO)
        case Scope.API_KEY:
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
    unpriced = set(snapshot.unpriced_models)
    if not unpriced:
        return False
    start = month_start(snapshot.at)
    billed = set(snapshot.settled) if budget.scope is not Scope.API_KEY else set()
    return any(r.model in unpriced and start <= r.start < snapshot.at
               and r.start.date() not in billed and attributable(budget, r) > 0
               for r in snapshot.usage)


def budget_api_keys(budgets: Iterable[Budget]) -> frozenset[str]:
    """The API keys that ``api_key`` budgets name: the only keys the ledger needs apart."""
    return frozenset(b.match for b in budgets if b.scope is Scope.API_KEY and b.match)


def month_to_date(budgets: Iterable[Budget], *, at: datetime,
                  settled: Mapping[date, CostDay], usage: Iterable[PricedUsage],
                  data_through: datetime | None) -> Ledger:
    """The ledger of every budget for the UTC month containing ``at``.

    ``settled`` holds the cost report of closed days that are final enough to trust;
    ``usage`` holds priced usage (any granularity) up to ``data_through``.
    """
    start = month_start(at)
    days = [*days_between(start.date(), at.date()), at.date()]
    index = UsageIndex(row for row in usage if start <= row.start < at)
    in_month = {day: cost for day, cost in settled.items() if start.date() <= day < at.date()}
    spends = tuple(budget_spend(b, days, in_month, index) for b in budgets)
    through = max(in_month) if in_month else None
    return Ledger(at=at, period_start=start, data_through=data_through, budgets=spends,
                  authoritative_through=through)
