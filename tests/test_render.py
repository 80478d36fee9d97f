"""Slack rendering: what each message says, its lifecycle shape, and Slack's limits, always."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from guard.core.policy import Condition
from guard.core.render import (
    DigestLine,
    DigestView,
    IncidentView,
    Message,
    Mover,
    incident_key,
    ordinal,
    render_digest,
    render_incident,
    render_reset,
    render_thread_reply,
    share,
    usd,
)

D = Decimal
AT = datetime(2026, 3, 12, 14, 12, tzinfo=UTC)
KINDS = ("firing", "update", "repeat", "escalated", "resolved")
ACTIONS = {"budget_ack", "budget_pin_4h", "budget_release", "budget_silence_24h"}
CRITICAL = {Condition.HARD_REACHED, Condition.RUNAWAY}
LONG = "&<b>" * 2500

VIEW = IncidentView(
    budget="org-monthly", scope="organization", match=None, condition="hard_likely",
    severity="warning", kind="firing", period=date(2026, 3, 1),
    mtd_usd=D("4812.37"), soft_usd=D(8000), hard_usd=D(10000),
    p10_usd=D("10310.50"), p50_usd=D("11840.12"), p90_usd=D("12905.88"),
    exhaustion_day=date(2026, 3, 19),
    burn=(("fast", D("1.21"), D("1.43")), ("slow", D("1.35"), D("1.18"))), tte_hours=D("214.6"),
    tier="sonnet", model="claude-sonnet-4-5", tier_reason="org-monthly: hard_likely → sonnet",
    data_through=datetime(2026, 3, 12, 14, 5, tzinfo=UTC), at=AT,
    movers=(("workspaces", (Mover("prod-chat", D("812.40"), D("0.524")),)),
            ("models", (Mover("claude-opus-4-1", D(1020), D("0.658")),)),
            ("keys", (Mover("chat-backend", D("640.25"), D("0.413")),))),
    reason="first notification", since=datetime(2026, 3, 12, 10, 52, tzinfo=UTC))

DIGEST = DigestView(date(2026, 3, 12), (
    DigestLine("org-monthly", D("4812.37"), D(8000), D(10000), D("11840.12"), D("12905.88"),
               D("0.123"), D("0.63"), ("hard_likely",)),
    DigestLine("research", D(7412), D(8000), D(12000), None, None, D("-0.04"), None, ())),
    "sonnet", "claude-sonnet-4-5")


# --- the limits ------------------------------------------------------------------------------


def strings(node: Any) -> Iterator[str]:
    """Every string value inside a block tree."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from strings(item)


def check_limits(message: Message) -> None:
    """Assert Slack's limits (reference/slack.md §B2) and slack-sdk's validation on a message."""
    assert 0 < len(message.text) <= 40_000
    assert 0 < len(message.blocks) <= 50
    for block in message.blocks:
        assert len(block.get("block_id", "")) <= 255
        CHECKS[block["type"]](block)
        Block.parse(block).to_dict()  # type: ignore[union-attr]  # raises on a violation
    assert sum(len(s) for s in strings(message.blocks)) <= 10_000
    assert "<" not in message.text and all("<" not in s for s in mrkdwn(message.blocks))


def mrkdwn(node: Any) -> Iterator[str]:
    """Every mrkdwn text inside a block tree (the only text Slack parses for mentions)."""
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn":
            yield node["text"]
        for value in node.values():
            yield from mrkdwn(value)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from mrkdwn(item)


def _header(block: dict[str, Any]) -> None:
    assert block["text"]["type"] == "plain_text" and 0 < len(block["text"]["text"]) <= 150


def _section(block: dict[str, Any]) -> None:
    assert "text" in block or "fields" in block
    assert len(block.get("text", {}).get("text", "")) <= 3000
    assert len(block.get("fields", [])) <= 10
    assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))


