"""One tick: gather → decide → act → record. The daemon and ``guard check`` both run this.

- **gather**: refresh the caches from the Admin API; if it is unreachable, carry on with what
  the store has (the watermark shows how stale it is) and report the outage. Read what the
  store remembers: alert states, the fallback in force, the pin, silences, key actions;
- **decide**: ``guard.core.decide`` — pure. A dry run stops here and reports the plan;
- **act** (only while this replica holds the leader lease): reconcile each target's fallback
  sinks to its desired state (level-triggered; an unchanged state rewrites nothing), run its
  reload hook once per change (again next tick if it failed), owe the planned notifications
  durably and send what is owed, apply the opt-in hard stop;
- **record**: the fallback in force, the audit entries and the alert states, after the
  effects. An alert state advances when its notification is owed: the outbox keeps it until
  Slack accepts it, so a crash or an outage never loses or repeats it.

A state store that fails anywhere in this makes the tick start again without it
(``guard.shell.degraded``): it can only tighten and send critical alerts, journaled until
the store returns, when the next leader tick merges them before it decides. A fallback file
that cannot be written (disk full, directory replaced) is an error of the tick's report; the
notifications still go out, and the fallback is not recorded as in force, so the next tick
writes it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from guard.core.decide import Remembered, TargetPlan, TickConfig, TickPlan, decide
from guard.core.keys import KeyDecision
from guard.core.ledger import budget_api_keys
from guard.core.model import Snapshot
from guard.core.notices import Planned, key_notices
from guard.core.records import NotificationKind, Owed, ReloadResult
from guard.core.summary import TargetOutcome, TickReport, tick_report
from guard.errors import GuardError, SinkError, StoreError, UpstreamError
from guard.shell.degraded import Degraded, merge, pin_of, run_degraded, states_from
from guard.shell.deliver import deliver
from guard.shell.enforce import Enforcer, preview_keys
from guard.shell.ops import migrate_targets
from guard.shell.ports import (
    Fetch,
    LeasePort,
    OutboxPort,
    SilencePort,
    SinkPort,
    SlackTransport,
    StatePort,
)

log = logging.getLogger(__name__)

LEADER = "leader"
SKEW = timedelta(minutes=1)
"""Replicas' clocks may differ this much: a tick this close behind the data is no what-if."""


@dataclass
class Tick:
    """The parts a tick works with; ``guard.entry.wiring`` builds real ones, tests pass fakes."""

    fetcher: Fetch
    records: StatePort
    outbox: OutboxPort
    silences: SilencePort
    lease: LeasePort
    sinks: SinkPort
    transport: SlackTransport
    config: TickConfig
    enforcer: Enforcer | None = None
    channel: str = ""
    holder: str = "budget-guard"
    clock: Callable[[], datetime] | None = None
    """The wall clock the leader lease is kept by (``None``: the tick's ``at``, for simulated
    months). ``--at`` never moves a lease into the past or the future."""
    degraded: Degraded | None = None
    """The parts of a tick without the store (``None``: a store failure fails the tick)."""
    more_sinks: Mapping[str, SinkPort] = field(default_factory=dict)
    """The sinks of every target after the first (``sinks`` is the first's)."""

    def sinks_of(self, target: str) -> SinkPort:
        """The sinks ``target``'s fallback is written to."""
        return self.more_sinks.get(target, self.sinks)

    def release(self) -> bool:
        """Give up the leader lease if this tick's holder has it (a clean exit); a store
        that cannot be reached keeps it until it lapses."""
        try:
            return self.lease.release(LEADER, self.holder)
        except StoreError as exc:
            log.warning("leader lease not released (it lapses on its own): %s", exc)
            return False


@dataclass(frozen=True, slots=True)
class Acted:
    """What the effects of one tick came to."""

    reload: ReloadResult | None
    delivered: frozenset[str]
    rejected: tuple[str, ...]
    owed: int
    keys: tuple[KeyDecision, ...]
    announced: tuple[Planned, ...] = ()
    """Notices the effects themselves called for (the hard stop's ``keys``)."""
    late: tuple[Owed, ...] = ()
    """Notifications owed by earlier ticks that this tick delivered."""
    sink_error: str | None = None
    """Why the first target's fallback files could not be written."""
    targets: tuple[TargetOutcome, ...] = ()
    """Each target's reload and file error."""


