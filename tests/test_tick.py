"""The full tick end to end: the simulated Admin API, SQLite, real files and a reload hook.

The shell's ordering rules (Slack down, standby, dry run, silences, inhibition, the digest)
are tested on fakes in ``test_shell.py``; these are the few slow ones over real parts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fakes import RecordingTransport
from typer.testing import CliRunner

from guard.adapters.admin.client import AdminClient, RetryPolicy
from guard.adapters.sinks import FileSinks, read_env
from guard.core.decide import TickConfig
from guard.core.keys import EnforcementConfig
from guard.core.model import Budget, Scope
from guard.core.policy import Override, PolicyConfig
from guard.core.pricing import PriceTable
from guard.entry import wiring
from guard.entry.cli import app
from guard.shell.enforce import Enforcer
from guard.shell.tick import Tick, run_tick
from guard.sim import Fault, SimClock, SimOrg, SimServer

KEY = "sk-ant-admin-tick-test"
ORG = SimOrg.generate(7)
MARCH = datetime(2026, 3, 1, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)
MODELS = {"opus": "claude-opus-4-7", "sonnet": "claude-sonnet-4-6", "haiku": "claude-haiku-4-5"}
MONTH_USD = ORG.truth_cents(MARCH, APRIL, "organization") / 100


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(ORG, SimClock(MARCH), admin_key=KEY) as server:
        yield server


def budgets(soft: Decimal, hard: Decimal) -> tuple[Budget, ...]:
    return (Budget("org-monthly", Scope.ORGANIZATION, None, soft, hard),)


@pytest.fixture
def tick(sim: SimServer, tmp_path: Path) -> Iterator[Tick]:
    """A tick on real parts: HTTP client, SQLite store, env/state files and a reload hook."""
    reload_log = tmp_path / "reloads.txt"
    hook = [sys.executable, "-c", f"open({str(reload_log)!r}, 'a').write('reload\\n')"]
    sinks = FileSinks(tmp_path / "model.env", tmp_path / "fallback.json",
                      reload_command=hook)
    config = TickConfig(budgets(MONTH_USD * Decimal("0.3"), MONTH_USD * Decimal("0.8")),
                        PolicyConfig(), timedelta(minutes=5), MODELS)
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store, \
            wiring.admin_http(sim.base_url, KEY) as http:
        client = AdminClient(http, retry=RetryPolicy(attempts=2), sleep=lambda _: None)
        yield wiring.tick_for(client, store, config, prices=PriceTable.load(), sinks=sinks,
                              transport=RecordingTransport(), channel="C1")


def step(sim: SimServer, tick: Tick, at: datetime) -> str:
    sim.clock.set(at)
    run_tick(tick, at)
    return read_env(tick.sinks.env_file)["GUARD_TIER"]  # type: ignore[attr-defined]


def ticks(start: datetime, end: datetime, every: timedelta) -> Iterator[datetime]:
    at = start
    while at < end:
        yield at
        at += every


def test_a_month_flips_opus_sonnet_haiku_then_opus(sim: SimServer, tick: Tick,
                                                   tmp_path: Path) -> None:
    """Soft, then the hard forecast, then the hard limit, then a new month: one write each."""
    tiers: list[tuple[datetime, str]] = []
    crossed_hard: datetime | None = None
    for at in ticks(MARCH + timedelta(hours=1), APRIL + timedelta(hours=12), timedelta(hours=6)):
        tier = step(sim, tick, at)
        spent = ORG.truth_cents(MARCH, at - sim.lag, "organization") / 100 if at < APRIL else 0
        if crossed_hard is None and spent >= MONTH_USD * Decimal("0.8"):
            crossed_hard = at
        if not tiers or tiers[-1][1] != tier:
            tiers.append((at, tier))
    assert [t for _, t in tiers] == ["opus", "sonnet", "haiku", "opus"]
    assert tiers[2][0] == crossed_hard
    assert tiers[3][0] == APRIL + timedelta(hours=1)
    reloads = (tmp_path / "reloads.txt").read_text().splitlines()
    assert len(reloads) == 4  # the first write, then one per change
    changes = [e for e in tick.records.audit_entries() if e.action == "fallback_changed"]
    assert [(e.before, e.after) for e in changes] == [
        (None, "opus (auto)"), ("opus (auto)", "sonnet (auto)"),
        ("sonnet (auto)", "haiku (auto)"), ("haiku (auto)", "opus (auto)")]
    assert "hard_likely" in changes[1].reason or "soft_reached" in changes[1].reason
    assert "hard_reached" in changes[2].reason
    assert changes[3].reason == "no budget condition limits the model"
    assert [at for at, _ in tiers] == [e.at for e in changes]
    state = json.loads((tmp_path / "fallback.json").read_text())
    assert state["tier"] == "opus" and state["source"] == "auto"


def test_a_pin_holds_until_it_expires_then_policy_resumes(sim: SimServer, tick: Tick) -> None:
    """A pin above policy holds; when it expires the next tick returns to policy's tier."""
    at = MARCH + timedelta(days=20)
    assert step(sim, tick, at) == "sonnet"
    pin = Override("opus", at + timedelta(hours=2), "launch day", "alice")
    tick.records.save_override(pin, at)
    assert step(sim, tick, at + timedelta(hours=1)) == "opus"
    env = read_env(tick.sinks.env_file)  # type: ignore[attr-defined]
    assert env["GUARD_SOURCE"] == "override"
    assert step(sim, tick, at + timedelta(hours=3)) == "sonnet"
    changes = [e for e in tick.records.audit_entries() if e.action == "fallback_changed"]
    assert [e.after for e in changes][-2:] == ["opus (override)", "sonnet (auto)"]
    assert "alice" in changes[-2].reason and "launch day" in changes[-2].reason