def _context(block: dict[str, Any]) -> None:
    assert 0 < len(block["elements"]) <= 10
    assert all(len(e["text"]) <= 3000 for e in block["elements"])


def _actions(block: dict[str, Any]) -> None:
    buttons = block["elements"]
    assert 0 < len(buttons) <= 25
    assert len({b["action_id"] for b in buttons}) == len(buttons)
    for b in buttons:
        assert len(b["text"]["text"]) <= 75 and len(b["value"]) <= 2000
        assert len(b["action_id"]) <= 255
        if "confirm" in b:
            c = b["confirm"]
            assert len(c["title"]["text"]) <= 100 and len(c["text"]["text"]) <= 300
            assert len(c["confirm"]["text"]) <= 30 and len(c["deny"]["text"]) <= 30


CHECKS = {"header": _header, "section": _section, "context": _context, "actions": _actions}


def view(condition: Condition = Condition.HARD_LIKELY, kind: str = "firing",
         **changes: Any) -> IncidentView:
    """The sample view for one condition and kind, with its usual severity."""
    severity = "critical" if condition in CRITICAL else "warning"
    return replace(VIEW, condition=condition.value, kind=kind, severity=severity, **changes)


def texts(message: Message) -> str:
    """All the text a reader sees in the blocks, one string."""
    return "\n".join(strings(message.blocks))


def by_type(message: Message, kind: str) -> list[dict[str, Any]]:
    """The blocks of one type."""
    return [b for b in message.blocks if b["type"] == kind]


# --- incidents -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("condition", list(Condition), ids=str)
def test_every_condition_and_kind_respects_limits(condition: Condition, kind: str) -> None:
    """Alerts and thread replies of every condition × kind stay within Slack's limits."""
    check_limits(render_incident(view(condition, kind)))
    check_limits(render_thread_reply(view(condition, kind)))


@pytest.mark.parametrize(("condition", "words"), [
    (Condition.HARD_LIKELY, ":warning: Hard limit likely to be exceeded — org-monthly"),
    (Condition.SOFT_REACHED, ":warning: Soft limit reached — org-monthly"),
    (Condition.HARD_AT_RISK, ":warning: Hard limit at risk — org-monthly"),
    (Condition.HARD_REACHED, ":rotating_light: Hard limit reached — org-monthly"),
    (Condition.RUNAWAY, ":rotating_light: Runaway spend — org-monthly"),
    (Condition.DATA_STALE, ":warning: Spend data is stale — org-monthly"),
], ids=str)
def test_header_names_the_condition_in_words(condition: Condition, words: str) -> None:
    """The header carries the severity emoji, the condition in words and the budget."""
    assert by_type(render_incident(view(condition)), "header")[0]["text"]["text"] == words


def test_resolved_drops_the_actions_and_says_resolved() -> None:
    """A resolved alert has a "Resolved:" header and no buttons."""
    message = render_incident(view(Condition.SOFT_REACHED, "resolved"))
    assert not by_type(message, "actions")
    assert by_type(message, "header")[0]["text"]["text"].startswith(
        ":white_check_mark: Resolved: Soft limit reached")


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "resolved"])
def test_buttons_carry_the_incident_key(kind: str) -> None:
    """Each open alert has the four buttons, valued with the key; pinning asks first."""
    (actions,) = by_type(render_incident(view(kind=kind)), "actions")
    key = "2026-03:org-monthly:hard_likely"
    assert {b["action_id"] for b in actions["elements"]} == ACTIONS
    assert {b["value"] for b in actions["elements"]} == {key}
    assert actions["block_id"] == f"budget:{key}"
    pin = next(b for b in actions["elements"] if b["action_id"] == "budget_pin_4h")
    assert pin["style"] == "danger" and "sonnet" in pin["confirm"]["text"]["text"]


