"""Budget conditions, their lifecycle, notification reasons and the fallback ceiling. Pure.

Every function takes ``now`` as an argument and reads nothing else. The lifecycle of one
(budget, condition) is Alertmanager's: pending → firing → (repeat…) → resolved.

- Spend conditions (``soft_reached``, ``hard_reached``), ``runaway`` and ``data_stale`` fire on
  the first evaluation that sees them.
- Forecast conditions (``hard_at_risk``, ``hard_likely``) are gated (enough history or
  month-to-date ≥ 5 % of the limit) and raise only after holding for ``raise_after``.
- Everything clears only after ``clear_after`` spent below 95 % of its threshold.
- A condition whose input is unknown (no forecast, stale data) holds its state: missing data
  never raises and never clears anything, so it never relaxes a ceiling.
- At month rollover every condition resolves and one reset notice goes out.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from guard.core.forecast import Burn, Forecast
from guard.core.limits import ProviderLimit
from guard.core.model import Budget, BudgetSpend
from guard.core.period import month_start

CLEAR_BAND = Decimal("0.95")
NO_CEILING = "none"


class Condition(enum.StrEnum):
    """The conditions of DESIGN §2, in order of severity of their default ceiling."""

    SOFT_REACHED = "soft_reached"
    HARD_AT_RISK = "hard_at_risk"
    HARD_LIKELY = "hard_likely"
    HARD_REACHED = "hard_reached"
    RUNAWAY = "runaway"
    DATA_STALE = "data_stale"
    PROVIDER_CAP_NEAR = "provider_cap_near"


class Severity(enum.StrEnum):
    """How loud a condition is."""

    WARNING = "warning"
    CRITICAL = "critical"


class Status(enum.StrEnum):
    """Where a condition is in its lifecycle (inactive conditions have no state)."""

    PENDING = "pending"
    FIRING = "firing"


class Reason(enum.Enum):
    """Why a notification goes out, or not; the value is the sentence for logs and Slack."""

    FIRST = "first notification"
    REPEAT = "repeat interval elapsed"
    ESCALATED = "severity increased"
    RESOLVED = "resolved"
    RESET = "budget period reset"
    NONE = "do not notify"


IMMEDIATE = frozenset({Condition.SOFT_REACHED, Condition.HARD_REACHED, Condition.RUNAWAY,
                       Condition.DATA_STALE, Condition.PROVIDER_CAP_NEAR})
FORECAST = frozenset({Condition.HARD_AT_RISK, Condition.HARD_LIKELY})
_RANK = {Severity.WARNING: 0, Severity.CRITICAL: 1}
_ORDER = {condition: rank for rank, condition in enumerate(Condition)}


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """The policy's knobs; ``chain`` is the fallback chain, most capable tier first."""

    chain: tuple[str, ...] = ("opus", "sonnet", "haiku")
    raise_after: timedelta = timedelta(minutes=10)
    clear_after: timedelta = timedelta(minutes=60)
    repeat_interval: timedelta = timedelta(hours=24)
    stale_after: timedelta = timedelta(minutes=30)
    provider_cap_pct: Decimal = Decimal(90)
    """``provider_cap_near`` fires at this share (%) of an Anthropic spend limit."""

    def default_ceiling(self, condition: Condition) -> str:
        """DESIGN §2's default ceiling of a condition."""
        second = self.chain[min(1, len(self.chain) - 1)]
        return {Condition.SOFT_REACHED: second, Condition.HARD_AT_RISK: NO_CEILING,
                Condition.HARD_LIKELY: second, Condition.HARD_REACHED: self.chain[-1],
                Condition.RUNAWAY: second, Condition.DATA_STALE: NO_CEILING,
                Condition.PROVIDER_CAP_NEAR: NO_CEILING}[condition]


@dataclass(frozen=True, slots=True)
class Signal:
    """What the data says about one condition right now."""

    active: bool
    clearable: bool
    severity: Severity = Severity.WARNING
    known: bool = True


@dataclass(frozen=True, slots=True)
class AlertState:
    """The remembered lifecycle of one (budget, condition) in one month."""

    status: Status
    period: date
    since: datetime
    severity: Severity = Severity.WARNING
    clear_since: datetime | None = None
    last_notified: datetime | None = None
    notified_severity: Severity | None = None


@dataclass(frozen=True, slots=True)
class BudgetInput:
    """Everything policy needs about one budget."""

    spend: BudgetSpend
    forecast: Forecast | None = None
    burn: Burn | None = None
    provider_limit: ProviderLimit | None = None
    """The Anthropic spend limit on the budget's own scope (``guard.core.limits``)."""
    provider_cap_usd: Decimal | None = None
    """Where ``provider_cap_near`` fires: ``provider_cap_pct`` of that limit."""


