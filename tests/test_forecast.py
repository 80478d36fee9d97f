"""Forecast, band and burn rate: properties of the pure core and a few exact cases."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from guard.core.forecast import (
    DEFAULT_TIERS,
    Band,
    Profile,
    band_from_residuals,
    burn,
    calibrate,
    forecast,
    forecast_rest,
    hour_profile,
    narrowing,
    seasonal,
)
from guard.core.forecast.band import band_factors
from guard.core.model import Budget, PricedUsage, Scope
from guard.core.outlook import OutlookInputs, burn_cuts, recent_rows, spent_between
from guard.core.usage import Period, PeriodIndex, Sums

D = Decimal
MARCH = date(2026, 3, 1)
CENT = D("0.01")
LIMIT = D(1_000_000)


def weekly(level: Decimal, weekend: Decimal) -> dict[date, Decimal]:
    """Eight weeks before March and all of March, weekdays at level, weekends at weekend."""
    start = MARCH - timedelta(weeks=8)
    return {start + timedelta(days=i): (weekend if (start + timedelta(days=i)).weekday() >= 5
                                        else level)
            for i in range(56 + 31)}


def run(series: dict[date, Decimal], now: datetime, band: Band | None = None,
        profile: Profile | None = None) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """Forecast as of ``now`` when the days before it, and a uniform share of today, are known."""
    today = now.date()
    history = {d: v for d, v in series.items() if d < today}
    share = (profile or Profile.uniform()).share_before(now)
    mtd = sum((v for d, v in history.items() if d >= MARCH), D(0)) + series[today] * share
    f = forecast(mtd=mtd, history=history, profile=profile or Profile.uniform(),
                 band=band or Band.cold(), now=now, hard_limit=LIMIT)
    return mtd, f.p10_usd, f.p50_usd, f.p90_usd


levels = st.decimals(min_value=1, max_value=100_000, places=2)
moments = st.builds(lambda day, minute: datetime(2026, 3, day, tzinfo=UTC)
                    + timedelta(minutes=minute), st.integers(1, 31), st.integers(0, 1439))
residual_tables = st.lists(st.lists(st.decimals(min_value=D("-1"), max_value=D("1"), places=3),
                                    max_size=6), min_size=31, max_size=31)


@given(st.lists(levels, min_size=87, max_size=87), moments)
def test_p10_le_p50_le_p90_and_p50_ge_mtd(values: list[Decimal], now: datetime) -> None:
    """Whatever the series, P10 ≤ P50 ≤ P90 and P50 ≥ month-to-date."""
    start = MARCH - timedelta(weeks=8)
    series = {start + timedelta(days=i): v for i, v in enumerate(values)}
    mtd, p10, p50, p90 = run(series, now)
    assert mtd <= p10 <= p50 <= p90


@given(levels, moments)
def test_a_constant_series_is_forecast_exactly(level: Decimal, now: datetime) -> None:
    """Constant daily spend: P50 is exactly 31 days of it."""
    _, _, p50, _ = run(weekly(level, level), now)
    assert abs(p50 - level * 31) <= level * D("1e-20")


@given(levels, st.decimals(min_value=D("0.2"), max_value=1, places=2), residual_tables)
@settings(max_examples=40, deadline=None)
def test_the_band_narrows_as_the_month_goes_on(level: Decimal, weekend_share: Decimal,
                                               residuals: list[list[Decimal]]) -> None:
    """With spend as expected, P90 − P10 in dollars never grows from one day to the next."""
    series = weekly(level, level * weekend_share)
    band = band_from_residuals(residuals)
    widths = []
    for day in range(1, 32):
        _, p10, _, p90 = run(series, datetime(2026, 3, day, tzinfo=UTC), band)
        widths.append(p90 - p10)
    assert all(later <= earlier + CENT for earlier, later in pairwise(widths))


@given(levels, st.decimals(min_value=D("0.2"), max_value=1, places=2))
def test_in_the_last_minute_the_forecast_is_the_spend(level: Decimal, share: Decimal) -> None:
    """At the very end of the month the band collapses onto month-to-date."""
    now = datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC)
    mtd, p10, p50, p90 = run(weekly(level, level * share), now)
    assert mtd <= p10 <= p50 <= p90 <= mtd + level * D("1e-6")


@given(levels, st.decimals(min_value=1, max_value=1_000_000, places=2),
       st.integers(-56, 20), st.integers(21, 31))
def test_a_single_spike_moves_p50_by_at_most_spike_over_days(
        level: Decimal, spike: Decimal, spike_day: int, today: int) -> None:
    """A one-day spike (in history or this month) moves P50 by ≤ spike / days in month."""
    series = weekly(level, level)
    now = datetime(2026, 3, today, 12, tzinfo=UTC)
    day = MARCH + timedelta(days=spike_day)
    assume(day < now.date())
    _, _, base, _ = run(series, now)
    series[day] += spike
    _, _, spiked, _ = run(series, now)
    in_month = spike if day >= MARCH else D(0)
    assert abs(spiked - base - in_month) <= spike / 31


def test_days_one_and_two_use_last_months_level() -> None:
    """On March 1st and 2nd the forecast leans on February, with a sane band."""
    series = weekly(D(100), D(60))
    for day in (1, 2):
        _, p10, p50, p90 = run(series, datetime(2026, 3, day, 6, tzinfo=UTC))
        assert D(2500) < p50 < D(3000)
        assert p90 / p50 < D("1.5") and p10 / p50 > D("0.65")


def test_no_history_gates_the_forecast_out() -> None:
    """An organization with no history gets a forecast that is not gated in."""
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    f = forecast(mtd=D(5), history={}, profile=Profile.uniform(), band=Band.cold(), now=now,
                 hard_limit=D(1000))
    assert not f.gated_in
    assert abs(f.p50_usd - D(310)) < D("1e-20")  # $5 by noon: $10 a day, 31 days


def test_a_large_month_to_date_gates_it_in() -> None:
    """Without history, month-to-date ≥ 5 % of the limit gates the forecast in."""
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    f = forecast(mtd=D(50), history={}, profile=Profile.uniform(), band=Band.cold(), now=now,
                 hard_limit=D(1000))
    assert f.gated_in


def test_day_of_week_factors_and_level() -> None:
    """Weekends at 60 % of weekdays give factors in that ratio and the weekday level."""
    season = seasonal(weekly(D(100), D(60)), MARCH)
    assert abs(season.factors[5] / season.factors[0] - D("0.6")) < D("1e-20")
    assert abs(season.expected_day(date(2026, 3, 2)) - D(100)) < D("1e-20")


def test_exhaustion_day_is_when_the_path_crosses_the_limit() -> None:
    """At $100 a day from $0, a $1,000 limit is reached on the 10th."""
    series = weekly(D(100), D(100))
    now = datetime(2026, 3, 1, tzinfo=UTC)
    f = forecast(mtd=D(0), history={d: v for d, v in series.items() if d < MARCH},
                 profile=Profile.uniform(), band=Band.cold(), now=now, hard_limit=D(1000))
    assert f.exhaustion_day == date(2026, 3, 10)


@given(levels, st.decimals(min_value=D("0.2"), max_value=1, places=2), residual_tables,
       st.integers(1, 31))
@settings(max_examples=60, deadline=None)
def test_the_band_factors_are_the_narrowed_band_exponentiated(
        level: Decimal, weekend_share: Decimal, residuals: list[list[Decimal]],
        day: int) -> None:
    """P10 and P90 scale the rest by e^low and e^high of the narrowed band (capped at 1 and
    floored at 1), whether or not the cap bites: the forecast's factors without ``exp``."""
    series = weekly(level, level * weekend_share)
    band = band_from_residuals(residuals)
    now = datetime(2026, 3, day, 9, 30, tzinfo=UTC)
    history = {d: v for d, v in series.items() if d < now.date()}
    season, profile = seasonal(history, now.date()), Profile.uniform()
    rest = forecast_rest(season, profile, now)
    low, high = narrowing(band, season, profile, now, rest)
    low_factor, high_factor = band_factors(band, season, now, rest)
    tolerance = D("1e-24")
    assert abs(low_factor - min(low, D(0)).exp()) <= tolerance
    assert abs(high_factor - max(high, D(0)).exp()) <= tolerance


