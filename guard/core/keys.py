"""What the opt-in hard stop wants done to API keys. Pure.

Only ``api_key`` and ``workspace`` budgets enforce, and only on keys inside their own scope;
keys on the ``never_deactivate`` list are skipped. A deactivation is undone at month rollover
(any tick of a later month restores the keys of earlier months) or by ``guard keys restore``.
Off by default, and dry-run until explicitly made real. ``guard.shell.enforce`` reads the key
directory, applies these decisions and records each one after the Admin API accepted it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from guard.core.limits import ProviderLimit
from guard.core.model import DEFAULT_WORKSPACE, ApiKey, Budget, BudgetSpend, Scope
from guard.core.period import month_start
from guard.core.records import KeyAction

WHO = "budget-guard enforcement"
DEACTIVATE, RESTORE = "deactivate", "restore"
SPEND_LIMIT = "spend_limit:"
"""The prefix of a workspace's Anthropic spend limit among the key actions
(``spend_limit:wrkspc_…``): the ``spend_limit`` method records its cap like a key."""
NO_LIMIT = "none"
"""The prior state of a workspace that had no Anthropic limit of its own."""


@dataclass(frozen=True, slots=True)
class EnforcementConfig:
    """When and on what keys the hard stop acts."""

    enabled: bool = False
    dry_run: bool = True
    threshold_pct: Decimal = Decimal(100)
    never: frozenset[str] = frozenset()
    method: str = "keys"
    """``keys`` (deactivate the keys in scope) or ``spend_limit`` (a workspace budget sets its
    workspace's Anthropic limit to what was spent)."""
    fallback_to_keys: bool = False
    """With ``spend_limit``: deactivate keys when the limit cannot be written (403)."""


@dataclass(frozen=True, slots=True)
class KeyPlan:
    """Budgets whose in-scope keys to deactivate, and earlier deactivations to undo."""

    targets: tuple[Budget, ...] = ()
    restore: tuple[KeyAction, ...] = ()
    held: tuple[tuple[str, str], ...] = ()
    """(budget, why) of budgets past the threshold that the hard stop waits on."""
    spent: tuple[tuple[str, Decimal], ...] = ()
    """Each target's month-to-date spend (what a spend limit is set to)."""


@dataclass(frozen=True, slots=True)
class KeyDecision:
    """What enforcement did (or would do, in dry-run) to one key."""

    budget: str
    key_id: str
    action: str
    prior_status: str
    dry_run: bool
    done: bool
    error: str | None = None
    amount_cents: int | None = None
    """A spend limit's new amount (``spend_limit:`` decisions that cap)."""

    def rehearsed(self) -> KeyDecision:
        """The same decision, marked as a dry run that was not carried out."""
        return replace(self, dry_run=True, done=False, error=None)


def over_threshold(spends: Iterable[BudgetSpend], config: EnforcementConfig) -> list[Budget]:
    """Key and workspace budgets whose spend reached the enforcement share of the hard limit."""
    return [s.budget for s in spends
            if s.budget.scope in (Scope.API_KEY, Scope.WORKSPACE)
            and s.spend_usd >= s.budget.hard_limit_usd * config.threshold_pct / 100]


def keys_in_scope(budget: Budget, keys: Sequence[ApiKey],
                  workspace_ids: Iterable[str]) -> list[ApiKey]:
    """The keys a budget covers: its key, or its workspace's keys (``default`` included)."""
    if budget.scope is Scope.API_KEY:
        return [k for k in keys if k.id == budget.match]
    if budget.match == DEFAULT_WORKSPACE:
        named = set(workspace_ids)
        return [k for k in keys if k.workspace_id is None or k.workspace_id not in named]
    return [k for k in keys if k.workspace_id == budget.match]


def plan_keys(spends: Iterable[BudgetSpend], actions: Sequence[KeyAction],
              config: EnforcementConfig, now: datetime,
              unpriced: Collection[str] = ()) -> KeyPlan:
    """What the hard stop wants as of ``now``: new targets, and last months' keys back.

    A budget in ``unpriced`` (its figure includes an estimate of a model with no card) is
    held, not targeted: no key is deactivated on a guess; billed data decides.
    """
    over = over_threshold(spends, config) if config.enabled else []
    month = month_start(now).date()
    held = tuple((b.name, f"{b.name}: waiting for billed data before deactivating keys; its "
                          "spend includes usage of a model the price table does not know")
                 for b in over if b.name in unpriced)
    targets = tuple(b for b in over if b.name not in unpriced)
    spent = {s.budget.name: s.spend_usd for s in spends}
    return KeyPlan(targets, tuple(a for a in actions if a.period < month), held,
                   tuple((b.name, spent[b.name]) for b in targets if b.name in spent))


def by_spend_limit(budget: Budget, config: EnforcementConfig) -> bool:
    """Whether the hard stop caps ``budget`` through its workspace's Anthropic spend limit
    (``spend_limit`` method; the default workspace cannot have one, key budgets have none)."""
    return (config.method == "spend_limit" and budget.scope is Scope.WORKSPACE
            and budget.match not in (None, DEFAULT_WORKSPACE))


def limit_caps(plan: KeyPlan, limits: Iterable[ProviderLimit], already: Iterable[str],
               config: EnforcementConfig) -> list[KeyDecision]:
    """One decision per workspace to cap: its Anthropic limit set to what its budget spent
    (whole cents, rounded up), never above a limit it already has, each workspace once."""
    current = {limit.workspace_id: limit for limit in limits
               if limit.scope == "workspace" and limit.period == "monthly"}
    done, spent = set(already), dict(plan.spent)
    decisions = []
    for budget in plan.targets:
        if not by_spend_limit(budget, config) or budget.match is None:
            continue
        subject = SPEND_LIMIT + budget.match
        if subject in done:
            continue
        done.add(subject)
        cents = int((spent.get(budget.name, Decimal(0)) * 100).to_integral_value(ROUND_CEILING))
        prior = current.get(budget.match)
        prior_cents = (int(prior.amount_usd * 100) if prior is not None
                       and prior.amount_usd is not None else None)
        if prior_cents is not None and prior_cents <= cents:
            continue  # Anthropic already stops it there: never raise a limit
        decisions.append(KeyDecision(budget.name, subject, DEACTIVATE,
                                     NO_LIMIT if prior_cents is None else str(prior_cents),
                                     config.dry_run, False, amount_cents=cents))
    return decisions


def needs_workspaces(plan: KeyPlan) -> bool:
    """Whether picking keys needs the workspace list (a ``default`` workspace budget does)."""
    return any(b.match == DEFAULT_WORKSPACE for b in plan.targets)


def deactivations(plan: KeyPlan, keys: Sequence[ApiKey], workspace_ids: Iterable[str],
                  already: Iterable[str], config: EnforcementConfig) -> list[KeyDecision]:
    """One decision per active in-scope key of each target, each key once, none twice."""
    named = set(workspace_ids)
    done = set(already)
    decisions = []
    for budget in plan.targets:
        if by_spend_limit(budget, config):
            continue
        for key in keys_in_scope(budget, keys, named):
            if key.id in config.never or key.id in done:
                continue
            done.add(key.id)
            decisions.append(KeyDecision(budget.name, key.id, DEACTIVATE, key.status,
                                         config.dry_run, False))
    return decisions


def restorations(actions: Iterable[KeyAction]) -> list[KeyDecision]:
    """One decision per deactivated key (or capped workspace): back to what it had."""
    return [KeyDecision(a.budget, a.key_id, RESTORE, a.prior_status, False, False)
            for a in actions]


def deactivation_reason(budget: str, config: EnforcementConfig) -> str:
    """The audit log's reason for a deactivation."""
    return f"{budget} reached {config.threshold_pct}% of its hard limit"
