"""`--at` and the lease (issue 11): leases released on a clean exit, kept by the wall clock,
the same holder across a daemon restart; a standby `guard check` says so (exit 4); an `--at`
before the data read is a what-if that writes nothing."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fakes import RecordingTransport
from typer.testing import CliRunner

from guard.adapters.sinks import read_env
from guard.adapters.store.lease import Lease
from guard.adapters.store.schema import leases
from guard.config import load_settings
from guard.entry import wiring
from guard.entry.cli import app, key_lines
from guard.errors import ConfigError
from guard.shell.tick import LEADER, run_tick
from guard.sim import SimClock, SimServer
from tests.test_tick import KEY, MARCH, ORG, config_file

AT = MARCH + timedelta(days=20, hours=3)
STAMP = AT.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(ORG, SimClock(AT), admin_key=KEY) as server:
        yield server


def lease_rows(state: Path) -> list[tuple[str, str, int]]:
    """The live leases (a released lease stays as an expired row, keeping its epoch)."""
    with wiring.opened_store(f"sqlite:///{state}") as store, store.reading() as conn:
        return [tuple(r) for r in conn.execute(sa.select(leases.c.name, leases.c.holder,
                                                         leases.c.expires_at))
                if r.expires_at > datetime.now(UTC).timestamp()]


def guard_process(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m guard` in a process of its own, as an operator would run it."""
    return subprocess.run([sys.executable, "-m", "guard", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_check_pin_check_acts_on_the_pin_at_once(sim: SimServer, tmp_path: Path) -> None:
    """Two `guard check` processes a pin apart: the second is not standby and writes the pin."""
    cfg = config_file(tmp_path, sim.base_url)
    first = guard_process(cfg, "check", "--at", STAMP)
    assert first.returncode == 0, first.stderr
    assert lease_rows(tmp_path / "state.db") == []  # released on exit
    was = read_env(tmp_path / "model.env")["GUARD_TIER"]
    tier, model = ("haiku", "claude-haiku-5-5") if was != "haiku" else (
        "sonnet", "claude-sonnet-5-5")
    pinned = guard_process(cfg, "fallback", "pin", tier, "--for", "4h", "--reason", "x")
    assert pinned.returncode == 0, pinned.stderr
    second = guard_process(cfg, "check", "--at", STAMP)
    assert second.returncode == 0, second.stderr
    assert "standby" not in second.stderr
    assert read_env(tmp_path / "model.env")["ANTHROPIC_MODEL"] == model


def test_a_check_on_standby_says_so_and_exits_4(sim: SimServer, tmp_path: Path) -> None:
    """Another live holder: the check makes no Admin API request (it decides on what the
    leader stored), writes nothing, and says why with exit 4."""
    cfg = config_file(tmp_path, sim.base_url)
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        assert Lease(store).hold(LEADER, "other-host:daemon:x", datetime.now(UTC),
                                 timedelta(minutes=3))
    sim.clear_requests()
    result = CliRunner().invoke(app, ["--config", str(cfg), "check", "--at", STAMP])
    assert sim.requests == [], "a standby does not fetch"
    assert result.exit_code == 4
    assert "standby" in result.stderr and "wrote nothing" in result.stderr
    assert not (tmp_path / "model.env").exists()
    assert [r[1] for r in lease_rows(tmp_path / "state.db")] == ["other-host:daemon:x"]


def test_the_lease_is_kept_by_the_wall_clock_not_by_at(sim: SimServer, tmp_path: Path) -> None:
    """A lease that expired a minute ago (wall clock) is free, even for an `--at` far in the
    past; and taking it never writes an expiry in the past or the future."""
    cfg = config_file(tmp_path, sim.base_url)
    state = tmp_path / "state.db"
    wall = datetime.now(UTC)
    with wiring.opened_store(f"sqlite:///{state}") as store:
        Lease(store).hold(LEADER, "crashed-host:1", wall - timedelta(minutes=4),
                          timedelta(minutes=3))
    settings = load_settings(cfg)
    with wiring.opened(settings) as guard:
        report = run_tick(guard.tick, AT)
        [(_, holder, expires)] = lease_rows(state)
    assert not report.standby
    assert holder == guard.tick.holder
    ttl = timedelta(seconds=settings.state.lease_ttl_s)
    assert abs(expires - (wall + ttl).timestamp()) < 120


def test_a_restarted_daemon_is_its_own_predecessor(sim: SimServer, tmp_path: Path) -> None:
    """A daemon killed without releasing its lease, restarted on the same host and store,
    acts on its first tick; a check run meanwhile (another holder) stands by."""
    settings = load_settings(config_file(tmp_path, sim.base_url))
    with wiring.opened(settings) as crashed:
        crashed.tick.holder = wiring.daemon_holder(settings)
        assert not run_tick(crashed.tick, AT).standby  # and then it dies: no release
    with wiring.opened(settings) as bystander:
        assert run_tick(bystander.tick, AT).standby
    with wiring.opened(settings) as restarted:
        restarted.tick.holder = wiring.daemon_holder(settings)
        assert not run_tick(restarted.tick, AT + timedelta(minutes=1)).standby


def digest_of(tmp_path: Path) -> dict[str, str]:
    """Hashes of what a what-if must not touch: the fallback files and the decision tables."""
    out = {name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
           for name in ("model.env", "fallback.json")}
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store, \
            store.reading() as conn:
        for table in ("alert_states", "outbox", "fallback_state", "leases", "audit_log",
                      "key_actions", "incidents", "meta"):
            rows = conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1")).all()
            out[table] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return out


def test_an_at_before_the_data_read_is_a_what_if_that_writes_nothing(
        sim: SimServer, tmp_path: Path) -> None:
    """`--at` a day before the last check: `what_if: true`; files and decisions unchanged."""
    cfg = config_file(tmp_path, sim.base_url)
    assert CliRunner().invoke(app, ["--config", str(cfg), "check", "--at", STAMP]).exit_code == 0
    before = digest_of(tmp_path)
    earlier = (AT - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = CliRunner().invoke(app, ["--config", str(cfg), "check", "--json", "--at", earlier])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["what_if"] is True and body["at"] == earlier
    assert digest_of(tmp_path) == before
    later = CliRunner().invoke(app, ["--config", str(cfg), "check", "--json", "--at",
                                     (AT + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")])
    assert json.loads(later.stdout)["what_if"] is False


def test_the_hard_stop_is_loud(sim: SimServer, tmp_path: Path,
                               caplog: pytest.LogCaptureFixture) -> None:
    """Enforcement on a workspace over its hard limit: the keys are named in the human check
    output, in a WARNING log line each, and in a Slack message that says how to undo it."""
    workspace = ORG.workspaces[0].id
    cfg = config_file(tmp_path, sim.base_url)
    cfg.write_text(cfg.read_text() + "\n".join([
        "[enforcement]", "enabled = true", "dry_run = false",
        "[[budgets]]", 'name = "first-ws"', 'scope = "workspace"', f'match = "{workspace}"',
        "soft_limit_usd = 1", "hard_limit_usd = 2"]) + "\n")
    transport = RecordingTransport()
    settings = load_settings(cfg)
    with caplog.at_level("WARNING", logger="guard.shell.enforce"), \
            wiring.opened(settings) as guard:
        guard.tick.transport = transport
        report = run_tick(guard.tick, AT)
    done = sorted(k.key_id for k in report.keys if k.done)
    in_scope = sorted(k.id for k in ORG.api_keys if k.workspace_id == workspace)
    assert done == in_scope and done
    assert all(sim.key_status(k) == "inactive" for k in done)
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert all(any(k in line and "deactivated" in line for line in logged) for k in done)
    [notice] = [n for n in report.as_json()["notifications"] if n["kind"] == "keys"]
    assert notice["budget"] == "first-ws" and notice["delivered"] is True
    posted = " ".join(text for text, _ in transport.posts)
    assert all(k in posted for k in done) and "guard enforcement restore" in posted
    lines = key_lines(report)
    assert all(any(k in line and "deactivated" in line for line in lines) for k in done)
    assert lines[-1] == "keys: undo with `guard enforcement restore`"


def test_a_future_at_leaves_the_fallback_and_the_store_as_they_were(sim: SimServer,
                                                                    tmp_path: Path) -> None:
    """After a real check, `check --at 2027-01-01` exits 2: model.env and the store hash the
    same before and after."""
    cfg = config_file(tmp_path, sim.base_url)
    assert CliRunner().invoke(app, ["--config", str(cfg), "check", "--at", STAMP]).exit_code == 0
    files = ("model.env", "fallback.json", "state.db")
    before = {f: hashlib.sha256((tmp_path / f).read_bytes()).hexdigest() for f in files}
    result = CliRunner().invoke(app, ["--config", str(cfg), "check", "--at",
                                      "2027-01-01T00:00:00Z"])
    assert result.exit_code == 2 and "in the future" in result.stderr
    assert {f: hashlib.sha256((tmp_path / f).read_bytes()).hexdigest() for f in files} == before


def test_guard_check_names_the_keys_it_deactivated_and_tells_slack(sim: SimServer,
                                                                   tmp_path: Path) -> None:
    """The command line itself: human output and a Slack message name every key."""
    from slackfake import SlackFake  # noqa: PLC0415

    workspace = ORG.workspaces[0].id
    in_scope = sorted(k.id for k in ORG.api_keys if k.workspace_id == workspace)
    with SlackFake() as slack:
        cfg = config_file(tmp_path, sim.base_url)
        cfg.write_text(cfg.read_text() + "\n".join([
            "[enforcement]", "enabled = true", "dry_run = false",
            "[slack]", f'bot_token = "{slack.token}"', f'base_url = "{slack.base_url}"',
            f'channel = "{slack.channel}"',
            "[[budgets]]", 'name = "first-ws"', 'scope = "workspace"', f'match = "{workspace}"',
            "soft_limit_usd = 1", "hard_limit_usd = 2"]) + "\n")
        result = CliRunner().invoke(app, ["--config", str(cfg), "check", "--at", STAMP])
        posted = " ".join(c.text or "" for c in slack.posts())
    assert result.exit_code == 0, result.output
    for key in in_scope:
        assert f"keys: deactivated {key} (budget first-ws)" in result.stdout
        assert key in posted
    assert "guard enforcement restore" in result.stdout and "guard enforcement restore" in posted


class PausedAfterFirstPost:
    """Slack as configured, but the process pauses right after its first post, long enough
    for another replica to take the lease over (SIGSTOP past the TTL, then SIGCONT)."""

    def __init__(self, inner: Any, take_over: Callable[[], None]) -> None:
        self.inner, self.take_over, self.posts = inner, take_over, 0
        self.supports_updates = inner.supports_updates
        self.supports_lookup = inner.supports_lookup

    def post(self, channel: str, text: str, blocks: Any, thread_ts: str | None = None, *,
             dedup: str | None = None) -> Any:
        self.posts += 1
        posted = self.inner.post(channel, text, blocks, thread_ts, dedup=dedup)
        if self.posts == 1:
            self.take_over()
        return posted

    def update(self, channel: str, ts: str, text: str, blocks: Any) -> Any:
        return self.inner.update(channel, ts, text, blocks)

    def find(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.find(*args, **kwargs)


def test_a_leader_resumed_after_a_takeover_performs_no_further_effect(
        sim: SimServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The lease's epoch is checked before every effect: once another replica took the lease
    over mid-tick, the resumed leader posts nothing more, records nothing, says "fenced" in
    its log, and reports standby; the new holder's epoch is higher."""
    cfg = config_file(tmp_path, sim.base_url)
    settings = load_settings(cfg)
    with wiring.opened(settings) as guard:
        run_tick(guard.tick, AT - timedelta(minutes=15))  # conditions pending; one notice
        store = guard.store

        def take_over() -> None:
            later = datetime.now(UTC) + timedelta(minutes=4)
            assert Lease(store).hold(LEADER, "replica-b", later, timedelta(minutes=3))

        paused = PausedAfterFirstPost(guard.tick.transport, take_over)
        guard.tick.transport = paused
        before = guard.tick.records.fallback()
        with caplog.at_level(logging.ERROR):
            report = run_tick(guard.tick, AT)
        after = guard.tick.records.fallback()
        owed = guard.tick.outbox.owed()
    assert report.standby and paused.posts == 1
    assert len(owed) >= 1, "what the fenced leader did not send stays owed for the new one"
    assert after == before, "the fenced leader recorded nothing"
    assert "fenced: the leader lease is no longer" in caplog.text
    assert [r[1] for r in lease_rows(tmp_path / "state.db")] == ["replica-b"]


def test_replicas_on_one_host_are_told_apart_by_their_instance(tmp_path: Path) -> None:
    """Same host, same store: the same holder (a restart is its own predecessor) unless
    `state.instance` differs; a bad instance name is a config error naming the field."""
    def settings_with(instance: str | None) -> Any:
        path = tmp_path / f"guard-{instance}.toml"
        extra = f'instance = "{instance}"\n' if instance is not None else ""
        path.write_text(f'[state]\nurl = "sqlite:///{tmp_path / "state.db"}"\n{extra}')
        return load_settings(path)

    one, again = settings_with(None), settings_with("")
    assert wiring.daemon_holder(one) == wiring.daemon_holder(again)
    a, b = wiring.daemon_holder(settings_with("a")), wiring.daemon_holder(settings_with("b"))
    assert len({a, b, wiring.daemon_holder(one)}) == 3 and a.endswith(":a")
    with pytest.raises(ConfigError) as caught:
        settings_with("x y")
    assert [p for p, _ in caught.value.problems] == ["state.instance"]
