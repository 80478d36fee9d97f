"""The shell's order of effects on recording fakes: the same tick, in milliseconds.

A month of $30 days has passed when the tick runs on the 12th against a $300 soft and $400
hard limit: the soft limit is reached (sonnet) and the forecast says the hard limit will be.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from fakes import (
    MemoryOutbox,
    MemoryState,
    RecordingSinks,
    RecordingTransport,
    StaticFetcher,
)

from guard.core.decide import Remembered, TickConfig, decide
from guard.core.fallback import FallbackState
from guard.core.keys import EnforcementConfig, KeyPlan
from guard.core.model import Budget, CostDay, PricedUsage, Scope, Snapshot
from guard.core.period import HOUR
from guard.core.policy import Condition, Override, PolicyConfig
from guard.core.records import NotificationKind
from guard.core.usage import days_of, periods_of
from guard.shell.tick import Tick, run_tick

AT = datetime(2026, 3, 12, 14, 5, tzinfo=UTC)
MODELS = {"opus": "claude-opus-4-7", "sonnet": "claude-sonnet-4-6", "haiku": "claude-haiku-4-5"}
BUDGETS = (Budget("org-monthly", Scope.ORGANIZATION, None, Decimal(300), Decimal(400)),)
CONFIG = TickConfig(BUDGETS, PolicyConfig(), timedelta(minutes=5), MODELS)


def snapshot(at: datetime = AT, daily: Decimal = Decimal(30)) -> Snapshot:
    """Ten weeks of ``daily`` dollars a day, billed, and $1.50 an hour today."""
    first = date(2026, 1, 1)
    settled = {first + timedelta(days=i): CostDay(first + timedelta(days=i), {None: daily},
                                                  {"claude-sonnet-4-6": daily})
               for i in range((at.date() - first).days)}
    usage = [PricedUsage(at.replace(minute=0) - timedelta(hours=h), None, None,
                         "claude-sonnet-4-6", Decimal("1.5"), Decimal(0)) for h in range(1, 15)]
    return Snapshot(at, settled, days_of(usage), at - timedelta(minutes=5), api_requests=2,
                    usage_from=at.date(), recent=periods_of(usage, HOUR),
                    hourly={u.start: u.usd for u in usage}, today=usage)


def make_tick(**parts: object) -> Tick:
    """A tick on fakes; any part can be replaced."""
    outbox = MemoryOutbox()
    defaults: dict[str, object] = {
        "fetcher": StaticFetcher(snapshot()), "records": MemoryState(), "outbox": outbox,
        "silences": outbox, "lease": outbox, "sinks": RecordingSinks(),
        "transport": RecordingTransport(), "config": CONFIG}
    return Tick(**(defaults | parts))  # type: ignore[arg-type]


def state(tick: Tick) -> MemoryState:
    assert isinstance(tick.records, MemoryState)
    return tick.records


def sinks(tick: Tick) -> RecordingSinks:
    assert isinstance(tick.sinks, RecordingSinks)
    return tick.sinks


def outbox(tick: Tick) -> MemoryOutbox:
    assert isinstance(tick.outbox, MemoryOutbox)
    return tick.outbox


def transport(tick: Tick) -> RecordingTransport:
    assert isinstance(tick.transport, RecordingTransport)
    return tick.transport


def test_a_tick_flips_the_fallback_notifies_and_records_after_the_effects() -> None:
    """Sinks written, the reload run, Slack accepted; the alert states are kept with the
    notifications they decided (before delivery), the fallback and audit after the effects."""
    tick = make_tick()
    report = run_tick(tick, AT)
    assert report.fallback.tier == "sonnet" and report.changed
    assert sinks(tick).rewrites == 1 and sinks(tick).reloads == 1
    assert ("soft_reached", "firing", True) in [
        (s.notification.condition, s.notification.kind, s.delivered) for s in report.sent]
    assert state(tick).writes == ["alert_states", "fallback", "audit"]
    assert state(tick).fallback() == report.fallback
    assert state(tick).states[("org-monthly", Condition.SOFT_REACHED)].last_notified == AT


def test_slack_down_keeps_notifications_owed_and_still_flips_the_fallback() -> None:
    """With Slack unavailable the fallback moves all the same; the firing stays owed."""
    tick = make_tick(transport=RecordingTransport(accept=False))
    report = run_tick(tick, AT)
    assert sinks(tick).env is not None and "GUARD_TIER=sonnet" in sinks(tick).env
    assert report.owed == len(outbox(tick).owed()) >= 1
    assert not any(s.delivered for s in report.sent)
    kinds = [o.kind for o in outbox(tick).owed()]
    assert NotificationKind.FIRING in kinds


def test_an_owed_notification_goes_out_once_when_slack_returns() -> None:
    """The next tick sends what the last one owed, once; deciding it again owes nothing new."""
    tick = make_tick(transport=RecordingTransport(accept=False))
    run_tick(tick, AT)
    transport(tick).accept = True
    run_tick(tick, AT + timedelta(minutes=1))
    run_tick(tick, AT + timedelta(minutes=2))
    soft = [t for t, thread in transport(tick).posts if "Soft limit" in t and thread is None]
    assert len(soft) == 1 and outbox(tick).owed() == []


def test_a_late_delivery_is_reported_by_the_tick_that_made_it() -> None:
    """The tick that sends what an earlier tick owed lists it, with ``owed_since``."""
    tick = make_tick(transport=RecordingTransport(accept=False))
    first = run_tick(tick, AT).as_json()
    assert not any(n["delivered"] for n in first["notifications"])
    transport(tick).accept = True
    later = run_tick(tick, AT + timedelta(minutes=1)).as_json()
    late = [n for n in later["notifications"] if "owed_since" in n]
    assert {"budget": "org-monthly", "condition": "soft_reached", "kind": "firing",
            "delivered": True, "owed_since": "2026-03-12T14:05:00Z"} in late


def test_a_rejected_message_is_reported_and_holds_only_its_own_incident() -> None:
    """Slack refusing a message is a notification error; it stays owed for a person to fix."""
    tick = make_tick(transport=RecordingTransport(reject="channel_not_found"))
    report = run_tick(tick, AT)
    assert report.notification_errors and "channel_not_found" in report.notification_errors[0]
    assert report.owed >= 1


def test_without_the_lease_a_tick_stands_by_and_writes_nothing() -> None:
    """Another replica holds the lease: no sink, no reload, no Slack, no state."""
    tick = make_tick()
    assert outbox(tick).hold("leader", "other-replica", AT, timedelta(minutes=3))
    report = run_tick(tick, AT)
    assert report.standby and not report.changed and report.sent == ()
    assert sinks(tick).writes == [] and sinks(tick).reloads == 0
    assert state(tick).writes == [] and outbox(tick).rows == []
    assert transport(tick).posts == []


def test_the_lease_returns_once_it_expires() -> None:
    """When the other replica's lease runs out, this one takes over and acts."""
    tick = make_tick()
    outbox(tick).hold("leader", "other-replica", AT, timedelta(minutes=3))
    assert not run_tick(tick, AT + timedelta(minutes=3)).standby


