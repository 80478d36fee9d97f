"""The fallback sinks: exact env and state files, atomic idempotent writes, the reload hook."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import guard.adapters.sinks
from guard.adapters.sinks import FileSinks, atomic_write, read_env
from guard.config.sections import FallbackSettings
from guard.core.fallback import FallbackState, render_env, render_state
from guard.core.records import ReloadResult
from guard.entry.wiring import file_sinks

CHAIN = ("opus", "sonnet", "haiku")
MODELS = {"opus": "claude-opus-4-7", "sonnet": "claude-sonnet-4-6", "haiku": "claude-haiku-4-5"}
AT = datetime(2026, 3, 12, 14, 5, tzinfo=UTC)
SONNET = FallbackState.build(CHAIN, MODELS, 1, source="auto", updated_at=AT,
                             reason="org-monthly passed its soft limit",
                             firing=("org-monthly: soft_reached",))
OPUS = FallbackState.build(CHAIN, MODELS, 0, source="auto", updated_at=AT - timedelta(days=3),
                           reason="no budget condition is firing")
SONNET_ENV = """\
ANTHROPIC_MODEL=claude-sonnet-4-6
GUARD_MODEL_CHAIN=claude-sonnet-4-6,claude-haiku-4-5
GUARD_TIER=sonnet
GUARD_LEVEL=1
GUARD_SOURCE=auto
GUARD_UPDATED_AT=2026-03-12T14:05:00Z
"""
# What systemd EnvironmentFile=, docker --env-file and `set -a; . file` all read literally.
PORTABLE_LINE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9_.,:/@+-]+")


class RecordingRun:
    """A stand-in for ``subprocess.run`` that records each call and exits 0."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((args, kwargs))
        return subprocess.CompletedProcess(args, 0, "", "")


def sinks_in(tmp_path: Path, **kwargs: Any) -> FileSinks:
    """File sinks writing under ``tmp_path`` (in a directory that does not exist yet)."""
    return FileSinks(tmp_path / "run" / "model.env", tmp_path / "run" / "fallback.json",
                     **kwargs)


# --- the state ------------------------------------------------------------------------------


def test_public_exports_are_pinned() -> None:
    """The sinks adapter exports exactly its I/O: the sinks, the atomic write, the reader."""
    assert sorted(guard.adapters.sinks.__all__) == ["FileSinks", "atomic_write", "read_env"]


def test_build_takes_the_tier_at_level_and_the_models_below_it() -> None:
    """build() picks the tier at ``level`` and chains its model with those further down."""
    assert (SONNET.tier, SONNET.level, SONNET.model) == ("sonnet", 1, "claude-sonnet-4-6")
    assert SONNET.chain == ("claude-sonnet-4-6", "claude-haiku-4-5")


@pytest.mark.parametrize(("level", "models"), [
    pytest.param(3, MODELS, id="level-past-the-end"),
    pytest.param(-1, MODELS, id="negative-level"),
    pytest.param(1, {"opus": "claude-opus-4-7", "sonnet": "claude-sonnet-4-6"}, id="no-model"),
])
def test_build_rejects_a_level_or_chain_it_cannot_resolve(level: int,
                                                          models: dict[str, str]) -> None:
    """build() refuses a level outside the chain or a tier without a model."""
    with pytest.raises(ValueError, match=r"level|no model"):
        FallbackState.build(CHAIN, models, level, source="auto", updated_at=AT, reason="x")


@pytest.mark.parametrize("change", [
    pytest.param({"source": "bogus"}, id="unknown-source"),
    pytest.param({"updated_at": datetime(2026, 3, 12, 14, 5)}, id="naive-time"),  # noqa: DTZ001
    pytest.param({"chain": ("claude-haiku-4-5",)}, id="chain-not-starting-at-model"),
])
def test_a_state_with_broken_invariants_cannot_be_built(change: dict[str, Any]) -> None:
    """A state whose chain, source or clock is inconsistent raises at construction."""
    with pytest.raises(ValueError, match=r"chain|source|time zone"):
        replace(SONNET, **change)