@dataclass(frozen=True, slots=True)
class Decision:
    """A (budget, condition) whose state changed or that needs a notification."""

    budget: str
    condition: Condition
    reason: Reason
    severity: Severity
    before: AlertState | None
    after: AlertState | None


@dataclass(frozen=True, slots=True)
class Ceiling:
    """The most capable tier allowed, and why; ``source`` is ``auto`` or ``override``."""

    tier: str
    level: int
    because: tuple[str, ...] = ()
    source: str = "auto"


@dataclass(frozen=True, slots=True)
class Override:
    """An on-call pin: this tier, whatever policy wants, until ``expires_at``."""

    tier: str
    expires_at: datetime
    reason: str = ""
    who: str = ""

    def active(self, now: datetime) -> bool:
        """Whether the pin still holds at ``now``."""
        return now < self.expires_at


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one policy evaluation."""

    states: dict[tuple[str, Condition], AlertState]
    decisions: tuple[Decision, ...]
    ceiling: Ceiling
    reset: bool = False
    firing: dict[str, tuple[Condition, ...]] = field(default_factory=dict)


# --- signals ---------------------------------------------------------------------------------


def signals(item: BudgetInput, stale: bool) -> dict[Condition, Signal]:
    """The instantaneous truth of every condition for one budget."""
    b, mtd = item.spend.budget, item.spend.spend_usd
    fc, burn = item.forecast, item.burn
    forecast_known = fc is not None and fc.gated_in and not stale
    p90 = fc.p90_usd if fc else Decimal(0)
    p50 = fc.p50_usd if fc else Decimal(0)
    tripped = burn.tripped if burn else None
    return {
        Condition.SOFT_REACHED: _threshold(mtd, b.soft_limit_usd),
        Condition.HARD_REACHED: _threshold(mtd, b.hard_limit_usd, Severity.CRITICAL),
        Condition.HARD_AT_RISK: _threshold(p90, b.hard_limit_usd, known=forecast_known),
        Condition.HARD_LIKELY: _threshold(p50, b.hard_limit_usd, known=forecast_known),
        Condition.RUNAWAY: _signal(tripped is not None, tripped is None,
                                   Severity(tripped.severity) if tripped else Severity.WARNING,
                                   burn is not None and not stale),
        Condition.DATA_STALE: _signal(stale, not stale),
        Condition.PROVIDER_CAP_NEAR: _threshold(mtd, item.provider_cap_usd)
        if item.provider_cap_usd is not None else _INACTIVE,
    }


def _threshold(value: Decimal, limit: Decimal, severity: Severity = Severity.WARNING,
               *, known: bool = True) -> Signal:
    return _signal(value >= limit, value < limit * CLEAR_BAND, severity, known)


def _signal(active: bool, clearable: bool, severity: Severity = Severity.WARNING,
            known: bool = True) -> Signal:
    """The one ``Signal`` of these values (there are 32): a tick asks six per budget."""
    return _SIGNALS[active, clearable, severity, known]


_SIGNALS = {(a, c, s, k): Signal(a, c, s, k) for a in (False, True) for c in (False, True)
            for s in Severity for k in (False, True)}
_INACTIVE = _SIGNALS[False, True, Severity.WARNING, True]
"""A condition with nothing to compare against: inactive, and clears what it held."""


# --- lifecycle -------------------------------------------------------------------------------


def step(state: AlertState | None, signal: Signal, condition: Condition, now: datetime,
         config: PolicyConfig) -> AlertState | None:
    """The next state of one condition; ``None`` is inactive."""
    if not signal.known:
        return state
    if state is None or state.status is Status.PENDING:
        return _raise(state, signal, condition, now, config)
    if signal.clearable:
        clear_since = state.clear_since or now
        if now - clear_since >= config.clear_after:
            return None
        return replace(state, clear_since=clear_since)
    severity = max(state.severity, signal.severity, key=_RANK.__getitem__)
    return replace(state, clear_since=None, severity=severity)


def _raise(state: AlertState | None, signal: Signal, condition: Condition, now: datetime,
           config: PolicyConfig) -> AlertState | None:
    if not signal.active:
        return None
    since = state.since if state else now
    period = month_start(now).date()
    if condition in IMMEDIATE or now - since >= config.raise_after:
        return AlertState(Status.FIRING, period, since, signal.severity)
    return AlertState(Status.PENDING, period, since, signal.severity)


def decide(before: AlertState | None, after: AlertState | None, now: datetime,
           config: PolicyConfig) -> Reason:
    """Whether and why to notify, Alertmanager's ``needsUpdate``."""
    was_firing = before is not None and before.status is Status.FIRING
    if after is None or after.status is not Status.FIRING:
        return Reason.RESOLVED if was_firing else Reason.NONE
    if not was_firing or after.last_notified is None:
        return Reason.FIRST
    if _RANK[after.severity] > _RANK[after.notified_severity or Severity.WARNING]:
        return Reason.ESCALATED
    if now - after.last_notified >= config.repeat_interval:
        return Reason.REPEAT
    return Reason.NONE