def test_day_shares_cut_a_window_at_midnight() -> None:
    """A window across midnight is two days' shares that add up to the window's."""
    profile = Profile.uniform()
    start = datetime(2026, 3, 4, 21, tzinfo=UTC)
    spans = profile.day_shares(start, start + timedelta(hours=6))
    assert [day for day, _ in spans] == [date(2026, 3, 4), date(2026, 3, 5)]
    assert all(abs(share - D(3) / 24) <= D("1e-24") for _, share in spans)
    within = profile.day_shares(start, start + timedelta(minutes=30))
    assert within == ((date(2026, 3, 4), profile.share_between(start, start
                                                               + timedelta(minutes=30))),)


def test_calibration_replays_complete_months() -> None:
    """A flat history gives a zero-width conformal band once enough residuals exist."""
    start = date(2025, 9, 1)
    flat = {start + timedelta(days=i): D(50) for i in range(181)}
    band = calibrate(flat, MARCH)
    assert band.residuals > 0
    assert band.at(10) == (D(0), D(0))


def test_hour_profile_follows_business_hours() -> None:
    """Hours with three times the spend get three times the share."""
    hourly = {}
    for day in range(14):
        for hour in range(24):
            at = datetime(2026, 2, 1, hour, tzinfo=UTC) + timedelta(days=day)
            hourly[at] = D(3) if 9 <= hour < 17 else D(1)
    profile = hour_profile(hourly)
    assert profile.weights[10] == 3 * profile.weights[3]
    assert sum(profile.weights[:24]).quantize(D("0.000001")) == 1


