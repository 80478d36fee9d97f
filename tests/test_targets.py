"""Fallback targets: each capped only by the budgets it lists (DESIGN §2, §5; issue 14).

The month runs on real parts: the simulated Admin API over HTTP, SQLite, the env and state
files of two targets, the CLI, the HTTP endpoint and Slack's on-call handler.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import MemoryState, RecordingTransport
from typer.testing import CliRunner

from guard.adapters.sinks import read_env
from guard.config import load_settings
from guard.core.model import Budget, Scope
from guard.core.policy import Condition, Override, PolicyConfig
from guard.core.targets import Target, target_ceiling
from guard.entry import wiring
from guard.entry.cli import app
from guard.entry.http import HttpState, build_app
from guard.entry.metrics import Metrics
from guard.entry.oncall import Command, OnCall
from guard.entry.server import HttpServer
from guard.errors import StoreError
from guard.shell.ops import Ops
from guard.shell.tick import run_tick
from guard.sim import SimClock, SimOrg, SimServer
from tests.test_config import paths

KEY = "sk-ant-admin-targets-test"
ORG = SimOrg.generate(7)
PRODUCTION, RESEARCH = ORG.workspaces[0], ORG.workspaces[2]
MARCH = datetime(2026, 3, 1, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)
TOKEN = "targets-admin-token-0123456789"
CHAIN = ("opus", "sonnet", "haiku")
POLICY = PolicyConfig()
NOW = datetime(2026, 3, 12, 14, 5, tzinfo=UTC)


def research_hard_usd() -> Decimal:
    """A hard limit the Research workspace passes about a third into March."""
    return (ORG.truth_cents(MARCH, APRIL, "workspace", RESEARCH.id) / 100 / 3).quantize(
        Decimal(1))


def write_config(tmp_path: Path, base_url: str, *, targets: bool = True,
                 research_hard: Decimal | None = None) -> Path:
    """Three budgets; with ``targets``, prod ← production-ws and research ← research-ws and
    org-monthly (DESIGN §4's shape); without, the one target ``default``. Research's hard
    limit is a third of its month unless given."""
    hard = research_hard or research_hard_usd()
    text = (
        f'[anthropic]\nadmin_api_key = "{KEY}"\nbase_url = "{base_url}"\nmax_retries = 0\n'
        f'[state]\nurl = "sqlite:///{tmp_path / "state.db"}"\n'
        f'[http]\nadmin_token = "{TOKEN}"\n'
        f'[fallback]\nenv_file = "{tmp_path / "model.env"}"\n'
        f'state_file = "{tmp_path / "fallback.json"}"\n')
    if targets:
        text += (
            '[[fallback.targets]]\nname = "prod"\nbudgets = ["production-ws"]\n'
            f'env_file = "{tmp_path / "prod.env"}"\nstate_file = "{tmp_path / "prod.json"}"\n'
            '[[fallback.targets]]\nname = "research"\n'
            'budgets = ["research-ws", "org-monthly"]\n'
            f'env_file = "{tmp_path / "research.env"}"\n'
            f'state_file = "{tmp_path / "research.json"}"\n')
    text += (
        '[[budgets]]\nname = "org-monthly"\nscope = "organization"\n'
        'soft_limit_usd = 80000\nhard_limit_usd = 100000\n'
        f'[[budgets]]\nname = "production-ws"\nscope = "workspace"\nmatch = "{PRODUCTION.id}"\n'
        'soft_limit_usd = 40000\nhard_limit_usd = 50000\n'
        f'[[budgets]]\nname = "research-ws"\nscope = "workspace"\nmatch = "{RESEARCH.id}"\n'
        f'soft_limit_usd = {int(hard * Decimal("0.8"))}\nhard_limit_usd = {int(hard)}\n')
    path = tmp_path / "guard.toml"
    path.write_text(text)
    return path


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(ORG, SimClock(MARCH), admin_key=KEY) as server:
        yield server


def tick_at(config: Path, sim: SimServer, at: datetime) -> dict[str, Any]:
    """One full tick of the daemon's code (``guard.entry.wiring.build``) as of ``at``."""
    sim.clock.set(at)
    guard = wiring.build(load_settings(config), transport=RecordingTransport())
    try:
        return run_tick(guard.tick, at).as_json()
    finally:
        guard.close()


def stamp(path: Path) -> tuple[bytes, int, int]:
    """A file's content, inode and modification time: any rewrite changes one of them."""
    status = path.stat()
    return path.read_bytes(), status.st_ino, status.st_mtime_ns


def cli(config: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result


# --- the month --------------------------------------------------------------------------------


def test_a_research_breach_caps_only_research_and_prod_is_never_rewritten(
        sim: SimServer, tmp_path: Path) -> None:
    """Through March once a day: research steps down to haiku when its workspace passes its
    hard limit; prod's env file, written once at opus, is never rewritten; ``fallback`` in
    the JSON is the first target's, ``targets`` has both."""
    config = write_config(tmp_path, sim.base_url)
    prod = tmp_path / "prod.env"
    research_tiers, first_prod = [], None
    at = MARCH + timedelta(hours=12)
    guard = wiring.build(load_settings(config), transport=RecordingTransport())
    while at < APRIL:
        sim.clock.set(at)
        body = run_tick(guard.tick, at).as_json()
        if first_prod is None:
            first_prod = stamp(prod)
        assert stamp(prod) == first_prod, at
        targets = {t["name"]: t for t in body["targets"]}
        assert list(targets) == ["prod", "research"]
        assert body["fallback"]["tier"] == targets["prod"]["tier"] == "opus"
        research_tiers.append(read_env(tmp_path / "research.env")["GUARD_TIER"])
        at += timedelta(days=1)
    guard.close()
    assert research_tiers[0] == "opus" and research_tiers[-1] == "haiku"
    assert "sonnet" in research_tiers  # soft first, then hard
    assert read_env(prod)["ANTHROPIC_MODEL"] == "claude-opus-5-5"
    research = json.loads((tmp_path / "research.json").read_text())
    assert "research-ws: hard_reached" in research["firing"]
    assert not (tmp_path / "model.env").exists()  # [fallback]'s own files: not a target
    prod_state = json.loads((tmp_path / "prod.json").read_text())
    assert prod_state["firing"] == [] and prod_state["tier"] == "opus"


def test_without_the_store_only_the_breached_target_tightens(sim: SimServer,
                                                              tmp_path: Path) -> None:
    """A tick without its state store (``guard check`` when the store cannot be opened)
    tightens research, whose budget passed its hard limit, and leaves prod's file alone."""
    config = write_config(tmp_path, sim.base_url)
    tick_at(config, sim, MARCH + timedelta(days=1))
    prod = stamp(tmp_path / "prod.env")
    at = MARCH + timedelta(days=25)
    sim.clock.set(at)
    report = wiring.without_store(load_settings(config), at, StoreError("disk gone"))
    assert read_env(tmp_path / "research.env")["GUARD_TIER"] == "haiku"
    assert stamp(tmp_path / "prod.env") == prod
    assert [(t["name"], t["tier"]) for t in report.as_json()["targets"]] == [
        ("prod", "opus"), ("research", "haiku")]


def test_a_pin_on_one_target_leaves_the_other_untouched(sim: SimServer, tmp_path: Path) -> None:
    """``guard fallback pin haiku --target prod`` moves prod only; research's files stay as
    they were; releasing returns prod to policy; status and the audit name the target."""
    config = write_config(tmp_path, sim.base_url, research_hard=Decimal(100_000))
    at = MARCH + timedelta(days=2)
    tick_at(config, sim, at)
    research = stamp(tmp_path / "research.env")
    cli(config, "fallback", "pin", "haiku", "--for", "4h", "--reason", "drill",
        "--target", "prod")
    body = tick_at(config, sim, at + timedelta(minutes=5))
    assert read_env(tmp_path / "prod.env")["GUARD_TIER"] == "haiku"
    assert read_env(tmp_path / "prod.env")["GUARD_SOURCE"] == "override"
    assert stamp(tmp_path / "research.env") == research
    assert [t["changed"] for t in body["targets"]] == [True, False]
    status = json.loads(cli(config, "fallback", "status", "--json").stdout)
    by_name = {t["name"]: t for t in status["targets"]}
    assert by_name["prod"]["override"]["tier"] == "haiku"
    assert by_name["research"]["override"] is None
    assert by_name["research"]["budgets"] == ["research-ws", "org-monthly"]
    assert status["override"]["tier"] == "haiku"  # the top level is the first target's
    text = cli(config, "fallback", "status").stdout
    assert "target prod: tier haiku" in text and "target research: tier opus" in text
    released = cli(config, "fallback", "release", "--target", "prod", "--reason", "over")
    assert "released the pin of target prod on haiku" in released.stdout
    tick_at(config, sim, at + timedelta(minutes=10))
    assert read_env(tmp_path / "prod.env")["GUARD_TIER"] == "opus"
    assert stamp(tmp_path / "research.env") == research
    subjects = [e["action"] for e in status["recent_changes"]]
    assert "pin" in subjects


def test_a_pin_names_a_target_that_exists_and_a_tier_of_its_chain(sim: SimServer,
                                                                  tmp_path: Path) -> None:
    """An unknown target is exit 2 naming ``--target``; nothing is written."""
    config = write_config(tmp_path, sim.base_url)
    result = CliRunner().invoke(app, ["--config", str(config), "fallback", "pin", "haiku",
                                      "--for", "1h", "--reason", "x", "--target", "batch"])
    assert result.exit_code == 2 and "--target" in result.stderr
    assert not (tmp_path / "state.db").exists()


def test_state_from_a_one_target_store_moves_to_the_targets(sim: SimServer,
                                                            tmp_path: Path) -> None:
    """A store kept as target ``default`` (a pin and the tier in force), then a config with
    two targets: both targets start from that tier and keep that pin (so neither changes,
    and nothing is audited twice); ``default`` is gone; the audit log keeps every entry."""
    single = write_config(tmp_path, sim.base_url, targets=False)
    at = MARCH + timedelta(days=2)
    tick_at(single, sim, at)
    cli(single, "fallback", "pin", "sonnet", "--for", "1d", "--reason", "before the split")
    tick_at(single, sim, at + timedelta(minutes=5))
    assert read_env(tmp_path / "model.env")["GUARD_TIER"] == "sonnet"
    store = wiring.connect_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        entries_before = len(wiring.Records(store).audit_entries())
    finally:
        store.close()
    split = write_config(tmp_path, sim.base_url)
    status = json.loads(cli(split, "fallback", "status", "--json").stdout)
    assert [t["override"]["tier"] for t in status["targets"]] == ["sonnet", "sonnet"]
    body = tick_at(split, sim, at + timedelta(minutes=10))
    assert [(t["name"], t["tier"], t["source"]) for t in body["targets"]] == [
        ("prod", "sonnet", "override"), ("research", "sonnet", "override")]
    store = wiring.connect_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        records = wiring.Records(store)
        assert records.fallback("default") is None and records.override("default") is None
        assert records.override("prod") == records.override("research")
        assert records.fallback("prod") is not None
        after = records.audit_entries()
    finally:
        store.close()
    assert len(after) == entries_before  # nothing lost, and no change to audit: same tier
    for name in ("prod", "research"):
        assert read_env(tmp_path / f"{name}.env")["GUARD_TIER"] == "sonnet"


# --- the ceiling (pure) -----------------------------------------------------------------------


ORG_BUDGET = Budget("org-monthly", Scope.ORGANIZATION, None, Decimal(80), Decimal(100))
RESEARCH_BUDGET = Budget("research-ws", Scope.WORKSPACE, "wrkspc_r", Decimal(8), Decimal(10))


@pytest.mark.parametrize(("target", "expected"), [
    pytest.param(Target("prod", CHAIN, budgets=("production-ws",)), "opus", id="not-listed"),
    pytest.param(Target("research", CHAIN, budgets=("research-ws",)), "haiku", id="listed"),
    pytest.param(Target("all", CHAIN), "haiku", id="every-budget"),
    pytest.param(Target("two", ("opus", "sonnet")), "sonnet", id="no-haiku-so-its-last"),
    pytest.param(Target("low", ("haiku",)), "haiku", id="one-tier"),
])
def test_a_condition_caps_only_the_targets_that_list_its_budget(target: Target,
                                                                expected: str) -> None:
    """``hard_reached`` on research-ws (ceiling haiku) caps the targets covering it, along
    their own chains; a chain without haiku stops at its last tier."""
    firing = [(RESEARCH_BUDGET, Condition.HARD_REACHED)]
    found = target_ceiling(target, firing, POLICY, hold=None, pin=None, now=NOW)
    assert found.tier == expected
    assert found.level == target.chain.index(expected)


def test_a_ceiling_between_a_targets_tiers_takes_the_next_one_down() -> None:
    """A soft limit (ceiling sonnet) on a target whose chain is opus, haiku caps at haiku:
    never above what the budget asked for."""
    firing = [(ORG_BUDGET, Condition.SOFT_REACHED)]
    target = Target("t", ("opus", "haiku"))
    assert target_ceiling(target, firing, POLICY, hold=None, pin=None, now=NOW).tier == "haiku"


def test_a_targets_pin_and_hold_are_its_own() -> None:
    """A pin on a target replaces its ceiling (above or below); the stale hold keeps its
    tier; neither says anything about another target."""
    pin = Override("opus", NOW + timedelta(hours=1), "launch", "alice")
    target = Target("research", CHAIN, budgets=("research-ws",))
    firing = [(RESEARCH_BUDGET, Condition.HARD_REACHED)]
    pinned = target_ceiling(target, firing, POLICY, hold=None, pin=pin, now=NOW)
    assert (pinned.tier, pinned.source) == ("opus", "override")
    held = target_ceiling(target, [], POLICY, hold="sonnet", pin=None, now=NOW)
    assert held.tier == "sonnet" and "held at sonnet" in held.because[-1]


# --- HTTP and Slack -------------------------------------------------------------------------


@pytest.fixture
def ops(tmp_path: Path) -> Ops:
    settings = load_settings(write_config(tmp_path, "http://127.0.0.1:9"))
    return Ops(MemoryState(), None, tuple(settings.fallback.chain),  # type: ignore[arg-type]
               dict(settings.fallback.models), tuple(b.name for b in settings.budgets),
               targets=settings.fallback.core_targets(),
               env_files=settings.fallback.env_files())


def test_http_pin_and_release_name_their_target(tmp_path: Path, ops: Ops) -> None:
    """``{"target": "research"}`` pins research only; an unknown target is 400 naming
    ``target``; ``GET /v1/fallback?target=`` is 404 for a name no tick reported."""
    settings = load_settings(tmp_path / "guard.toml")
    server = HttpServer(build_app(HttpState(), Metrics(), lambda: settings, lambda: ops,
                                  now=lambda: NOW)).start("127.0.0.1", 0)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", trust_env=False,
                          timeout=5) as client:
            pin = {"tier": "haiku", "for": "2h", "reason": "runaway", "target": "research"}
            answer = client.post("/v1/fallback/pin", json=pin, headers=auth)
            assert answer.status_code == 200 and answer.json()["target"] == "research"
            bad = client.post("/v1/fallback/pin", json=pin | {"target": "batch"}, headers=auth)
            assert bad.status_code == 400
            assert [p["field"] for p in bad.json()["problems"]] == ["target"]
            released = client.post("/v1/fallback/release", json={"target": "prod"},
                                   headers=auth)
            assert released.json() == {"released": None}
            assert client.get("/v1/fallback", params={"target": "x"}).status_code == 503
    finally:
        server.stop()
    assert ops.records.override("research") is not None
    assert ops.records.override("prod") is None


def test_a_slack_pin_on_an_alert_pins_the_targets_its_budget_caps(ops: Ops) -> None:
    """The Pin button on research-ws's alert pins research (the one target listing it) at
    its tier in force; prod keeps no pin. On org-monthly's alert, the same."""
    oncall = OnCall(ops, {"U1"}, RecordingTransport(), lambda: NOW)
    answer = oncall.handle(Command("pin", "U1", "C1", "1.2",
                                   incident="2026-03:research-ws:hard_reached",
                                   duration="4h", reason="button"))
    assert "target research" in answer
    assert ops.records.override("research") is not None
    assert ops.records.override("prod") is None
    oncall.handle(Command("pin", "U1", "C1", "1.3", incident="2026-03:production-ws:runaway",
                          duration="4h", reason="button"))
    assert ops.records.override("prod") is not None


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(("targets", "field"), [
    pytest.param('[[fallback.targets]]\nname = "a"\nbudgets = ["nope"]\n',
                 "fallback.targets[0].budgets[0]", id="unknown-budget"),
    pytest.param('[[fallback.targets]]\nname = "a"\n[[fallback.targets]]\nname = "a"\n',
                 "fallback.targets[1].name", id="twice"),
    pytest.param('[[fallback.targets]]\nname = "a"\nchain = ["haiku", "opus"]\n',
                 "fallback.targets[0].chain", id="chain-out-of-order"),
    pytest.param('[[fallback.targets]]\nname = "a"\nchain = ["gpt"]\n',
                 "fallback.targets[0].chain", id="chain-unknown-tier"),
    pytest.param('[[fallback.targets]]\nname = "a"\nenv_file = "/run/x.env"\n'
                 '[[fallback.targets]]\nname = "b"\nenv_file = "/run/x.env"\n',
                 "fallback.targets[1].env_file", id="shared-env-file"),
    pytest.param('[[fallback.targets]]\nname = "Bad Name"\n', "fallback.targets[0].name",
                 id="bad-name"),
])
def test_a_bad_target_names_its_field(tmp_path: Path, targets: str, field: str) -> None:
    """Each mistake in ``[[fallback.targets]]`` is a config error at its own path."""
    config = tmp_path / "guard.toml"
    config.write_text('[[budgets]]\nname = "org"\nscope = "organization"\n'
                      'soft_limit_usd = 1\nhard_limit_usd = 2\n' + targets)
    assert field in paths(config)


def test_a_targets_files_default_to_fallbacks_with_its_name(tmp_path: Path) -> None:
    """Without its own paths a target writes ``model.<name>.env`` and ``fallback.<name>.json``
    next to ``[fallback]``'s, and takes ``[fallback]``'s reload command."""
    config = tmp_path / "guard.toml"
    config.write_text(f'[fallback]\nenv_file = "{tmp_path / "model.env"}"\n'
                      f'state_file = "{tmp_path / "fallback.json"}"\n'
                      'reload_command = ["true"]\n[[fallback.targets]]\nname = "batch"\n')
    sinks = wiring.target_sinks(load_settings(config).fallback)
    assert list(sinks) == ["batch"]
    assert sinks["batch"].env_file == tmp_path / "model.batch.env"
    assert sinks["batch"].state_file == tmp_path / "fallback.batch.json"
    assert sinks["batch"].reload_command == ("true",)
