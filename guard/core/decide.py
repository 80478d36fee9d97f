"""One tick's decisions: ``decide(snapshot, remembered, config, now) -> TickPlan``. Pure.

From the data (a ``Snapshot``) and what the guard remembers (alert states, the fallback in
force, the on-call pin, silences, key actions), it decides everything a tick does:

- the **assessment**: ledger, forecast, burn rate and policy, with the ceiling in force held
  while data is stale and an active pin in its place;
- the **fallback** each target's sinks should show (``guard.core.targets``: only the budgets
  a target lists cap it), keeping ``updated_at`` at the last change, and whether its reload
  hook is owed (a change, or a failed reload to retry);
- the **notifications** owed (the daily digest at its hour), and the alert states that go
  with them: a state advances when its notification is *owed*, because the outbox then
  keeps it until Slack accepts it;
- the **key plan** of the opt-in hard stop;
- the **audit** entries of what changed.

The plan is also the dry-run report: ``guard check --dry-run`` stops here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from guard.core import notices
from guard.core.assess import Assessment, assess
from guard.core.fallback import FallbackState
from guard.core.keys import EnforcementConfig, KeyPlan, over_threshold, plan_keys
from guard.core.ledger import includes_unpriced
from guard.core.model import Budget, Snapshot
from guard.core.notices import Planned
from guard.core.policy import AlertState, Ceiling, Condition, Override, PolicyConfig, notified
from guard.core.records import AuditEntry, KeyAction, NotificationKind, Silence
from guard.core.targets import DEFAULT_TARGET, Target, fallback_subject, target_ceiling

POLICY = "policy"


@dataclass(frozen=True, slots=True)
class TickConfig:
    """What a tick needs from the configuration."""

    budgets: tuple[Budget, ...]
    policy: PolicyConfig
    lag: timedelta
    models: dict[str, str]
    lease_ttl: timedelta = timedelta(minutes=3)
    digest_hour: int | None = None
    enforcement: EnforcementConfig = field(default_factory=EnforcementConfig)
    targets: tuple[Target, ...] = ()
    """The fallback targets (none: one target ``default`` of every budget)."""

    def fallback_targets(self) -> tuple[Target, ...]:
        """Every target, the first one first (the one ``fallback`` in reports is)."""
        return self.targets or (Target(DEFAULT_TARGET, self.policy.chain, self.models),)


@dataclass(frozen=True, slots=True)
class Remembered:
    """What the store remembers that a tick decides with."""

    states: Mapping[tuple[str, Condition], AlertState] = field(default_factory=dict)
    fallback: FallbackState | None = None
    override: Override | None = None
    silences: Sequence[Silence] = ()
    key_actions: Sequence[KeyAction] = ()
    others: Mapping[str, tuple[FallbackState | None, Override | None]] = field(
        default_factory=dict)
    """The fallback and pin of every target after the first (``fallback`` and ``override``
    are the first's)."""

    def of(self, target: str, first: bool) -> tuple[FallbackState | None, Override | None]:
        """The fallback last in force on ``target`` and its pin."""
        return (self.fallback, self.override) if first else self.others.get(target, (None, None))


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """What one tick decided for one target's outputs."""

    name: str
    fallback: FallbackState
    previous: FallbackState | None
    changed: bool
    reload: bool
    audit: tuple[AuditEntry, ...] = ()

    def recorded(self, reload_failed: bool) -> FallbackState:
        """The fallback to remember, with the reload still owed when it failed."""
        return replace(self.fallback, reload_pending=reload_failed)


@dataclass(frozen=True, slots=True)
class TickPlan:
    """Everything one tick decided, before any effect."""

    assessment: Assessment
    fallback: FallbackState
    previous: FallbackState | None
    changed: bool
    reload: bool
    notices: tuple[Planned, ...]
    states: dict[tuple[str, Condition], AlertState]
    keys: KeyPlan
    audit: tuple[AuditEntry, ...]
    targets: tuple[TargetPlan, ...] = ()
    """Every target's plan, the first one's being ``fallback``, ``changed`` and ``reload``."""

    def recorded(self, reload_failed: bool) -> FallbackState:
        """The fallback to remember, with the reload still owed when it failed."""
        return replace(self.fallback, reload_pending=reload_failed)

    def every_target(self) -> tuple[TargetPlan, ...]:
        """The targets' plans (one, ``default``, for a plan built without them)."""
        return self.targets or (TargetPlan(DEFAULT_TARGET, self.fallback, self.previous,
                                           self.changed, self.reload, self.audit),)


def decide(snapshot: Snapshot, remembered: Remembered, config: TickConfig,
           now: datetime) -> TickPlan:
    """Every decision of one tick as of ``now``."""
    previous = remembered.fallback
    pin = remembered.override if remembered.override and remembered.override.active(now) \
        else None
    a = assess(config.budgets, snapshot, policy=config.policy, lag=config.lag,
               states=remembered.states, held_tier=previous.tier if previous else None,
               override=pin)
    targets = tuple(target_plan(a, target, remembered.of(target.name, i == 0), config, now)
                    for i, target in enumerate(config.fallback_targets()))
    head = targets[0]
    planned = _notices(a, snapshot, head.fallback, silences=remembered.silences,
                       config=config, now=now)
    candidates = over_threshold(a.ledger.budgets, config.enforcement) \
        if config.enforcement.enabled else []
    unpriced = [b.name for b in candidates if includes_unpriced(b, snapshot)]
    keys = plan_keys(a.ledger.budgets, remembered.key_actions, config.enforcement, now,
                     unpriced)
    return TickPlan(a, head.fallback, head.previous, head.changed, head.reload,
                    tuple(planned), advanced_states(a, planned, now), keys,
                    tuple(entry for t in targets for entry in t.audit), targets)


def target_plan(a: Assessment, target: Target,
                remembered: tuple[FallbackState | None, Override | None], config: TickConfig,
                now: datetime) -> TargetPlan:
    """The fallback ``target`` gets from the conditions of the budgets it covers, its pin
    and the tier it held (while data is stale)."""
    previous, stored_pin = remembered
    pin = stored_pin if stored_pin is not None and stored_pin.active(now) else None
    budgets = {item.spend.budget.name: item.spend.budget for item in a.inputs}
    pairs = [(budgets[name], condition) for name, conditions in a.outcome.firing.items()
             for condition in conditions if name in budgets]
    hold = previous.tier if previous is not None and a.stale and not a.outcome.reset else None
    ceiling = target_ceiling(target, pairs, config.policy, hold=hold, pin=pin, now=now)
    desired = desired_fallback(a, target, ceiling, previous, now=now, pin=pin)
    changed = previous is None or not previous.same_tier(desired)
    reload = changed or (previous is not None and previous.reload_pending)
    audit = _audit(target.name, previous, desired, now) if changed else ()
    return TargetPlan(target.name, desired, previous, changed, reload, audit)


def desired_fallback(a: Assessment, target: Target, ceiling: Ceiling,
                     previous: FallbackState | None, *, now: datetime,
                     pin: Override | None) -> FallbackState:
    """The fallback ``ceiling`` calls for on ``target``; ``updated_at`` stays at the last
    change. Its firing list names the conditions of the budgets the target covers."""
    firing = tuple(f"{b}: {c}" for b, cs in a.outcome.firing.items() for c in cs
                   if target.covers(b))
    shown = pin if ceiling.source == "override" else None
    state = FallbackState.build(
        target.chain, target.models, ceiling.level, source=ceiling.source,
        updated_at=now, reason=reason(ceiling), firing=firing,
        override_expires_at=shown.expires_at if shown else None,
        override_by=shown.who if shown else None,
        override_reason=shown.reason if shown else None)
    if previous is not None and previous.same_tier(state):
        state = replace(state, updated_at=previous.updated_at)
    return state


def reason(ceiling: Ceiling) -> str:
    """Why the fallback is where it is, in words."""
    if not ceiling.because:
        return "no budget condition limits the model"
    return "; ".join(ceiling.because)


def advanced_states(a: Assessment, planned: Sequence[Planned],
                    now: datetime) -> dict[tuple[str, Condition], AlertState]:
    """The new alert states, each marked notified when its notification is owed (or muted)."""
    states = dict(a.outcome.states)
    for item in planned:
        key = (item.budget, Condition(item.condition)) if item.budget and item.condition \
            else None
        if key in states and item.kind != NotificationKind.UPDATE:
            states[key] = notified(states[key], now)
    return states


def _notices(a: Assessment, snapshot: Snapshot, desired: FallbackState, *,
             silences: Sequence[Silence], config: TickConfig, now: datetime) -> list[Planned]:
    planned = notices.plan(a, desired, snapshot.today, silences, now)
    if config.digest_hour is not None and now.hour == config.digest_hour:
        planned.append(notices.digest(a, desired, snapshot.usage, now))
    return planned


def _audit(target: str, previous: FallbackState | None, desired: FallbackState,
           now: datetime) -> tuple[AuditEntry, ...]:
    before = f"{previous.tier} ({previous.source})" if previous else None
    return (AuditEntry(now, POLICY, "fallback_changed", fallback_subject(target), before,
                       f"{desired.tier} ({desired.source})", desired.reason),)