def run_tick(tick: Tick, at: datetime, dry_run: bool = False) -> TickReport:
    """One full tick as of ``at``; with ``dry_run``, or as a what-if (``at`` before the data
    already read), it stops after deciding. A replica on standby does not fetch: it decides
    on what the leader stored, to report, and acts on nothing. Without its store, the tick
    runs degraded (tighten only)."""
    try:
        return _with_store(tick, at, dry_run)
    except StoreError as exc:
        if tick.degraded is None:
            raise
        return run_degraded(tick.degraded, at, exc, dry_run)


def _with_store(tick: Tick, at: datetime, dry_run: bool) -> TickReport:
    what_if = is_what_if(tick, at)
    if dry_run or what_if:
        snapshot, error = gather(tick, at)
        plan = decide(snapshot, remember(tick, at), tick.config, at)
        keys = [k.rehearsed() for k in preview_keys(tick.enforcer, plan.keys)]
        return tick_report(plan, keys=tuple(keys), upstream_error=_text(error),
                           what_if=what_if)
    lease_now = tick.clock() if tick.clock is not None else at
    token = tick.lease.hold(LEADER, tick.holder, lease_now, tick.config.lease_ttl)
    if token is None:
        stored = tick.fetcher.cached(at, budget_api_keys(tick.config.budgets))
        return tick_report(decide(stored, remember(tick, at), tick.config, at), standby=True)
    if tick.degraded is not None:
        tick.degraded.store_back()
        merge(tick.degraded.journal, tick.records, tick.outbox, tick.holder, at)
    migrate_targets(tick.records, [t.name for t in tick.config.fallback_targets()], at)
    snapshot, error = gather(tick, at)
    plan = decide(snapshot, remember(tick, at), tick.config, at)
    upstream = _text(error)
    fence = Fence(tick, token, at)
    try:
        acted = act(tick, plan, at, fence)
        fence.check("recording the tick")
        record(tick, plan, acted)
    except Fenced as exc:
        log.error("%s", exc)
        return tick_report(plan, standby=True, upstream_error=upstream)
    return tick_report(plan, reload=acted.reload, delivered=acted.delivered, keys=acted.keys,
                       owed=acted.owed, rejected=acted.rejected, upstream_error=upstream,
                       announced=acted.announced, late=acted.late,
                       sink_error=acted.sink_error, targets=acted.targets)


def _text(error: UpstreamError | None) -> str | None:
    return str(error) if error else None


def is_what_if(tick: Tick, at: datetime) -> bool:
    """Whether ``at`` lies before the usage already read: then the tick only tells what it
    would have decided, and writes nothing but the caches (DESIGN §3)."""
    through = tick.fetcher.watermark()
    return through is not None and at < through - SKEW


def gather(tick: Tick, at: datetime) -> tuple[Snapshot, UpstreamError | None]:
    """The month's data as of ``at``: fresh if the Admin API answers, else as stored."""
    keys = budget_api_keys(tick.config.budgets)
    try:
        return tick.fetcher.refresh(at, keys), None
    except UpstreamError as exc:
        log.warning("Admin API unavailable, deciding on stored data: %s", exc)
        return tick.fetcher.cached(at, keys), exc


def remember(tick: Tick, at: datetime) -> Remembered:
    """What the store remembers that this tick decides with. A store that remembers no
    fallback and no alert state at all (new, or deleted and made again) takes from the files
    on disk the conditions they list as firing, so none is announced again, and their pin
    if it is still active; not their fallback, so the first one this store records is also
    audited and reloaded (a first tick killed after writing the files leaves them behind)."""
    records = tick.records
    first, *rest = [t.name for t in tick.config.fallback_targets()]
    states, fallback, pin = (records.alert_states(), records.fallback(first),
                             records.override(first))
    others = {name: (records.fallback(name), records.override(name)) for name in rest}
    if fallback is None and not states:
        on_disk = tick.sinks.last()
        states = states_from(on_disk)
        pin = pin or pin_of(on_disk, at)
        others = {name: (kept, kept_pin or pin_of(tick.sinks_of(name).last(), at))
                  for name, (kept, kept_pin) in others.items()}
    return Remembered(states, fallback, pin, tick.silences.silences(at),
                      records.key_actions(), others)


