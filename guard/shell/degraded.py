"""A tick without its state store: it may tighten and alert, never relax.

When the store cannot be read or written (read-only, full, locked, corrupted, deleted, or a
PostgreSQL that is down), the tick still fetches from the Admin API into caches of its own in
memory, and decides from what it can read: that fresh data, and the fallback the files on
disk show (the state file, else the env file; its ``firing`` list stands for the alert states
the store would have held). Then:

- on each target, a tier **more restrictive** than the one on disk is written at once (and
  its reload hook run); an equal or less restrictive one is not: nothing relaxes while the
  store is down;
- critical notifications (``hard_reached`` and ``runaway``, first firing or escalation) go to
  Slack at once through the local journal (``guard.adapters.journal``), which keeps them
  owed if Slack is down too, and keeps the alert states these ticks decide, so the next tick
  without the store neither repeats nor forgets them;
- nothing else: no other notification, no key change, no audit entry, no lease.

When the store is back, the next leader tick first merges the journal (``merge``): each
journaled notification becomes an outbox row (delivered, or owed with the time its send
began, so Slack is asked before it is posted again), its incident's message and alert state
are installed unless the store already has the incident firing, and the journal is emptied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from guard.core.decide import Remembered, TargetPlan, TickConfig, TickPlan, decide
from guard.core.fallback import FallbackState
from guard.core.ledger import budget_api_keys
from guard.core.model import Snapshot
from guard.core.notices import Planned
from guard.core.period import month_start
from guard.core.policy import AlertState, Condition, Override, Severity, Status
from guard.core.records import NotificationKind
from guard.core.summary import TargetOutcome, TickReport, incident_parts, tick_report
from guard.core.targets import DEFAULT_TARGET, Target
from guard.errors import SinkError, StoreError, UpstreamError
from guard.shell.deliver import deliver
from guard.shell.ports import (
    Fetch,
    JournalPort,
    OutboxPort,
    SinkPort,
    SlackTransport,
    StatePort,
)

log = logging.getLogger(__name__)

CRITICAL = frozenset({Condition.HARD_REACHED, Condition.RUNAWAY})
"""The conditions whose notifications go out without the store."""
SPOOLED = frozenset({NotificationKind.FIRING, NotificationKind.ESCALATED})


@dataclass
class Degraded:
    """The parts of a tick without the store; the daemon keeps them across ticks."""

    fetcher_factory: Callable[[], Fetch]
    """Builds a fetcher over caches in memory (kept until the store is back)."""
    sinks: SinkPort
    transport: SlackTransport
    journal: JournalPort
    config: TickConfig
    channel: str = ""
    holder: str = "budget-guard"
    more_sinks: Mapping[str, SinkPort] = field(default_factory=dict)
    """The sinks of every target after the first (``sinks`` is the first's)."""
    _fetcher: Fetch | None = field(default=None, init=False, repr=False)

    def sinks_of(self, target: str) -> SinkPort:
        """The sinks ``target``'s fallback is written to."""
        return self.more_sinks.get(target, self.sinks)

    def fetcher(self) -> Fetch:
        """The in-memory fetcher, built on first use."""
        if self._fetcher is None:
            self._fetcher = self.fetcher_factory()
        return self._fetcher

    def store_back(self) -> None:
        """The store answers again: drop the in-memory caches."""
        self._fetcher = None


def run_degraded(parts: Degraded, at: datetime, cause: StoreError,
                 dry_run: bool = False) -> TickReport:
    """One tick as of ``at`` without the store (see the module's docstring)."""
    log.error("state store unavailable; this tick can only tighten the fallback and send "
              "critical alerts: %s", cause)
    snapshot, upstream = _gather(parts, at)
    targets = parts.config.fallback_targets()
    last = {t.name: parts.sinks_of(t.name).last() for t in targets}
    plan = decide(snapshot, _remembered(parts, last, at), parts.config, at)
    warnings = [f"state store unavailable ({cause}): only a more restrictive tier is applied "
                "and only critical alerts are sent"]
    tightened = [_tightened(t, p, last[t.name], warnings)
                 for t, p in zip(targets, plan.every_target(), strict=True)]
    shown = _shown(plan, [shown for shown, _ in tightened])
    if dry_run:
        return tick_report(shown, upstream_error=upstream, store_error=str(cause),
                           extra_warnings=tuple(warnings))
    outcomes = [_apply(parts, t.name, write)
                for t, (_, write) in zip(targets, tightened, strict=True)]
    reload, sink_error = outcomes[0].reload, outcomes[0].sink_error
    critical = [p for p in plan.notices if is_critical(p)]
    for item in critical:
        parts.journal.enqueue(item.dedup, item.incident, item.kind, item.payload, at)
    parts.journal.save_states(plan.states)
    results = deliver(parts.journal, parts.transport, parts.channel, parts.holder, at)
    delivered = frozenset(r.owed.dedup for r in results if r.ok)
    only = replace(shown, notices=tuple(critical))
    return tick_report(only, reload=reload, delivered=delivered,
                       owed=len(parts.journal.owed()),
                       rejected=tuple(r.error for r in results if r.final and r.error),
                       upstream_error=upstream, store_error=str(cause),
                       sink_error=sink_error, extra_warnings=tuple(warnings),
                       targets=outcomes)


def _tightened(target: Target, plan: TargetPlan, last: FallbackState | None,
               warnings: list[str]) -> tuple[TargetPlan, FallbackState | None]:
    """What ``target`` shows without the store (the file's tier unless the plan tightens
    it) and the state to write (``None``: nothing)."""
    write = tighter(plan.fallback, last, target.chain)
    if write is None and last is not None and plan.fallback.tier != last.tier:
        warnings.append(f"not relaxing {last.tier} to {plan.fallback.tier} on target "
                        f"{target.name} while the state store is unavailable")
    return replace(plan, fallback=write or last or plan.fallback, changed=write is not None), \
        write


def _shown(plan: TickPlan, targets: list[TargetPlan]) -> TickPlan:
    head = targets[0]
    return replace(plan, fallback=head.fallback, changed=head.changed, targets=tuple(targets))


def is_critical(item: Planned) -> bool:
    """Whether a notification goes out without the store."""
    return (item.muted is None and item.kind in SPOOLED and item.condition is not None
            and item.condition in CRITICAL)


def tighter(desired: FallbackState, last: FallbackState | None,
            chain: tuple[str, ...]) -> FallbackState | None:
    """``desired`` if it is more restrictive than the fallback on disk (or there is none)."""
    if last is None:
        return desired
    return desired if _level(desired, chain) > _level(last, chain) else None


def _level(state: FallbackState, chain: tuple[str, ...]) -> int:
    return chain.index(state.tier) if state.tier in chain else state.level


def _gather(parts: Degraded, at: datetime) -> tuple[Snapshot, str | None]:
    keys = budget_api_keys(parts.config.budgets)
    fetcher = parts.fetcher()
    try:
        return fetcher.refresh(at, keys), None
    except UpstreamError as exc:
        log.warning("Admin API unavailable too, deciding on what this process read: %s", exc)
        return fetcher.cached(at, keys), str(exc)


def _remembered(parts: Degraded, last: Mapping[str, FallbackState | None],
                at: datetime) -> Remembered:
    """What a tick without the store can remember: the journal's states (else the ones the
    files' ``firing`` lists stand for), each target's fallback on disk and the pin it shows."""
    (_, head), *rest = last.items()
    states = parts.journal.states()
    if not states:
        for kept in last.values():
            states = {**states, **states_from(kept)}
    return Remembered(states, head, pin_of(head, at),
                      others={name: (kept, pin_of(kept, at)) for name, kept in rest})


def pin_of(last: FallbackState | None, at: datetime) -> Override | None:
    """The pin a fallback file shows, if it is still active at ``at``."""
    if last is None or last.source != "override" or last.override_expires_at is None:
        return None
    pin = Override(last.tier, last.override_expires_at, last.override_reason or "",
                   last.override_by or "")
    return pin if pin.active(at) else None


def states_from(last: FallbackState | None) -> dict[tuple[str, Condition], AlertState]:
    """Alert states for the conditions a fallback file lists as firing: firing and notified
    (critically) when the file was written, so none of them is announced again."""
    if last is None:
        return {}
    states: dict[tuple[str, Condition], AlertState] = {}
    period = month_start(last.updated_at).date()
    for entry in last.firing:
        budget, _, name = entry.rpartition(": ")
        try:
            condition = Condition(name)
        except ValueError:
            continue
        states[(budget, condition)] = AlertState(
            Status.FIRING, period, last.updated_at, Severity.CRITICAL,
            last_notified=last.updated_at, notified_severity=Severity.CRITICAL)
    return states


def _apply(parts: Degraded, name: str, target: FallbackState | None) -> TargetOutcome:
    if target is None:
        return TargetOutcome(name)
    sinks = parts.sinks_of(name)
    try:
        sinks.write(target)
    except SinkError as exc:
        log.error("%s", exc)
        return TargetOutcome(name, None, str(exc))
    log.warning("fallback%s tightened to %s without the state store: %s",
                "" if name == DEFAULT_TARGET else f" of target {name}", target.tier,
                target.reason)
    result = sinks.reload()
    if result.ran and not result.ok:
        log.warning("reload command failed: %s", result.detail)
    return TargetOutcome(name, result, None)


def merge(journal: JournalPort, records: StatePort, outbox: OutboxPort, holder: str,
          now: datetime) -> int:
    """Move what ticks without the store journaled into the store (one transaction), then
    empty the journal; the number of notifications merged."""
    if journal.empty():
        return 0
    rows = journal.rows()
    with records.together():
        states = records.alert_states()
        journaled = journal.states()
        for owed, _ in rows:
            _install_state(states, journaled, owed.incident, owed.kind)
        for owed, _ in rows:
            outbox.enqueue(owed.dedup, owed.incident, owed.kind, owed.payload, owed.created_at)
        ids = {o.dedup: o.id for o in outbox.owed()}
        for owed, delivered_at in rows:
            if owed.dedup not in ids:
                continue
            row_id = ids[owed.dedup]
            if delivered_at is not None or owed.sending_since is not None:
                since = owed.sending_since or owed.created_at
                outbox.claim(row_id, holder, since, timedelta(0))  # its send began then
                if delivered_at is not None:
                    outbox.delivered(row_id, delivered_at)
                else:
                    outbox.failed(row_id, "journaled while the state store was unavailable")
        for incident, (channel, ts) in journal.messages().items():
            if outbox.message_of(incident) is None:
                outbox.remember_message(incident, channel, ts, now)
        records.save_alert_states(states)
    journal.clear()
    log.info("state store back: %d notifications journaled without it merged into the "
             "outbox", len(rows))
    return len(rows)


def _install_state(states: dict[tuple[str, Condition], AlertState],
                   journaled: dict[tuple[str, Condition], AlertState], incident: str,
                   kind: str) -> None:
    """Take the journal's state of an incident unless the store already has it firing (at
    the severity an escalation announced)."""
    budget, name = incident_parts(incident)
    if budget is None or name is None:
        return
    key = (budget, Condition(name))
    mine, theirs = journaled.get(key), states.get(key)
    if mine is None:
        return
    if theirs is None or theirs.status != Status.FIRING or (
            kind == NotificationKind.ESCALATED
            and theirs.notified_severity != Severity.CRITICAL):
        states[key] = mine
