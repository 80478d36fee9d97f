"""One tick's decisions: ``decide(snapshot, remembered, config, now) -> TickPlan``. Pure.

From the data (a ``Snapshot``) and what the guard remembers (alert states, the fallback in
force, the on-call pin, silences, key actions), it decides everything a tick does:

- the **assessment**: ledger, forecast, burn rate and policy, with the ceiling in force held
  while data is stale and an active pin in its place;
- the **fallback** the sinks should show, keeping ``updated_at`` at the last change, and
  whether the reload hook is owed (a change, or a failed reload to retry);
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


@dataclass(frozen=True, slots=True)
class Remembered:
    """What the store remembers that a tick decides with."""

    states: Mapping[tuple[str, Condition], AlertState] = field(default_factory=dict)
    fallback: FallbackState | None = None
    override: Override | None = None
    silences: Sequence[Silence] = ()
    key_actions: Sequence[KeyAction] = ()


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

    def recorded(self, reload_failed: bool) -> FallbackState:
        """The fallback to remember, with the reload still owed when it failed."""
        return replace(self.fallback, reload_pending=reload_failed)


def decide(snapshot: Snapshot, remembered: Remembered, config: TickConfig,
           now: datetime) -> TickPlan:
    """Every decision of one tick as of ``now``."""
    previous = remembered.fallback
    pin = remembered.override if remembered.override and remembered.override.active(now) \
        else None
    a = assess(config.budgets, snapshot, policy=config.policy, lag=config.lag,
               states=remembered.states, held_tier=previous.tier if previous else None,
               override=pin)
    desired = desired_fallback(a, previous, config, now, pin)
    changed = previous is None or not previous.same_tier(desired)
    planned = _notices(a, snapshot, desired, silences=remembered.silences, config=config,
                       now=now)
    candidates = over_threshold(a.ledger.budgets, config.enforcement) \
        if config.enforcement.enabled else []
    unpriced = [b.name for b in candidates if includes_unpriced(b, snapshot)]
    keys = plan_keys(a.ledger.budgets, remembered.key_actions, config.enforcement, now,
                     unpriced)
    reload = changed or (previous is not None and previous.reload_pending)
    return TickPlan(a, desired, previous, changed, reload, tuple(planned),
                    advanced_states(a, planned, now), keys,
                    _audit(previous, desired, now) if changed else ())


def desired_fallback(a: Assessment, previous: FallbackState | None, config: TickConfig,
                     now: datetime, pin: Override | None) -> FallbackState:
    """The fallback the ceiling calls for; ``updated_at`` stays at the last change."""
    ceiling = a.outcome.ceiling
    firing = tuple(f"{b}: {c}" for b, cs in a.outcome.firing.items() for c in cs)
    shown = pin if ceiling.source == "override" else None
    state = FallbackState.build(
        config.policy.chain, config.models, ceiling.level, source=ceiling.source,
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


def _audit(previous: FallbackState | None, desired: FallbackState,
           now: datetime) -> tuple[AuditEntry, ...]:
    before = f"{previous.tier} ({previous.source})" if previous else None
    return (AuditEntry(now, POLICY, "fallback_changed", "fallback", before,
                       f"{desired.tier} ({desired.source})", desired.reason),)
