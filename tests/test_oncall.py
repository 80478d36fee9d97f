"""On call from Slack: buttons and /budget parsed purely, run through ops, answered in Slack."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slackfake import SlackFake

from guard.adapters.store.silences import Silences
from guard.adapters.store.state import Records
from guard.config import Settings, load_settings
from guard.core.fallback import FallbackState
from guard.core.records import Posted
from guard.core.render import IncidentView, render_incident
from guard.entry import wiring
from guard.entry.oncall import (
    Command,
    OnCall,
    Refusal,
    parse_action,
    parse_slash,
    socket_mode_listener,
    split_incident,
    start_socket_mode,
)
from guard.errors import ConfigError, SlackRejected, SlackUnavailable
from guard.shell.ops import describe_status

NOW = datetime(2026, 3, 19, 14, 5, tzinfo=UTC)
KEY = "2026-03:org-monthly:hard_likely"
ONCALL, STRANGER = "U0ONCALL", "U0STRANGER"
CHANNEL, ALERT_TS = "C0ALERTS", "1773929100.000200"

# A click on "Pin current tier 4h", as Slack sends it (trimmed of the message's blocks).
BLOCK_ACTIONS = json.loads("""
{
  "type": "block_actions",
  "user": {"id": "U0ONCALL", "username": "ada", "name": "ada", "team_id": "T0ACME"},
  "api_app_id": "A0BUDGET",
  "token": "verification-token-not-used",
  "container": {"type": "message", "message_ts": "1773929100.000200",
                "channel_id": "C0ALERTS", "is_ephemeral": false},
  "trigger_id": "10521397283.1234567890.7d3c4b1a9e",
  "team": {"id": "T0ACME", "domain": "acme"},
  "enterprise": null,
  "is_enterprise_install": false,
  "channel": {"id": "C0ALERTS", "name": "budget-alerts"},
  "message": {"type": "message", "subtype": "bot_message", "bot_id": "B0GUARD",
              "text": "Hard limit likely to be exceeded — org-monthly: month to date $812.40",
              "ts": "1773929100.000200", "blocks": []},
  "state": {"values": {}},
  "response_url": "https://hooks.slack.com/actions/T0ACME/10521397283/not-a-secret",
  "actions": [{"action_id": "budget_pin_4h",
               "block_id": "budget:2026-03:org-monthly:hard_likely",
               "text": {"type": "plain_text", "text": "Pin current tier 4h", "emoji": true},
               "value": "2026-03:org-monthly:hard_likely", "style": "danger",
               "type": "button", "action_ts": "1773929140.552113"}]
}
""")

# "/budget status" as the form fields Slack sends (the payload of a slash_commands request).
SLASH = {"token": "verification-token-not-used", "team_id": "T0ACME", "team_domain": "acme",
         "channel_id": CHANNEL, "channel_name": "budget-alerts", "user_id": ONCALL,
         "user_name": "ada", "command": "/budget", "text": "status", "api_app_id": "A0BUDGET",
         "is_enterprise_install": "false",
         "response_url": "https://hooks.slack.com/commands/T0ACME/1234/not-a-secret",
         "trigger_id": "10521397283.1234567890.aa01"}


def click(action_id: str = "budget_pin_4h", user: str = ONCALL, value: str = KEY,
          **changes: Any) -> dict[str, Any]:
    """The recorded click, on another button or by another user."""
    payload = copy.deepcopy(BLOCK_ACTIONS)
    payload["user"]["id"] = user
    payload["actions"][0].update(action_id=action_id, value=value)
    payload.update(changes)
    return payload


def slash(text: str, user: str = ONCALL) -> dict[str, Any]:
    """The recorded /budget command with other text, or from another user."""
    return {**SLASH, "text": text, "user_id": user}


@dataclass
class RecordingTransport:
    """Slack as a list: every post (channel, text, blocks, thread_ts), or down when asked."""

    down: bool = False
    supports_updates: bool = True
    posts: list[tuple[str, str, Sequence[Any], str | None]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def post(self, channel: str, text: str, blocks: Sequence[Any],
             thread_ts: str | None = None, *, dedup: str | None = None) -> Posted:
        if self.down:
            raise SlackUnavailable("Slack chat.postMessage unreachable: timed out")
        self.posts.append((channel, text, blocks, thread_ts))
        self.events.append("post")
        return Posted(channel, f"{len(self.posts)}.0")

    def update(self, channel: str, ts: str, text: str, blocks: Sequence[Any]) -> Posted:
        raise AssertionError("on-call answers never update")


@dataclass
class RecordingClient:
    """A Socket Mode client that records its acks into the transport's event log."""

    events: list[str]
    acks: list[SocketModeResponse] = field(default_factory=list)

    def send_socket_mode_response(self, response: SocketModeResponse) -> None:
        self.acks.append(response)
        self.events.append(f"ack {response.envelope_id}")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings from a small TOML file, with the state store and fallback files in tmp."""
    path = tmp_path / "guard.toml"
    path.write_text(f"""