@pytest.mark.parametrize("condition", list(Condition), ids=str)
def test_text_fallback_has_the_key_numbers(condition: Condition) -> None:
    """The plain-text fallback names the condition and holds month-to-date and the hard limit."""
    text = render_incident(view(condition)).text
    assert "$4,812.37" in text and "$10,000.00" in text and "48.1%" in text
    assert text.count("\n") <= 1


def test_figures_show_forecast_burn_tier_and_freshness() -> None:
    """Forecast band, exhaustion day, worst burn, time to hard, tier and freshness appear."""
    body = texts(render_incident(view(
        Condition.RUNAWAY, burn=(("slow", D(3), D(4)), ("fast", D("9.8"), D("23.1"))),
        tte_hours=D("8.6"))))
    for part in ("$11,840.12 / $12,905.88", "P10 $10,310.50", "around the 19th",
                 "fast tier 9.8× / 23.1×", "hard limit in ~9 h", "sonnet (`claude-sonnet-4-5`)",
                 "hard_likely → sonnet", "Data through 14:05 UTC (lag 7 min)",
                 "`2026-03:org-monthly:runaway`", "first notification",
                 "prod-chat $812.40 (52.4%)"):
        assert part in body, part


def test_missing_forecast_and_data_say_so() -> None:
    """Without forecast, burn or data the fields say so instead of inventing numbers."""
    body = texts(render_incident(view(p10_usd=None, p50_usd=None, p90_usd=None, burn=(),
                                      tte_hours=None, data_through=None, movers=())))
    assert "no forecast yet" in body and "no burn data" in body and "No spend data yet" in body
    assert "Top movers" not in body


def test_infinite_burn_renders_as_infinity() -> None:
    """A burn with nothing expected in the window reads ∞×, not an error."""
    assert "∞×" in texts(render_incident(view(burn=(("fast", D("Infinity"), D(2)),))))


def test_silenced_alert_is_marked() -> None:
    """A silenced alert says so in the context line and in the text fallback."""
    message = render_incident(view(silenced=True))
    assert ":no_bell: silenced" in texts(message) and "(silenced)" in message.text


def test_huge_inputs_are_clipped_within_limits() -> None:
    """Huge names, many movers and a 10k-character reason are clipped with an ellipsis."""
    many = tuple(Mover(LONG, D("1e12"), D("0.5")) for _ in range(200))
    message = render_incident(view(
        budget=LONG, match=LONG, scope=LONG, tier=LONG, model=LONG, tier_reason=LONG,
        reason="x" * 10_000, movers=tuple((LONG, many) for _ in range(40))))
    check_limits(message)
    check_limits(render_thread_reply(view(budget=LONG, kind="repeat", reason="y" * 10_000)))
    assert "x" * 10_000 not in texts(message) and "x" * 200 + "…" in texts(message)
    assert "…" in by_type(message, "header")[0]["text"]["text"]
    assert "+195 more" in texts(message)


def test_names_are_escaped_for_mrkdwn() -> None:
    """A budget or mover name can never mention a channel: <, > and & are escaped."""
    mover = (("keys", (Mover("<!channel>", D(1), D(1)),)),)
    message = render_incident(view(budget="<!here> & co", movers=mover))
    assert "&lt;!here&gt; &amp; co" in message.text
    assert "&lt;!channel&gt;" in texts(message)


def test_incident_key_is_period_budget_condition() -> None:
    """The key reads month:budget:condition."""
    assert incident_key(view()) == "2026-03:org-monthly:hard_likely"


def test_incident_key_of_a_huge_budget_is_cut_and_hashed() -> None:
    """A long budget name is cut to fit 248 characters, and a hash keeps keys distinct."""
    one, two = view(budget="b" * 600 + "1"), view(budget="b" * 600 + "2")
    assert len(incident_key(one)) <= 248
    assert incident_key(one) != incident_key(two)
    assert incident_key(one) == incident_key(one)
    assert incident_key(one).endswith(":hard_likely")


def test_rendering_is_deterministic() -> None:
    """The same view renders the same message (pure, no clock)."""
    assert render_incident(view()) == render_incident(view())