def test_a_dry_run_stops_after_deciding() -> None:
    """A dry run reports the plan and touches no sink, hook, outbox, Slack or state."""
    tick = make_tick()
    report = run_tick(tick, AT, dry_run=True)
    assert report.fallback.tier == "sonnet" and report.changed
    assert report.sent and not any(s.delivered for s in report.sent)
    assert sinks(tick).writes == [] and sinks(tick).reloads == 0
    assert state(tick).writes == [] and outbox(tick).rows == [] and outbox(tick).holders == {}


def test_a_failed_reload_is_retried_next_tick_and_only_until_it_works() -> None:
    """A failing hook is remembered as owed, run again next tick, and not once it succeeded."""
    tick = make_tick(sinks=RecordingSinks(reload_ok=False))
    run_tick(tick, AT)
    assert state(tick).fallback() is not None
    assert state(tick).fallbacks["default"].reload_pending
    sinks(tick).reload_ok = True
    run_tick(tick, AT + timedelta(minutes=1))
    assert sinks(tick).reloads == 2 and not state(tick).fallbacks["default"].reload_pending
    run_tick(tick, AT + timedelta(minutes=2))
    assert sinks(tick).reloads == 2


def test_an_unchanged_fallback_is_not_rewritten_or_reloaded() -> None:
    """A second tick with the same outcome rewrites nothing and keeps updated_at."""
    tick = make_tick()
    first = run_tick(tick, AT)
    second = run_tick(tick, AT + timedelta(minutes=1))
    assert not second.changed and second.fallback.updated_at == first.fallback.updated_at
    assert sinks(tick).rewrites == 1 and sinks(tick).reloads == 1