def test_same_target_ignores_reason_firing_and_time_but_not_tier_or_source() -> None:
    """Change detection compares where applications go, not why or since when."""
    later = AT + timedelta(days=1)
    assert SONNET.same_target(replace(SONNET, reason="other", firing=(), updated_at=later))
    assert not SONNET.same_target(OPUS)
    assert not SONNET.same_target(replace(SONNET, source="override"))


# --- rendering ------------------------------------------------------------------------------


def test_render_env_is_exactly_the_documented_lines() -> None:
    """The env file is DESIGN §5's six KEY=VALUE lines with a trailing newline."""
    assert render_env(SONNET) == SONNET_ENV


def test_render_env_names_the_model_variable_from_config_and_converts_to_utc() -> None:
    """``model_var`` names the first line; a non-UTC time is written as UTC with a Z."""
    plus_two = replace(SONNET, updated_at=AT.astimezone(timezone(timedelta(hours=2))))
    lines = render_env(plus_two, model_var="LLM_MODEL").splitlines()
    assert lines[0] == "LLM_MODEL=claude-sonnet-4-6"
    assert lines[-1] == "GUARD_UPDATED_AT=2026-03-12T14:05:00Z"


@pytest.mark.parametrize("model", [
    pytest.param("claude sonnet", id="space"),
    pytest.param("claude-$HOME", id="dollar"),
    pytest.param("claude'x", id="quote"),
    pytest.param('claude"x', id="double-quote"),
    pytest.param("claude\\x", id="backslash"),
    pytest.param("claude\nEVIL=1", id="newline"),
    pytest.param("claude;rm", id="semicolon"),
    pytest.param("claude#x", id="hash"),
    pytest.param("claude`id`", id="backtick"),
    pytest.param("claude=x", id="equals"),
    pytest.param("clåude", id="non-ascii"),
    pytest.param("a,b", id="comma-inside-a-chain-member"),
])
def test_render_env_refuses_a_model_id_outside_the_portable_charset(model: str) -> None:
    """A model id any of systemd, docker or sh would read differently raises, naming a var."""
    state = replace(SONNET, model=model, chain=(model, "claude-haiku-4-5"))
    with pytest.raises(ValueError, match=r"ANTHROPIC_MODEL|GUARD_MODEL_CHAIN"):
        render_env(state)


@pytest.mark.parametrize("name", ["1MODEL", "MY-MODEL", "", "GUARD_TIER"])
def test_render_env_refuses_a_bad_model_variable_name(name: str) -> None:
    """The model variable must be a shell name and must not shadow a GUARD_ line."""
    with pytest.raises(ValueError, match="model variable"):
        render_env(SONNET, model_var=name)


@given(st.text(alphabet="abcXYZ019_.:/@+-", min_size=1, max_size=40))
def test_any_portable_model_id_round_trips_through_the_env_file(model: str) -> None:
    """Every model id in the charset renders to portable lines that parse back unchanged."""
    text = render_env(replace(SONNET, model=model, chain=(model,)))
    assert all(PORTABLE_LINE.fullmatch(line) for line in text.splitlines())
    values = dict(line.split("=", 1) for line in text.splitlines())
    assert (values["ANTHROPIC_MODEL"], values["GUARD_MODEL_CHAIN"]) == (model, model)


def test_render_state_has_the_env_fields_then_reason_firing_and_override() -> None:
    """The state file holds the env fields in lower case plus reason, firing and override."""
    text = render_state(SONNET)
    document = json.loads(text)
    assert list(document) == ["model", "chain", "tier", "level", "source", "updated_at",
                              "reason", "firing", "override"]
    assert document == {
        "model": "claude-sonnet-4-6", "chain": ["claude-sonnet-4-6", "claude-haiku-4-5"],
        "tier": "sonnet", "level": 1, "source": "auto", "updated_at": "2026-03-12T14:05:00Z",
        "reason": "org-monthly passed its soft limit",
        "firing": ["org-monthly: soft_reached"], "override": None}
    assert text.endswith("}\n")


