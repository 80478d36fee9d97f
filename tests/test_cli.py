"""The command line around configuration: exit codes, masked secrets, nothing touched on error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from guard.entry.cli import app
from guard.entry.terminal import parse_at
from guard.errors import ConfigError

SECRET = "sk-ant-admin01-cli-test-secret"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def config(tmp_path: Path, budgets: str, state: Path | None = None) -> Path:
    path = tmp_path / "guard.toml"
    path.write_text(f'[anthropic]\nadmin_api_key = "{SECRET}"\nbase_url = "http://127.0.0.1:9"\n'
                    f'[state]\nurl = "sqlite:///{state or tmp_path / "state.db"}"\n{budgets}')
    return path


BAD_BUDGET = """
[[budgets]]
name = "prod"
scope = "workspace"
match = "wrkspc_01abc"
soft_limit_usd = 900
hard_limit_usd = 500
"""


def test_validate_names_the_field_and_exits_2(tmp_path: Path) -> None:
    """A soft limit above the hard limit is reported with its path and exit code 2."""
    code, _, stderr = run("config", "validate", str(config(tmp_path, BAD_BUDGET)))
    assert code == 2
    assert "budgets[0].soft_limit_usd" in stderr
    assert "soft limit 900 exceeds hard limit 500" in stderr


def test_validate_accepts_a_good_file(tmp_path: Path) -> None:
    """A valid file prints ok and exits 0."""
    good = BAD_BUDGET.replace("900", "400")
    code, stdout, _ = run("config", "validate", str(config(tmp_path, good)))
    assert code == 0 and "ok (1 budgets)" in stdout


def test_a_bad_config_touches_nothing(tmp_path: Path) -> None:
    """`guard report` with a bad config exits 2 before opening the store or the network."""
    state = tmp_path / "never" / "state.db"
    code, stdout, stderr = run("--config", str(config(tmp_path, BAD_BUDGET, state)), "report")
    assert code == 2 and stdout == ""
    assert "budgets[0].soft_limit_usd" in stderr
    assert not state.parent.exists()


def test_show_masks_secrets(tmp_path: Path) -> None:
    """`config show` prints the effective config with the admin key masked."""
    code, stdout, _ = run("--config", str(config(tmp_path, "")), "config", "show")
    assert code == 0
    assert SECRET not in stdout
    assert "**********" in stdout and "[anthropic]" in stdout


def test_show_includes_environment_overrides(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment override appears in the effective config."""
    monkeypatch.setenv("GUARD_ANTHROPIC__POLL_INTERVAL_S", "120")
    code, stdout, _ = run("--config", str(config(tmp_path, "")), "config", "show")
    assert code == 0 and "poll_interval_s = 120" in stdout


