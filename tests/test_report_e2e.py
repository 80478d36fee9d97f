"""`guard report` end to end over real HTTP against the simulated Admin API, on the legacy
reports (``source = "legacy"``; the analytics source is ``test_billed_e2e``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from guard.entry.cli import app
from guard.sim import Fault, SimClock, SimOrg, SimServer

KEY = "sk-ant-admin-e2e-fake"
MONTH = datetime(2026, 3, 1, tzinfo=UTC)
ORG = SimOrg.generate(7)


@pytest.fixture
def sim() -> Iterator[SimServer]:
    """The simulated organization served on loopback, its clock at the start of March."""
    with SimServer(ORG, SimClock(MONTH), admin_key=KEY) as server:
        yield server


def budgets() -> list[dict[str, Any]]:
    """One budget per scope, the default workspace included."""
    return [
        {"name": "org", "scope": "organization"},
        {"name": "default-ws", "scope": "workspace", "match": "default"},
        {"name": "first-ws", "scope": "workspace", "match": ORG.workspaces[0].id},
        {"name": "first-key", "scope": "api_key", "match": ORG.api_keys[0].id},
        {"name": "opus", "scope": "model", "match": "claude-opus"},
        {"name": "sonnet-4-5", "scope": "model", "match": "claude-sonnet-4-5"},
    ]


def write_config(path: Path, base_url: str, state: Path, **anthropic: object) -> Path:
    lines = ["[anthropic]", f'admin_api_key = "{KEY}"', f'base_url = "{base_url}"']
    lines += [f"{k} = {v}" for k, v in anthropic.items()]
    lines += ["[state]", f'url = "sqlite:///{state}"']
    for b in budgets():
        lines += ["[[budgets]]", f'name = "{b["name"]}"', f'scope = "{b["scope"]}"']
        lines += [f'match = "{b["match"]}"'] if "match" in b else []
        lines += ["soft_limit_usd = 800", "hard_limit_usd = 1000"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def config(tmp_path: Path, sim: SimServer) -> Path:
    return write_config(tmp_path / "guard.toml", sim.base_url, tmp_path / "state.db",
                        max_retries=2, source='"legacy"')


def report(config: Path, at: datetime) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(app, ["--config", str(config), "report", "--json",
                                      "--at", at.strftime("%Y-%m-%dT%H:%M:%SZ")])
    body = json.loads(result.stdout, parse_float=Decimal) if result.exit_code == 0 else {}
    return result.exit_code, body, result.stderr


def truth_usd(budget: dict[str, Any], start: datetime, end: datetime) -> Decimal:
    return ORG.truth_cents(start, end, budget["scope"], budget.get("match")) / 100


def test_the_simulated_month_has_every_priced_feature() -> None:
    """The exactness checks below are only meaningful if the data exercises every price rule."""
    rows = list(ORG.usage(MONTH, MONTH + timedelta(days=3)))
    assert any(r.cache_write_5m for r in rows) and any(r.cache_write_1h for r in rows)
    assert any(r.cache_read for r in rows) and any(r.web_search_requests for r in rows)
    assert any(r.service_tier == "batch" for r in rows)
    assert any(r.workspace_id is None for r in rows)
    assert any(r.context_window == "200k-1M" for r in rows)
    assert any(r.inference_geo == "us" for r in rows)
    assert any(r.model == "claude-nova-1" for r in ORG.usage(MONTH, MONTH + timedelta(days=31)))


@pytest.mark.parametrize("at", [
    pytest.param(datetime(2026, 3, 1, 18, 42, tzinfo=UTC), id="start-of-month"),
    pytest.param(datetime(2026, 3, 15, 13, 37, tzinfo=UTC), id="middle"),
    pytest.param(datetime(2026, 3, 31, 22, 10, tzinfo=UTC), id="last-day"),
])
def test_spend_equals_ground_truth(sim: SimServer, config: Path, at: datetime) -> None:
    """Billed days match the simulator to the cent; the whole month within 0.1 %."""
    sim.clock.set(at)
    code, body, stderr = report(config, at)
    assert code == 0, stderr
    visible_end = at.replace(second=0) - sim.lag
    billed_end = (datetime.fromisoformat(body["authoritative_through"]).replace(tzinfo=UTC)
                  + timedelta(days=1)) if body["authoritative_through"] else MONTH
    assert billed_end == (MONTH if at.day == 1 else at.replace(hour=0, minute=0))
    for spent, budget in zip(body["budgets"], budgets(), strict=True):
        truth = truth_usd(budget, MONTH, visible_end)
        assert abs(spent["spend_usd"] - truth) <= truth * Decimal("0.001"), budget["name"]
        if budget["scope"] != "api_key":
            billed_truth = truth_usd(budget, MONTH, billed_end)
            assert abs(spent["authoritative_usd"] - billed_truth) < Decimal("0.005"), budget
        else:
            assert spent["authoritative_usd"] == 0
    assert body["data_through"] == at.strftime("%Y-%m-%dT%H:%M:00Z")


def test_no_data_after_at_is_requested(sim: SimServer, config: Path) -> None:
    """--at in the past never asks the API for anything after it."""
    sim.clock.set(datetime(2026, 3, 20, tzinfo=UTC))
    at = datetime(2026, 3, 9, 7, 45, tzinfo=UTC)
    code, body, _ = report(config, at)
    assert code == 0
    ends = [datetime.fromisoformat(r.query["ending_at"][0]) for r in sim.requests
            if "ending_at" in r.query]  # the workspace and key lists are not time-bound
    assert ends and max(ends) <= at
    assert body["api_requests"] == len(sim.requests)


@pytest.mark.parametrize("day", [2, 28])
def test_a_report_one_minute_later_makes_at_most_three_requests(
        sim: SimServer, config: Path, day: int) -> None:
    """After a first full refresh, the next report costs ≤ 3 Admin API requests."""
    first = datetime(2026, 3, day, 14, 3, tzinfo=UTC)
    sim.clock.set(first)
    assert report(config, first)[0] == 0
    for minutes in (1, 8, 60):
        later = first + timedelta(minutes=minutes)
        sim.clock.set(later)
        sim.clear_requests()
        code, body, _ = report(config, later)
        assert code == 0
        assert body["api_requests"] == len(sim.requests) <= 3, minutes


def test_a_429_with_retry_after_is_waited_out(sim: SimServer, config: Path) -> None:
    """The simulated API rate-limits once; the report waits and succeeds."""
    at = datetime(2026, 3, 4, 10, tzinfo=UTC)
    sim.clock.set(at)
    sim.inject(Fault(status=429, retry_after="1", path="cost_report"))
    code, body, stderr = report(config, at)
    assert code == 0, stderr
    assert body["api_requests"] == len(sim.requests)
    assert [r.path for r in sim.requests].count("/v1/organizations/cost_report") >= 2


def test_persistent_5xx_exits_3_with_a_clear_message(sim: SimServer, config: Path) -> None:
    """Every request failing ends in exit 3 and one readable line, not a traceback."""
    at = datetime(2026, 3, 4, 10, tzinfo=UTC)
    sim.clock.set(at)
    sim.inject(Fault(status=503, count=100))
    code, _, stderr = report(config, at)
    assert code == 3
    assert "Admin API unavailable after 3 attempts" in stderr
    assert "Traceback" not in stderr


def test_a_malformed_page_is_reported_with_its_location(sim: SimServer, config: Path) -> None:
    """A corrupted cost amount is an error naming bucket and result, never $0."""
    def corrupt(payload: dict[str, Any]) -> None:
        payload["data"][1]["results"][0]["amount"] = "twelve"

    at = datetime(2026, 3, 4, 10, tzinfo=UTC)
    sim.clock.set(at)
    sim.inject(Fault(path="cost_report", corrupt=corrupt))
    code, _, stderr = report(config, at)
    assert code == 3
    assert "cost_report bucket 1, result 0: `amount` is not a decimal" in stderr


def test_a_rejected_key_says_so_without_echoing_it(tmp_path: Path, sim: SimServer) -> None:
    """A wrong admin key is a clear 'admin key rejected' and the key never appears."""
    wrong = "sk-ant-admin01-wrong-key-value"
    cfg = write_config(tmp_path / "guard.toml", sim.base_url, tmp_path / "state.db")
    cfg.write_text(cfg.read_text().replace(KEY, wrong))
    code, _, stderr = report(cfg, datetime(2026, 3, 4, 10, tzinfo=UTC))
    assert code == 3
    assert "admin key rejected" in stderr
    assert wrong not in stderr


def test_the_console_script_exits_3_in_a_real_process(tmp_path: Path, sim: SimServer) -> None:
    """`python -m guard report` in its own process: exit 3 and a message on stderr."""
    cfg = write_config(tmp_path / "guard.toml", sim.base_url, tmp_path / "state.db",
                       max_retries=0)
    sim.inject(Fault(status=500, count=10))
    done = subprocess.run([sys.executable, "-m", "guard", "--config", str(cfg), "report",
                           "--at", "2026-03-04T10:00:00Z"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 3
    assert "Admin API unavailable" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_the_table_shows_every_budget(sim: SimServer, config: Path) -> None:
    """Without --json the report is a table naming each budget and its limits."""
    at = datetime(2026, 3, 10, 12, tzinfo=UTC)
    sim.clock.set(at)
    result = CliRunner().invoke(app, ["--config", str(config), "report", "--at",
                                      "2026-03-10T12:00:00Z"], terminal_width=200)
    assert result.exit_code == 0, result.stderr
    for b in budgets():
        assert b["name"] in result.stdout
    assert "$1,000.00" in result.stdout and "data through 2026-03-10T12:00:00Z" in result.stdout


def test_report_forecasts_the_month_and_names_firing_conditions(tmp_path: Path,
                                                                 sim: SimServer) -> None:
    """Mid-month, P50 lands near the simulator's month and a tight budget fires hard_likely."""
    month_usd = ORG.truth_cents(MONTH, datetime(2026, 4, 1, tzinfo=UTC), "organization") / 100
    cfg = tmp_path / "guard.toml"
    cfg.write_text(f'[anthropic]\nadmin_api_key = "{KEY}"\nbase_url = "{sim.base_url}"\n'
                   f'[state]\nurl = "sqlite:///{tmp_path / "s.db"}"\n'
                   '[[budgets]]\nname = "roomy"\nscope = "organization"\n'
                   f"soft_limit_usd = {int(month_usd * 2)}\nhard_limit_usd = {int(month_usd * 3)}\n"
                   '[[budgets]]\nname = "tight"\nscope = "organization"\n'
                   f"soft_limit_usd = {int(month_usd * D_(0.3))}\n"
                   f"hard_limit_usd = {int(month_usd * D_(0.85))}\n")
    at = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
    sim.clock.set(at)
    code, body, stderr = report(cfg, at)
    assert code == 0, stderr
    roomy, tight = body["budgets"]
    f = roomy["forecast"]
    assert f["gated_in"] and f["history_days"] >= 14
    assert f["p10_usd"] <= f["p50_usd"] <= f["p90_usd"]
    assert abs(f["p50_usd"] - month_usd) <= month_usd * Decimal("0.05")
    assert roomy["firing"] == [] and roomy["ceiling"] is None
    assert tight["firing"] == ["soft_reached", "hard_at_risk", "hard_likely"]
    assert tight["ceiling"] == "sonnet"
    assert tight["forecast"]["exhaustion_day"] is not None
    assert set(tight["burn"]["tiers"]) == {"fast", "slow"} and tight["burn"]["tripped"] is None


