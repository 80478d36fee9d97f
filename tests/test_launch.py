"""``guard --version`` and ``guard fallback status`` answer before the command line's heavy
imports, and ``guard run`` starts without them (issue 13); each says what the command line
would."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import guard
from guard.entry.launch import run_form, status_form

HEAVY = ("typer", "rich", "pydantic", "pydantic_settings", "sqlalchemy", "httpx", "slack_sdk",
         "apscheduler", "prometheus_client")

PROBE = """
import sys
sys.argv = ["guard", *sys.argv[1:]]
from guard.entry.launch import main
try:
    main()
except SystemExit:
    pass
# a None entry is a module marked absent (guard.entry marks httpx._main so), not loaded
loaded = sorted({m.split(".")[0] for m, module in sys.modules.items() if module} & {heavy})
print("loaded:", ",".join(loaded))
"""


def probe(*args: str) -> str:
    code = PROBE.replace("{heavy}", repr(set(HEAVY)))
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                            text=True, check=False, timeout=120)
    return result.stdout


def test_version_loads_none_of_the_heavy_libraries() -> None:
    out = probe("--version")
    assert out.splitlines()[0] == f"budget-guard {guard.__version__}"
    assert out.splitlines()[-1] == "loaded: "


def test_every_other_command_goes_on_to_the_command_line() -> None:
    """The probe must be able to fail: ``--help`` takes the full command line."""
    out = probe("--help")
    assert "typer" in out.splitlines()[-1]


# --- guard fallback status -------------------------------------------------------------------

LIGHT = {"pydantic", "pydantic_settings", "sqlalchemy"}  # the config and the store: no more

ENDS = """
import sys
entry, sys.argv = sys.argv[1], ["guard", *sys.argv[2:]]
if entry == "cli":
    from guard.entry.cli import main
else:
    from guard.entry.launch import main
main()
"""


def config_file(tmp_path: Path) -> Path:
    """``tmp_path/guard.toml``, whose store is a SQLite file beside it."""
    path = tmp_path / "guard.toml"
    path.write_text('[anthropic]\nadmin_api_key = "sk-ant-admin01-launch-test"\n'
                    f'[state]\nurl = "sqlite:///{tmp_path / "state.db"}"\n')
    return path


def ends(entry: str, *args: str, cwd: Path) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``guard ARGS`` through ``launch`` or the full ``cli``."""
    result = subprocess.run([sys.executable, "-c", ENDS, entry, *args], capture_output=True,
                            text=True, check=False, timeout=120, cwd=cwd)
    return result.returncode, result.stdout, result.stderr


def test_fallback_status_loads_only_the_config_and_the_store(tmp_path: Path) -> None:
    """A plain `guard fallback status` imports pydantic and SQLAlchemy, not typer, httpx,
    rich or the tick's parts."""
    out = probe("--config", str(config_file(tmp_path)), "fallback", "status", "--json")
    assert out.splitlines()[-1] == "loaded: " + ",".join(sorted(LIGHT))
    assert json.loads("\n".join(out.splitlines()[:-1]))["reason"] == "no tick has run yet"


@pytest.mark.parametrize("args", [
    pytest.param(["fallback", "status"], id="text"),
    pytest.param(["fallback", "status", "--json"], id="json"),
])
def test_fallback_status_says_what_the_command_line_says(tmp_path: Path,
                                                         args: list[str]) -> None:
    """The status of a pinned fallback: the same lines, the same exit code, either way."""
    cfg = config_file(tmp_path)
    pinned = ends("cli", "--config", str(cfg), "fallback", "pin", "haiku", "--for", "4h",
                  "--reason", "runaway batch job", cwd=tmp_path)
    assert pinned[0] == 0, pinned
    light = ends("launch", "--config", str(cfg), *args, cwd=tmp_path)
    assert light == ends("cli", "--config", str(cfg), *args, cwd=tmp_path)
    assert light[0] == 0 and "runaway batch job" in light[1]


@pytest.mark.parametrize(("config", "code", "said"), [
    pytest.param('[anthropic]\nadmin_api_key = "k"\n[[budgets]]\nname = "a"\n'
                 'scope = "organization"\nsoft_limit_usd = 900\nhard_limit_usd = 500\n', 2,
                 "budgets[0].soft_limit_usd", id="bad-config"),
    pytest.param('[anthropic]\nadmin_api_key = "k"\n[state]\nurl = "mysql://u:pw@db/g"\n', 2,
                 "state.url", id="bad-state-url"),
    pytest.param('[anthropic]\nadmin_api_key = "k"\n[state]\n'
                 'url = "sqlite:///{tmp}/missing/dir/state.db"\n', 3, "unavailable",
                 id="unopenable-store"),
    pytest.param(None, 2, "file not found", id="no-file"),
])
def test_fallback_status_fails_as_the_command_line_does(tmp_path: Path, config: str | None,
                                                        code: int, said: str) -> None:
    """A bad config names the field and exits 2, a store that cannot open exits 3: the same
    message, the same code, through ``launch`` and through the command line."""
    cfg = tmp_path / "guard.toml"
    if config is not None:
        cfg.write_text(config.replace("{tmp}", str(tmp_path)))
    light = ends("launch", "--config", str(cfg), "fallback", "status", cwd=tmp_path)
    assert light == ends("cli", "--config", str(cfg), "fallback", "status", cwd=tmp_path)
    assert light[0] == code and said in light[2] and "Traceback" not in light[2]


