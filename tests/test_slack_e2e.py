"""Ticks against the simulated Admin API and a loopback fake of Slack's Web API.

Every tick here builds its parts afresh (a new store connection, client and Slack client), as
a process restarted between ticks would: what it knows comes from the state store alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from slackfake import SlackFake

from guard.adapters.admin.client import AdminClient, RetryPolicy
from guard.adapters.sinks import FileSinks, read_env
from guard.adapters.slack import SlackWebApi
from guard.adapters.store.outbox import Outbox
from guard.adapters.store.schema import incidents
from guard.adapters.store.state import Records
from guard.core.decide import TickConfig
from guard.core.model import Budget, Scope
from guard.core.policy import PolicyConfig
from guard.core.pricing import PriceTable
from guard.core.records import Posted
from guard.core.summary import TickReport
from guard.entry import wiring
from guard.shell.tick import run_tick
from guard.sim import SimClock, SimOrg, SimServer

KEY = "sk-ant-admin-slack-e2e"
ORG = SimOrg.generate(7)
MARCH = datetime(2026, 3, 1, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)
MONTH_USD = ORG.truth_cents(MARCH, APRIL, "organization") / 100
MODELS = {"opus": "claude-opus-4-7", "sonnet": "claude-sonnet-4-6", "haiku": "claude-haiku-4-5"}
BUDGETS = (Budget("org-monthly", Scope.ORGANIZATION, None, MONTH_USD * Decimal("0.3"),
                  MONTH_USD * Decimal("0.8")),)


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(ORG, SimClock(MARCH), admin_key=KEY) as server:
        yield server


@pytest.fixture
def slack() -> Iterator[SlackFake]:
    with SlackFake() as fake:
        yield fake


def tick_once(sim: SimServer, slack: SlackFake, tmp_path: Path, at: datetime,
              holder: str = "guard-1", *,
              wrap: Callable[[SlackWebApi], SlackWebApi] | None = None) -> TickReport:
    """One tick by a freshly started process (``wrap`` may stand in for its Slack client)."""
    sim.clock.set(at)
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store, \
            wiring.admin_http(sim.base_url, KEY) as http:
        client = AdminClient(http, retry=RetryPolicy(attempts=1), sleep=lambda _: None)
        config = TickConfig(BUDGETS, PolicyConfig(), timedelta(minutes=5), MODELS,
                            lease_ttl=timedelta(minutes=3))
        tick = wiring.tick_for(
            client, store, config, prices=PriceTable.load(),
            sinks=FileSinks(tmp_path / "model.env", tmp_path / "fallback.json"),
            transport=(wrap or (lambda t: t))(
                wiring.slack_web_api(slack.token, base_url=slack.base_url, retries=0)),
            channel=slack.channel)
        tick.holder = holder
        return run_tick(tick, at)


def incident_messages(tmp_path: Path) -> dict[str, str]:
    """incident → ts of the message it lives in, from the state store."""
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store, \
            store.reading() as conn:
        rows = conn.execute(incidents.select()).all()
    return {r.incident: r.ts for r in rows}


def every(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    while start < end:
        yield start
        start += step


def hard_crossing() -> datetime:
    """The first hour by whose end the organization's spend reached the hard limit."""
    low, high = 0, 31 * 24
    while low < high:
        mid = (low + high) // 2
        spent = ORG.truth_cents(MARCH, MARCH + timedelta(hours=mid + 1), "organization") / 100
        low, high = (low, mid) if spent >= BUDGETS[0].hard_limit_usd else (mid + 1, high)
    return MARCH + timedelta(hours=low + 1)