def test_render_state_carries_an_overrides_expiry_author_and_reason() -> None:
    """An override's expiry, author and reason appear under ``override``."""
    pinned = FallbackState.build(
        CHAIN, MODELS, 2, source="override", updated_at=AT, reason="pinned to haiku by alice",
        override_expires_at=AT + timedelta(hours=4), override_by="alice",
        override_reason="incident 42")
    document = json.loads(render_state(pinned))
    assert document["override"] == {"expires_at": "2026-03-12T18:05:00Z", "by": "alice",
                                    "reason": "incident 42"}
    assert (document["source"], document["chain"]) == ("override", ["claude-haiku-4-5"])


# --- atomic_write ---------------------------------------------------------------------------


def test_atomic_write_creates_the_directory_and_writes_mode_0600(tmp_path: Path) -> None:
    """A first write creates missing directories and leaves only the target, mode 0600
    unless told otherwise."""
    target = tmp_path / "a" / "b" / "model.env"
    assert atomic_write(target, SONNET_ENV) is True
    assert target.read_text() == SONNET_ENV
    assert target.stat().st_mode & 0o777 == 0o600
    assert os.listdir(target.parent) == ["model.env"]
    assert atomic_write(target, render_env(OPUS), 0o640) is True
    assert target.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("umask", [0o000, 0o077, 0o022])
def test_the_env_file_is_0644_and_the_state_file_0600_whatever_the_umask(
        tmp_path: Path, umask: int) -> None:
    """Applications read the env file, so it is 0644 (or ``fallback.file_mode``); the state
    file holds who pinned and why, so it is 0600."""
    old = os.umask(umask)
    try:
        sinks = FileSinks(tmp_path / "model.env", tmp_path / "fallback.json")
        sinks.write(SONNET)
        custom = FileSinks(tmp_path / "custom.env", None, env_mode=0o640)
        custom.write(SONNET)
    finally:
        os.umask(old)
    assert (tmp_path / "model.env").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "fallback.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "custom.env").stat().st_mode & 0o777 == 0o640


def test_atomic_write_leaves_an_equal_file_untouched(tmp_path: Path) -> None:
    """Equal content returns False and keeps the same inode and modification time."""
    target = tmp_path / "model.env"
    atomic_write(target, SONNET_ENV)
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    before = target.stat()
    assert atomic_write(target, SONNET_ENV) is False
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, 1_000_000_000)


def test_atomic_write_replaces_different_content_with_a_new_file(tmp_path: Path) -> None:
    """Different content replaces the file by rename (a new inode), never in place."""
    target = tmp_path / "model.env"
    atomic_write(target, render_env(OPUS))
    first = target.stat().st_ino
    assert atomic_write(target, SONNET_ENV) is True
    assert target.read_text() == SONNET_ENV
    assert target.stat().st_ino != first


_READER = textwrap.dedent("""
    import json, os, sys
    path, half, stop = sys.argv[1:]
    seen = {}

    def read():
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            text = "<missing>"
        seen[text] = seen.get(text, 0) + 1

    def read_until(flag):
        # The flag is looked at before each read, so the last read starts after it appeared.
        while True:
            flagged = os.path.exists(flag)
            read()
            if flagged:
                return

    read()
    print("ready", flush=True)
    read_until(half)
    print("half", flush=True)
    read_until(stop)
    print(json.dumps(seen))
""")