def D_(x: float) -> Decimal:
    return Decimal(str(x))


def first_unknown_model_hour() -> datetime:
    return next(MONTH + timedelta(hours=h) for h in range(31 * 24)
                if any(r.model == "claude-nova-1"
                       for r in ORG.usage_hour(MONTH + timedelta(hours=h))))


@pytest.mark.parametrize(("after", "unpriced"), [
    pytest.param(False, [], id="before-the-unknown-model-appears"),
    pytest.param(True, ["claude-nova-1"], id="after"),
])
def test_models_the_price_table_does_not_know_are_listed(sim: SimServer, config: Path,
                                                         after: bool,
                                                         unpriced: list[str]) -> None:
    """`unpriced_models` names this month's models without a card, each with a warning."""
    first = first_unknown_model_hour()
    at = first + timedelta(hours=2) if after else first - timedelta(minutes=30)
    assert at > MONTH
    sim.clock.set(at)
    code, body, stderr = report(config, at)
    assert code == 0, stderr
    assert body["unpriced_models"] == unpriced
    assert [w.split(" ")[1] for w in body["warnings"]] == unpriced


def test_a_price_card_ten_percent_off_shows_as_price_drift(sim: SimServer, tmp_path: Path) -> None:
    """With Sonnet 4.6's card 10 % dear, the newest billed day reports drift for it alone."""
    at = datetime(2026, 3, 15, 12, tzinfo=UTC)
    sim.clock.set(at)
    config = write_config(tmp_path / "guard.toml", sim.base_url, tmp_path / "state.db",
                          max_retries=2)
    config.write_text(config.read_text() + '[pricing]\n"claude-sonnet-4-6" = '
                      '{ input = 3.3, output = 16.5, inference_geo_us = true }\n')
    code, body, stderr = report(config, at)
    assert code == 0, stderr
    [drift] = body["price_drift"]
    assert (drift["model"], drift["day"]) == ("claude-sonnet-4-6", "2026-03-14")
    assert abs(drift["ratio"] - Decimal("1.1")) < Decimal("0.001")
    assert drift["estimated_usd"] > drift["billed_usd"] > 0
    assert any(w.startswith("price drift: claude-sonnet-4-6") for w in body["warnings"])
