"""Billed truth end to end: `guard report`/`doctor` over real HTTP against the simulator's
analytics API (7 % negotiated discount, 4 h watermark lag, fast-mode traffic), and the legacy
fallback when that API answers 400."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from guard.entry.cli import app
from guard.sim import Fault, SimClock, SimOrg, SimServer

KEY = "sk-ant-admin-billed-e2e"
MONTH = datetime(2026, 11, 1, tzinfo=UTC)
ORG = SimOrg.generate(11)
DISCOUNT = Decimal("0.07")
LAG = timedelta(hours=4)
JSON_DIGIT = Decimal("0.0001")
"""JSON amounts carry four decimals."""


def sim_server(**knobs: Any) -> SimServer:
    return SimServer(ORG, SimClock(MONTH), admin_key=KEY, discount=DISCOUNT,
                     analytics_lag=LAG, **knobs)


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with sim_server() as server:
        yield server


def busiest_key() -> str:
    totals: dict[str, Decimal] = {}
    for row in ORG.usage(MONTH, MONTH + timedelta(days=2)):
        if row.api_key_id:
            totals[row.api_key_id] = totals.get(row.api_key_id, Decimal(0)) + row.token_cents()
    return max(totals, key=lambda k: totals[k])


def budgets() -> list[dict[str, Any]]:
    """One budget per scope, the default workspace and a model prefix included."""
    return [
        {"name": "org", "scope": "organization"},
        {"name": "default-ws", "scope": "workspace", "match": "default"},
        {"name": "first-ws", "scope": "workspace", "match": ORG.workspaces[0].id},
        {"name": "busy-key", "scope": "api_key", "match": busiest_key()},
        {"name": "opus", "scope": "model", "match": "claude-opus"},
        {"name": "sonnet-5-5", "scope": "model", "match": "claude-sonnet-5-5"},
    ]


def write_config(path: Path, base_url: str, state: Path, extra: str = "",
                 hard_usd: int = 1000) -> Path:
    lines = ["[anthropic]", f'admin_api_key = "{KEY}"', f'base_url = "{base_url}"',
             "max_retries = 2", "[state]", f'url = "sqlite:///{state}"']
    for b in budgets():
        lines += ["[[budgets]]", f'name = "{b["name"]}"', f'scope = "{b["scope"]}"']
        lines += [f'match = "{b["match"]}"'] if "match" in b else []
        lines += [f"soft_limit_usd = {hard_usd * 4 // 5}", f"hard_limit_usd = {hard_usd}"]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


@pytest.fixture
def config(tmp_path: Path, sim: SimServer) -> Path:
    return write_config(tmp_path / "guard.toml", sim.base_url, tmp_path / "state.db")


def report(config: Path, at: datetime) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["--config", str(config), "report", "--json",
                                      "--at", at.strftime("%Y-%m-%dT%H:%M:%SZ")])
    assert result.exit_code == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout, parse_float=Decimal)
    return body


def watermark(at: datetime) -> datetime:
    return (at - LAG).replace(minute=0, second=0, microsecond=0)


def billed_usd(sim: SimServer, budget: dict[str, Any], start: datetime, end: datetime) -> Decimal:
    return sim.billed_truth_cents(start, end, budget["scope"], budget.get("match")) / 100


INSTANTS = [
    pytest.param(datetime(2026, 11, 1, 3, 10, tzinfo=UTC), id="day-1-early"),
    pytest.param(datetime(2026, 11, 15, 13, 37, tzinfo=UTC), id="mid-month"),
    pytest.param(datetime(2026, 11, 30, 22, 10, tzinfo=UTC), id="last-day"),
]


def test_the_simulated_month_is_mostly_the_5_5_family_with_fast_mode() -> None:
    rows = list(ORG.usage(MONTH, MONTH + timedelta(days=2)))
    cents = sum((r.token_cents() for r in rows), Decimal(0))
    family = sum((r.token_cents() for r in rows if r.model.endswith("-5-5")), Decimal(0))
    assert family > cents / 2
    assert any(r.speed == "fast" for r in rows)


@pytest.mark.parametrize("at", INSTANTS)
def test_every_budget_follows_the_bill(sim: SimServer, config: Path, at: datetime) -> None:
    """Billed through the watermark to the cent (the api_key budget included); the whole
    month, the calibrated tail included, within 0.1 % of the billed ground truth."""
    sim.clock.set(at)
    body = report(config, at)
    through = watermark(at)
    assert body["source"] == "analytics"
    assert body["billed_through"] == through.strftime("%Y-%m-%dT%H:%M:%SZ")
    visible_end = at.replace(second=0) - sim.lag
    billed_from = max(MONTH, through)
    for spent, budget in zip(body["budgets"], budgets(), strict=True):
        billed = billed_usd(sim, budget, MONTH, billed_from)
        assert abs(spent["authoritative_usd"] - billed) < Decimal("0.005"), budget["name"]
        truth = billed_usd(sim, budget, MONTH, visible_end)
        assert abs(spent["spend_usd"] - truth) <= truth * Decimal("0.001") + JSON_DIGIT, (
            budget["name"])
    key = body["budgets"][3]
    assert key["authoritative_usd"] > 0 or at.day == 1


def test_the_legacy_reports_when_the_analytics_api_answers_400(tmp_path: Path) -> None:
    """HIPAA readiness: `auto` falls back, says so, and stays within 0.1 % of the legacy
    ground truth; `guard doctor` gives the reason."""
    at = datetime(2026, 11, 15, 13, 37, tzinfo=UTC)
    with sim_server(hipaa=True) as sim:
        sim.clock.set(at)
        config = write_config(tmp_path / "guard.toml", sim.base_url, tmp_path / "state.db")
        body = report(config, at)
        assert body["source"] == "legacy"
        assert any("HTTP 400" in w for w in body["warnings"])
        visible_end = at.replace(second=0) - sim.lag
        for spent, budget in zip(body["budgets"], budgets(), strict=True):
            truth = sim.list_truth_cents(MONTH, visible_end, budget["scope"],
                                         budget.get("match")) / 100
            assert abs(spent["spend_usd"] - truth) <= truth * Decimal("0.001") + JSON_DIGIT, (
                budget["name"])
        doctor = CliRunner().invoke(app, ["--config", str(config), "doctor"])
        line = next(x for x in doctor.stdout.splitlines() if "billing source" in x)
        assert line.startswith("WARN") and "HTTP 400" in line and "legacy" in line


def test_a_price_wrong_by_ten_percent_shows_as_drift_after_one_billed_day(
        tmp_path: Path) -> None:
    at = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
    with sim_server(price_errors={"claude-sonnet-5-5": Decimal("1.10")}) as sim:
        sim.clock.set(at)
        config = write_config(tmp_path / "guard.toml", sim.base_url, tmp_path / "state.db")
        body = report(config, at)
    drift = {d["model"]: d for d in body["price_drift"]}
    assert set(drift) == {"claude-sonnet-5-5"}
    assert drift["claude-sonnet-5-5"]["day"] == "2026-11-02"
    assert abs(Decimal(str(drift["claude-sonnet-5-5"]["ratio"])) - Decimal(1) / Decimal(
        "1.1")) < Decimal("0.005")
    assert any("price drift: claude-sonnet-5-5" in w for w in body["warnings"])


def nova_moment() -> tuple[datetime, str]:
    """An instant one hour after an hour with unknown-model usage, and its key."""
    for hour in range(24 * 28):
        start = MONTH + timedelta(hours=hour)
        for row in ORG.usage_hour(start):
            if row.model == "claude-nova-1" and row.api_key_id:
                return start + timedelta(hours=1, minutes=30), row.api_key_id
    raise AssertionError("the simulated month has no unknown-model usage")


def test_an_unknown_model_is_listed_and_holds_the_key_hard_stop(tmp_path: Path,
                                                                sim: SimServer) -> None:
    at, key = nova_moment()
    sim.clock.set(at)
    extra = "\n".join(["[enforcement]", "enabled = true", "dry_run = false",
                       "[[budgets]]", 'name = "nova-key"',
                       'scope = "api_key"', f'match = "{key}"', "soft_limit_usd = 0.001",
                       "hard_limit_usd = 0.002"]) + "\n"
    config = write_config(tmp_path / "guard.toml", sim.base_url, tmp_path / "state.db", extra,
                          hard_usd=10**7)
    result = CliRunner().invoke(app, ["--config", str(config), "check", "--json", "--at",
                                      at.strftime("%Y-%m-%dT%H:%M:%SZ")])
    body = json.loads(result.stdout)
    assert "claude-nova-1" in body["unpriced_models"]
    assert body["keys"] == []
    assert any("nova-key" in w and "billed" in w for w in body["warnings"])
    assert sim.key_status(key) == "active"


@pytest.mark.parametrize("day", [2, 28])
def test_a_steady_refresh_one_minute_later_makes_at_most_three_requests(
        sim: SimServer, config: Path, day: int) -> None:
    first = datetime(2026, 11, day, 14, 3, tzinfo=UTC)
    sim.clock.set(first)
    report(config, first)
    for minutes in (1, 8, 60):
        later = first + timedelta(minutes=minutes)
        sim.clock.set(later)
        sim.clear_requests()
        body = report(config, later)
        assert body["source"] == "analytics"
        assert body["api_requests"] == len(sim.requests) <= 3, minutes
    assert any("analytics" in r.path for r in sim.requests)  # the 60-minute one re-reads


def test_an_expired_cursor_restarts_paging_and_loses_nothing(sim: SimServer,
                                                             config: Path) -> None:
    at = datetime(2026, 11, 15, 13, 37, tzinfo=UTC)
    sim.clock.set(at)
    sim.inject(Fault(status=410, path="/analytics/cost"))
    body = report(config, at)
    org = billed_usd(sim, budgets()[0], MONTH, watermark(at))
    assert abs(body["budgets"][0]["authoritative_usd"] - org) < Decimal("0.005")


def test_revised_hours_are_read_again(tmp_path: Path) -> None:
    """Late billing rows of an already reported hour reach the store once re-read."""
    at = datetime(2026, 11, 15, 13, 37, tzinfo=UTC)
    with sim_server(revision_hours=2) as sim:
        sim.clock.set(at)
        state = tmp_path / "state.db"
        config = write_config(tmp_path / "guard.toml", sim.base_url, state)
        report(config, at)
        first_mark = watermark(at)
        org = budgets()[0]
        stored = billed_in_store(state, MONTH, first_mark)
        assert stored < billed_usd(sim, org, MONTH, first_mark)  # two hours not final yet
        later = at + timedelta(hours=3)
        sim.clock.set(later)
        report(config, later)
        assert abs(billed_in_store(state, MONTH, first_mark)
                   - billed_usd(sim, org, MONTH, first_mark)) < Decimal("0.005")


def billed_in_store(state: Path, start: datetime, end: datetime) -> Decimal:
    with sqlite3.connect(state) as db:
        (units,) = db.execute("SELECT SUM(token_units + other_units) FROM billed_hours "
                              "WHERE hour >= ? AND hour < ?",
                              (int(start.timestamp()), int(end.timestamp()))).fetchone()
    return Decimal(units or 0) / 10**10


def test_history_days_read_as_two_marginals_equal_the_days_read_by_both(
        sim: SimServer) -> None:
    """A history day is read grouped by workspace, then by model and cost type: the same cost
    days as one read grouped by workspace, model and cost type together (each row's amount is
    rounded to the API's 1e-6 cents, so sums of finer rows differ in the 8th decimal)."""
    from guard.core import billed  # noqa: PLC0415
    from guard.entry import wiring  # noqa: PLC0415
    from guard.shell.billed import HISTORY_BY_MODEL, HISTORY_BY_WORKSPACE  # noqa: PLC0415

    sim.clock.set(MONTH + timedelta(days=3))
    client = wiring.admin_at(sim.base_url, KEY)
    start, end = MONTH, MONTH + timedelta(days=2)
    try:
        both = client.analytics_cost(start, end, "1d", ("workspace_id", "model", "cost_type"))
        spaces = client.analytics_cost(start, end, "1d", HISTORY_BY_WORKSPACE)
        models = client.analytics_cost(start, end, "1d", HISTORY_BY_MODEL)
    finally:
        client.http.close()
    named = {w.id for w in ORG.workspaces}
    expected = billed.cost_days(both.rows, named, end)
    got = billed.marginal_cost_days(spaces.rows, models.rows, named, end)
    assert [d.day for d in got] == [start.date(), (start + timedelta(days=1)).date()]
    tiny = Decimal("0.000001")
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.by_workspace.keys() == theirs.by_workspace.keys()
        assert mine.by_model.keys() == theirs.by_model.keys()
        pairs = [(mine.list_usd, theirs.list_usd),
                 *((mine.by_workspace[w], theirs.by_workspace[w]) for w in mine.by_workspace),
                 *((mine.by_model[m], theirs.by_model[m]) for m in mine.by_model)]
        assert all(a is not None and b is not None and abs(a - b) < tiny for a, b in pairs)
    assert len(spaces.rows) + len(models.rows) < len(both.rows)
    assert all(d.by_model and d.by_workspace and d.list_usd for d in got)