def test_a_reader_process_never_sees_a_torn_or_empty_env_file(tmp_path: Path) -> None:
    """Another process reading in a tight loop sees only whole renderings, both of them."""
    # No timing: a fixed number of writes, and handshakes instead of deadlines. The reader's
    # first read (before "ready") sees texts[0]; its read after the half flag sees texts[1],
    # written by write 1001, and the writer waits for it, so both are always seen and at least
    # one read falls among the writes. Any torn, empty or missing read would be a third text.
    target, half, stop = tmp_path / "model.env", tmp_path / "half", tmp_path / "stop"
    texts = (render_env(OPUS), SONNET_ENV)
    atomic_write(target, texts[0])
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(target), str(half), str(stop)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline() == "ready\n"
        for write in range(1, 2001):
            assert atomic_write(target, texts[write % 2])
            if write == 1001:
                half.touch()
                assert reader.stdout.readline() == "half\n"
        stop.touch()
        output = reader.communicate(timeout=60)[0]
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    seen: dict[str, int] = json.loads(output)
    assert set(seen) == set(texts), {text[:40]: n for text, n in seen.items()}


# --- the env file as its consumers read it --------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_a_posix_shell_sourcing_the_env_file_gets_the_model_and_chain(tmp_path: Path,
                                                                     shell: str) -> None:
    """``set -a; . FILE`` in bash and sh exports exactly the model and the chain."""
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    target = tmp_path / "model.env"
    odd = "vendor/claude-x:1@2+3.4_5"
    atomic_write(target, render_env(replace(SONNET, model=odd, chain=(odd, "claude-haiku-4-5"))))
    script = ('set -a; . "$1"; '
              'printf "%s|%s|%s" "$ANTHROPIC_MODEL" "$GUARD_MODEL_CHAIN" "$GUARD_LEVEL"')
    done = subprocess.run([shell, "-c", script, shell, str(target)], capture_output=True,
                          text=True, check=True, env={"PATH": os.environ.get("PATH", "")})
    assert done.stdout == f"{odd}|{odd},claude-haiku-4-5|1"
    assert done.stderr == ""


def test_the_env_file_has_only_literal_key_value_lines(tmp_path: Path) -> None:
    """No quotes, comments, blanks or escapes: systemd and docker read the values literally."""
    target = tmp_path / "model.env"
    FileSinks(target, None).write(SONNET)
    lines = target.read_text().splitlines()
    assert all(PORTABLE_LINE.fullmatch(line) for line in lines), lines
    assert read_env(target) == {
        "ANTHROPIC_MODEL": "claude-sonnet-4-6",
        "GUARD_MODEL_CHAIN": "claude-sonnet-4-6,claude-haiku-4-5", "GUARD_TIER": "sonnet",
        "GUARD_LEVEL": "1", "GUARD_SOURCE": "auto", "GUARD_UPDATED_AT": "2026-03-12T14:05:00Z"}


def test_read_env_refuses_a_line_that_is_not_key_value(tmp_path: Path) -> None:
    """read_env reports the file and line of anything but KEY=VALUE."""
    target = tmp_path / "model.env"
    target.write_text("A=1\nexport B\n")
    with pytest.raises(ValueError, match=r"model\.env:2"):
        read_env(target)


# --- FileSinks.write ------------------------------------------------------------------------


def test_write_rewrites_both_files_once_then_nothing_while_unchanged(tmp_path: Path) -> None:
    """The first write creates both files; the same state again rewrites nothing."""
    sinks = sinks_in(tmp_path)
    run = tmp_path / "run"
    assert sinks.write(SONNET) == [run / "model.env", run / "fallback.json"]
    assert sinks.write(SONNET) == []
    assert read_env(tmp_path / "run" / "model.env")["ANTHROPIC_MODEL"] == "claude-sonnet-4-6"
    assert json.loads((tmp_path / "run" / "fallback.json").read_text())["tier"] == "sonnet"