class Fenced(GuardError):
    """Another replica took the leader lease while this one acted: it must stop at once."""


@dataclass(frozen=True, slots=True)
class Fence:
    """The leader lease's epoch this tick acts under, checked before every effect."""

    tick: Tick
    token: int
    at: datetime

    def check(self, effect: str) -> None:
        """Raise ``Fenced`` unless this tick's holder still has the lease at its epoch."""
        now = self.tick.clock() if self.tick.clock is not None else self.at
        if not self.tick.lease.current(LEADER, self.tick.holder, self.token, now):
            raise Fenced(f"fenced: the leader lease is no longer {self.tick.holder}'s at epoch "
                         f"{self.token} (paused past it, or taken over); not {effect}, and "
                         "nothing more this tick")


def act(tick: Tick, plan: TickPlan, at: datetime, fence: Fence | None = None) -> Acted:
    """Apply the plan: fallback files and reload, notifications, the hard stop; each effect
    only after ``fence`` says this replica still leads."""
    check = fence.check if fence is not None else (lambda _: None)
    outcomes = tuple(_reconcile(tick, target, check) for target in plan.every_target())
    for _, why in plan.keys.held:
        log.warning("hard stop held: %s", why)
    keys = preview_keys(tick.enforcer, plan.keys)
    if tick.enforcer is not None:
        check("changing API keys")
        keys = tick.enforcer.apply(keys, at)
    announced = tuple(key_notices(keys, at))
    with tick.records.together():  # a crash can never leave a decision without its rows
        check("recording the decision")
        for item in [*plan.notices, *announced]:
            if item.muted is None:
                tick.outbox.enqueue(item.dedup, item.incident, item.kind, item.payload, at)
        tick.records.save_alert_states(plan.states)
    results = deliver(tick.outbox, tick.transport, tick.channel, tick.holder, at,
                      before=lambda: check("sending to Slack"))
    decided = {i.dedup for i in (*plan.notices, *announced)}
    late = tuple(r.owed for r in results if r.ok and r.owed.dedup not in decided
                 and r.owed.kind != NotificationKind.UPDATE)
    head = outcomes[0]
    return Acted(head.reload, frozenset(r.owed.dedup for r in results if r.ok),
                 tuple(r.error for r in results if r.final and r.error),
                 len(tick.outbox.owed()), tuple(keys), announced, late, head.sink_error,
                 outcomes)


def _reconcile(tick: Tick, target: TargetPlan,
               check: Callable[[str], None]) -> TargetOutcome:
    """Write one target's files, then run its reload hook if it is owed."""
    sinks = tick.sinks_of(target.name)
    check(f"writing the fallback files of target {target.name}")
    sink_error = _write(sinks, target)
    check(f"running the reload hook of target {target.name}")
    reload = _reload(sinks) if target.reload and sink_error is None else None
    return TargetOutcome(target.name, reload, sink_error)


def record(tick: Tick, plan: TickPlan, acted: Acted) -> None:
    """Remember the fallback in force and what changed (the alert states were recorded with
    the notifications they decided, before delivery)."""
    outcomes = {o.name: o for o in acted.targets}
    with tick.records.together():  # each fallback and its audit entries, or neither
        for target in plan.every_target():
            outcome = outcomes.get(target.name, TargetOutcome(target.name, acted.reload,
                                                              acted.sink_error))
            if outcome.sink_error is not None:
                continue  # not in force: the next tick writes it again, and audits it then
            reload = outcome.reload
            failed = reload is not None and reload.ran and not reload.ok
            tick.records.save_fallback(target.recorded(reload_failed=failed), target.name)
            for entry in target.audit:
                tick.records.audit(entry)


def _write(sinks: SinkPort, target: TargetPlan) -> str | None:
    """Write one target's fallback files; why they could not be written, or ``None``."""
    try:
        sinks.write(target.fallback)
    except SinkError as exc:
        log.error("%s", exc)
        return str(exc)
    return None


def _reload(sinks: SinkPort) -> ReloadResult:
    result = sinks.reload()
    if result.ran and not result.ok:
        log.warning("reload command failed, retrying next tick: %s", result.detail)
    return result