[state]
url = "sqlite:///{tmp_path / 'state.db'}"

[slack]
oncall_user_ids = ["{ONCALL}"]

[fallback]
env_file = "{tmp_path / 'model.env'}"
state_file = "{tmp_path / 'fallback.json'}"

[[budgets]]
name = "org-monthly"
scope = "organization"
soft_limit_usd = 800
hard_limit_usd = 1000
""")
    return load_settings(path)


@pytest.fixture
def records(settings: Settings) -> Iterator[Records]:
    """The same state store, read back."""
    with wiring.opened_store(settings.state.url) as store:
        yield Records(store)


@pytest.fixture
def slack() -> RecordingTransport:
    """A Slack that accepts every answer."""
    return RecordingTransport()


@pytest.fixture
def oncall(settings: Settings, slack: RecordingTransport, records: Records) -> OnCall:
    """The shell under test, on a clock stopped at NOW."""
    return OnCall(wiring.ops(settings, records.store), settings.slack.oncall_user_ids, slack,
                  lambda: NOW)


def fallback_status(settings: Settings) -> dict[str, Any]:
    """What `guard fallback status --json` would say at NOW, read from the store."""
    with wiring.opened_store(settings.state.url) as store:
        return wiring.ops(settings, store).fallback_status(NOW)


def unchanged(settings: Settings, records: Records) -> bool:
    """No pin, no audit row and no silence in the store."""
    return (fallback_status(settings)["override"] is None
            and records.audit_entries() == [] and Silences(records.store).silences() == [])


# --- parsing: buttons ------------------------------------------------------------------------


@pytest.mark.parametrize(("action_id", "verb", "duration"), [
    ("budget_ack", "ack", None),
    ("budget_pin_4h", "pin", "4h"),
    ("budget_release", "release", None),
    ("budget_silence_24h", "silence", "24h"),
], ids=["ack", "pin", "release", "silence"])
def test_each_button_parses_to_its_command(action_id: str, verb: str, duration: str | None) -> None:
    """A click becomes the button's verb, for the clicked alert, answered in its thread."""
    assert parse_action(click(action_id)) == Command(
        verb, ONCALL, CHANNEL, ALERT_TS, incident=KEY, tier=None, duration=duration,
        reason=f"Slack button on alert {KEY}")


def test_a_click_in_a_thread_is_answered_in_that_thread() -> None:
    """When the clicked message is itself a thread reply, the answer joins that thread."""
    payload = click()
    payload["message"]["thread_ts"] = "1773929000.000100"
    command = parse_action(payload)
    assert isinstance(command, Command) and command.thread_ts == "1773929000.000100"


def test_container_is_enough_without_channel_and_message() -> None:
    """Channel and ts also come from ``container`` when ``channel`` and ``message`` are absent."""
    payload = click()
    del payload["channel"], payload["message"]
    command = parse_action(payload)
    assert isinstance(command, Command)
    assert (command.channel, command.thread_ts) == (CHANNEL, ALERT_TS)


