"""The backtest: synthetic series, history files and export, the replay harness, the command."""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import guard.backtest
from guard.adapters.admin.client import AdminClient
from guard.backtest import (
    Backtest,
    Shape,
    backtest,
    load_history,
    replay_org,
    runaway,
    synthetic_org,
    synthetic_orgs,
)
from guard.backtest.alerts import CONDITIONS, replay_alerts, score_alerts
from guard.backtest.command import export_start
from guard.backtest.harness import naive_run_rate, replay_month, scoreable_months
from guard.backtest.history import export_history, history_csv
from guard.backtest.synthetic import daily_series
from guard.core.policy import Condition
from guard.entry.cli import app
from guard.errors import ConfigError

START = date(2025, 1, 1)
FLAT = Shape(start_level=100.0, monthly_growth=0.0, weekend_factor=1.0, noise_sigma=0.0,
             step_chance=0.0, spike_chance=0.0, incident_chance=0.0)


# --- synthetic generator ----------------------------------------------------------------------


def test_same_seed_same_series() -> None:
    """A seed always yields the same series; another seed yields another."""
    assert synthetic_org(7) == synthetic_org(7)
    assert synthetic_org(7) != synthetic_org(8)


def test_series_covers_whole_months_in_decimal() -> None:
    """13 months from January 2025 are 396 consecutive days of positive 4-place Decimals."""
    series = synthetic_org(3)
    assert sorted(series) == _days(START, date(2026, 2, 1))
    assert len(series) == 396
    assert all(isinstance(v, Decimal) and v > 0 and v.as_tuple().exponent == -4
               for v in series.values())


def test_weekends_are_cheaper_than_weekdays() -> None:
    """Over many organizations, a weekend day costs less than a weekday on average."""
    ratios = []
    for series in synthetic_orgs(20, seed=5).values():
        weekend = [v for d, v in series.items() if d.weekday() >= 5]
        weekday = [v for d, v in series.items() if d.weekday() < 5]
        ratios.append(statistics.fmean(weekend) / statistics.fmean(weekday))
    assert statistics.fmean(float(r) for r in ratios) < 0.9


def test_level_grows_by_the_monthly_rate() -> None:
    """Without noise, 5 % monthly growth compounds day by day: a year later, about 1.05¹²."""
    shape = dataclasses.replace(FLAT, monthly_growth=0.05)
    series = daily_series(shape, random.Random(1), 13, START)
    growth = series[date(2026, 1, 1)] / series[START]
    assert Decimal("1.78") < growth < Decimal("1.80")


def test_synthetic_organizations_grow_on_average() -> None:
    """The drawn population spends more in its last month than in its first, typically."""
    ratios = [_month_total(s, date(2026, 1, 1)) / _month_total(s, START)
              for s in synthetic_orgs(20, seed=2).values()]
    assert statistics.median(ratios) > 1


# --- history files ----------------------------------------------------------------------------


def test_csv_history_keeps_exact_decimals(tmp_path: Path) -> None:
    """CSV amounts are read as exact Decimals, one per ISO date."""
    path = _write(tmp_path / "h.csv", "date,amount_usd\n2026-01-01,123.45\n\n2026-01-02,0.1\n")
    assert load_history(path) == {date(2026, 1, 1): Decimal("123.45"),
                                  date(2026, 1, 2): Decimal("0.1")}


def test_json_history_reads_strings_and_numbers_exactly(tmp_path: Path) -> None:
    """JSON amounts may be strings or numbers; 0.1 stays exactly 0.1, never a float."""
    days = '[{"date": "2026-01-01", "amount_usd": "123.45"}, ' \
           '{"date": "2026-01-02", "amount_usd": 0.1}, {"date": "2026-01-03", "amount_usd": 7}]'
    path = _write(tmp_path / "h.json", f'{{"days": {days}}}')
    assert load_history(path) == {date(2026, 1, 1): Decimal("123.45"),
                                  date(2026, 1, 2): Decimal("0.1"),
                                  date(2026, 1, 3): Decimal(7)}


