"""The Slack adapters against a loopback fake Slack: lifecycle calls, retries, error classes."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from slackfake import SlackFake

from guard.adapters.chat import PacedTransport
from guard.adapters.slack import SlackWebApi, SlackWebhook
from guard.config.sections import SlackSettings
from guard.core.records import Posted
from guard.entry.wiring import slack as from_settings
from guard.entry.wiring import slack_web_api, slack_webhook
from guard.errors import SlackError, SlackRejected, SlackUnavailable

BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*MTD* $4,812"}}]


@pytest.fixture
def fake() -> Iterator[SlackFake]:
    with SlackFake() as server:
        yield server


@pytest.fixture
def api(fake: SlackFake) -> SlackWebApi:
    return slack_web_api(fake.token, base_url=fake.base_url, retries=1)


@pytest.fixture
def hook(fake: SlackFake) -> SlackWebhook:
    return slack_webhook(fake.webhook_url, retries=1)


def test_post_then_update_same_ts(fake: SlackFake, api: SlackWebApi) -> None:
    """A post returns the channel id and ts, and the update addresses that same message."""
    posted = api.post(fake.channel, "soft limit reached", BLOCKS)
    updated = api.update(posted.channel, posted.ts, "resolved", [])
    assert posted.channel == fake.channel and re.fullmatch(r"\d{10}\.\d{6}", posted.ts)
    assert updated == posted
    assert [(c.text, c.blocks) for c in fake.posts()] == [("soft limit reached", BLOCKS)]
    assert [(c.ts, c.text) for c in fake.updates()] == [(posted.ts, "resolved")]


def test_thread_reply_carries_thread_ts(fake: SlackFake, api: SlackWebApi) -> None:
    """A reply is posted with thread_ts of its parent and gets a ts of its own."""
    parent = api.post(fake.channel, "hard limit at risk", BLOCKS)
    reply = api.post(fake.channel, "acknowledged by U01", [], thread_ts=parent.ts)
    assert reply.ts > parent.ts
    assert [c.thread_ts for c in fake.thread_replies()] == [parent.ts]
    assert fake.posts()[0].thread_ts is None


def test_update_of_unknown_message_is_rejected(fake: SlackFake, api: SlackWebApi) -> None:
    """chat.update of a ts Slack does not know is rejected with message_not_found."""
    with pytest.raises(SlackRejected) as caught:
        api.update(fake.channel, "1.000001", "resolved", [])
    assert caught.value.error == "message_not_found"


def test_rate_limit_is_retried_after_retry_after(fake: SlackFake, api: SlackWebApi) -> None:
    """A 429 with Retry-After: 1 is slept out by slack-sdk and the second attempt posts."""
    fake.rate_limit_next(1, retry_after=1)
    started = time.monotonic()
    api.post(fake.channel, "runaway", [])
    assert time.monotonic() - started >= 1
    assert [c.status for c in fake.calls] == [429, 200]


def test_rate_limit_past_retries_is_unavailable(fake: SlackFake, api: SlackWebApi) -> None:
    """A Retry-After longer than the cap is not slept out: it surfaces with retry_after."""
    fake.rate_limit_next(1, retry_after=120)
    with pytest.raises(SlackUnavailable) as caught:
        api.post(fake.channel, "runaway", [])
    assert (caught.value.retry_after, caught.value.error) == (120, "ratelimited")
    assert caught.value.recoverable
    assert len(fake.calls) == 1


def test_persistent_server_error_is_unavailable(fake: SlackFake, api: SlackWebApi) -> None:
    """A 500 that outlasts the retry is SlackUnavailable, after 1 + retries attempts."""
    fake.fail_next(5, status=500)
    with pytest.raises(SlackUnavailable) as caught:
        api.post(fake.channel, "soft limit reached", [])
    assert caught.value.status == 500
    assert [c.status for c in fake.calls] == [500, 500]


@pytest.mark.parametrize(("arrange", "error"), [
    (lambda fake: fake.error_next(1, "not_in_channel"), "not_in_channel"),
    (lambda fake: fake.error_next(1, "msg_too_long"), "msg_too_long"),
    (lambda fake: fake.archive(fake.channel), "is_archived"),
], ids=["not-in-channel", "too-long", "archived"])
def test_slack_error_codes_are_rejected(fake: SlackFake, api: SlackWebApi,
                                        arrange: Callable[[SlackFake], None], error: str) -> None:
    """An ok:false code that needs a person is SlackRejected carrying the code, not retried."""
    arrange(fake)
    with pytest.raises(SlackRejected) as caught:
        api.post(fake.channel, "soft limit reached", [])
    assert caught.value.error == error
    assert not caught.value.recoverable
    assert len(fake.calls) == 1


def test_unknown_channel_is_rejected_with_hint(fake: SlackFake, api: SlackWebApi) -> None:
    """channel_not_found is rejected, and the message says which setting to check."""
    with pytest.raises(SlackRejected, match=r"channel_not_found \(check slack.channel") as caught:
        api.post("C9999999999", "soft limit reached", [])
    assert caught.value.error == "channel_not_found"


def test_wrong_token_is_rejected_and_never_quoted(fake: SlackFake) -> None:
    """invalid_auth is SlackRejected, and neither token appears in the message."""
    wrong = "xoxb-wrong-1234-secret"
    with pytest.raises(SlackRejected) as caught:
        slack_web_api(wrong, base_url=fake.base_url).post(fake.channel, "text", [])
    assert caught.value.error == "invalid_auth"
    assert wrong not in str(caught.value) and fake.token not in str(caught.value)


def test_transient_error_code_is_unavailable(fake: SlackFake, api: SlackWebApi) -> None:
    """An ok:false internal_error on HTTP 200 is recoverable."""
    fake.error_next(1, "internal_error")
    with pytest.raises(SlackUnavailable):
        api.post(fake.channel, "text", [])


def test_connection_refused_is_unavailable(fake: SlackFake) -> None:
    """A Slack that refuses connections is SlackUnavailable with the reason, not a URLError."""
    api = slack_web_api(fake.token, base_url=fake.base_url, retries=0)
    fake.down()
    with pytest.raises(SlackUnavailable, match="Connection refused") as caught:
        api.post(fake.channel, "text", [])
    assert caught.value.recoverable
    assert caught.value.__cause__ is None


def test_dropped_connection_is_retried(fake: SlackFake, api: SlackWebApi) -> None:
    """A connection closed without an answer is retried and the retry posts."""
    fake.drop_next(1)
    api.post(fake.channel, "text", [])
    assert [c.status for c in fake.calls] == [0, 200]


def test_blank_text_is_rejected_before_sending(fake: SlackFake, api: SlackWebApi) -> None:
    """The top-level text is the notification fallback: a blank one is never sent."""
    with pytest.raises(SlackRejected) as caught:
        api.post(fake.channel, "  ", BLOCKS)
    assert caught.value.error == "no_text"
    assert fake.calls == []


def test_auth_check_names_bot_and_team(api: SlackWebApi) -> None:
    """auth.test reports who the token posts as, for guard doctor."""
    assert api.auth_check() == "budget-guard (U0FAKE) in Fake Team (T0FAKE)"


def test_channel_check(fake: SlackFake, api: SlackWebApi) -> None:
    """A known channel passes; an unknown one is channel_not_found; an archived one fails."""
    api.channel_check(fake.channel)
    with pytest.raises(SlackRejected, match="channel_not_found"):
        api.channel_check("C9999999999")
    fake.archive(fake.channel)
    with pytest.raises(SlackRejected, match="is_archived"):
        api.channel_check(fake.channel)


def test_webhook_post(fake: SlackFake, hook: SlackWebhook) -> None:
    """A webhook post sends text and blocks and returns the placeholder Posted (no ts)."""
    assert hook.post("ignored", "soft limit reached", BLOCKS) == Posted("webhook", "")
    assert [(c.text, c.blocks) for c in fake.webhook_posts()] == [("soft limit reached", BLOCKS)]


@pytest.mark.parametrize(("arrange", "expected", "error"), [
    (lambda fake: fake.error_next(1, "invalid_token"), SlackRejected, "invalid_token"),
    (lambda fake: fake.error_next(1, "channel_not_found"), SlackRejected, "channel_not_found"),
    (lambda fake: fake.error_next(1, "channel_is_archived"), SlackRejected,
     "channel_is_archived"),
    (lambda fake: fake.fail_next(2, status=503), SlackUnavailable, "internal_error"),
    (lambda fake: fake.rate_limit_next(1, retry_after=120), SlackUnavailable, "ratelimited"),
], ids=["revoked", "no-channel", "archived", "server-error", "rate-limited"])
def test_webhook_failures_are_classified(fake: SlackFake, hook: SlackWebhook,
                                         arrange: Callable[[SlackFake], None],
                                         expected: type[SlackError], error: str) -> None:
    """A webhook's non-200 is rejected or unavailable by its code, and never quotes the URL."""
    arrange(fake)
    with pytest.raises(expected) as caught:
        hook.post("ignored", "text", [])
    assert caught.value.error == error
    assert fake.webhook_secret not in str(caught.value)