def notified(state: AlertState, now: datetime) -> AlertState:
    """The state once its notification is owed: the outbox keeps it until Slack accepts it."""
    return replace(state, last_notified=now, notified_severity=state.severity)


# --- ceiling ---------------------------------------------------------------------------------


def ceiling(firing: Iterable[tuple[Budget, Condition]], config: PolicyConfig,
            hold: str | None = None) -> Ceiling:
    """The most restrictive ceiling among firing conditions; never below ``hold``."""
    level, because = 0, []
    for budget, condition in firing:
        tier = dict(budget.ceilings).get(condition.value, config.default_ceiling(condition))
        if tier == NO_CEILING:
            continue
        index = config.chain.index(tier)
        because.append(f"{budget.name}: {condition.value} → {tier}")
        level = max(level, index)
    if hold is not None and hold in config.chain:
        held = config.chain.index(hold)
        if held > level:
            because.append(f"held at {hold} while data is stale")
            level = held
    return Ceiling(config.chain[level], level, tuple(because))


# --- one evaluation --------------------------------------------------------------------------


def effective(auto: Ceiling, override: Override | None, now: datetime,
              config: PolicyConfig) -> Ceiling:
    """The policy's ceiling, replaced by an on-call override while it is active."""
    if override is None or not override.active(now) or override.tier not in config.chain:
        return auto
    level = config.chain.index(override.tier)
    why = f"pinned to {override.tier} by {override.who or 'on-call'}"
    why += f": {override.reason}" if override.reason else ""
    if level != auto.level:
        side = "above" if level < auto.level else "below"
        why += f" ({side} policy's {auto.tier})"
    return Ceiling(override.tier, level, (why,), "override")


def evaluate(inputs: Sequence[BudgetInput], states: Mapping[tuple[str, Condition], AlertState],
             *, now: datetime, stale: bool, config: PolicyConfig,
             held_tier: str | None = None, override: Override | None = None) -> Outcome:
    """Advance every condition of every budget and decide notifications and the ceiling.

    ``held_tier`` is the ceiling in force before this evaluation; it is held while data is
    stale, so missing data never relaxes the fallback. An active ``override`` replaces the
    ceiling policy computed (it may hold a tier above or below it).
    """
    period = month_start(now).date()
    reset = any(s.period != period for s in states.values())
    current = {k: s for k, s in states.items() if s.period == period}
    decisions = [_reset_decision(k, s) for k, s in states.items() if s.period != period
                 and s.status is Status.FIRING]
    new_states: dict[tuple[str, Condition], AlertState] = {}
    for item in inputs:
        for condition, signal in signals(item, stale).items():
            key = (item.spend.budget.name, condition)
            before = current.get(key)
            if before is None and not signal.active:
                continue  # stays inactive, nothing to say: most budgets, most conditions
            after = step(before, signal, condition, now, config)
            reason = decide(before, after, now, config)
            if after is not None:
                new_states[key] = after
            if reason is not Reason.NONE or before != after:
                severity = (after or before or AlertState(Status.PENDING, period, now)).severity
                decisions.append(Decision(key[0], condition, reason, severity, before, after))
    firing = _firing(inputs, new_states)
    hold = held_tier if stale and not reset else None
    pairs = [(i.spend.budget, c) for i in inputs for c in firing.get(i.spend.budget.name, ())]
    auto = ceiling(pairs, config, hold)
    return Outcome(new_states, tuple(decisions), effective(auto, override, now, config), reset,
                   firing)


def _reset_decision(key: tuple[str, Condition], state: AlertState) -> Decision:
    return Decision(key[0], key[1], Reason.RESET, state.severity, state, None)


def _firing(inputs: Sequence[BudgetInput],
            states: Mapping[tuple[str, Condition], AlertState]) -> dict[str, tuple[Condition, ...]]:
    lit: dict[str, list[Condition]] = {}
    for (name, condition), state in states.items():
        if state.status is Status.FIRING:
            lit.setdefault(name, []).append(condition)
    return {i.spend.budget.name: tuple(sorted(lit.get(i.spend.budget.name, ()),
                                              key=_ORDER.__getitem__))
            for i in inputs}