@pytest.mark.parametrize(("name", "text", "message"), [
    pytest.param("h.csv", "date,amount_usd\n2026-01-01,1\n2026-01-02,abc\n",
                 "line 3, `amount_usd`: not a decimal: 'abc'", id="csv-amount"),
    pytest.param("h.csv", "date,amount_usd\n01/02/2026,1\n",
                 "line 2, `date`: not an ISO date", id="csv-date"),
    pytest.param("h.csv", "day,usd\n2026-01-01,1\n", "line 1: the header must be", id="header"),
    pytest.param("h.csv", "date,amount_usd\n2026-01-01,1,2\n", "line 2: expected 2 fields",
                 id="csv-fields"),
    pytest.param("h.csv", "date,amount_usd\n2026-01-01,-1\n", "line 2, `amount_usd`: must be",
                 id="negative"),
    pytest.param("h.csv", "date,amount_usd\n2026-01-01,1\n2026-01-01,2\n",
                 "line 3, `date`: 2026-01-01 appears twice", id="duplicate"),
    pytest.param("h.json", '{"days": [{"date": "2026-01-01", "amount_usd": "1"}, '
                           '{"date": "2026-01-02"}]}',
                 "days[1]: `amount_usd` is missing", id="json-missing"),
    pytest.param("h.json", '{"days": [{"date": "2026-01-01", "amount_usd": true}]}',
                 "days[0], `amount_usd`: not a decimal: True", id="json-bool"),
    pytest.param("h.json", '{"days": [{"date": "2026-01-01", "amount_usd": "NaN"}]}',
                 "days[0], `amount_usd`: must be a finite", id="json-nan"),
    pytest.param("h.json", '{"day": []}', "`days` must be a list", id="json-shape"),
    pytest.param("h.json", "{", "not JSON", id="json-syntax"),
    pytest.param("h.txt", "", "expected a .csv or .json file", id="suffix"),
])
def test_a_bad_history_file_names_where(tmp_path: Path, name: str, text: str,
                                        message: str) -> None:
    """A malformed file raises ConfigError naming the line or index and the field."""
    path = _write(tmp_path / name, text)
    with pytest.raises(ConfigError) as info:
        load_history(path, "--history")
    assert info.value.problems[0][0] == "--history"
    assert message in info.value.problems[0][1]


def test_a_missing_history_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that cannot be read is reported, not raised as an OSError."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_history(tmp_path / "absent.csv")


# --- export from the Admin API ----------------------------------------------------------------


def test_export_follows_every_page_and_converts_cents(tmp_path: Path) -> None:
    """Every cost page is fetched, rows of a day summed, cents written as dollars."""
    pages = {None: _page(["2026-01-01", "2026-01-02"], [["12345", "55.5"], []], "p2"),
             "p2": _page(["2026-01-03"], [["1"]], None)}
    seen: list[httpx.Request] = []
    client = _client(lambda request: _answer(request, pages, seen))
    path = tmp_path / "export.csv"
    assert export_history(client, date(2026, 1, 1), date(2026, 1, 4), path) == 3
    assert [r.url.params.get("page") for r in seen] == [None, "p2"]
    assert seen[0].url.params["bucket_width"] == "1d"
    assert "group_by[]" not in seen[0].url.params
    assert load_history(path) == {date(2026, 1, 1): Decimal("124.005"),
                                  date(2026, 1, 2): Decimal(0),
                                  date(2026, 1, 3): Decimal("0.01")}


def test_export_starts_13_months_back_by_default() -> None:
    """Without --since, the export starts on the first of the month 13 months ago."""
    assert export_start(None, date(2026, 3, 15)) == date(2025, 2, 1)
    assert export_start("2025-06-10", date(2026, 3, 15)) == date(2025, 6, 10)
    with pytest.raises(ConfigError, match="--since"):
        export_start("June", date(2026, 3, 15))


# --- the harness ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eight_orgs() -> Backtest:
    """Eight synthetic organizations of 13 months, replayed once for the module."""
    return backtest(synthetic_orgs(8, seed=1), workers=2)


def test_harness_scores_every_checkpoint(eight_orgs: Backtest) -> None:
    """Days 5, 10, 15, 20 each score 8 orgs × 11 months with finite metrics and shares."""
    assert [s.day for s in eight_orgs.scores] == [5, 10, 15, 20]
    for score in eight_orgs.scores:
        assert score.cases == 88
        values = (score.ours.mape, score.ours.median_ape, score.naive.mape, score.ratio)
        assert all(v.is_finite() and v >= 0 for v in values)
        assert 0 <= score.p10_coverage <= 1 and 0 <= score.p90_coverage <= 1


def test_ours_beats_the_naive_run_rate_at_day_5(eight_orgs: Backtest) -> None:
    """At day 5 our P50 has a lower MAPE than MTD/(d−1)×D."""
    day5 = eight_orgs.scores[0]
    assert day5.ours.mape < day5.naive.mape


def test_each_month_exposes_its_days_and_total(eight_orgs: Backtest) -> None:
    """Every replayed month carries its daily series and its realised total, for alerts."""
    org = eight_orgs.orgs[0]
    march = org.months[0]
    assert march.month == date(2025, 3, 1) and len(org.months) == 11
    assert march.days == tuple(org.series[date(2025, 3, d)] for d in range(1, 32))
    assert march.total == sum(march.days)


def test_a_forecast_sees_nothing_from_its_own_day_on() -> None:
    """Changing spend on and after the day-10 watermark leaves the day-10 forecast alone."""
    series = synthetic_org(4, months=4)
    later = {d: v * 3 if d >= date(2025, 4, 10) else v for d, v in series.items()}
    before = replay_month("a", series, date(2025, 4, 1), (10,)).cases[0]
    after = replay_month("a", later, date(2025, 4, 1), (10,)).cases[0]
    assert before == after


def test_naive_run_rate_extrapolates_complete_days() -> None:
    """At the start of day 5, four complete days of $40 in a 30-day month make $300."""
    assert naive_run_rate(Decimal(40), 5, 30) == Decimal(300)