def test_an_outage_decides_on_cached_data_and_reports_it() -> None:
    """The Admin API failing is reported; the tick decides on the caches and still acts."""
    fetcher = StaticFetcher(snapshot(), down=True)
    tick = make_tick(fetcher=fetcher)
    report = run_tick(tick, AT)
    assert report.upstream_error is not None and fetcher.cached_reads == [AT]
    assert report.fallback.tier == "sonnet" and sinks(tick).rewrites == 1


def test_a_pin_is_applied_and_shown_with_its_author() -> None:
    """An active pin replaces policy's tier; the fallback says who pinned it until when."""
    tick = make_tick()
    state(tick).save_override(Override("haiku", AT + timedelta(hours=2), "drill", "dave"), AT)
    report = run_tick(tick, AT)
    assert (report.fallback.tier, report.fallback.source) == ("haiku", "override")
    assert report.fallback.override_by == "dave"


@pytest.mark.parametrize("muted", [False, True], ids=["sent", "silenced"])
def test_alert_states_advance_when_the_notification_is_owed(muted: bool) -> None:
    """decide() marks a state notified when its notification is owed (or muted), not later."""
    silences = MemoryOutbox()
    if muted:
        silences.add_silence("org-monthly", None, AT + timedelta(days=1), reason="drill",
                             who="frank", now=AT)
    plan = decide(snapshot(), Remembered(silences=silences.silences(AT)), CONFIG, AT)
    soft = plan.states[("org-monthly", Condition.SOFT_REACHED)]
    assert soft.last_notified == AT
    assert any(n.muted for n in plan.notices) is muted


def test_decide_keeps_the_previous_change_time_when_nothing_moved() -> None:
    """The plan's fallback carries the remembered updated_at when the tier is the same."""
    earlier = AT - timedelta(days=2)
    previous = FallbackState.build(CONFIG.policy.chain, MODELS, 1, source="auto",
                                   updated_at=earlier, reason="earlier")
    plan = decide(snapshot(), Remembered(fallback=previous), CONFIG, AT)
    assert not plan.changed and not plan.reload and plan.audit == ()
    assert plan.fallback.updated_at == earlier


def test_a_silenced_budget_records_state_and_drives_the_fallback_but_sends_nothing() -> None:
    """Silenced: the condition still fires and caps the model; no message goes out."""
    tick = make_tick()
    outbox(tick).add_silence("org-monthly", None, AT + timedelta(days=1), reason="drill",
                             who="frank", now=AT)
    result = run_tick(tick, AT)
    assert result.fallback.tier == "sonnet"
    muted = [(s.notification.condition, s.muted) for s in result.sent]
    assert ("soft_reached", "silenced by frank: drill") in muted
    assert transport(tick).posts == [] and outbox(tick).rows == []
    assert ("org-monthly", Condition.SOFT_REACHED) in state(tick).alert_states()


def test_hard_reached_inhibits_soft_at_risk_and_likely_notifications() -> None:
    """Once hard_reached fires, soft_reached, hard_at_risk and hard_likely of that budget send
    nothing."""
    tick = make_tick(fetcher=StaticFetcher(snapshot(daily=Decimal(40))))
    reasons: dict[str | None, str | None] = {}
    for later in (AT, AT + timedelta(minutes=15)):
        reasons |= {s.notification.condition: s.muted for s in run_tick(tick, later).sent}
    assert reasons["hard_reached"] is None
    assert reasons["soft_reached"] == "inhibited by hard_reached"
    assert reasons["hard_at_risk"] == "inhibited by hard_reached"
    assert reasons["hard_likely"] == "inhibited by hard_reached"
    posted = " ".join(t for t, _ in transport(tick).posts)
    assert "Hard limit reached" in posted and "Soft limit reached" not in posted
    assert "likely" not in posted.lower()


def test_the_daily_digest_goes_out_once_at_its_hour() -> None:
    """At the digest hour one digest is posted; later ticks that hour post no second one."""
    tick = make_tick(config=replace(CONFIG, digest_hour=9))
    for minutes in (0, 10, 20):
        run_tick(tick, AT.replace(hour=9, minute=minutes))
    digests = [t for t, _ in transport(tick).posts if "digest" in t.lower()]
    assert len(digests) == 1
    assert "1 budgets" in digests[0] and "Fallback tier" in digests[0]


