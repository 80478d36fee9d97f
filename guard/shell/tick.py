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
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from guard.adapters.sinks import FallbackState, ReloadResult, Sink
from guard.adapters.store.outbox import Outbox
from guard.adapters.store.state import AuditEntry, FallbackRecord, Records
from guard.core.assess import Assessment, assess
from guard.core.ledger import budget_api_keys
from guard.core.model import Budget
from guard.core.notices import Planned, digest, plan
from guard.core.notification import Notification
from guard.core.period import month_start
from guard.core.policy import (
    AlertState,
    Ceiling,
    Condition,
    Override,
    PolicyConfig,
    notified,
)
from guard.entry.report import report_json
from guard.errors import UpstreamError
from guard.shell.deliver import deliver
from guard.shell.enforce import Enforcer, KeyDecision
from guard.shell.ports import SlackTransport
from guard.shell.sync import Fetcher, Snapshot

log = logging.getLogger(__name__)

POLICY = "policy"
LEADER = "leader"


@dataclass(frozen=True, slots=True)
class TickConfig:
    """What a tick needs from the configuration."""

    budgets: tuple[Budget, ...]
    policy: PolicyConfig
    lag: timedelta
    models: dict[str, str]
    lease_ttl: timedelta = timedelta(minutes=3)
    digest_hour: int | None = None


@dataclass
class Tick:
    """The parts a tick works with; ``cli`` builds real ones, tests pass fakes."""

    fetcher: Fetcher
    records: Records
    sinks: Sink
    transport: SlackTransport
    config: TickConfig
    enforcer: Enforcer | None = None
    channel: str = ""
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    @property
    def outbox(self) -> Outbox:
        """The notification outbox in the same store."""
        return Outbox(self.records.store)


@dataclass(frozen=True, slots=True)
class Sent:
    """One notification this tick decided, and whether Slack accepted it this tick."""

    notification: Notification
    delivered: bool
    muted: str | None = None


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
    standby: bool = False
    owed: int = 0
    notification_errors: tuple[str, ...] = ()

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
             "kind": s.notification.kind, "delivered": s.delivered}
            | ({"muted": s.muted} if s.muted else {}) for s in self.sent]
        out["notifications_owed"] = self.owed
        out["notification_errors"] = list(self.notification_errors)
        out["standby"] = self.standby
        out["keys"] = [{"budget": k.budget, "key_id": k.key_id, "action": k.action,
                        "dry_run": k.dry_run, "done": k.done, "error": k.error}
                       for k in self.keys]
        out["upstream_error"] = self.upstream_error
        return out


def run_tick(tick: Tick, at: datetime, dry_run: bool = False) -> TickReport:
    """One full tick as of ``at``."""
    snapshot, error = _gather(tick, at)
    previous = tick.records.fallback()
    pin = _live_override(tick, at)
    assessment = assess(tick.config.budgets, snapshot, policy=tick.config.policy,
                        lag=tick.config.lag, states=tick.records.alert_states(),
                        held_tier=previous.tier if previous else None, override=pin)
    desired = _desired(tick, assessment, previous, at, pin)
    changed = previous is None or not _same(previous, desired)
    if not dry_run and not tick.outbox.lease(LEADER, tick.holder, at, tick.config.lease_ttl):
        return TickReport(assessment, desired, False, None, (), (), str(error) if error else None,
                          standby=True)
    tick.sinks.write(desired, dry_run=dry_run)
    reload = _reload(tick, previous, changed, dry_run)
    sent, states, owed, rejected = _notify(tick, assessment, snapshot, desired, at=at,
                                           dry_run=dry_run)
    keys = _enforce(tick, assessment, at, dry_run)
    if not dry_run:
        _record(tick, previous, desired, changed=changed, reload=reload, states=states, at=at)
    return TickReport(assessment, desired, changed, reload, tuple(sent), tuple(keys),
                      str(error) if error else None, owed=owed,
                      notification_errors=tuple(rejected))


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


def _desired(tick: Tick, a: Assessment, previous: FallbackRecord | None, at: datetime,
             pin: Override | None) -> FallbackState:
    ceiling = a.outcome.ceiling
    firing = tuple(f"{b}: {c}" for b, cs in a.outcome.firing.items() for c in cs)
    shown = pin if ceiling.source == "override" else None
    state = FallbackState.build(
        tick.config.policy.chain, tick.config.models, ceiling.level, source=ceiling.source,
        updated_at=at, reason=_reason(ceiling), firing=firing,
        override_expires_at=shown.expires_at if shown else None,
        override_by=shown.who if shown else None,
        override_reason=shown.reason if shown else None)
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


def _notify(tick: Tick, a: Assessment, snapshot: Snapshot, desired: FallbackState, *,
            at: datetime, dry_run: bool
            ) -> tuple[list[Sent], dict[tuple[str, Condition], AlertState], int, list[str]]:
    """Owe what policy decided (durably), then send what is owed, oldest first."""
    outbox = tick.outbox
    today = [r for r in snapshot.usage if r.start.date() == at.date()]
    planned = plan(a, desired, today, outbox.silences(at), at)
    if tick.config.digest_hour is not None and at.hour == tick.config.digest_hour:
        planned.append(digest(a, desired, snapshot.usage, at))
    states = dict(a.outcome.states)
    for item in planned:
        if not dry_run and item.muted is None:
            outbox.enqueue(item.dedup, item.incident, item.kind, item.payload, at)
        key = (item.budget, Condition(item.condition)) if item.condition else None
        if key in states and item.kind != "update":
            states[key] = notified(states[key], at)
    delivered: set[str] = set()
    rejected: list[str] = []
    if not dry_run:
        results = deliver(outbox, tick.transport, tick.channel, tick.holder, at)
        delivered = {r.owed.dedup for r in results if r.ok}
        rejected = [r.error for r in results if r.final and r.error]
    sent = [Sent(Notification(i.budget, i.condition, i.kind, _severity(states, i), i.payload.text),
                 i.dedup in delivered, i.muted) for i in planned if i.kind != "update"]
    return sent, states, 0 if dry_run else len(outbox.owed()), rejected


def _severity(states: dict[tuple[str, Condition], AlertState], item: Planned) -> str:
    if item.budget is None or item.condition is None:
        return "warning"
    state = states.get((item.budget, Condition(item.condition)))
    return state.severity.value if state else "warning"


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
