"""Priced usage summed along every budget dimension, one index per period. Pure.

A ``PeriodIndex`` holds one period's usage (a UTC day, an hour or a minute) summed for the
organization, per workspace, per API key and per model: everything a budget's figure needs,
in a few dict lookups, however many rows the period had. The ledger, the forecast's history,
the burn rate, the digest and the reconciliation all read these, so a tick never walks the
month's rows: the shell builds an index once per period and keeps it while the period's data
does not change (``guard.shell.sync``), or the store sums it (``usage_scope_days``).

``unpriced_usd`` is the part of a figure estimated at the fallback card, for a model the price
table did not know when it was priced: a budget holding some cannot be trusted to the cent.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from guard.core.model import DEFAULT_WORKSPACE, Budget, PricedUsage, Scope

ZERO = Decimal(0)

USAGE, BILLED, COST = "usage", "billed", "cost"
"""The kinds of per-day data the store versions: priced usage, billed hours, cost days."""


@dataclass(frozen=True, slots=True)
class Sums:
    """Priced usage summed: dollars (tokens, web searches, the unpriced part) and counts."""

    token_usd: Decimal = ZERO
    web_search_usd: Decimal = ZERO
    unpriced_usd: Decimal = ZERO
    input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    web_search_requests: int = 0

    @property
    def usd(self) -> Decimal:
        """Tokens and web searches together."""
        return self.token_usd + self.web_search_usd

    def plus(self, other: Sums) -> Sums:
        """Both sums together."""
        return Sums(self.token_usd + other.token_usd, self.web_search_usd + other.web_search_usd,
                    self.unpriced_usd + other.unpriced_usd,
                    self.input_tokens + other.input_tokens,
                    self.cache_write_tokens + other.cache_write_tokens,
                    self.cache_read_tokens + other.cache_read_tokens,
                    self.output_tokens + other.output_tokens,
                    self.web_search_requests + other.web_search_requests)

    @classmethod
    def of(cls, row: PricedUsage, unpriced: bool = False) -> Sums:
        """One row's sums; ``unpriced``: its model had no card."""
        return cls(row.token_usd, row.web_search_usd, row.usd if unpriced else ZERO,
                   row.input_tokens, row.cache_write_tokens, row.cache_read_tokens,
                   row.output_tokens, row.web_search_requests)


NONE = Sums()


@dataclass(frozen=True, slots=True)
class PeriodIndex:
    """One period's usage per budget dimension. ``workspace`` names the default workspace
    ``DEFAULT_WORKSPACE``; ``api_key`` holds the keys budgets name (others are folded away
    before, their spend still counted for the organization, their workspace and model)."""

    organization: Sums = NONE
    workspace: Mapping[str, Sums] | None = None
    api_key: Mapping[str, Sums] | None = None
    model: Mapping[str, Sums] | None = None
    _spent: dict[tuple[Scope, str | None], Decimal] = field(
        default_factory=dict, compare=False, repr=False)
    """Each budget's spend once asked: an index lives for ticks while its day is unchanged."""

    def sums(self, budget: Budget) -> Sums:
        """What counts toward ``budget`` (for a ``model`` budget, every matching model)."""
        scope = budget.scope
        if scope is Scope.ORGANIZATION:
            return self.organization
        if scope is Scope.WORKSPACE:
            return (self.workspace or {}).get(budget.match or DEFAULT_WORKSPACE, NONE)
        if scope is Scope.API_KEY:
            return (self.api_key or {}).get(budget.match or "", NONE)
        return _total(s for model, s in (self.model or {}).items()
                      if model.startswith(budget.match or ""))

    def spend(self, budget: Budget) -> Decimal:
        """The budget's spend: tokens only for a ``model`` budget (the bill attributes no web
        search to a model), everything for the others."""
        key = (budget.scope, budget.match)
        known = self._spent.get(key)
        if known is None:
            known = self._spent[key] = self._spend(budget)
        return known

    def _spend(self, budget: Budget) -> Decimal:
        if budget.scope is Scope.MODEL:
            prefix = budget.match or ""
            return sum((s.token_usd for model, s in (self.model or {}).items()
                        if model.startswith(prefix)), ZERO)
        return self.sums(budget).usd

    def unpriced(self, budget: Budget) -> bool:
        """Whether the budget's spend holds an estimate at the fallback card."""
        if budget.scope is Scope.MODEL:
            prefix = budget.match or ""
            return any(s.unpriced_usd > 0 and s.token_usd > 0
                       for model, s in (self.model or {}).items() if model.startswith(prefix))
        return self.sums(budget).unpriced_usd > 0

    def models(self) -> Collection[str]:
        """The models used in the period."""
        return (self.model or {}).keys()

    def merged(self, other: PeriodIndex) -> PeriodIndex:
        """Both periods' usage in one index."""
        return PeriodIndex(self.organization.plus(other.organization),
                           _merged(self.workspace, other.workspace),
                           _merged(self.api_key, other.api_key),
                           _merged(self.model, other.model))

    @classmethod
    def of(cls, rows: Iterable[PricedUsage], unpriced: Container[str] = (),
           keys: Container[str] | None = None,
           workspaces: Container[str] | None = None) -> PeriodIndex:
        """The index of ``rows`` (any period); ``unpriced``: the models without a card;
        ``keys`` and ``workspaces``: the API keys and workspaces to keep apart (``None``:
        all; the default workspace always), as the store's sums keep them."""
        org: list[Decimal | int] = _zero()
        workspace: dict[str, list[Decimal | int]] = {}
        api_key: dict[str, list[Decimal | int]] = {}
        model: dict[str, list[Decimal | int]] = {}
        for row in rows:
            values: tuple[Decimal | int, ...] = (row.token_usd, row.web_search_usd,
                row.usd if row.model in unpriced else ZERO, row.input_tokens,
                row.cache_write_tokens, row.cache_read_tokens, row.output_tokens,
                row.web_search_requests)
            targets = [org]
            ws = row.workspace_id or DEFAULT_WORKSPACE
            if workspaces is None or ws in workspaces or ws == DEFAULT_WORKSPACE:
                targets.append(workspace.get(ws) or workspace.setdefault(ws, _zero()))
            if row.api_key_id is not None and (keys is None or row.api_key_id in keys):
                targets.append(api_key.get(row.api_key_id)
                               or api_key.setdefault(row.api_key_id, _zero()))
            if row.model is not None:
                targets.append(model.get(row.model) or model.setdefault(row.model, _zero()))
            for acc in targets:
                for i, value in enumerate(values):
                    acc[i] += value
        return cls(_frozen(org), {k: _frozen(v) for k, v in workspace.items()},
                   {k: _frozen(v) for k, v in api_key.items()},
                   {k: _frozen(v) for k, v in model.items()})