def test_every_rendered_button_parses() -> None:
    """The buttons render_incident draws are exactly the ones parse_action understands."""
    view = IncidentView(
        budget="org-monthly", scope="organization", match=None, condition="hard_likely",
        severity="warning", kind="firing", period=date(2026, 3, 1), mtd_usd=Decimal(812),
        soft_usd=Decimal(800), hard_usd=Decimal(1000), p10_usd=None, p50_usd=None,
        p90_usd=None, exhaustion_day=None, burn=(), tte_hours=None, tier="sonnet",
        model="claude-sonnet-4-6", tier_reason="", data_through=None, at=NOW, movers=(),
        reason="first notification")
    (actions,) = [b for b in render_incident(view).blocks if b["type"] == "actions"]
    verbs = []
    for button in actions["elements"]:
        payload = click(button["action_id"], value=button["value"])
        payload["actions"][0]["block_id"] = actions["block_id"]
        command = parse_action(payload)
        assert isinstance(command, Command) and command.incident == KEY
        verbs.append(command.verb)
    assert verbs == ["ack", "pin", "release", "silence"]


@pytest.mark.parametrize(("payload", "answer_in"), [
    ({"type": "view_submission", "user": {"id": ONCALL}}, None),
    ({}, None),
    (click(user="not-a-user"), CHANNEL),
    (click(channel=None, container={}), None),
    (click(message={}, container={"channel_id": CHANNEL}), CHANNEL),
    (click(actions=[]), CHANNEL),
    (click(actions="budget_ack"), CHANNEL),
    (click(actions=[None]), CHANNEL),
    (click("some_other_app_button"), CHANNEL),
    (click(value="org-monthly"), CHANNEL),
    (click(value="2026-13:org-monthly:hard_likely"), CHANNEL),
    (click(value="2026-03:org-monthly:on_fire"), CHANNEL),
    (click(value="2026-03::hard_likely"), CHANNEL),
    (click(value=None), CHANNEL),
    (click(user=["U0ONCALL"]), CHANNEL),
], ids=["not-block-actions", "empty", "bad-user", "no-channel", "no-message-ts",
        "no-actions", "actions-not-list", "action-not-object", "unknown-button",
        "value-not-a-key", "bad-period", "unknown-condition", "no-budget", "no-value",
        "user-not-a-string"])
def test_malformed_clicks_are_refused(payload: dict[str, Any], answer_in: str | None) -> None:
    """A click that is not a well-formed alert button is a Refusal, never an exception."""
    refusal = parse_action(payload)
    assert isinstance(refusal, Refusal) and "nothing changed" in refusal.reason
    assert refusal.channel == answer_in


def test_split_incident_keeps_colons_in_budget_names() -> None:
    """The budget is everything between the period and the condition."""
    assert split_incident("2026-03:team:a:b:runaway") == ("team:a:b", "runaway")
    assert split_incident(KEY) == ("org-monthly", "hard_likely")


# --- parsing: /budget ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("status", Command("status", ONCALL, CHANNEL)),
    ("  Status ", Command("status", ONCALL, CHANNEL)),
    ("pin haiku 2h incident 42", Command("pin", ONCALL, CHANNEL, tier="haiku", duration="2h",
                                         reason="incident 42")),
    ("release", Command("release", ONCALL, CHANNEL, reason="released from Slack")),
    ("release spend is back under control", Command(
        "release", ONCALL, CHANNEL, reason="spend is back under control")),
], ids=["status", "status-spaced-capitalised", "pin", "release", "release-with-reason"])
def test_slash_commands_parse(text: str, expected: Command) -> None:
    """/budget's words become a Command answered as a plain reply in the channel."""
    assert parse_slash(slash(text)) == expected


@pytest.mark.parametrize(("payload", "words"), [
    (slash(""), "Usage"),
    (slash("pin haiku 2h"), "did not understand"),
    (slash("snooze 24h"), "did not understand"),
    (slash("status please"), "did not understand"),
    ({**SLASH, "text": None}, "Usage"),
], ids=["empty", "pin-without-reason", "unknown-verb", "status-with-extra", "text-not-string"])
def test_malformed_slash_commands_are_refused_with_usage(payload: dict[str, Any],
                                                         words: str) -> None:
    """A command /budget does not know is answered with its usage, in the channel."""
    refusal = parse_slash(payload)
    assert isinstance(refusal, Refusal) and words in refusal.reason
    assert "/budget status" in refusal.reason and refusal.channel == CHANNEL


@pytest.mark.parametrize("payload", [
    {}, {"user_id": ONCALL}, {**SLASH, "channel_id": 7}, {**SLASH, "user_id": "<!channel>"}],
    ids=["empty", "no-channel", "channel-not-string", "user-not-an-id"])
