"""One tick: gather → decide → act → record. The daemon and ``guard check`` both run this.

- **gather**: refresh the caches from the Admin API; if it is unreachable, carry on with what
  the store has (the watermark shows how stale it is) and report the outage;
- **decide**: ledger, forecast, burn rate and policy with the remembered alert states, the
  ceiling in force (held while data is stale) and the on-call override;
- **act**: reconcile the fallback sinks to the desired state (level-triggered; an unchanged
  state rewrites nothing), run the reload hook once per change (again next tick if it failed),
  send owed notifications, apply the opt-in hard stop;
- **record**: alert states advance only for notifications that were accepted; the fallback in
  force, the audit log and key actions are written after their effects. ``dry_run`` computes
  everything and records nothing, sends nothing, writes no file and touches no key.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from guard.assess import Assessment, assess
from guard.enforce import Enforcer, KeyDecision
from guard.errors import UpstreamError
from guard.fallback.sinks import FallbackState, ReloadResult, Sink
from guard.fetch import Fetcher, Snapshot
from guard.ledger import budget_api_keys
from guard.model import Budget
from guard.notify import Notification, Notifier
from guard.period import month_start
from guard.policy import (
    AlertState,
    Ceiling,
    Condition,
    Decision,
    Override,
    PolicyConfig,
    Reason,
    notified,
)
from guard.records import AuditEntry, FallbackRecord, Records
from guard.report import report_json

log = logging.getLogger(__name__)

POLICY = "policy"
KINDS = {Reason.FIRST: "firing", Reason.REPEAT: "repeat", Reason.ESCALATED: "escalated",
         Reason.RESOLVED: "resolved"}


@dataclass(frozen=True, slots=True)
class TickConfig:
    """What a tick needs from the configuration."""

    budgets: tuple[Budget, ...]
    policy: PolicyConfig
    lag: timedelta
    models: dict[str, str]


@dataclass
class Tick:
    """The parts a tick works with; ``cli`` builds real ones, tests pass fakes."""

    fetcher: Fetcher
    records: Records
    sinks: Sink
    notifier: Notifier
    config: TickConfig
    enforcer: Enforcer | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """One notification and whether it was accepted."""

    notification: Notification
    delivered: bool


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one tick saw and did; ``as_json`` is DESIGN §3's object."""

    assessment: Assessment
    fallback: FallbackState
    changed: bool
    reload: ReloadResult | None
    sent: tuple[Sent, ...]
    keys: tuple[KeyDecision, ...]
    upstream_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The ``guard check --json`` object."""
        out = report_json(self.assessment)
        out["fallback"] = {"tier": self.fallback.tier, "model": self.fallback.model,
                           "chain": list(self.fallback.chain), "source": self.fallback.source,
                           "changed": self.changed, "reason": self.fallback.reason}
        if self.reload is not None and self.reload.ran:
            out["fallback"]["reload"] = {"ok": self.reload.ok, "detail": self.reload.detail}
        out["notifications"] = [
            {"budget": s.notification.budget, "condition": s.notification.condition,
             "kind": s.notification.kind, "delivered": s.delivered} for s in self.sent]
        out["keys"] = [{"budget": k.budget, "key_id": k.key_id, "action": k.action,
                        "dry_run": k.dry_run, "done": k.done, "error": k.error}
                       for k in self.keys]
        out["upstream_error"] = self.upstream_error
        return out


def run_tick(tick: Tick, at: datetime, dry_run: bool = False) -> TickReport:
    """One full tick as of ``at``."""
    snapshot, error = _gather(tick, at)
    previous = tick.records.fallback()
    assessment = assess(tick.config.budgets, snapshot, policy=tick.config.policy,
                        lag=tick.config.lag, states=tick.records.alert_states(),
                        held_tier=previous.tier if previous else None,
                        override=_live_override(tick, at))
    desired = _desired(tick, assessment, previous, at)
    changed = previous is None or not _same(previous, desired)
    tick.sinks.write(desired, dry_run=dry_run)
    reload = _reload(tick, previous, changed, dry_run)
    sent, states = _notify(tick, assessment, at, dry_run)
    keys = _enforce(tick, assessment, at, dry_run)
    if not dry_run:
        _record(tick, previous, desired, changed=changed, reload=reload, states=states, at=at)
    return TickReport(assessment, desired, changed, reload, tuple(sent), tuple(keys),
                      str(error) if error else None)


def _gather(tick: Tick, at: datetime) -> tuple[Snapshot, UpstreamError | None]:
    keys = budget_api_keys(tick.config.budgets)
    try:
        return tick.fetcher.refresh(at, keys), None
    except UpstreamError as exc:
        log.warning("Admin API unavailable, deciding on stored data: %s", exc)
        return tick.fetcher.cached(at, keys), exc


def _live_override(tick: Tick, at: datetime) -> Override | None:
    pin = tick.records.override()
    return pin if pin is not None and pin.active(at) else None


def _desired(tick: Tick, a: Assessment, previous: FallbackRecord | None,
             at: datetime) -> FallbackState:
    ceiling = a.outcome.ceiling
    firing = tuple(f"{b}: {c}" for b, cs in a.outcome.firing.items() for c in cs)
    pin = _live_override(tick, at)
    state = FallbackState.build(
        tick.config.policy.chain, tick.config.models, ceiling.level, source=ceiling.source,
        updated_at=at, reason=_reason(ceiling), firing=firing,
        override_expires_at=pin.expires_at if pin and ceiling.source == "override" else None,
        override_by=pin.who if pin and ceiling.source == "override" else None,
        override_reason=pin.reason if pin and ceiling.source == "override" else None)
    if previous is not None and _same(previous, state):
        state = replace(state, updated_at=previous.updated_at)
    return state


def _reason(ceiling: Ceiling) -> str:
    if not ceiling.because:
        return "no budget condition limits the model"
    return "; ".join(ceiling.because)


def _same(previous: FallbackRecord, state: FallbackState) -> bool:
    return (previous.tier, previous.model, previous.source) == (state.tier, state.model,
                                                                 state.source)


def _reload(tick: Tick, previous: FallbackRecord | None, changed: bool,
            dry_run: bool) -> ReloadResult | None:
    owed = changed or (previous is not None and previous.reload_pending)
    if not owed:
        return None
    result = tick.sinks.reload(dry_run=dry_run)
    if result.ran and not result.ok:
        log.warning("reload command failed, retrying next tick: %s", result.detail)
    return result


def _notify(tick: Tick, a: Assessment, at: datetime,
            dry_run: bool) -> tuple[list[Sent], dict[tuple[str, Condition], AlertState]]:
    states = dict(a.outcome.states)
    sent: list[Sent] = []
    for decision in a.outcome.decisions:
        kind = KINDS.get(decision.reason)
        if kind is None:
            continue
        note = Notification(decision.budget, decision.condition.value, kind,
                            decision.severity.value, _text(decision, kind))
        delivered = False if dry_run else _send(tick.notifier, note)
        sent.append(Sent(note, delivered))
        key = (decision.budget, decision.condition)
        if delivered and key in states:
            states[key] = notified(states[key], at)
    if a.outcome.reset:
        note = Notification(None, None, "reset", "warning",
                            "budgets reset for the new month; every condition resolved")
        sent.append(Sent(note, False if dry_run else _send(tick.notifier, note)))
    return sent, states


def _send(notifier: Notifier, note: Notification) -> bool:
    try:
        return notifier.send(note)
    except Exception as exc:
        log.warning("notification not delivered, retrying next tick: %s", exc)
        return False


def _text(decision: Decision, kind: str) -> str:
    return f"{decision.budget}: {decision.condition.value} {kind} ({decision.reason.value})"


def _enforce(tick: Tick, a: Assessment, at: datetime, dry_run: bool) -> Sequence[KeyDecision]:
    if tick.enforcer is None:
        return []
    decisions: list[KeyDecision] = []
    try:
        decisions += tick.enforcer.restore(at, "budget period reset", dry_run=dry_run,
                                           only_before=month_start(at))
        decisions += tick.enforcer.enforce(a.ledger.budgets, at, dry_run)
    except UpstreamError as exc:
        log.warning("key enforcement skipped this tick: %s", exc)
    return decisions


def _record(tick: Tick, previous: FallbackRecord | None, desired: FallbackState, *,
            changed: bool, reload: ReloadResult | None,
            states: dict[tuple[str, Condition], AlertState], at: datetime) -> None:
    pending = reload is not None and reload.ran and not reload.ok
    tick.records.save_fallback(FallbackRecord(
        desired.tier, desired.level, desired.model, desired.source, desired.updated_at,
        desired.reason, desired.firing, pending))
    if changed:
        before = f"{previous.tier} ({previous.source})" if previous else None
        tick.records.audit(AuditEntry(at, POLICY, "fallback_changed", "fallback", before,
                                      f"{desired.tier} ({desired.source})", desired.reason))
    tick.records.save_alert_states(states)