def test_an_outage_during_a_breach_keeps_the_tightest_ceiling(sim: SimServer,
                                                              tick: Tick) -> None:
    """With every request failing, the ceiling stays at haiku for hours; nothing relaxes."""
    at = MARCH + timedelta(days=28)
    assert step(sim, tick, at) == "haiku"
    sim.inject(Fault(status=503, count=10_000))
    for hours in (1, 6, 24):
        later = at + timedelta(hours=hours)
        sim.clock.set(later)
        result = run_tick(tick, later)
        assert result.upstream_error is not None
        assert result.fallback.tier == "haiku"
    assert result.assessment.stale
    assert "data_stale" in result.as_json()["budgets"][0]["firing"]


def config_file(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "guard.toml"
    path.write_text(
        f'[anthropic]\nadmin_api_key = "{KEY}"\nbase_url = "{base_url}"\nmax_retries = 0\n'
        f'[state]\nurl = "sqlite:///{tmp_path / "state.db"}"\n'
        f'[fallback]\nenv_file = "{tmp_path / "model.env"}"\n'
        f'state_file = "{tmp_path / "fallback.json"}"\n'
        '[[budgets]]\nname = "org-monthly"\nscope = "organization"\n'
        f"soft_limit_usd = {int(MONTH_USD * Decimal('0.3'))}\n"
        f"hard_limit_usd = {int(MONTH_USD * Decimal('0.8'))}\n")
    return path


def test_guard_check_prints_the_design_json(sim: SimServer, tmp_path: Path) -> None:
    """`guard check --json` prints DESIGN §3's object and writes the env file."""
    at = MARCH + timedelta(days=20, hours=3)
    sim.clock.set(at)
    cfg = config_file(tmp_path, sim.base_url)
    result = CliRunner().invoke(app, ["--config", str(cfg), "check", "--json", "--at",
                                      at.strftime("%Y-%m-%dT%H:%M:%SZ")])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert {"at", "data_through", "budgets", "fallback", "notifications",
            "api_requests"} <= set(body)
    budget = body["budgets"][0]
    assert {"name", "scope", "match", "spend_usd", "soft_limit_usd", "hard_limit_usd",
            "forecast", "firing", "ceiling"} <= set(budget)
    assert body["fallback"]["tier"] == "sonnet" and body["fallback"]["changed"] is True
    assert body["fallback"]["chain"] == ["claude-sonnet-5-5", "claude-haiku-5-5"]
    assert {"budget": "org-monthly", "condition": "soft_reached", "kind": "firing",
            "delivered": True} in body["notifications"]
    assert read_env(tmp_path / "model.env")["ANTHROPIC_MODEL"] == "claude-sonnet-5-5"


def test_guard_check_dry_run_and_outage_exit_codes(sim: SimServer, tmp_path: Path) -> None:
    """--dry-run writes nothing; an unreachable API exits 3 after deciding on stored data."""
    at = MARCH + timedelta(days=20)
    sim.clock.set(at)
    cfg = config_file(tmp_path, sim.base_url)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    dry = CliRunner().invoke(app, ["--config", str(cfg), "check", "--dry-run", "--at", stamp])
    assert dry.exit_code == 0, dry.output
    assert not (tmp_path / "model.env").exists()
    sim.inject(Fault(status=500, count=1000))
    down = CliRunner().invoke(app, ["--config", str(cfg), "check", "--at", stamp])
    assert down.exit_code == 3
    assert "decided on stored data" in down.stderr


def test_pin_and_release_from_the_command_line_are_audited(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """`guard fallback pin` and `release` record who, what and why; status shows the pin."""
    monkeypatch.setenv("GUARD_ACTOR", "bob")
    cfg = config_file(tmp_path, "http://127.0.0.1:9")
    runner = CliRunner()
    pinned = runner.invoke(app, ["--config", str(cfg), "fallback", "pin", "haiku", "--for",
                                 "4h", "--reason", "runaway batch job"])
    assert pinned.exit_code == 0, pinned.output
    status = runner.invoke(app, ["--config", str(cfg), "fallback", "status", "--json"])
    body = json.loads(status.stdout)
    assert body["override"]["tier"] == "haiku" and body["override"]["by"] == "bob"
    assert body["override"]["active"] is True
    released = runner.invoke(app, ["--config", str(cfg), "fallback", "release", "--reason",
                                   "job stopped"])
    assert released.exit_code == 0 and "released the pin on haiku" in released.stdout
    body = json.loads(runner.invoke(app, ["--config", str(cfg), "fallback", "status",
                                          "--json"]).stdout)
    assert body["override"] is None
    actions = [(e["action"], e["who"], e["reason"]) for e in body["recent_changes"]]
    assert actions == [("pin", "bob", "runaway batch job"), ("release", "bob", "job stopped")]


@pytest.mark.parametrize(("args", "field"), [
    pytest.param(["gpt", "--for", "1h", "--reason", "x"], "TIER", id="unknown-tier"),
    pytest.param(["haiku", "--for", "forever", "--reason", "x"], "--for", id="bad-duration"),
    pytest.param(["haiku", "--for", "1h", "--reason", " "], "--reason", id="empty-reason"),
])
def test_bad_pins_are_refused(tmp_path: Path, args: list[str], field: str) -> None:
    """A pin with an unknown tier, a bad duration or no reason exits 2 naming the field, and
    writes nothing (not even an empty state store)."""
    cfg = config_file(tmp_path, "http://127.0.0.1:9")
    result = CliRunner().invoke(app, ["--config", str(cfg), "fallback", "pin", *args])
    assert result.exit_code == 2 and field in result.stderr
    assert not (tmp_path / "state.db").exists()


def test_a_released_pin_gives_way_to_policy_on_the_next_tick(sim: SimServer,
                                                              tick: Tick) -> None:
    """A pin below policy holds until released; the next tick is policy's again."""
    at = MARCH + timedelta(days=3)
    policy_tier = step(sim, tick, at)
    policy_tier = step(sim, tick, at + timedelta(minutes=15))
    assert policy_tier != "haiku"
    tick.records.save_override(Override("haiku", at + timedelta(days=2), "drill", "dave"), at)
    assert step(sim, tick, at + timedelta(minutes=20)) == "haiku"
    tick.records.clear_override()
    assert step(sim, tick, at + timedelta(minutes=25)) == policy_tier
    afters = [e.after for e in tick.records.audit_entries() if e.action == "fallback_changed"]
    assert afters[-2:] == ["haiku (override)", f"{policy_tier} (auto)"]


def test_keys_deactivated_in_a_month_are_restored_when_the_next_begins(sim: SimServer,
                                                                        tick: Tick) -> None:
    """The hard stop deactivates a key past its limit; the first tick of April restores it."""
    key = ORG.api_keys[0].id
    tick.config = replace(tick.config, budgets=(
        Budget("first-key", Scope.API_KEY, key, Decimal(1), Decimal(2)),))
    assert tick.enforcer is not None
    tick.config = replace(tick.config, enforcement=EnforcementConfig(enabled=True,
                                                                     dry_run=False))
    tick.enforcer = Enforcer(tick.enforcer.admin, tick.records, tick.config.enforcement)
    at = MARCH + timedelta(days=10)
    sim.clock.set(at)
    result = run_tick(tick, at)
    assert [(k.key_id, k.action, k.done) for k in result.keys] == [(key, "deactivate", True)]
    assert sim.key_status(key) == "inactive"
    later = APRIL + timedelta(hours=1)
    sim.clock.set(later)
    result = run_tick(tick, later)
    assert (key, "restore", True) in [(k.key_id, k.action, k.done) for k in result.keys]
    assert sim.key_status(key) == "active" and tick.records.key_actions() == []