def test_the_hard_stop_waits_for_billed_data_on_an_unpriced_estimate() -> None:
    """A key budget past its limit on usage of an unknown model is held, and says why;
    the same spend on a known model is a target."""
    key = "apikey_1"
    budget = Budget("key-1", Scope.API_KEY, key, Decimal(1), Decimal(2))
    config = replace(CONFIG, budgets=(budget,),
                     enforcement=EnforcementConfig(enabled=True, dry_run=False))

    def plan_for(model: str, unpriced: tuple[str, ...]) -> KeyPlan:
        rows = [PricedUsage(AT.replace(hour=9), None, key, model, Decimal(5), Decimal(0))]
        data = replace(snapshot(), usage=days_of(rows, unpriced), unpriced_models=unpriced)
        return decide(data, Remembered(), config, AT).keys

    held = plan_for("claude-tiny-9", ("claude-tiny-9",))
    assert held.targets == () and [name for name, _ in held.held] == ["key-1"]
    assert "waiting for billed data" in held.held[0][1]
    known = plan_for("claude-sonnet-5-5", ())
    assert known.targets == (budget,) and known.held == ()


def test_a_held_hard_stop_is_a_warning_in_the_tick_report() -> None:
    """The reason the hard stop waits reaches the tick's JSON ``warnings``."""
    key = "apikey_1"
    budget = Budget("key-1", Scope.API_KEY, key, Decimal(1), Decimal(2))
    rows = [PricedUsage(AT.replace(hour=9), None, key, "claude-tiny-9", Decimal(5), Decimal(0))]
    fetcher = StaticFetcher(replace(snapshot(), usage=days_of(rows, {"claude-tiny-9"}),
                                    unpriced_models=("claude-tiny-9",)))
    tick = make_tick(fetcher=fetcher, config=replace(
        CONFIG, budgets=(budget,), enforcement=EnforcementConfig(enabled=True, dry_run=False)))
    body = run_tick(tick, AT).as_json()
    assert body["unpriced_models"] == ["claude-tiny-9"]
    assert any("waiting for billed data" in w for w in body["warnings"])
    assert body["keys"] == []


def test_an_unpriced_model_is_announced_in_slack_once_a_month() -> None:
    """The first tick posts one ``price`` notice for the model; later ticks post nothing more,
    and a new month announces it again."""
    snap = replace(snapshot(), unpriced_models=("claude-tiny-9",))
    tick = make_tick(fetcher=StaticFetcher(snap))
    first = run_tick(tick, AT).as_json()
    assert [n["kind"] for n in first["notifications"]].count("price") == 1
    run_tick(tick, AT + timedelta(minutes=1))
    priced = [p for p in transport(tick).posts if "claude-tiny-9" in str(p)]
    assert len(priced) == 1
    april = AT.replace(month=4, day=2)
    run_tick(replace(tick, fetcher=StaticFetcher(replace(snapshot(april),
                                                          unpriced_models=("claude-tiny-9",)))),
             april)
    assert len([p for p in transport(tick).posts if "claude-tiny-9" in str(p)]) == 2


def test_a_later_update_never_drops_an_owed_repeat() -> None:
    """collapse: an update is overtaken by any later row of its incident, a repeat only by a
    later threaded row (repeat, escalation, resolution), never by an update: its "still
    firing" reply would be lost (finding F1 of the SIGKILL campaign)."""
    from guard.core.records import Owed, Payload  # noqa: PLC0415
    from guard.shell.deliver import collapse  # noqa: PLC0415

    at = datetime(2026, 3, 18, tzinfo=UTC)
    kinds = [("a", NotificationKind.UPDATE), ("a", NotificationKind.REPEAT),
             ("a", NotificationKind.UPDATE), ("b", NotificationKind.REPEAT),
             ("b", NotificationKind.REPEAT), ("c", NotificationKind.REPEAT),
             ("c", NotificationKind.RESOLVED)]
    rows = [Owed(i, f"{incident}:{i}", incident, kind, at, Payload("x", ()), 0)
            for i, (incident, kind) in enumerate(kinds, 1)]
    keep, dropped = collapse(rows)
    assert dropped == [1, 4, 6]
    assert [r.id for r in keep] == [2, 3, 5, 7]