@pytest.mark.parametrize(("first", "gap", "expected"), [
    pytest.param(date(2025, 1, 1), None, [date(2025, 3, 1), date(2025, 4, 1)], id="full"),
    pytest.param(date(2025, 1, 15), None, [date(2025, 4, 1)], id="mid-month-start"),
    pytest.param(date(2025, 1, 1), date(2025, 3, 9), [date(2025, 4, 1)], id="missing-day"),
])
def test_scoreable_months_need_two_months_before(first: date, gap: date | None,
                                                 expected: list[date]) -> None:
    """Only complete months after two full calendar months of history are replayed."""
    series = {d: Decimal(1) for d in _days(first, date(2025, 5, 1)) if d != gap}
    assert scoreable_months(series) == expected


# --- the command ------------------------------------------------------------------------------


def test_backtest_command_prints_the_table() -> None:
    """`guard backtest --orgs 4 --months 6` prints the header and one row per checkpoint."""
    result = CliRunner().invoke(app, ["backtest", "--orgs", "4", "--months", "6",
                                      "--runaway-orgs", "2"])
    assert result.exit_code == 0, result.output
    assert "Backtest: 4 orgs, 16 months" in result.stdout
    assert all(f"d{day} " in result.stdout for day in (5, 10, 15, 20))
    assert "ours / naive" in result.stdout and "P90 coverage" in result.stdout
    assert "hard_likely" in result.stdout and "flaps / budget-month" in result.stdout
    assert "Runaway: 2 synthetic organizations" in result.stdout


def test_backtest_command_replays_a_history_file(tmp_path: Path) -> None:
    """--history replays one organization's exported CSV."""
    path = _write(tmp_path / "org.csv", history_csv(synthetic_org(9, months=4)))
    result = CliRunner().invoke(app, ["backtest", "--history", str(path)])
    assert result.exit_code == 0, result.output
    assert "Backtest: 1 org, 2 months" in result.stdout


def test_backtest_command_rejects_a_bad_history_file(tmp_path: Path) -> None:
    """A malformed --history file exits 2 with the line and field."""
    path = _write(tmp_path / "bad.csv", "date,amount_usd\n2026-01-01,ten\n")
    result = CliRunner().invoke(app, ["backtest", "--history", str(path)])
    assert result.exit_code == 2
    assert "--history" in result.stderr and "line 2, `amount_usd`" in result.stderr


def test_public_exports_are_pinned() -> None:
    """The package exports exactly its documented API."""
    assert sorted(guard.backtest.__all__) == [
        "Accuracy", "Backtest", "Case", "DayScore", "MonthReplay", "OrgReplay", "Shape",
        "alerts_table", "backtest", "backtest_table", "export_history", "fetch_history",
        "load_history", "replay_org", "runaway_table", "synthetic_org", "synthetic_orgs"]


# --- helpers ----------------------------------------------------------------------------------


def _month_total(series: dict[date, Decimal], month: date) -> Decimal:
    return sum((v for d, v in series.items() if (d.year, d.month) == (month.year, month.month)),
               Decimal(0))


def _days(first: date, end: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((end - first).days)]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _page(days: list[str], amounts: list[list[str]], next_page: str | None) -> dict[str, object]:
    buckets = [{"starting_at": f"{day}T00:00:00Z",
                "ending_at": f"{date.fromisoformat(day) + timedelta(days=1)}T00:00:00Z",
                "results": [{"amount": a, "currency": "USD"} for a in cents]}
               for day, cents in zip(days, amounts, strict=True)]
    return {"data": buckets, "has_more": next_page is not None, "next_page": next_page}


def _answer(request: httpx.Request, pages: dict[str | None, dict[str, object]],
            seen: list[httpx.Request]) -> httpx.Response:
    seen.append(request)
    return httpx.Response(200, content=json.dumps(pages[request.url.params.get("page")]))


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> AdminClient:
    http = httpx.Client(base_url="https://api.example.test",
                        transport=httpx.MockTransport(handler))
    return AdminClient(http)



def test_alerts_fire_early_for_a_month_far_over_its_limit() -> None:
    """A month whose spend doubles its history fires hard_likely well before day 10."""
    series = {date(2025, 1, 1) + timedelta(days=i): Decimal(100) for i in range(120)}
    for i in range(31):
        series[date(2025, 5, 1) + timedelta(days=i)] = Decimal(200)
    org = replay_org("doubling", series)
    may = [m for m in org.months if m.month == date(2025, 5, 1)]
    assert may
    alerts = [a for a in replay_alerts(org) if a.condition is Condition.HARD_LIKELY]
    last = alerts[-1]
    assert last.breached and last.firing_at_check and last.flaps == 0
    assert last.first_fired is not None and last.crossed is not None
    assert last.first_fired < last.crossed
    scores = score_alerts(replay_alerts(org))
    assert [s.condition for s in scores] == list(CONDITIONS)


def test_runaway_replay_catches_spikes_fast_and_stays_quiet() -> None:
    """10× spikes trip the fast tier within 15 minutes; quiet weeks trip nothing."""
    result = runaway.run(3, seed=5)
    assert result.detected == 3
    assert result.delay_summary()[1] <= 15
    assert result.quiet_evaluations > 10_000 and result.false_trips == 0