def spend_rate(base: Decimal, spike_from: datetime | None, factor: Decimal, until: datetime):
    """A spent_between function for hourly spend ``base`` with a ×factor spike."""
    def between(start: datetime, end: datetime) -> Decimal:
        minutes = int((end - start).total_seconds() // 60)
        total = D(0)
        for m in range(minutes):
            t = start + timedelta(minutes=m)
            hot = spike_from is not None and spike_from <= t < until
            total += base / 60 * (factor if hot else 1)
        return total
    return between


def test_a_ten_times_spike_trips_runaway_within_fifteen_minutes() -> None:
    """Spend at 10× the seasonal rate trips the fast tier within 15 minutes."""
    profile = Profile.uniform()
    season = seasonal(weekly(D(2400), D(2400)), MARCH)
    start = datetime(2026, 3, 10, 14, tzinfo=UTC)
    spent = spend_rate(D(100), start, D(10), start + timedelta(hours=1))
    b = burn(spent_between=spent, season=season, profile=profile,
             end=start + timedelta(minutes=15), mtd=D(20000), hard_limit=D(74400))
    assert b.tripped is not None and b.tripped.name == "fast"
    quiet = burn(spent_between=spend_rate(D(100), None, D(1), start), season=season,
                 profile=profile, end=start + timedelta(minutes=15), mtd=D(20000),
                 hard_limit=D(74400))
    assert quiet.tripped is None


def test_business_hour_peaks_trip_nothing() -> None:
    """3× the mean hour during business hours is what the profile expects: no runaway."""
    hourly = {datetime(2026, 2, 20, tzinfo=UTC) + timedelta(hours=h):
              D(300) if 9 <= (h % 24) < 17 else D(100) for h in range(24 * 14)}
    profile = hour_profile(hourly)
    season = seasonal(weekly(D(4000), D(4000)), MARCH)
    at = datetime(2026, 3, 10, 12, tzinfo=UTC)
    b = burn(spent_between=spend_rate(D(300), None, D(1), at), season=season, profile=profile,
             end=at, mtd=D(20000), hard_limit=D(124000))
    assert b.tripped is None
    assert all(long < 2 for _, long, _ in b.rates)


def test_spent_between_is_the_prorated_sum_of_every_period_it_overlaps() -> None:
    """Hours then minutes, as a tick has them: any window gets each period's spend times the
    share of it the window covers (checked against the plain sum: the same to 1e-18, the
    shares being binary fractions; exactly for windows on period edges)."""
    rng = random.Random(5)
    start = datetime(2026, 3, 10, 6, tzinfo=UTC)
    periods, moment = [], start
    for width in [timedelta(hours=1)] * 6 + [timedelta(minutes=1)] * 90:
        usd = D(rng.randint(0, 5000)) / 100
        periods.append(Period(moment, width, PeriodIndex(Sums(usd))))
        moment += width
    budget = Budget("org", Scope.ORGANIZATION, None, D(1), D(2))
    between = spent_between(budget, OutlookInputs({}, {}, None, periods, {}))

    def plain(a: datetime, b: datetime) -> Decimal:
        total = D(0)
        for p in periods:
            overlap = min(b, p.start + p.width) - max(a, p.start)
            if overlap > timedelta(0):
                total += p.index.organization.usd * Decimal(overlap / p.width)
        return total

    for _ in range(300):
        a = start + timedelta(seconds=rng.randint(-3600, 8 * 3600))
        b = a + timedelta(seconds=rng.randint(0, 8 * 3600))
        assert abs(between(a, b) - plain(a, b)) < D("1e-18")
    for i, j in [(0, 96), (3, 10), (6, 7), (50, 51), (7, 7)]:
        a, b = periods[i].start, (periods[j].start if j < len(periods) else moment)
        assert between(a, b) == sum((p.index.organization.usd for p in periods[i:j]), D(0))
    assert between(start, moment) == sum((p.index.organization.usd for p in periods), D(0))
    assert between(moment, moment + timedelta(hours=1)) == 0


def test_recent_rows_give_every_budget_what_its_own_walk_would() -> None:
    """One pass over the recent periods for all budgets (organization, the default and a
    named workspace, a key, a model family, one that never spent) gives each the same
    windows' spend as walking the periods for that budget alone."""
    rng = random.Random(9)
    start = datetime(2026, 3, 10, 6, tzinfo=UTC)
    periods, moment = [], start
    for width in [timedelta(hours=1)] * 3 + [timedelta(minutes=1)] * 40:
        rows = [PricedUsage(moment, rng.choice([None, "ws1", "ws2"]), rng.choice(["k1", "k2"]),
                            rng.choice(["claude-opus-5", "claude-sonnet-5-5", "claude-haiku"]),
                            D(rng.randint(0, 900)) / 100, D(rng.randint(0, 3)) / 100,
                            1, 0, 0, 1, 0) for _ in range(rng.randint(0, 4))]
        periods.append(Period(moment, width, PeriodIndex.of(rows)))
        moment += width
    budgets = [Budget("org", Scope.ORGANIZATION, None, D(1), D(2)),
               Budget("default", Scope.WORKSPACE, "default", D(1), D(2)),
               Budget("ws1", Scope.WORKSPACE, "ws1", D(1), D(2)),
               Budget("k2", Scope.API_KEY, "k2", D(1), D(2)),
               Budget("opus", Scope.MODEL, "claude-opus", D(1), D(2)),
               Budget("none", Scope.API_KEY, "k9", D(1), D(2))]
    data = OutlookInputs({}, {}, None, periods, {})
    shared = recent_rows(budgets, periods)
    for budget in budgets:
        alone = spent_between(budget, data)
        together = spent_between(budget, data, shared[(budget.scope, budget.match)])
        for minutes in (10, 30, 60, 150, 240):
            window = (moment - timedelta(minutes=minutes), moment)
            assert together(*window) == alone(*window), (budget.name, minutes)
    assert shared[(Scope.API_KEY, "k9")] == []
    assert spent_between(budgets[0], data)(start, moment) > 0


def test_recent_rows_between_cuts_give_the_same_windows_from_fewer_rows() -> None:
    """With the burn windows' cuts, a budget's minutes between two cuts come as one row: every
    window from cut to cut (those ``burn`` asks, hours cut at odd minutes included) has the
    same spend to the cent as from a row a minute, and a busy budget has a few rows, not one
    a minute."""
    rng = random.Random(11)
    start = datetime(2026, 3, 10, 6, tzinfo=UTC)
    periods, moment = [], start
    for width in [timedelta(hours=1)] * 5 + [timedelta(minutes=1)] * 150:
        rows = [PricedUsage(moment, rng.choice([None, "ws1"]), rng.choice(["k1", "k2"]),
                            rng.choice(["claude-opus-5", "claude-haiku"]),
                            D(rng.randint(1, 900)) / 100, D(0), 1, 0, 0, 1, 0)
                for _ in range(rng.randint(1, 3))]
        periods.append(Period(moment, width, PeriodIndex.of(rows)))
        moment += width
    rng.shuffle(periods)  # as the shell may hand them: hours and minutes in any order
    end = moment - timedelta(minutes=3, seconds=0)  # a lag: the last minutes lie past `end`
    cuts = burn_cuts(end, DEFAULT_TIERS)
    assert cuts[0] == end - timedelta(hours=6) and cuts[-1] == end
    budgets = [Budget("org", Scope.ORGANIZATION, None, D(1), D(2)),
               Budget("ws1", Scope.WORKSPACE, "ws1", D(1), D(2)),
               Budget("k2", Scope.API_KEY, "k2", D(1), D(2)),
               Budget("opus", Scope.MODEL, "claude-opus", D(1), D(2))]
    data = OutlookInputs({}, {}, None, periods, {})
    plain, coarse = recent_rows(budgets, periods), recent_rows(budgets, periods, cuts)
    for budget in budgets:
        key = (budget.scope, budget.match)
        assert len(plain[key]) > 100 and len(coarse[key]) <= 12, (budget.name, len(coarse[key]))
        alone = spent_between(budget, data)
        fine, few = spent_between(budget, data, plain[key]), spent_between(budget, data,
                                                                           coarse[key])
        for cut in cuts[:-1]:
            assert few(cut, end) == fine(cut, end) == alone(cut, end), (budget.name, cut)
            assert few(cut, end) > 0
        assert [r[0] for r in coarse[key]] == sorted(r[0] for r in coarse[key])
    b = burn(spent_between=spent_between(budgets[0], data, coarse[(Scope.ORGANIZATION, None)]),
             season=seasonal({}, end.date()), profile=hour_profile({}), end=end, mtd=D(10),
             hard_limit=D(10_000))
    a = burn(spent_between=spent_between(budgets[0], data), season=seasonal({}, end.date()),
             profile=hour_profile({}), end=end, mtd=D(10), hard_limit=D(10_000))
    assert a == b
