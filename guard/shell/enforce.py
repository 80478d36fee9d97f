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

from guard.core import keys
from guard.core.keys import DEACTIVATE, WHO, EnforcementConfig, KeyDecision, KeyPlan
from guard.core.period import month_start
from guard.core.records import AuditEntry, KeyAction
from guard.errors import UpstreamError
from guard.shell.ports import KeyAdmin, StatePort

log = logging.getLogger(__name__)


class Enforcer:
    """Applies the hard stop through the Admin API and remembers what it did."""

    def __init__(self, admin: KeyAdmin, state: StatePort, config: EnforcementConfig) -> None:
        self.admin = admin
        self.state = state
        self.config = config

    def preview(self, plan: KeyPlan) -> list[KeyDecision]:
        """The decisions ``plan`` comes to, key by key (a read; nothing changes)."""
        decisions = keys.restorations(plan.restore)
        if not plan.targets:
            return decisions
        active = self.admin.api_keys(status="active")
        named = ([w.id for w in self.admin.workspaces()] if keys.needs_workspaces(plan)
                 else [])
        restored = {a.key_id for a in plan.restore}
        already = {a.key_id for a in self.state.key_actions()} - restored
        return decisions + keys.deactivations(plan, active, named, already, self.config)

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