def test_slash_commands_without_who_or_where_are_refused(payload: dict[str, Any]) -> None:
    """Without a user and a channel id there is no one to act for."""
    assert isinstance(parse_slash(payload), Refusal)


# --- acting ----------------------------------------------------------------------------------


def test_pin_button_pins_the_tier_in_force_and_answers_in_the_thread(
        oncall: OnCall, slack: RecordingTransport, settings: Settings, records: Records) -> None:
    """Pin 4h holds the tier in force (the chain's first before any tick), audited as slack:U…."""
    answer = oncall.handle(parse_action(click("budget_pin_4h")))
    pin = fallback_status(settings)["override"]
    assert pin == {"tier": "opus", "by": "slack:U0ONCALL", "reason": f"Slack button on alert {KEY}",
                   "expires_at": "2026-03-19T18:05:00Z", "active": True}
    (entry,) = records.audit_entries()
    assert (entry.who, entry.action, entry.after) == ("slack:U0ONCALL", "pin",
                                                      "opus until 2026-03-19T18:05:00Z")
    assert slack.posts == [(CHANNEL, answer, (), ALERT_TS)]
    assert "<@U0ONCALL> pinned the fallback at opus" in answer and "18:05 UTC" in answer


def test_pin_button_reads_the_tier_in_force_from_the_records(
        oncall: OnCall, settings: Settings, records: Records) -> None:
    """After a tick moved the fallback to sonnet, Pin 4h holds sonnet."""
    records.save_fallback(FallbackState("sonnet", 1, "claude-sonnet-4-6",
                                        ("claude-sonnet-4-6", "claude-haiku-4-5"), "auto", NOW,
                                        "org-monthly: hard_likely → sonnet", ("hard_likely",)))
    oncall.handle(parse_action(click("budget_pin_4h")))
    assert fallback_status(settings)["override"]["tier"] == "sonnet"


def test_release_button_removes_the_pin(oncall: OnCall, slack: RecordingTransport,
                                        settings: Settings, records: Records) -> None:
    """Release ends the pin and audits it; the answer goes to the alert's thread."""
    oncall.handle(parse_action(click("budget_pin_4h")))
    answer = oncall.handle(parse_action(click("budget_release")))
    assert fallback_status(settings)["override"] is None
    assert [(e.who, e.action) for e in records.audit_entries()] == [
        ("slack:U0ONCALL", "pin"), ("slack:U0ONCALL", "release")]
    assert "released the pin at opus" in answer and slack.posts[-1][3] == ALERT_TS


def test_release_without_a_pin_says_so(oncall: OnCall, settings: Settings,
                                       records: Records) -> None:
    """Releasing when nothing is pinned changes nothing and says so."""
    answer = oncall.handle(parse_slash(slash("release")))
    assert answer == "There was no pin to release; nothing changed."
    assert unchanged(settings, records)


def test_silence_button_silences_the_alerts_budget_and_condition(
        oncall: OnCall, slack: RecordingTransport, records: Records) -> None:
    """Silence 24h mutes the incident's budget and condition for a day, audited."""
    answer = oncall.handle(parse_action(click("budget_silence_24h")))
    (silence,) = Silences(records.store).silences(NOW)
    assert (silence.budget, silence.condition, silence.who) == (
        "org-monthly", "hard_likely", "slack:U0ONCALL")
    assert silence.ends_at == NOW + timedelta(hours=24)
    assert [e.subject for e in records.audit_entries()] == ["org-monthly:hard_likely"]
    assert "silenced Hard limit likely to be exceeded for org-monthly" in answer
    assert slack.posts == [(CHANNEL, answer, (), ALERT_TS)]


def test_silence_of_an_unknown_budget_is_answered_in_words(
        oncall: OnCall, settings: Settings, records: Records) -> None:
    """An alert of a budget no longer configured cannot be silenced; the answer says why."""
    answer = oncall.handle(parse_action(click("budget_silence_24h",
                                              value="2026-03:gone:hard_likely")))
    assert answer.startswith("Could not silence: budget: 'gone' is not a configured budget")
    assert unchanged(settings, records)


