"""The opt-in hard stop: deactivate a budget's API keys past a share of its hard limit.

Only ``api_key`` and ``workspace`` budgets enforce, and only on keys inside their own scope;
keys on the ``never_deactivate`` list are skipped. Each deactivation is recorded with the key's
prior status after the Admin API accepted it, and undone at month rollover or by
``guard keys restore``. Off by default, and dry-run until explicitly made real.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from guard.adapters.admin.client import AdminClient
from guard.adapters.store.state import AuditEntry, KeyAction, Records
from guard.core.model import DEFAULT_WORKSPACE, ApiKey, Budget, BudgetSpend, Scope
from guard.core.period import month_start
from guard.errors import UpstreamError

WHO = "budget-guard enforcement"


@dataclass(frozen=True, slots=True)
class EnforcementConfig:
    """When and on what keys the hard stop acts."""

    enabled: bool = False
    dry_run: bool = True
    threshold_pct: Decimal = Decimal(100)
    never: frozenset[str] = frozenset()


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


class Enforcer:
    """Applies the hard stop through the Admin API and remembers what it did."""

    def __init__(self, client: AdminClient, records: Records, config: EnforcementConfig) -> None:
        self.client = client
        self.records = records
        self.config = config

    def enforce(self, spends: Sequence[BudgetSpend], at: datetime,
                dry_run: bool) -> list[KeyDecision]:
        """Deactivate the in-scope keys of every budget past the threshold."""
        targets = over_threshold(spends, self.config) if self.config.enabled else []
        if not targets:
            return []
        keys = self.client.api_keys(status="active")
        named = ({w.id for w in self.client.workspaces()}
                 if any(b.match == DEFAULT_WORKSPACE for b in targets) else set())
        done = {a.key_id for a in self.records.key_actions()}
        decisions = []
        for budget in targets:
            for key in keys_in_scope(budget, keys, named):
                if key.id in self.config.never or key.id in done:
                    continue
                done.add(key.id)
                decisions.append(self._deactivate(budget, key, at, dry_run))
        return decisions

    def _deactivate(self, budget: Budget, key: ApiKey, at: datetime,
                    dry_run: bool) -> KeyDecision:
        if dry_run or self.config.dry_run:
            return KeyDecision(budget.name, key.id, "deactivate", key.status, True, False)
        try:
            self.client.set_api_key_status(key.id, "inactive")
        except UpstreamError as exc:
            return KeyDecision(budget.name, key.id, "deactivate", key.status, False, False,
                               str(exc))
        self.records.add_key_action(KeyAction(key.id, budget.name, key.status, at,
                                              month_start(at).date()))
        self.records.audit(AuditEntry(at, WHO, "key_deactivated", key.id, key.status,
                                      "inactive", f"{budget.name} reached "
                                      f"{self.config.threshold_pct}% of its hard limit"))
        return KeyDecision(budget.name, key.id, "deactivate", key.status, False, True)

    def restore(self, at: datetime, reason: str, who: str = WHO, dry_run: bool = False,
                only_before: datetime | None = None) -> list[KeyDecision]:
        """Return every deactivated key (of months before ``only_before``) to its prior status."""
        decisions = []
        for action in self.records.key_actions():
            if only_before is not None and action.period >= only_before.date():
                continue
            decisions.append(self._restore(action, at, reason, who, dry_run))
        return decisions

    def _restore(self, action: KeyAction, at: datetime, reason: str, who: str,
                 dry_run: bool) -> KeyDecision:
        if dry_run:
            return KeyDecision(action.budget, action.key_id, "restore", action.prior_status,
                               True, False)
        try:
            self.client.set_api_key_status(action.key_id, action.prior_status)
        except UpstreamError as exc:
            return KeyDecision(action.budget, action.key_id, "restore", action.prior_status,
                               False, False, str(exc))
        self.records.remove_key_action(action.key_id)
        self.records.audit(AuditEntry(at, who, "key_restored", action.key_id, "inactive",
                                      action.prior_status, reason))
        return KeyDecision(action.budget, action.key_id, "restore", action.prior_status,
                           False, True)