# --- thread replies --------------------------------------------------------------------------


def test_escalation_reply_leads_with_the_new_severity() -> None:
    """An escalation reply names the severity, the burn and the time to the hard limit."""
    reply = render_thread_reply(view(Condition.RUNAWAY, "escalated", tte_hours=D(9),
                                     burn=(("fast", D("9.8"), D("23.1")),))).text
    assert reply.startswith("Escalated to critical: runaway spend, burn fast tier 9.8×")
    assert "hard limit in ~9 h" in reply


def test_resolution_reply_says_how_long_and_why() -> None:
    """A resolution reply gives the duration and the figure now below 95 % of its limit."""
    reply = render_thread_reply(view(kind="resolved", p50_usd=D(9100), reason="resolved")).text
    assert reply == ("Resolved after 3 h 20 min: P50 $9,100.00 is below 95% of the hard limit "
                     "($10,000.00).")


def test_rollover_resolution_says_the_period_reset() -> None:
    """Conditions resolved by the month rollover say so."""
    reply = render_thread_reply(view(kind="resolved", reason="budget period reset")).text
    assert "month rollover" in reply


def test_repeat_reply_says_still_firing_and_why() -> None:
    """A repeat reply says how long it has been firing and quotes the policy's reason."""
    reply = render_thread_reply(view(kind="repeat", reason="repeat interval elapsed")).text
    assert reply.startswith("Still firing after 3 h 20 min: hard limit likely to be exceeded")
    assert "(repeat interval elapsed)" in reply


# --- digest and reset ------------------------------------------------------------------------


def test_digest_has_a_line_per_budget_and_the_tier() -> None:
    """The digest shows spend vs budget, P50, week over week, cache hits, firing and the tier."""
    message = render_digest(DIGEST)
    check_limits(message)
    body = texts(message)
    for part in ("*org-monthly* $4,812.37 of $10,000.00 (48.1%", "P50 $11,840.12",
                 "week over week +12.3%", "cache hits 63.0%",
                 "firing: hard limit likely to be exceeded", "week over week -4.0%",
                 "*Fallback tier:* sonnet"):
        assert part in body, part
    assert "2 budgets, 1 with firing conditions (org-monthly)" in message.text


def test_digest_of_many_budgets_stays_within_limits() -> None:
    """Hundreds of long budget lines are cut to what fits, with a count of the rest."""
    line = DigestLine(LONG, D(1), D(2), D(3), D(4), D(5), D(6), D(7), (LONG,) * 50)
    message = render_digest(replace(DIGEST, budgets=(line,) * 500, tier=LONG, model=LONG))
    check_limits(message)
    assert "more budgets" in texts(message)


def test_reset_notice_names_the_month_and_tier() -> None:
    """The reset notice names the new month, the old one and the restored tier."""
    message = render_reset(date(2026, 4, 1), "opus", "claude-opus-4-1")
    check_limits(message)
    assert "April 2026" in message.text and "March 2026" in message.text
    assert "opus (`claude-opus-4-1`)" in texts(message)


# --- formatting ------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "text"), [
    ("12345.67", "$12,345.67"), ("12345.675", "$12,345.68"), ("0.005", "$0.00"),
    ("0.015", "$0.02"), ("-5", "-$5.00"), ("1234567.1", "$1,234,567.10"), ("0", "$0.00"),
    ("1e31", "$1.000E+31"), ("NaN", "n/a"),
], ids=str)
def test_money_is_rendered_from_decimal(amount: str, text: str) -> None:
    """Dollars to the cent, half-even, with thousands separators."""
    assert usd(D(amount)) == text


@pytest.mark.parametrize(("part", "whole", "text"), [
    ("4812", "10000", "48.1%"), ("1", "3", "33.3%"), ("15000", "10000", "150.0%"),
    ("5", "0", "n/a"),
], ids=str)
def test_percentages_have_one_decimal(part: str, whole: str, text: str) -> None:
    """A share of a limit is a percentage with one decimal, n/a without a limit."""
    assert share(D(part), D(whole)) == text