def test_an_hour_without_slack_loses_nothing_and_keeps_flipping(sim: SimServer,
                                                                slack: SlackFake,
                                                                tmp_path: Path) -> None:
    """Slack down across the hard-limit crossing: the fallback flips to haiku on time, and
    the owed hard_reached incident is posted exactly once when Slack returns."""
    crossing = hard_crossing()
    tick_once(sim, slack, tmp_path, crossing - timedelta(hours=2))
    tick_once(sim, slack, tmp_path, crossing - timedelta(minutes=100))
    assert read_env(tmp_path / "model.env")["GUARD_TIER"] == "sonnet"
    posted_before = len(slack.posts())
    slack.down()
    flipped_at = None
    for at in every(crossing - timedelta(minutes=50), crossing + timedelta(minutes=60),
                    timedelta(minutes=10)):
        report = tick_once(sim, slack, tmp_path, at)
        if flipped_at is None and read_env(tmp_path / "model.env")["GUARD_TIER"] == "haiku":
            flipped_at = at
    assert flipped_at is not None and flipped_at <= crossing + timedelta(minutes=20)
    assert report.owed >= 1
    assert len(slack.posts()) == posted_before
    slack.up()
    back = [tick_once(sim, slack, tmp_path, crossing + timedelta(minutes=m)).as_json()
            for m in (70, 80)]
    new_top = [c for c in slack.posts()[posted_before:] if c.thread_ts is None]
    assert [c.text.split(" — ")[0] for c in new_top if c.text] == ["Hard limit reached"]
    reported = [n for body in back for n in body["notifications"]
                if n["condition"] == "hard_reached" and n["kind"] == "firing"]
    assert len(reported) == 1 and reported[0]["delivered"] and reported[0]["owed_since"]
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        outbox = Outbox(store)
        assert outbox.owed() == []
        delivered = Counter((incident, kind) for incident, kind, status in outbox.history()
                            if status == "delivered")
    assert all(n == 1 for (_, kind), n in delivered.items() if kind != "update")


def test_two_instances_sharing_a_store_send_each_notification_once(sim: SimServer,
                                                                   slack: SlackFake,
                                                                   tmp_path: Path) -> None:
    """Two replicas tick alternately; the leader lease makes exactly one of them act."""
    reports = []
    for at in every(MARCH + timedelta(days=8), MARCH + timedelta(days=14), timedelta(hours=4)):
        reports.append(tick_once(sim, slack, tmp_path, at, holder="guard-a"))
        reports.append(tick_once(sim, slack, tmp_path, at + timedelta(minutes=1),
                                 holder="guard-b"))
    assert any(r.standby for r in reports)
    top = [c for c in slack.posts() if c.thread_ts is None
           and not (c.text or "").startswith("Price table")]
    assert len(top) == len(incident_messages(tmp_path))
    texts = Counter((c.text or "").split(":")[0] for c in top)
    assert all(n == 1 for n in texts.values())


def test_a_rejected_notification_is_reported_loudly(sim: SimServer, slack: SlackFake,
                                                    tmp_path: Path) -> None:
    """Slack refusing (channel_not_found) shows in the tick's JSON and stays owed."""
    slack.error_next(1, "channel_not_found")
    report = tick_once(sim, slack, tmp_path, MARCH + timedelta(days=20))
    errors = report.as_json()["notification_errors"]
    assert errors and "channel_not_found" in errors[0]
    assert report.owed >= 1