def test_config_path_comes_from_guard_config(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --config, $GUARD_CONFIG names the file."""
    monkeypatch.setenv("GUARD_CONFIG", str(config(tmp_path, BAD_BUDGET)))
    code, _, stderr = run("config", "validate")
    assert code == 2 and "budgets[0]" in stderr


def test_bad_at_is_a_usage_error(tmp_path: Path) -> None:
    """--at without a zone is refused with exit 2 rather than guessed."""
    code, _, stderr = run("--config", str(config(tmp_path, "")), "report",
                          "--at", "2026-03-01T10:00:00")
    assert code == 2 and "no time zone" in stderr


@pytest.mark.parametrize("command", ["check", "report"])
def test_an_at_in_the_future_is_refused_and_writes_nothing(tmp_path: Path,
                                                           command: str) -> None:
    """`--at` past the wall clock + 1 min exits 2 before the store or any file is touched."""
    state = tmp_path / "state.db"
    env = tmp_path / "model.env"
    path = tmp_path / "guard.toml"
    path.write_text('[anthropic]\nadmin_api_key = "sk-ant-admin01-x"\n'
                    'base_url = "http://127.0.0.1:9"\n'
                    f'[state]\nurl = "sqlite:///{state}"\n'
                    f'[fallback]\nenv_file = "{env}"\nstate_file = "{tmp_path / "f.json"}"\n')
    before = sorted(p.name for p in tmp_path.iterdir())
    future = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, _, stderr = run("--config", str(path), command, "--at", future)
    assert code == 2 and "--at" in stderr and "in the future" in stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_at_within_a_minute_of_the_clock_is_accepted() -> None:
    """Clock skew of under a minute is not an error."""
    wall = datetime(2026, 12, 2, 12, tzinfo=UTC)
    assert parse_at("2026-12-02T12:00:59Z", wall) == wall + timedelta(seconds=59)
    with pytest.raises(ConfigError, match="in the future"):
        parse_at("2026-12-02T12:01:01Z", wall)


@pytest.mark.parametrize(("args", "field", "why"), [
    (["sonnet", "--for", f"{10**30}h", "--reason", "x"], "--for", "at most 31 days"),
    (["sonnet", "--for", "9" * 5000 + "h", "--reason", "x"], "--for", "at most 31 days"),
    (["sonnet", "--for", "1h", "--reason", "x" * 501], "--reason", "at most 500 characters"),
], ids=["10**30h", "5000-digit-hours", "reason-over-500"])
def test_an_absurd_pin_is_refused_in_one_line(tmp_path: Path, args: list[str], field: str,
                                              why: str) -> None:
    """Out-of-bounds durations and reasons: exit 2 naming the field, nothing written."""
    path = tmp_path / "guard.toml"
    path.write_text(f'[state]\nurl = "sqlite:///{tmp_path / "s.db"}"\n')
    code, _, stderr = run("--config", str(path), "fallback", "pin", *args)
    assert code == 2 and f"{field}: " in stderr and why in stderr
    assert "invalid input" in stderr and "configuration" not in stderr
    assert "Traceback" not in stderr and len(stderr) < 300
    assert not (tmp_path / "s.db").exists()


def test_missing_admin_key_is_a_config_error(tmp_path: Path) -> None:
    """A report without an admin key names the field and exits 2."""
    path = tmp_path / "guard.toml"
    path.write_text(f'[state]\nurl = "sqlite:///{tmp_path / "s.db"}"\n')
    code, _, stderr = run("--config", str(path), "report")
    assert code == 2 and "anthropic.admin_api_key" in stderr


def test_silences_are_added_listed_and_expired(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`guard silence add/list/expire` manage silences and refuse unknown budgets."""
    monkeypatch.setenv("GUARD_ACTOR", "erin")
    good = BAD_BUDGET.replace("900", "400")
    cfg = str(config(tmp_path, good))
    code, stdout, _ = run("--config", cfg, "silence", "add", "--budget", "prod", "--for", "2h",
                          "--reason", "known migration", "--condition", "soft_reached")
    assert code == 0 and stdout.startswith("silence 1: prod:soft_reached until")
    code, stdout, _ = run("--config", cfg, "silence", "list")
    assert code == 0 and "prod:soft_reached" in stdout and "by erin: known migration" in stdout
    assert run("--config", cfg, "silence", "expire", "1")[0] == 0
    assert "no silences" in run("--config", cfg, "silence", "list")[1]
    assert run("--config", cfg, "silence", "expire", "1")[0] == 2
    code, _, stderr = run("--config", cfg, "silence", "add", "--budget", "nope", "--for", "1h",
                          "--reason", "x")
    assert code == 2 and "--budget" in stderr


def test_slack_listen_needs_an_app_token(tmp_path: Path) -> None:
    """Socket Mode without slack.app_token is a config error naming the field."""
    code, _, stderr = run("--config", str(config(tmp_path, "")), "slack", "listen")
    assert code == 2 and "slack.app_token" in stderr


def test_version_prints_the_version() -> None:
    """`guard --version` prints the version and exits 0."""
    code, stdout, _ = run("--version")
    assert code == 0 and stdout.strip() == "budget-guard 0.1.0"


@pytest.mark.parametrize(("state_url", "reason"), [
    pytest.param("not a url", "not a SQLAlchemy URL", id="not-a-url"),
    pytest.param("mysql://guard:s3cret-pw@db/guard", "mysql is not supported", id="mysql"),
    pytest.param("postgresql+psycopg2://guard:s3cret-pw@db/guard", "psycopg2 driver",
                 id="other-pg-driver"),
])
@pytest.mark.parametrize("command", [["config", "validate"], ["report"], ["doctor"],
                                     ["check"], ["fallback", "status"]])
def test_a_state_url_that_can_never_work_is_a_config_error(tmp_path: Path, state_url: str,
                                                           reason: str,
                                                           command: list[str]) -> None:
    """Every command: exit 2 naming state.url, no traceback, no password echoed."""
    path = tmp_path / "guard.toml"
    path.write_text(f'[anthropic]\nadmin_api_key = "{SECRET}"\n[state]\nurl = "{state_url}"\n')
    code, out, stderr = run("--config", str(path), *command)
    assert code == 2, (out, stderr)
    assert "state.url" in stderr and reason in stderr
    assert "Traceback" not in stderr + out and "s3cret-pw" not in stderr + out


def test_validate_refuses_a_config_without_an_admin_key(tmp_path: Path) -> None:
    path = tmp_path / "guard.toml"
    path.write_text(f'[state]\nurl = "sqlite:///{tmp_path / "s.db"}"\n')
    code, _, stderr = run("config", "validate", str(path))
    assert code == 2 and "anthropic.admin_api_key" in stderr
    assert not (tmp_path / "s.db").exists()


def test_validate_warns_of_an_unknown_chain_model_and_an_open_secret_file(
        tmp_path: Path) -> None:
    secret = tmp_path / "admin_key"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o644)
    path = tmp_path / "guard.toml"
    path.write_text(f'[anthropic]\nadmin_api_key_file = "{secret}"\n'
                    f'[state]\nurl = "sqlite:///{tmp_path / "s.db"}"\n'
                    '[fallback.models]\nopus = "claude-opsu-4-7"\nsonnet = "claude-sonnet-5-5"\n'
                    'haiku = "claude-haiku-5-5"\n')
    code, out, _ = run("config", "validate", str(path))
    assert code == 0
    assert "fallback.models.opus: claude-opsu-4-7 is not in the price table" in out
    assert "anthropic.admin_api_key_file" in out and "chmod 600" in out
    assert SECRET not in out
    secret.chmod(0o600)
    assert "chmod" not in run("config", "validate", str(path))[1]


@pytest.mark.parametrize(("command", "code"), [
    (["report"], 3), (["check"], 3), (["doctor"], 1), (["fallback", "status"], 3),
    (["fallback", "pin", "sonnet", "--for", "1h", "--reason", "x"], 3),
    (["fallback", "release", "--reason", "x"], 3), (["silence", "list"], 3),
    (["keys", "restore"], 3), (["enforcement", "restore", "--dry-run"], 3),
])
def test_an_unopenable_store_is_one_line_and_an_exit_code(tmp_path: Path, command: list[str],
                                                          code: int) -> None:
    """A state store that cannot be opened: every command says so in a line, no traceback."""
    path = tmp_path / "guard.toml"
    path.write_text(f'[anthropic]\nadmin_api_key = "{SECRET}"\nbase_url = "http://127.0.0.1:9"\n'
                    "max_retries = 0\n"
                    f'[state]\nurl = "sqlite:///{tmp_path / "missing" / "dir" / "state.db"}"\n')
    got, out, stderr = run("--config", str(path), *command)
    assert got == code, (out, stderr)
    assert "Traceback" not in out + stderr
    assert "state store" in out + stderr