@pytest.mark.parametrize(("n", "text"), [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"),
                                          (11, "11th"), (12, "12th"), (13, "13th"),
                                          (21, "21st"), (22, "22nd"), (23, "23rd"), (31, "31st")])
def test_ordinals(n: int, text: str) -> None:
    """Days of the month read 1st, 2nd, 3rd, 11th, 21st."""
    assert ordinal(n) == text


# --- properties ------------------------------------------------------------------------------

long_text = st.builds(lambda c, n: c * n, st.characters(), st.integers(100, 12_000))
texts_ = st.one_of(st.text(max_size=20), long_text)
money = st.decimals(min_value=-1000, max_value=10**12, places=2)
maybe_money = st.none() | money
moments = st.datetimes(datetime(2020, 1, 1), datetime(2035, 1, 1),  # noqa: DTZ001  (naive bounds)
                       timezones=st.just(UTC))
multiples = st.decimals(min_value=0, max_value=10**4, places=2) | st.just(D("Infinity"))
movers = st.lists(st.builds(Mover, texts_, money, st.decimals(0, 1, places=3)), max_size=12)
conditions = st.sampled_from([c.value for c in Condition]) | texts_

views = st.builds(
    IncidentView, budget=texts_, scope=texts_, match=st.none() | texts_, condition=conditions,
    severity=st.sampled_from(["warning", "critical"]) | texts_, kind=st.sampled_from(KINDS),
    period=st.dates(date(2020, 1, 1), date(2035, 1, 1)).map(lambda d: d.replace(day=1)),
    mtd_usd=money, soft_usd=money, hard_usd=money, p10_usd=maybe_money, p50_usd=maybe_money,
    p90_usd=maybe_money, exhaustion_day=st.none() | st.dates(),
    burn=st.lists(st.tuples(texts_, multiples, multiples), max_size=4).map(tuple),
    tte_hours=st.none() | st.decimals(min_value=-5, max_value=10**6, places=1),
    tier=texts_, model=texts_, tier_reason=texts_, data_through=st.none() | moments, at=moments,
    movers=st.lists(st.tuples(texts_, movers.map(tuple)), max_size=8).map(tuple),
    reason=texts_, silenced=st.booleans(), since=st.none() | moments)

digest_lines = st.builds(
    DigestLine, name=texts_, mtd_usd=money, soft_usd=money, hard_usd=money, p50_usd=maybe_money,
    p90_usd=maybe_money, week_over_week=st.none() | st.decimals(-1, 100, places=3),
    cache_hit_ratio=st.none() | st.decimals(0, 1, places=3),
    firing=st.lists(conditions, max_size=8).map(tuple))


@settings(max_examples=150, deadline=None)
@given(views)
def test_any_incident_respects_the_limits(incident: IncidentView) -> None:
    """Whatever the view, alerts and replies stay within Slack's limits."""
    check_limits(render_incident(incident))
    check_limits(render_thread_reply(incident))
    assert len(incident_key(incident)) <= 248


@settings(max_examples=60, deadline=None)
@given(st.dates(date(2020, 1, 1), date(2035, 1, 1)), st.lists(digest_lines, max_size=80),
       texts_, texts_)
def test_any_digest_respects_the_limits(day: date, lines: list[DigestLine], tier: str,
                                        model: str) -> None:
    """Whatever the budgets, the digest stays within Slack's limits."""
    check_limits(render_digest(DigestView(day, tuple(lines), tier, model)))


def test_lag_is_measured_from_the_view_not_the_clock() -> None:
    """Freshness is ``at`` minus ``data_through``, both from the view."""
    late = view(data_through=AT - timedelta(hours=2, minutes=5))
    assert "Data through 12:07 UTC (lag 2 h 5 min)" in texts(render_incident(late))