def test_write_of_a_new_reason_only_rewrites_the_state_file(tmp_path: Path) -> None:
    """A new reason for the same target leaves the env file (and its readers) alone."""
    sinks = sinks_in(tmp_path)
    sinks.write(SONNET)
    now_firing = replace(SONNET, firing=(*SONNET.firing, "org-monthly: hard_likely"))
    assert sinks.write(now_firing) == [tmp_path / "run" / "fallback.json"]


def test_an_invalid_model_writes_neither_file(tmp_path: Path) -> None:
    """A bad value raises before anything is written, even the state file."""
    sinks = sinks_in(tmp_path)
    sinks.write(OPUS)
    bad = replace(SONNET, model="claude sonnet", chain=("claude sonnet",))
    with pytest.raises(ValueError, match="ANTHROPIC_MODEL"):
        sinks.write(bad)
    assert read_env(tmp_path / "run" / "model.env")["GUARD_TIER"] == "opus"
    assert json.loads((tmp_path / "run" / "fallback.json").read_text())["tier"] == "opus"


def test_from_settings_uses_the_fallback_section(tmp_path: Path) -> None:
    """The sinks take paths, model variable and hook from ``[fallback]``."""
    settings = FallbackSettings(env_file=tmp_path / "m.env", state_file=tmp_path / "s.json",
                                model_var="LLM_MODEL", reload_command=["true"])
    sinks = file_sinks(settings)
    assert sinks.write(SONNET) == [tmp_path / "m.env", tmp_path / "s.json"]
    assert "LLM_MODEL" in read_env(tmp_path / "m.env")
    assert sinks.reload_command == ("true",)


# --- FileSinks.reload -----------------------------------------------------------------------


def test_reload_runs_the_command_once_without_a_shell_and_with_a_timeout() -> None:
    """One reload is one call of ``run`` with the argv list, captured output and a timeout."""
    run = RecordingRun()
    sinks = FileSinks(None, None, reload_command=["systemctl", "reload", "app"], run=run,
                      timeout_s=7)
    assert sinks.reload() == ReloadResult(ran=True, ok=True, detail="systemctl exited 0")
    [(args, kwargs)] = run.calls
    assert args == ["systemctl", "reload", "app"]
    assert kwargs["timeout"] == 7 and kwargs["capture_output"] and not kwargs.get("shell")


def test_reload_runs_nothing_without_a_command() -> None:
    """With no command nothing runs and the result is ok."""
    run = RecordingRun()
    result = FileSinks(None, None, reload_command=[], run=run).reload()
    assert (result.ran, result.ok, run.calls) == (False, True, [])


def test_a_real_command_that_succeeds_is_ok() -> None:
    """A hook exiting 0 reports ok."""
    result = FileSinks(None, None, reload_command=[sys.executable, "-c", "pass"]).reload()
    assert (result.ran, result.ok) == (True, True)


def test_a_real_command_exiting_1_is_a_failure_with_its_output() -> None:
    """A non-zero exit is ok=False with the status and the tail of stderr."""
    script = "import sys; sys.stderr.write('unit not found'); sys.exit(1)"
    result = FileSinks(None, None, reload_command=[sys.executable, "-c", script]).reload()
    assert (result.ran, result.ok) == (True, False)
    assert "exited 1" in result.detail and "unit not found" in result.detail


def test_a_missing_executable_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    """A hook whose program does not exist reports ok=False and says so."""
    missing = str(tmp_path / "no-such-reloader")
    result = FileSinks(None, None, reload_command=[missing, "now"]).reload()
    assert (result.ran, result.ok) == (True, False)
    assert "not found" in result.detail


def test_a_hook_that_hangs_is_killed_at_the_timeout() -> None:
    """A hook running past ``timeout_s`` is stopped and reported as timed out."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    started = time.monotonic()
    result = FileSinks(None, None, reload_command=sleeper, timeout_s=0.3).reload()
    assert (result.ran, result.ok) == (True, False)
    assert "timed out after 0.3 s" in result.detail
    assert time.monotonic() - started < 10