def test_ack_button_only_audits(oncall: OnCall, slack: RecordingTransport,
                                settings: Settings, records: Records) -> None:
    """Acknowledge writes one audit row for the incident and changes nothing else."""
    answer = oncall.handle(parse_action(click("budget_ack")))
    (entry,) = records.audit_entries()
    assert (entry.at, entry.who, entry.action, entry.subject) == (NOW, "slack:U0ONCALL", "ack",
                                                                  KEY)
    assert fallback_status(settings)["override"] is None
    assert answer == f"<@U0ONCALL> acknowledged `{KEY}`."
    assert slack.posts == [(CHANNEL, answer, (), ALERT_TS)]


def test_status_answers_with_the_status_text(oncall: OnCall, slack: RecordingTransport,
                                             settings: Settings) -> None:
    """/budget status answers with what ``guard status`` prints, as a plain channel reply."""
    oncall.handle(parse_slash(slash("pin haiku 2h incident 42")))
    answer = oncall.handle(parse_slash(slash("status")))
    assert describe_status(fallback_status(settings)) in answer
    assert "pin (active): haiku by slack:U0ONCALL" in answer
    assert slack.posts[-1] == (CHANNEL, answer, (), None)


def test_slash_pin_pins_the_named_tier(oncall: OnCall, slack: RecordingTransport,
                                       settings: Settings, records: Records) -> None:
    """/budget pin haiku 2h incident 42 pins haiku for two hours with that reason."""
    answer = oncall.handle(parse_slash(slash("pin haiku 2h incident 42")))
    pin = fallback_status(settings)["override"]
    assert (pin["tier"], pin["expires_at"], pin["reason"], pin["by"]) == (
        "haiku", "2026-03-19T16:05:00Z", "incident 42", "slack:U0ONCALL")
    assert [e.who for e in records.audit_entries()] == ["slack:U0ONCALL"]
    assert "haiku (`claude-haiku-5-5`) until 16:05 UTC: incident 42" in answer
    assert slack.posts == [(CHANNEL, answer, (), None)]


@pytest.mark.parametrize(("text", "why"), [
    ("pin mistral 2h incident 42", "tier: 'mistral' is not in fallback.chain"),
    ("pin haiku forever incident 42", "duration: not a duration like 30m, 4h or 2d"),
    ("pin haiku 90d incident 42", "duration: must be more than 0 and at most 31 days"),
    (f"pin haiku {10**30}h incident 42", "duration: must be more than 0 and at most 31 days"),
    ("pin haiku 2h " + "x" * 501, "reason: at most 500 characters"),
], ids=["unknown-tier", "bad-duration", "too-long", "absurd-duration", "reason-over-500"])
def test_bad_pins_are_answered_in_words(oncall: OnCall, settings: Settings, records: Records,
                                        text: str, why: str) -> None:
    """ops' InvalidInput becomes the answer, naming the argument; nothing is pinned or
    audited."""
    answer = oncall.handle(parse_slash(slash(text)))
    assert answer.startswith("Could not pin: ") and why in answer
    assert answer.endswith("Nothing changed.")
    assert unchanged(settings, records)


def test_outside_text_cannot_mention_the_channel(oncall: OnCall) -> None:
    """A reason is escaped for mrkdwn before it is echoed, so it cannot ping @channel."""
    answer = oncall.handle(parse_slash(slash("pin haiku 2h <!channel> look")))
    assert "<!channel>" not in answer and "&lt;!channel&gt; look" in answer


@pytest.mark.parametrize("payload", [
    click("budget_ack", STRANGER), click("budget_pin_4h", STRANGER),
    click("budget_release", STRANGER), click("budget_silence_24h", STRANGER),
    slash("pin haiku 2h incident 42", STRANGER), slash("release", STRANGER),
    slash("status", STRANGER),
], ids=["ack", "pin", "release", "silence", "slash-pin", "slash-release", "slash-status"])
def test_someone_not_on_call_changes_nothing(oncall: OnCall, slack: RecordingTransport,
                                             settings: Settings, records: Records,
                                             payload: dict[str, Any]) -> None:
    """Every verb is refused to a user outside slack.oncall_user_ids: no pin, audit or silence."""
    parse = parse_action if "actions" in payload else parse_slash
    answer = oncall.handle(parse(payload))
    assert answer == "<@U0STRANGER> is not on call; nothing changed."
    assert [p[1] for p in slack.posts] == [answer]
    assert unchanged(settings, records)