def test_fallback_status_finds_the_config_as_the_command_line_does(tmp_path: Path) -> None:
    """Without --config: ./guard.toml (here), as the command line resolves it."""
    config_file(tmp_path)
    light = ends("launch", "fallback", "status", cwd=tmp_path)
    assert light[0] == 0 and light == ends("cli", "fallback", "status", cwd=tmp_path)


@pytest.mark.parametrize(("args", "form"), [
    pytest.param(["fallback", "status"], (None, False), id="plain"),
    pytest.param(["fallback", "status", "--json"], (None, True), id="json"),
    pytest.param(["--config", "g.toml", "fallback", "status"], (Path("g.toml"), False),
                 id="config"),
    pytest.param(["--config=g.toml", "fallback", "status", "--json"], (Path("g.toml"), True),
                 id="config-equals"),
    pytest.param(["fallback", "status", "--help"], None, id="help"),
    pytest.param(["fallback", "status", "--json", "--json"], None, id="twice"),
    pytest.param(["fallback", "status", "--jsn"], None, id="typo"),
    pytest.param(["--config", "--json", "fallback", "status"], None, id="config-missing"),
    pytest.param(["--config=", "fallback", "status"], None, id="config-empty"),
    pytest.param(["fallback", "pin", "status"], None, id="other-command"),
    pytest.param(["report", "--json"], None, id="report"),
])
def test_only_the_plain_forms_skip_the_command_line(
        args: list[str], form: tuple[Path | None, bool] | None) -> None:
    """What launch answers itself; anything else is the command line's to parse or refuse."""
    assert status_form(args) == form


def test_fallback_status_help_goes_on_to_the_command_line() -> None:
    """`guard fallback status --help` is typer's help, so it takes the full command line."""
    out = probe("fallback", "status", "--help")
    assert "--json" in out and "typer" in out.splitlines()[-1]


# --- guard run -------------------------------------------------------------------------------

IDLE_DAEMON_SKIPS = ("typer", "rich", "pygments", "slack_sdk", "httpx._main",
                     "sqlalchemy.dialects.postgresql", "guard.sim", "guard.backtest",
                     "guard.entry.cli", "guard.entry.oncall")
"""What an idle `guard run` without Slack, on SQLite, holds no memory for (issue 13)."""

RUN = """
import os, signal, sys
sys.argv = ["guard", *sys.argv[1:]]
from guard.entry import daemon
ticked = daemon.Daemon.tick

def tick(self, name=None):
    report = ticked(self, name)
    names = {skips}
    loaded = sorted(n for n in names if any(m == n or m.startswith(n + ".")
                                            for m, module in sys.modules.items() if module))
    print("ticked:", report is not None, "loaded:", ",".join(loaded), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    return report

daemon.Daemon.tick = tick
from guard.entry.launch import main
main()
"""


def test_run_ticks_without_the_command_line_slack_or_postgresql(tmp_path: Path) -> None:
    """A plain `guard run` on SQLite, no Slack, through its first tick: no typer or rich (nor
    httpx's command line, which would bring them), no slack-sdk, no PostgreSQL dialect."""
    from guard.sim import SimClock, SimOrg, SimServer  # noqa: PLC0415

    key = "sk-ant-admin01-launch-run"
    with SimServer(SimOrg.generate(3), SimClock(datetime.now(UTC)), admin_key=key) as sim:
        cfg = tmp_path / "guard.toml"
        cfg.write_text(f'[anthropic]\nadmin_api_key = "{key}"\nbase_url = "{sim.base_url}"\n'
                       f'[state]\nurl = "sqlite:///{tmp_path / "state.db"}"\n'
                       f'[fallback]\nenv_file = "{tmp_path / "model.env"}"\n'
                       f'state_file = "{tmp_path / "fallback.json"}"\n'
                       '[http]\nlisten = "127.0.0.1:0"\n'
                       '[[budgets]]\nname = "org"\nscope = "organization"\n'
                       "soft_limit_usd = 100\nhard_limit_usd = 1000\n")
        code = RUN.replace("{skips}", repr(IDLE_DAEMON_SKIPS))
        result = subprocess.run([sys.executable, "-c", code, "--config", str(cfg), "run"],
                                capture_output=True, text=True, check=False, timeout=120,
                                cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == ["ticked: True loaded: "]


def test_run_with_options_goes_on_to_the_command_line() -> None:
    """`guard run --help` is typer's help; only the plain form skips the command line."""
    out = probe("run", "--help")
    assert "poll_interval_s" in out and "typer" in out.splitlines()[-1]


@pytest.mark.parametrize(("args", "form"), [
    pytest.param(["run"], (None,), id="plain"),
    pytest.param(["--config", "g.toml", "run"], (Path("g.toml"),), id="config"),
    pytest.param(["--config=g.toml", "run"], (Path("g.toml"),), id="config-equals"),
    pytest.param(["run", "--help"], None, id="help"),
    pytest.param(["run", "run"], None, id="twice"),
    pytest.param(["--config", "run"], None, id="config-missing"),
    pytest.param(["check"], None, id="other-command"),
])
def test_only_the_plain_run_skips_the_command_line(args: list[str],
                                                   form: tuple[Path | None] | None) -> None:
    """What launch starts the daemon on itself; anything else is the command line's."""
    assert run_form(args) == form
