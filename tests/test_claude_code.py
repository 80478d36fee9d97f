"""What Claude Code and the SDKs are told: each alias, the subagent model and the managed
settings capped at the tier in force (DESIGN §5, reference §10)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import guard.entry.demo
from guard.adapters.sinks import FileSinks, read_env
from guard.config.sections import FallbackSettings
from guard.core.fallback import FallbackState, alias_models, render_env
from guard.entry.cli import app
from guard.entry.wiring import file_sinks
from guard.errors import SinkError
from tests.test_chain import OK, FakeMessagesAPI, fake_messages_api
from tests.test_config import paths

CHAIN = ("opus", "sonnet", "haiku")
MODELS = {"opus": "claude-opus-5-5", "sonnet": "claude-sonnet-5-5", "haiku": "claude-haiku-5-5"}
AT = datetime(2026, 3, 12, 14, 5, tzinfo=UTC)
ALIAS_VARS = ("ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL",
              "ANTHROPIC_DEFAULT_HAIKU_MODEL")
CLAUDE_CODE_VARS = (*ALIAS_VARS, "CLAUDE_CODE_SUBAGENT_MODEL")
# DESIGN §5's example, word for word.
SONNET_ENV = """\
ANTHROPIC_MODEL=claude-sonnet-5-5
ANTHROPIC_DEFAULT_OPUS_MODEL=claude-sonnet-5-5
ANTHROPIC_DEFAULT_SONNET_MODEL=claude-sonnet-5-5
ANTHROPIC_DEFAULT_HAIKU_MODEL=claude-haiku-5-5
CLAUDE_CODE_SUBAGENT_MODEL=claude-sonnet-5-5
GUARD_MODEL_CHAIN=claude-sonnet-5-5,claude-haiku-5-5
GUARD_TIER=sonnet
GUARD_LEVEL=1
GUARD_SOURCE=auto
GUARD_UPDATED_AT=2026-03-12T14:05:00Z
"""


def at_level(level: int, chain: tuple[str, ...] = CHAIN,
             models: dict[str, str] = MODELS) -> FallbackState:
    return FallbackState.build(chain, models, level, source="auto", updated_at=AT,
                               reason="test")


# --- the variables --------------------------------------------------------------------------


def test_the_env_file_at_sonnet_is_design_5s_example() -> None:
    """At sonnet the opus alias is capped at sonnet; sonnet and haiku keep their models."""
    state = at_level(1)
    assert render_env(state, claude_code=True) == SONNET_ENV


@pytest.mark.parametrize(("level", "expected"), [
    (0, ("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-opus-5-5")),
    (1, ("claude-sonnet-5-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-sonnet-5-5")),
    (2, ("claude-haiku-5-5", "claude-haiku-5-5", "claude-haiku-5-5", "claude-haiku-5-5")),
], ids=["opus", "sonnet", "haiku"])
def test_each_alias_resolves_to_its_own_model_or_the_tier_in_force(
        tmp_path: Path, level: int, expected: tuple[str, ...]) -> None:
    """Opus leaves every alias alone; each step down caps the aliases above it."""
    env = tmp_path / "model.env"
    FileSinks(env, None, claude_code=True).write(at_level(level))
    written = read_env(env)
    assert tuple(written[name] for name in CLAUDE_CODE_VARS) == expected
    assert written["CLAUDE_CODE_SUBAGENT_MODEL"] == written["ANTHROPIC_MODEL"]


def test_an_alias_is_the_first_model_of_its_family_in_the_chain_in_force() -> None:
    """Whatever the tiers are called, the family is read off the model id as a word; an
    alias no model of the chain serves is the tier in force."""
    assert alias_models(("claude-opus-5-5", "vendor/claude-haiku-5-5@v1")) == {
        "opus": "claude-opus-5-5", "sonnet": "claude-opus-5-5",
        "haiku": "vendor/claude-haiku-5-5@v1"}
    assert alias_models(("claude-sonnet-5-5", "claude-sonnet-4-6", "haikus-x")) == {
        "opus": "claude-sonnet-5-5", "sonnet": "claude-sonnet-5-5", "haiku": "claude-sonnet-5-5"}


TIER_NAMES = st.sampled_from(["opus", "sonnet", "haiku", "best", "mid", "cheap", "x1", "x2"])
MODEL_IDS = st.sampled_from(["claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5",
                             "claude-opus-4-7", "vendor/claude-sonnet-4-6@v1", "gpt-x",
                             "my-haiku-proxy"])


@given(tiers=st.lists(TIER_NAMES, min_size=1, max_size=5, unique=True),
       models=st.lists(MODEL_IDS, min_size=5, max_size=5), data=st.data())
def test_no_alias_ever_resolves_above_the_tier_in_force(
        tiers: list[str], models: list[str], data: st.DataObject) -> None:
    """Whatever the chain and its models, every alias and the subagent resolve to a model
    of the chain from the tier in force down."""
    chain = tuple(tiers)
    by_tier = dict(zip(chain, models, strict=False))
    level = data.draw(st.integers(0, len(chain) - 1))
    state = at_level(level, chain, by_tier)
    written = read_env_text(render_env(state, claude_code=True))
    allowed = {by_tier[tier] for tier in chain[level:]}
    assert {written[name] for name in CLAUDE_CODE_VARS} <= allowed
    assert written["CLAUDE_CODE_SUBAGENT_MODEL"] == by_tier[chain[level]]


def read_env_text(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_claude_code_off_writes_only_the_model_and_the_guard_lines(tmp_path: Path) -> None:
    """``fallback.claude_code = false``: the env file is the six lines it was before."""
    settings = FallbackSettings(env_file=tmp_path / "m.env", claude_code=False)
    file_sinks(settings).write(at_level(1, models=dict(settings.models)))
    assert list(read_env(tmp_path / "m.env")) == [
        "ANTHROPIC_MODEL", "GUARD_MODEL_CHAIN", "GUARD_TIER", "GUARD_LEVEL", "GUARD_SOURCE",
        "GUARD_UPDATED_AT"]


def test_claude_code_is_on_by_default(tmp_path: Path) -> None:
    """Without a word in ``[fallback]`` the Claude Code variables are written."""
    settings = FallbackSettings(env_file=tmp_path / "m.env")
    file_sinks(settings).write(at_level(2, models=dict(settings.models)))
    assert set(CLAUDE_CODE_VARS) <= set(read_env(tmp_path / "m.env"))


def test_the_model_variable_cannot_be_a_claude_code_variable() -> None:
    """``model_var = "CLAUDE_CODE_SUBAGENT_MODEL"`` would write the variable twice."""
    state = at_level(0)
    with pytest.raises(ValueError, match="CLAUDE_CODE_SUBAGENT_MODEL"):
        render_env(state, "CLAUDE_CODE_SUBAGENT_MODEL", claude_code=True)


# --- the managed settings -------------------------------------------------------------------


def settings_sinks(tmp_path: Path) -> tuple[FileSinks, Path]:
    managed = tmp_path / "etc" / "claude-code" / "managed-settings.json"
    return FileSinks(tmp_path / "model.env", tmp_path / "fallback.json", claude_code=True,
                     claude_code_settings=managed), managed


def test_managed_settings_cap_the_model_and_the_models_offered(tmp_path: Path) -> None:
    """At sonnet ``model`` is sonnet and ``availableModels`` only sonnet and haiku, so a
    ``/model opus`` cannot escape; the file is readable by every user (0644)."""
    sinks, managed = settings_sinks(tmp_path)
    assert managed in sinks.write(at_level(1))
    assert json.loads(managed.read_text()) == {
        "model": "claude-sonnet-5-5", "availableModels": ["claude-sonnet-5-5", "claude-haiku-5-5"]}
    assert managed.stat().st_mode & 0o777 == 0o644


def test_managed_settings_keep_every_other_key(tmp_path: Path) -> None:
    """An administrator's permissions and env stay; only the two model keys are replaced,
    and releasing to opus offers the whole chain again."""
    sinks, managed = settings_sinks(tmp_path)
    managed.parent.mkdir(parents=True)
    theirs = {"permissions": {"deny": ["Bash(curl:*)"]}, "env": {"DISABLE_TELEMETRY": "1"},
              "model": "opus", "availableModels": ["opus"]}
    managed.write_text(json.dumps(theirs))
    sinks.write(at_level(2))
    assert json.loads(managed.read_text()) == {
        **theirs, "model": "claude-haiku-5-5", "availableModels": ["claude-haiku-5-5"]}
    sinks.write(at_level(0))
    assert json.loads(managed.read_text())["availableModels"] == [
        "claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"]
    assert json.loads(managed.read_text())["permissions"] == theirs["permissions"]


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"opus"'],
                         ids=["broken", "array", "string"])
def test_managed_settings_that_are_not_an_object_are_left_alone(tmp_path: Path,
                                                                text: str) -> None:
    """A settings file we cannot read as an object is an error naming it; it is not
    replaced, and neither is the env file nor the state file."""
    sinks, managed = settings_sinks(tmp_path)
    sinks.write(at_level(0))
    managed.write_text(text)
    with pytest.raises(SinkError, match=r"managed-settings\.json"):
        sinks.write(at_level(2))
    assert managed.read_text() == text
    assert read_env(tmp_path / "model.env")["GUARD_TIER"] == "opus"
    assert json.loads((tmp_path / "fallback.json").read_text())["tier"] == "opus"


def test_the_settings_file_needs_claude_code_on(tmp_path: Path) -> None:
    """``claude_code_settings`` with ``claude_code = false`` is a config error naming it."""
    config = tmp_path / "guard.toml"
    config.write_text('[fallback]\nclaude_code = false\n'
                      'claude_code_settings = "/etc/claude-code/managed-settings.json"\n')
    assert "fallback.claude_code_settings" in paths(config)


# --- read the way their consumers read them -------------------------------------------------


CLIENT = textwrap.dedent("""\
    import json, os
    from guard.chain import ModelChain, anthropic_client

    client = anthropic_client()  # ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL from the env

    def ask(model):
        reply = client.messages.create(model=model, max_tokens=16,
                                       messages=[{"role": "user", "content": "hi"}])
        return reply.model

    seen = {"chain": ModelChain().call(ask)}
    for name in ("ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL",
                 "ANTHROPIC_DEFAULT_HAIKU_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL"):
        seen[name] = ask(os.environ[name])
    print(json.dumps(seen))