def test_a_stranger_cannot_release_an_on_call_pin(oncall: OnCall, settings: Settings) -> None:
    """The pin an on-call engineer set survives a stranger's Release."""
    oncall.handle(parse_action(click("budget_pin_4h")))
    oncall.handle(parse_action(click("budget_release", STRANGER)))
    assert fallback_status(settings)["override"]["tier"] == "opus"


def test_refusals_are_answered_where_they_came_from(oncall: OnCall,
                                                    slack: RecordingTransport) -> None:
    """A refused click is answered in its thread; one with no channel is only returned."""
    answer = oncall.handle(parse_action(click("other_app_button")))
    assert slack.posts == [(CHANNEL, answer, (), ALERT_TS)]
    assert oncall.handle(parse_action({"type": "shortcut"})).endswith("nothing changed.")
    assert len(slack.posts) == 1


def test_a_failed_answer_is_logged_not_raised(settings: Settings, records: Records,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """When Slack is down the pin still happens; the lost answer is logged."""
    oncall = OnCall(wiring.ops(settings, records.store), settings.slack.oncall_user_ids,
                    RecordingTransport(down=True), lambda: NOW)
    answer = oncall.handle(parse_action(click("budget_pin_4h")))
    assert "pinned the fallback" in answer
    assert fallback_status(settings)["override"]["tier"] == "opus"
    assert "could not answer in Slack channel C0ALERTS" in caplog.text


# --- Socket Mode -----------------------------------------------------------------------------


def test_listener_acks_before_it_handles(oncall: OnCall, slack: RecordingTransport,
                                         settings: Settings) -> None:
    """The envelope is acknowledged first (Slack's 3 s), then the click is acted on."""
    client = RecordingClient(slack.events)
    listen = socket_mode_listener(oncall)
    listen(client, SocketModeRequest(type="interactive", envelope_id="env-1",
                                     payload=click("budget_pin_4h")))
    assert slack.events == ["ack env-1", "post"]
    assert client.acks[0].to_dict() == {"envelope_id": "env-1"}
    assert fallback_status(settings)["override"]["tier"] == "opus"


def test_listener_dispatches_slash_commands(oncall: OnCall, slack: RecordingTransport) -> None:
    """A slash_commands request is acked, then parsed as /budget and answered in the channel."""
    listen = socket_mode_listener(oncall)
    listen(RecordingClient(slack.events), SocketModeRequest(
        type="slash_commands", envelope_id="env-2", payload=slash("status")))
    assert slack.events == ["ack env-2", "post"]
    assert slack.posts[0][0] == CHANNEL and slack.posts[0][1].startswith("```\ntier opus")


@pytest.mark.parametrize(("kind", "payload"), [
    ("events_api", {"event": {"type": "app_mention", "text": "hi"}}),
    ("interactive", {"type": "view_submission", "user": {"id": ONCALL}}),
], ids=["events-api", "view-submission"])
def test_listener_acks_and_ignores_other_requests(oncall: OnCall, slack: RecordingTransport,
                                                  kind: str, payload: dict[str, Any]) -> None:
    """Anything else is acknowledged (so Slack does not retry) and otherwise left alone."""
    socket_mode_listener(oncall)(RecordingClient(slack.events),
                                 SocketModeRequest(type=kind, envelope_id="env-3", payload=payload))
    assert slack.events == ["ack env-3"]


def test_start_socket_mode_wants_an_app_level_token(oncall: OnCall) -> None:
    """A bot token in place of the xapp- token is a configuration error, before connecting."""
    with pytest.raises(ConfigError, match="app-level token"):
        start_socket_mode(wiring.socket_mode_client("xoxb-not-an-app-token"), oncall)


def test_start_socket_mode_translates_a_rejected_token(oncall: OnCall) -> None:
    """apps.connections.open refusing the token is a SlackRejected that names the setting."""
    with SlackFake() as fake, pytest.raises(SlackRejected, match="invalid_auth") as caught:
        start_socket_mode(wiring.socket_mode_client("xapp-1-A0BUDGET-revoked",
                                                    base_url=fake.base_url), oncall)
    assert "slack.app_token" in str(caught.value) and "xapp-1" not in str(caught.value)
