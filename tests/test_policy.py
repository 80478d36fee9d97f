"""Policy: signals, the alert lifecycle with hysteresis, decide() reasons, ceilings, rollover."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.core.forecast import Forecast
from guard.core.model import Budget, BudgetSpend, Scope
from guard.core.policy import (
    AlertState,
    BudgetInput,
    Condition,
    Override,
    PolicyConfig,
    Reason,
    Severity,
    Signal,
    Status,
    ceiling,
    decide,
    evaluate,
    notified,
    step,
)

D = Decimal
NOW = datetime(2026, 3, 12, 14, 0, tzinfo=UTC)
MARCH = date(2026, 3, 1)
CFG = PolicyConfig()
BUDGET = Budget("org", Scope.ORGANIZATION, None, D(800), D(1000))


def firing(since: datetime = NOW - timedelta(hours=1), *, notified_at: datetime | None = None,
           severity: Severity = Severity.WARNING,
           notified_severity: Severity | None = Severity.WARNING,
           clear_since: datetime | None = None) -> AlertState:
    return AlertState(Status.FIRING, MARCH, since, severity, clear_since,
                      notified_at or since, notified_severity)


def pending(since: datetime) -> AlertState:
    return AlertState(Status.PENDING, MARCH, since)


def fc(p10: str, p50: str, p90: str, gated: bool = True) -> Forecast:
    return Forecast(D(p10), D(p50), D(p90), gated, None, D(30), 60)


def item(mtd: str, forecast: Forecast | None = None) -> BudgetInput:
    return BudgetInput(BudgetSpend(BUDGET, D(mtd), D(0)), forecast)


@pytest.mark.parametrize(("before", "after", "now", "reason"), [
    pytest.param(None, None, NOW, Reason.NONE, id="inactive-stays-inactive"),
    pytest.param(None, pending(NOW), NOW, Reason.NONE, id="pending-is-not-notified"),
    pytest.param(None, AlertState(Status.FIRING, MARCH, NOW), NOW, Reason.FIRST,
                 id="first-notification"),
    pytest.param(pending(NOW - timedelta(minutes=10)), AlertState(Status.FIRING, MARCH, NOW),
                 NOW, Reason.FIRST, id="pending-turns-firing"),
    pytest.param(firing(), AlertState(Status.FIRING, MARCH, NOW - timedelta(hours=1)), NOW,
                 Reason.FIRST, id="first-send-failed-so-retry"),
    pytest.param(firing(), firing(), NOW, Reason.NONE, id="firing-within-repeat-interval"),
    pytest.param(firing(NOW - timedelta(hours=25)), firing(NOW - timedelta(hours=25)), NOW,
                 Reason.REPEAT, id="repeat-interval-elapsed"),
    pytest.param(firing(), firing(severity=Severity.CRITICAL), NOW, Reason.ESCALATED,
                 id="severity-increased"),
    pytest.param(firing(), None, NOW, Reason.RESOLVED, id="resolved"),
    pytest.param(pending(NOW), None, NOW, Reason.NONE, id="pending-dropped-silently"),
])
def test_decide(before: AlertState | None, after: AlertState | None, now: datetime,
                reason: Reason) -> None:
    """decide() returns the reason for each lifecycle transition."""
    assert decide(before, after, now, CFG) is reason


def test_rollover_gives_reset_reason() -> None:
    """A firing condition from last month is resolved with the reset reason."""
    old = AlertState(Status.FIRING, date(2026, 2, 1), datetime(2026, 2, 20, tzinfo=UTC))
    out = evaluate([item("10")], {("org", Condition.SOFT_REACHED): old}, now=NOW, stale=False,
                   config=CFG)
    assert [d.reason for d in out.decisions] == [Reason.RESET]
    assert out.reset and out.states == {} and out.ceiling.tier == "opus"


def test_reasons_are_sentences() -> None:
    """Each reason's value is the sentence written to logs, the audit log and Slack."""
    assert Reason.REPEAT.value == "repeat interval elapsed"
    assert all(" " in r.value for r in Reason if r is not Reason.RESOLVED)


def test_spend_condition_fires_on_first_sight() -> None:
    """soft_reached fires the first time month-to-date reaches the soft limit."""
    out = evaluate([item("800")], {}, now=NOW, stale=False, config=CFG)
    assert out.firing["org"] == (Condition.SOFT_REACHED,)
    assert [(d.condition, d.reason) for d in out.decisions] == [
        (Condition.SOFT_REACHED, Reason.FIRST)]
    assert out.ceiling.tier == "sonnet"


def test_forecast_condition_waits_for_raise_after() -> None:
    """hard_likely is pending first and fires only after holding for raise_after."""
    signal = Signal(active=True, clearable=False)
    first = step(None, signal, Condition.HARD_LIKELY, NOW, CFG)
    assert first is not None and first.status is Status.PENDING
    early = step(first, signal, Condition.HARD_LIKELY, NOW + timedelta(minutes=9), CFG)
    assert early is not None and early.status is Status.PENDING
    late = step(early, signal, Condition.HARD_LIKELY, NOW + timedelta(minutes=10), CFG)
    assert late is not None and late.status is Status.FIRING


def test_pending_that_lapses_is_dropped() -> None:
    """A forecast blip shorter than raise_after never fires."""
    first = step(None, Signal(True, False), Condition.HARD_LIKELY, NOW, CFG)
    assert step(first, Signal(False, True), Condition.HARD_LIKELY, NOW, CFG) is None


