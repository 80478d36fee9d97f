"""The hard stop's effects: read the key directory, then apply planned key actions in order.

``preview`` turns a ``KeyPlan`` into one ``KeyDecision`` per key (reading the active keys, and
the workspaces when a ``default`` workspace budget needs them); it changes nothing. ``apply``
carries out the decisions that are not dry runs, restorations first, each recorded (key action
and audit entry) only after the Admin API accepted it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from guard.core import keys
from guard.core.keys import (
    DEACTIVATE,
    NO_LIMIT,
    SPEND_LIMIT,
    WHO,
    EnforcementConfig,
    KeyDecision,
    KeyPlan,
)
from guard.core.period import month_start
from guard.core.records import AuditEntry, KeyAction
from guard.errors import SpendLimitsUnavailable, UpstreamError
from guard.shell.ports import KeyAdmin, StatePort

log = logging.getLogger(__name__)


class Enforcer:
    """Applies the hard stop through the Admin API and remembers what it did."""

    def __init__(self, admin: KeyAdmin, state: StatePort, config: EnforcementConfig) -> None:
        self.admin = admin
        self.state = state
        self.config = config
        self.limits_writable = True
        """False once the Spend Limits API refused this organization (403): with
        ``fallback_to_keys`` the keys are deactivated instead from then on."""

    def preview(self, plan: KeyPlan) -> list[KeyDecision]:
        """The decisions ``plan`` comes to, key by key (a read; nothing changes)."""
        decisions = keys.restorations(plan.restore)
        if not plan.targets:
            return decisions
        restored = {a.key_id for a in plan.restore}
        already = {a.key_id for a in self.state.key_actions()} - restored
        config = self.config
        if any(keys.by_spend_limit(b, config) for b in plan.targets):
            caps, config = self._limit_caps(plan, already)
            decisions += caps
        if all(keys.by_spend_limit(b, config) for b in plan.targets):
            return decisions
        active = self.admin.api_keys(status="active")
        named = ([w.id for w in self.admin.workspaces()] if keys.needs_workspaces(plan)
                 else [])
        return decisions + keys.deactivations(plan, active, named, already, config)

    def _limit_caps(self, plan: KeyPlan,
                    already: set[str]) -> tuple[list[KeyDecision], EnforcementConfig]:
        """The workspaces to cap through their Anthropic limit, and the config the keys are
        then planned with (``keys`` for every budget when the limits cannot be written and
        ``fallback_to_keys`` says so)."""
        if self.limits_writable:
            try:
                return keys.limit_caps(plan, self.admin.spend_limits(), already,
                                       self.config), self.config
            except SpendLimitsUnavailable as exc:
                self._unwritable(exc)
        if self.config.fallback_to_keys:
            return [], replace(self.config, method="keys")
        return [], self.config

    def _unwritable(self, exc: SpendLimitsUnavailable) -> None:
        self.limits_writable = False
        if self.config.fallback_to_keys:
            log.warning("hard stop: Anthropic spend limits cannot be written for this "
                        "organization (%s); deactivating the budgets' keys instead, as "
                        "enforcement.fallback_to_keys says", exc)
        else:
            log.error("hard stop: Anthropic spend limits cannot be written for this "
                      "organization (%s); nothing is stopped, and no key is touched "
                      "(enforcement.fallback_to_keys = false)", exc)

    def apply(self, decisions: Sequence[KeyDecision], at: datetime,
              reason: str = "budget period reset", who: str = WHO) -> list[KeyDecision]:
        """Carry out every decision that is not a dry run; returns what happened to each."""
        return [d if d.dry_run else self._apply(d, at, reason, who) for d in decisions]

    def restore_all(self, at: datetime, reason: str, who: str = WHO,
                    dry_run: bool = False) -> list[KeyDecision]:
        """Return every deactivated key to its prior status (``guard keys restore``)."""
        decisions = keys.restorations(self.state.key_actions())
        if dry_run:
            return [d.rehearsed() for d in decisions]
        return self.apply(decisions, at, reason, who)

    def _apply(self, decision: KeyDecision, at: datetime, reason: str,
               who: str) -> KeyDecision:
        if decision.key_id.startswith(SPEND_LIMIT):
            return self._apply_limit(decision, at, reason, who)
        target = "inactive" if decision.action == DEACTIVATE else decision.prior_status
        try:
            self.admin.set_api_key_status(decision.key_id, target)
        except UpstreamError as exc:
            log.error("hard stop: API key %s of budget %s could not be set %s: %s",
                      decision.key_id, decision.budget, target, exc)
            return replace(decision, error=str(exc))
        if decision.action == DEACTIVATE:
            log.warning("hard stop: API key %s deactivated (budget %s); undo with "
                        "`guard enforcement restore`", decision.key_id, decision.budget)
            self._record_deactivation(decision, at)
        else:
            log.warning("hard stop: API key %s restored to %s (%s)", decision.key_id,
                        decision.prior_status, reason)
            self.state.remove_key_action(decision.key_id)
            self.state.audit(AuditEntry(at, who, "key_restored", decision.key_id, "inactive",
                                        decision.prior_status, reason))
        return replace(decision, done=True)

    def _apply_limit(self, d: KeyDecision, at: datetime, reason: str,
                     who: str) -> KeyDecision:
        """Cap a workspace's Anthropic limit at ``d.amount_cents``, or put back what it had:
        its earlier amount, or no limit of its own."""
        workspace = d.key_id.removeprefix(SPEND_LIMIT)
        try:
            if d.action == DEACTIVATE:
                self.admin.set_spend_limit(workspace, d.amount_cents or 0)
            elif d.prior_status == NO_LIMIT:
                self._delete_workspace_limit(workspace)
            else:
                self.admin.set_spend_limit(workspace, int(d.prior_status))
        except SpendLimitsUnavailable as exc:
            self._unwritable(exc)
            return replace(d, error=str(exc))
        except UpstreamError as exc:
            log.error("hard stop: the Anthropic spend limit of workspace %s (budget %s) could "
                      "not be changed: %s", workspace, d.budget, exc)
            return replace(d, error=str(exc))
        before, after = _cents(d.prior_status), _cents(str(d.amount_cents))
        if d.action == DEACTIVATE:
            log.warning("hard stop: workspace %s's Anthropic spend limit set to %s (budget %s; "
                        "was %s); undo with `guard enforcement restore`", workspace, after,
                        d.budget, before)
            self.state.add_key_action(KeyAction(d.key_id, d.budget, d.prior_status, at,
                                                month_start(at).date()))
            self.state.audit(AuditEntry(at, WHO, "spend_limit_set", d.key_id, before, after,
                                        keys.deactivation_reason(d.budget, self.config)))
        else:
            log.warning("hard stop: workspace %s's Anthropic spend limit restored to %s (%s)",
                        workspace, before, reason)
            self.state.remove_key_action(d.key_id)
            self.state.audit(AuditEntry(at, who, "spend_limit_restored", d.key_id, None,
                                        before, reason))
        return replace(d, done=True)

    def _delete_workspace_limit(self, workspace: str) -> None:
        for limit in self.admin.spend_limits():
            if limit.scope == "workspace" and limit.workspace_id == workspace:
                self.admin.delete_spend_limit(limit.id)

    def _record_deactivation(self, d: KeyDecision, at: datetime) -> None:
        self.state.add_key_action(KeyAction(d.key_id, d.budget, d.prior_status, at,
                                            month_start(at).date()))
        self.state.audit(AuditEntry(at, WHO, "key_deactivated", d.key_id, d.prior_status,
                                    "inactive", keys.deactivation_reason(d.budget, self.config)))


def preview_keys(enforcer: Enforcer | None, plan: KeyPlan) -> list[KeyDecision]:
    """``enforcer.preview(plan)``, or nothing when there is no enforcer or the API failed."""
    if enforcer is None:
        return []
    try:
        return enforcer.preview(plan)
    except UpstreamError as exc:
        log.warning("key enforcement skipped this tick: %s", exc)
        return []


def _cents(raw: str) -> str:
    """``"7600"`` as ``$76.00``; ``none`` stays itself."""
    return f"${Decimal(raw) / 100:,.2f}" if raw.isdigit() else raw