def test_a_month_of_restarts_and_a_slack_outage_loses_repeats_and_hides_nothing(
        sim: SimServer, slack: SlackFake, tmp_path: Path) -> None:
    """Every tick a fresh process, Slack down across the hard crossing: one post per
    incident, updates of its ts and replies in its thread, one reset notice, every March
    incident resolved at rollover, and every delivery (the late ones included) reported by
    the tick that made it."""
    crossing = hard_crossing()
    reported, late = 0, 0
    for at in every(MARCH + timedelta(hours=1), APRIL + timedelta(hours=7), timedelta(hours=6)):
        if crossing - timedelta(hours=1) <= at < crossing + timedelta(hours=6):
            slack.down()
        else:
            slack.up()
        body = tick_once(sim, slack, tmp_path, at).as_json()
        reported += sum(1 for n in body["notifications"] if n["delivered"])
        late += sum(1 for n in body["notifications"] if n["delivered"] and n.get("owed_since"))
    slack.up()
    messages = incident_messages(tmp_path)
    conditions = {i.split(":")[2] for i in messages}
    assert {"soft_reached", "hard_likely", "hard_reached"} <= conditions
    top = [c for c in slack.posts() if c.thread_ts is None]
    resets = [c for c in top if "reset" in (c.text or "").lower()]
    assert len(resets) == 1
    prices = [c for c in top if (c.text or "").startswith("Price table")]
    assert prices, "the unknown model is announced"
    assert len({c.text for c in prices}) == len(prices), "once per model per month"
    incident_posts = [c for c in top if c not in resets and c not in prices]
    assert sorted(c.ts for c in incident_posts) == sorted(messages.values())
    assert len({c.ts for c in incident_posts}) == len(incident_posts)
    assert {c.ts for c in slack.updates()} <= set(messages.values())
    assert slack.updates(), "firing incidents get their numbers refreshed"
    assert {c.thread_ts for c in slack.thread_replies()} <= set(messages.values())
    march = {ts for incident, ts in messages.items() if incident.startswith("2026-03:")}
    last_update = {c.ts: c for c in slack.updates()}
    for ts in march:  # every March incident ends resolved and without buttons
        final = last_update[ts]
        assert (final.text or "").startswith("Resolved"), final.text
        assert not any(b.get("type") == "actions" for b in final.blocks or [])
    at_rollover = [ts for ts in march
                   if any("rollover" in (r.text or "") for r in slack.thread_replies(ts))]
    assert at_rollover, "incidents still firing on March 31 are resolved by the reset"
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        delivered = [k for _, k, status in Outbox(store).history()
                     if status == "delivered" and k != "update"]
    assert reported == len(delivered)
    assert late >= 1, "what Slack missed during the outage was delivered, and said so"


class Killed(BaseException):
    """The process dies (SIGKILL) right after Slack accepted a post, before it knew."""


class DiesAfterPosting(SlackWebApi):
    """The real Slack client, killed once just after its first accepted post."""

    def __init__(self, inner: SlackWebApi) -> None:
        self.__dict__.update(inner.__dict__)

    def post(self, channel: str, text: str, blocks: Any,
             thread_ts: str | None = None, *, dedup: str | None = None) -> Posted:
        super().post(channel, text, blocks, thread_ts, dedup=dedup)
        raise Killed


def test_a_crash_after_slack_accepted_posts_the_incident_exactly_once(
        sim: SimServer, slack: SlackFake, tmp_path: Path) -> None:
    """Killed right after Slack accepted an incident's first post: the decision, its alert
    state and its outbox row were committed together before the post, so the restarted
    process finds the same single row; the post carried the row's dedup key as metadata, so
    the restart finds it in the channel's history, adopts its ts and never posts it again."""
    first = hard_crossing() - timedelta(days=8)
    tick_once(sim, slack, tmp_path, first - timedelta(minutes=15))  # pending, the price notice
    with pytest.raises(Killed):
        tick_once(sim, slack, tmp_path, first, wrap=DiesAfterPosting)
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        rows_after_crash = [r for r in Outbox(store).history() if r[1] == "firing"]
        states = Records(store).alert_states()
    assert rows_after_crash and states, "the decision was recorded before the post"
    for minutes in (5, 10, 60):
        tick_once(sim, slack, tmp_path, first + timedelta(minutes=minutes))
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        firing = [r for r in Outbox(store).history() if r[1] == "firing"]
    assert firing[:len(rows_after_crash)] == [(i, k, "delivered") for i, k, _ in rows_after_crash]
    assert len(firing) == len(rows_after_crash)
    messages = incident_messages(tmp_path)
    top = [c for c in slack.posts()
           if c.thread_ts is None and not (c.text or "").startswith("Price table")]
    assert sorted(c.ts for c in top) == sorted(messages.values()), [c.text for c in top]
    assert len(messages) >= 1
    assert slack.updates(), "the adopted message is updated in place"