def test_webhook_with_wrong_secret_is_rejected(fake: SlackFake) -> None:
    """A mistyped webhook URL is invalid_token and the message does not quote the URL."""
    url = fake.webhook_url + "x"
    with pytest.raises(SlackRejected) as caught:
        slack_webhook(url).post("ignored", "text", [])
    assert caught.value.error == "invalid_token"
    assert fake.webhook_secret not in str(caught.value)


def test_webhook_unreachable_never_logs_url(fake: SlackFake,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """Retrying a refused webhook logs neither the URL nor its secret, even at DEBUG."""
    hook = slack_webhook(fake.webhook_url, retries=1)
    fake.down()
    with caplog.at_level(logging.DEBUG), pytest.raises(SlackUnavailable) as caught:
        hook.post("ignored", "text", [])
    assert fake.webhook_secret not in caplog.text + str(caught.value)


def test_webhook_cannot_update(hook: SlackWebhook) -> None:
    """Updating through a webhook raises SlackRejected instead of posting a duplicate."""
    with pytest.raises(SlackRejected) as caught:
        hook.update("C1", "1.1", "resolved", [])
    assert caught.value.error == "updates_not_supported"


def test_supports_updates_flags(fake: SlackFake, api: SlackWebApi, hook: SlackWebhook) -> None:
    """Only the bot-token transport can update and thread."""
    assert (api.supports_updates, hook.supports_updates) == (True, False)


def test_from_settings_prefers_bot_token() -> None:
    """A bot token wins over a webhook; with neither there is no transport."""
    both = SlackSettings(bot_token=SecretStr("xoxb-1"), webhook_url=SecretStr("https://h/x"))
    assert isinstance(from_settings(both), SlackWebApi)
    assert isinstance(from_settings(SlackSettings(webhook_url=SecretStr("https://h/x"))),
                      SlackWebhook)
    assert from_settings(SlackSettings()) is None


def test_paced_transport_keeps_one_message_per_second_per_channel() -> None:
    """Two sends to one channel in a row wait out the rest of the second; other channels don't."""
    class Inner:
        supports_updates = True

        def __init__(self) -> None:
            self.sent: list[str] = []

        def post(self, channel: str, text: str, blocks: object,
                 thread_ts: str | None = None, *, dedup: str | None = None) -> Posted:
            self.sent.append(channel)
            return Posted(channel, "1.0")

        def update(self, channel: str, ts: str, text: str, blocks: object) -> Posted:
            return Posted(channel, ts)

    clock = [100.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    paced = PacedTransport(Inner(), 1.0, sleep, lambda: clock[0])  # type: ignore[arg-type]
    paced.post("C1", "a", [])
    clock[0] += 0.25
    paced.post("C1", "b", [])
    paced.post("C2", "c", [])
    assert waits == [0.75]


def test_a_post_is_found_again_by_its_dedup_key(fake: SlackFake, api: SlackWebApi) -> None:
    """A post carries its dedup key as metadata; find() reads the channel's history (or a
    thread's replies) for it, and finds nothing for another key or a channel by name."""
    since = datetime.now(UTC) - timedelta(minutes=1)
    parent = api.post(fake.channel, "hard limit reached", BLOCKS, dedup="2026-03:org:hard:1")
    reply = api.post(fake.channel, "escalated", [], parent.ts, dedup="2026-03:org:hard:1:esc")
    assert api.find(fake.channel, "2026-03:org:hard:1", since) == parent
    assert api.find(fake.channel, "2026-03:org:hard:1:esc", since, parent.ts) == reply
    assert api.find(fake.channel, "2026-03:org:hard:1:esc", since) is None  # not top-level
    assert api.find(fake.channel, "2026-03:org:soft:1", since) is None
    assert api.find("#budget-alerts", "2026-03:org:hard:1", since) is None
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert api.find(fake.channel, "2026-03:org:hard:1", later) is None