def test_clearing_needs_clear_after_below_the_band() -> None:
    """A firing condition clears only after clear_after below 95 % of its threshold."""
    state = firing()
    below = Signal(active=False, clearable=True)
    half = step(state, below, Condition.HARD_LIKELY, NOW, CFG)
    assert half is not None and half.clear_since == NOW
    assert step(half, below, Condition.HARD_LIKELY, NOW + timedelta(minutes=59), CFG)
    assert step(half, below, Condition.HARD_LIKELY, NOW + timedelta(minutes=60), CFG) is None


def test_inside_the_band_restarts_the_clear_timer() -> None:
    """Between 95 % and 100 % of the threshold the condition keeps firing, timer reset."""
    half = firing(clear_since=NOW - timedelta(minutes=50))
    held = step(half, Signal(active=False, clearable=False), Condition.HARD_LIKELY, NOW, CFG)
    assert held is not None and held.clear_since is None and held.status is Status.FIRING


def test_ungated_forecast_raises_nothing() -> None:
    """Before the forecast is gated in, forecast conditions never raise."""
    out = evaluate([item("10", fc("2000", "2000", "2000", gated=False))], {}, now=NOW,
                   stale=False, config=CFG)
    assert out.firing["org"] == ()


def test_stale_data_holds_the_ceiling_and_the_forecast_alerts() -> None:
    """While data is stale, a firing hard_likely stays and the ceiling does not relax."""
    states = {("org", Condition.HARD_LIKELY): firing()}
    out = evaluate([item("10", fc("1", "1", "1"))], states, now=NOW + timedelta(hours=3),
                   stale=True, config=CFG, held_tier="haiku")
    assert Condition.HARD_LIKELY in out.firing["org"]
    assert Condition.DATA_STALE in out.firing["org"]
    assert out.ceiling.tier == "haiku"


def test_ceiling_is_the_most_restrictive_and_respects_overrides() -> None:
    """hard_reached beats soft_reached; a budget ceiling override is honoured."""
    capped = Budget("ws", Scope.WORKSPACE, "default", D(1), D(2),
                    (("soft_reached", "none"), ("hard_likely", "haiku")))
    assert ceiling([(BUDGET, Condition.SOFT_REACHED), (BUDGET, Condition.HARD_REACHED)],
                   CFG).tier == "haiku"
    assert ceiling([(capped, Condition.SOFT_REACHED)], CFG).tier == "opus"
    assert ceiling([(capped, Condition.HARD_LIKELY)], CFG).tier == "haiku"
    assert ceiling([(BUDGET, Condition.HARD_AT_RISK)], CFG).tier == "opus"


def test_notified_records_the_severity() -> None:
    """After delivery the state remembers when and at which severity it was sent."""
    state = notified(AlertState(Status.FIRING, MARCH, NOW, Severity.CRITICAL), NOW)
    assert (state.last_notified, state.notified_severity) == (NOW, Severity.CRITICAL)
    assert decide(state, state, NOW + timedelta(minutes=5), CFG) is Reason.NONE


conditions = st.sampled_from(list(Condition))
states = st.one_of(st.none(), st.builds(
    AlertState, st.sampled_from(list(Status)), st.just(MARCH),
    st.datetimes(min_value=datetime(2026, 3, 1),  # noqa: DTZ001  (hypothesis wants naive bounds)
                 max_value=datetime(2026, 3, 12),  # noqa: DTZ001
                 timezones=st.just(UTC)),
    st.sampled_from(list(Severity))))


@given(states, st.booleans(), st.booleans(), conditions)
def test_no_condition_raises_on_missing_data(state: AlertState | None, active: bool,
                                             clearable: bool, condition: Condition) -> None:
    """An unknown signal changes nothing: it neither raises nor clears."""
    signal = Signal(active=active, clearable=clearable, known=False)
    assert step(state, signal, condition, NOW, CFG) == state


@given(st.dictionaries(st.tuples(st.just("org"), conditions), states.filter(bool), max_size=6),
       st.integers(1, 27))
def test_month_rollover_resolves_every_condition(
        old: dict[tuple[str, Condition], AlertState], day: int) -> None:
    """On a new month every condition of the old month is gone and the ceiling is chain[0]."""
    april = datetime(2026, 4, day, 1, tzinfo=UTC)
    out = evaluate([item("0")], old, now=april, stale=False, config=CFG)
    assert all(s.period == date(2026, 4, 1) for s in out.states.values())
    assert out.ceiling.tier == "opus"
    resolved = {(d.budget, d.condition) for d in out.decisions if d.reason is Reason.RESET}
    assert resolved == {k for k, s in old.items() if s.status is Status.FIRING}
    assert out.reset == bool(old)


@pytest.mark.parametrize(("pin", "expected", "source"), [
    pytest.param("opus", "opus", "override", id="pin-above-policy"),
    pytest.param("haiku", "haiku", "override", id="pin-below-policy"),
])
def test_an_active_override_replaces_the_ceiling(pin: str, expected: str, source: str) -> None:
    """An on-call pin replaces what policy wants, above or below it, until it expires."""
    pinned = Override(pin, NOW + timedelta(hours=4), "incident 42", "alice")
    out = evaluate([item("800")], {}, now=NOW, stale=False, config=CFG, override=pinned)
    assert (out.ceiling.tier, out.ceiling.source) == (expected, source)
    assert "alice" in out.ceiling.because[0] and "incident 42" in out.ceiling.because[0]


def test_an_expired_override_no_longer_applies() -> None:
    """After its expiry the pin is ignored and policy's ceiling returns."""
    pinned = Override("opus", NOW - timedelta(seconds=1))
    out = evaluate([item("800")], {}, now=NOW, stale=False, config=CFG, override=pinned)
    assert (out.ceiling.tier, out.ceiling.source) == ("sonnet", "auto")
