"""One evaluation from fetched data: ledger → outlook → policy. Pure.

``guard report`` runs it with no remembered alert state and without the raise delay, so it
shows the conditions the data meets right now; the daemon's tick runs the same code with the
states it remembers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from guard.core.directory import Directory
from guard.core.ledger import ledger_of
from guard.core.limits import ProviderLimit, covering
from guard.core.model import Budget, Ledger, Snapshot
from guard.core.outlook import OutlookInputs, outlooks
from guard.core.policy import (
    AlertState,
    BudgetInput,
    Condition,
    Outcome,
    Override,
    PolicyConfig,
    evaluate,
)
from guard.core.reconcile import Drift, price_drift


@dataclass(frozen=True, slots=True)
class Assessment:
    """Everything decided about every budget as of ``ledger.at``."""

    ledger: Ledger
    inputs: tuple[BudgetInput, ...]
    outcome: Outcome
    stale: bool
    api_requests: int
    policy: PolicyConfig
    unpriced_models: tuple[str, ...] = ()
    price_drift: tuple[Drift, ...] = ()
    source: str = "legacy"
    billed_through: datetime | None = None
    source_note: str | None = None
    directory: Directory | None = None
    priced_models: tuple[str, ...] = ()
    provider_limits: tuple[ProviderLimit, ...] = ()
    """Anthropic's spend limits as last read (none: unknown, or no access)."""


def assess(budgets: Sequence[Budget], snapshot: Snapshot, *, policy: PolicyConfig,
           lag: timedelta, states: Mapping[tuple[str, Condition], AlertState] | None = None,
           held_tier: str | None = None, override: Override | None = None) -> Assessment:
    """Ledger, forecast, burn rate and policy for ``budgets`` from one ``snapshot``."""
    at = snapshot.at
    ledger = ledger_of(budgets, snapshot)
    data = OutlookInputs(snapshot.settled, snapshot.usage, snapshot.usage_from,
                         snapshot.recent, snapshot.hourly, snapshot.kept)
    inputs = tuple(capped(item, snapshot.provider_limits, policy)
                   for item in outlooks(ledger, data, lag=lag))
    stale = is_stale(snapshot.data_through, at, policy)
    outcome = evaluate(inputs, states or {}, now=at, stale=stale, config=policy,
                       held_tier=held_tier, override=override)
    return Assessment(ledger, inputs, outcome, stale, snapshot.api_requests, policy,
                      snapshot.unpriced_models, price_drift(snapshot), snapshot.source,
                      snapshot.billed_through, snapshot.source_note, snapshot.directory,
                      snapshot.priced_models, snapshot.provider_limits)


def capped(item: BudgetInput, limits: Sequence[ProviderLimit],
           policy: PolicyConfig) -> BudgetInput:
    """``item`` with the Anthropic limit on its budget's scope, if any, and where
    ``provider_cap_near`` fires."""
    limit = covering(item.spend.budget, limits) if limits else None
    if limit is None or limit.amount_usd is None:
        return item
    return replace(item, provider_limit=limit,
                   provider_cap_usd=limit.amount_usd * policy.provider_cap_pct / 100)


def is_stale(data_through: datetime | None, at: datetime, policy: PolicyConfig) -> bool:
    """Whether data is older than the policy tolerates."""
    return data_through is None or at - data_through > policy.stale_after