EMPTY = PeriodIndex()

Days = Mapping[date, PeriodIndex]
"""Usage per UTC day."""


def days_of(rows: Iterable[PricedUsage], unpriced: Container[str] = (),
            keys: Container[str] | None = None,
            workspaces: Container[str] | None = None) -> dict[date, PeriodIndex]:
    """Rows grouped into one index per UTC day (``keys``, ``workspaces`` as in
    ``PeriodIndex.of``)."""
    by_day: dict[date, list[PricedUsage]] = {}
    for row in rows:
        by_day.setdefault(row.start.date(), []).append(row)
    return {day: PeriodIndex.of(group, unpriced, keys, workspaces)
            for day, group in sorted(by_day.items())}


def periods_of(rows: Iterable[PricedUsage], width: timedelta,
               unpriced: Container[str] = (), keys: Container[str] | None = None,
               workspaces: Container[str] | None = None) -> list[Period]:
    """Rows (each of one period of ``width``) grouped into one index per period start."""
    by_start: dict[datetime, list[PricedUsage]] = {}
    for row in rows:
        by_start.setdefault(row.start, []).append(row)
    return [Period(start, width, PeriodIndex.of(group, unpriced, keys, workspaces))
            for start, group in sorted(by_start.items())]


@dataclass(frozen=True, slots=True)
class Period:
    """An index with the period it covers: ``[start, start + width)``."""

    start: datetime
    width: timedelta
    index: PeriodIndex


def merged_days(*parts: Days) -> dict[date, PeriodIndex]:
    """Day indexes from several sources, one per day (a day in several: merged)."""
    result: dict[date, PeriodIndex] = {}
    for part in parts:
        for day, index in part.items():
            result[day] = result[day].merged(index) if day in result else index
    return dict(sorted(result.items()))


def _zero() -> list[Decimal | int]:
    return [ZERO, ZERO, ZERO, 0, 0, 0, 0, 0]


def _frozen(acc: list[Decimal | int]) -> Sums:
    return Sums(*acc)  # type: ignore[arg-type]  # Decimals then ints, as ``_zero`` lays out


def _add(target: dict[str, Sums], name: str, sums: Sums) -> None:
    known = target.get(name)
    target[name] = sums if known is None else known.plus(sums)


def _total(parts: Iterable[Sums]) -> Sums:
    total = NONE
    for part in parts:
        total = total.plus(part)
    return total


def _merged(a: Mapping[str, Sums] | None,
            b: Mapping[str, Sums] | None) -> Mapping[str, Sums] | None:
    if not b:
        return a
    if not a:
        return b
    result = dict(a)
    for name, sums in b.items():
        _add(result, name, sums)
    return result
