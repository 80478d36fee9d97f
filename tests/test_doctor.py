"""`guard doctor` against the simulated Admin API and the loopback Slack fake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from slackfake import SlackFake
from typer.testing import CliRunner

from guard.entry.cli import app
from guard.sim import SimClock, SimOrg, SimServer

KEY = "sk-ant-admin-doctor-test"


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimOrg.generate(3), SimClock(datetime(2026, 3, 5, tzinfo=UTC)),
                   admin_key=KEY) as server:
        yield server


def config(tmp_path: Path, sim: SimServer, slack: SlackFake | None, key: str = KEY,
           channel: str | None = None, *, models: str = "") -> Path:
    lines = [f'[anthropic]\nadmin_api_key = "{key}"\nbase_url = "{sim.base_url}"\n'
             "max_retries = 0\n",
             f'[state]\nurl = "sqlite:///{tmp_path / "state.db"}"\n',
             f'[fallback]\nenv_file = "{tmp_path / "run" / "model.env"}"\n'
             f'state_file = "{tmp_path / "run" / "fallback.json"}"\n{models}']
    if slack is not None:
        lines.append(f'[slack]\nbot_token = "{slack.token}"\nbase_url = "{slack.base_url}"\n'
                     f'channel = "{channel or slack.channel}"\n')
    path = tmp_path / "guard.toml"
    path.write_text("".join(lines))
    return path


def doctor(path: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["--config", str(path), "doctor"])
    return result.exit_code, result.stdout.splitlines()


def test_everything_healthy_passes(tmp_path: Path, sim: SimServer) -> None:
    """With a good key, Slack and writable paths every line is ok and the exit code 0."""
    with SlackFake() as slack:
        code, lines = doctor(config(tmp_path, sim, slack))
    assert code == 0, lines
    assert all(line.startswith("ok") for line in lines)
    names = [line.split(":")[0][5:] for line in lines]
    assert names == ["admin key", "billing source", "spend limits API", "state store",
                     "price table", "slack auth",
                     "slack channel", "slack deliveries", "fallback env file",
                     "fallback state file", "fallback model opus", "fallback model sonnet",
                     "fallback model haiku"]


def test_a_rejected_key_and_a_missing_channel_fail_loudly(tmp_path: Path,
                                                          sim: SimServer) -> None:
    """A wrong admin key and an unknown channel each fail their line; exit code 1."""
    with SlackFake() as slack:
        code, lines = doctor(config(tmp_path, sim, slack, key="sk-ant-admin-wrong",
                                    channel="C0NOTTHERE"))
    assert code == 1
    failed = [line for line in lines if line.startswith("FAIL")]
    assert any("admin key" in line and "rejected" in line for line in failed)
    assert any("slack channel" in line and "channel_not_found" in line for line in failed)
    assert "sk-ant-admin-wrong" not in "\n".join(lines)


def test_without_slack_notifications_go_to_the_log(tmp_path: Path, sim: SimServer) -> None:
    """No Slack configured is not a failure: the doctor says where messages go."""
    code, lines = doctor(config(tmp_path, sim, None))
    assert code == 0
    assert any("not configured: notifications go to the log" in line for line in lines)


def test_a_legacy_retired_or_unknown_chain_model_is_a_warning(tmp_path: Path,
                                                              sim: SimServer) -> None:
    """Old or unpriced models in [fallback.models] warn, naming the model; exit code stays 0."""
    models = ('[fallback.models]\nopus = "claude-opus-4-1-20250805"\n'
              'sonnet = "claude-sonnet-4-6"\nhaiku = "claude-tiny-9"\n')
    code, lines = doctor(config(tmp_path, sim, None, models=models))
    warned = {line.split(":")[0][5:]: line for line in lines if line.startswith("WARN")}
    assert code == 0
    assert "claude-opus-4-1-20250805 is retired" in warned["fallback model opus"]
    assert "claude-sonnet-4-6 is legacy" in warned["fallback model sonnet"]
    assert "claude-tiny-9 is not in the price table" in warned["fallback model haiku"]


def test_a_budget_whose_match_is_one_character_off_is_found(tmp_path: Path,
                                                           sim: SimServer) -> None:
    """A workspace id one character off: `guard doctor` fails on it, and `guard report`
    warns that the budget matched nothing; the real id passes."""
    real = SimOrg.generate(3).workspaces[0].id
    typo = real[:-1] + ("x" if real[-1] != "x" else "y")
    path = config(tmp_path, sim, None)
    budgets = "".join(f'[[budgets]]\nname = "{n}"\nscope = "workspace"\nmatch = "{m}"\n'
                      "soft_limit_usd = 1\nhard_limit_usd = 2\n"
                      for n, m in (("typo", typo), ("real", real)))
    path.write_text(path.read_text() + budgets)
    code, lines = doctor(path)
    assert code == 1
    [bad] = [x for x in lines if x.startswith("FAIL budget typo")]
    assert typo in bad and "not in this organization" in bad
    assert any(x.startswith("ok   budget real") for x in lines)
    result = CliRunner().invoke(app, ["--config", str(path), "report", "--json", "--at",
                                      "2026-03-05T00:00:00Z"])
    body = json.loads(result.stdout)
    assert any("budget typo" in w and "matched no usage" in w for w in body["warnings"])
    assert not any("budget real" in w for w in body["warnings"])


def test_validate_online_checks_matches_and_models_against_the_organization(
        tmp_path: Path, sim: SimServer) -> None:
    """`config validate --online`: a typo'd workspace or an unknown chain model exits 1."""
    real = SimOrg.generate(3).workspaces[0].id
    path = config(tmp_path, sim, None)
    good = path.read_text() + (f'[[budgets]]\nname = "ws"\nscope = "workspace"\nmatch = "{real}"\n'
                               "soft_limit_usd = 1\nhard_limit_usd = 2\n")
    path.write_text(good)
    ok = CliRunner().invoke(app, ["--config", str(path), "config", "validate", "--online"])
    assert ok.exit_code == 0, ok.output
    path.write_text(good.replace(real, real + "x"))
    typo = CliRunner().invoke(app, ["--config", str(path), "config", "validate", "--online"])
    assert typo.exit_code == 1 and "FAIL budget ws" in typo.stdout
    path.write_text(good + '[fallback.models]\nopus = "claude-opsu-4-7"\n'
                           'sonnet = "claude-sonnet-5-5"\nhaiku = "claude-haiku-5-5"\n')
    model = CliRunner().invoke(app, ["--config", str(path), "config", "validate", "--online"])
    assert model.exit_code == 1 and "FAIL fallback model opus" in model.stdout
    offline = CliRunner().invoke(app, ["--config", str(path), "config", "validate"])
    assert offline.exit_code == 0


def test_report_and_check_carry_the_configs_own_warnings(tmp_path: Path,
                                                         sim: SimServer) -> None:
    """An open secret file and an unknown chain model are `warnings` of report and check."""
    secret = tmp_path / "admin_key"
    secret.write_text(KEY + "\n")
    secret.chmod(0o640)
    path = config(tmp_path, sim, None, models='[fallback.models]\nopus = "claude-opsu-4-7"\n'
                  'sonnet = "claude-sonnet-5-5"\nhaiku = "claude-haiku-5-5"\n')
    path.write_text(path.read_text().replace(f'admin_api_key = "{KEY}"',
                                             f'admin_api_key_file = "{secret}"'))
    for command in ("report", "check"):
        result = CliRunner().invoke(app, ["--config", str(path), command, "--json", "--at",
                                          "2026-03-05T00:00:00Z"])
        assert result.exit_code == 0, result.output
        found = json.loads(result.stdout)["warnings"]
        assert any("admin_api_key_file" in w and "chmod 600" in w for w in found), command
        assert any("claude-opsu-4-7" in w for w in found), command