""")


@pytest.fixture
def messages(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesAPI]:
    with fake_messages_api(monkeypatch) as fake:
        fake.answers = {model: OK for model in MODELS.values()}
        yield fake


def start_consumer(env_file: Path, api: FakeMessagesAPI, tmp_path: Path) -> dict[str, Any]:
    """A process started the way a service or a Claude Code session starts: a shell loads the
    env file (``set -a; . file``), then the official SDK, through ``guard.chain``, calls."""
    if shutil.which("sh") is None:
        pytest.skip("sh not installed")
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    environ = {"PATH": os.environ.get("PATH", ""), "ANTHROPIC_API_KEY": "test",
               "ANTHROPIC_BASE_URL": api.url, "PYTHONPATH": str(Path.cwd())}
    done = subprocess.run(["sh", "-c", 'set -a; . "$1"; exec "$2" "$3"', "sh", str(env_file),
                           sys.executable, str(script)],
                          capture_output=True, text=True, env=environ, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_a_shell_started_sdk_client_never_reaches_above_the_tier(
        tmp_path: Path, messages: FakeMessagesAPI) -> None:
    """At sonnet the chain and the opus alias call sonnet and the haiku alias haiku; after
    the guard steps to haiku, the next process started calls nothing but haiku."""
    env = tmp_path / "model.env"
    sinks = FileSinks(env, None, claude_code=True)
    sinks.write(at_level(1))
    assert start_consumer(env, messages, tmp_path) == {
        "chain": "claude-sonnet-5-5", "ANTHROPIC_DEFAULT_OPUS_MODEL": "claude-sonnet-5-5",
        "ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-5-5",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-5-5",
        "CLAUDE_CODE_SUBAGENT_MODEL": "claude-sonnet-5-5"}
    sinks.write(at_level(2))
    messages.models.clear()
    seen = start_consumer(env, messages, tmp_path)
    assert set(seen.values()) == {"claude-haiku-5-5"}
    assert messages.models == ["claude-haiku-5-5"] * 5


# --- a replayed month -----------------------------------------------------------------------


def test_every_tick_of_a_replayed_month_caps_every_claude_code_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the breach demo's month, after every tick, each alias and the subagent model
    are in the chain from the tier in force down; the month reaches haiku, and at opus the
    opus alias is opus (the cap is not simply everything at the bottom)."""
    real_tick = guard.entry.demo.run_tick
    seen: list[dict[str, str]] = []
    escaped: list[tuple[datetime, dict[str, str]]] = []

    def checked(tick: Any, at: datetime) -> Any:
        report = real_tick(tick, at)
        written = read_env(tmp_path / "demo-out" / "model.env")
        seen.append(written)
        allowed = written["GUARD_MODEL_CHAIN"].split(",")
        if not (written["ANTHROPIC_MODEL"] == allowed[0] == report.fallback.model
                == written["CLAUDE_CODE_SUBAGENT_MODEL"]
                and {written[name] for name in CLAUDE_CODE_VARS} <= set(allowed)):
            escaped.append((at, written))
        return report

    monkeypatch.setattr(guard.entry.demo, "run_tick", checked)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--month", "2026-02", "--step-hours", "24",
                                      "--scenario", "breach"])
    assert result.exit_code == 0, result.output
    assert escaped == []
    assert len(seen) == 28  # a tick a day, and the month's last minute
    tiers = {written["GUARD_TIER"] for written in seen}
    assert {"opus", "haiku"} <= tiers
    assert any(w["GUARD_TIER"] == "opus" and w["ANTHROPIC_DEFAULT_OPUS_MODEL"].startswith(
        "claude-opus") for w in seen)
