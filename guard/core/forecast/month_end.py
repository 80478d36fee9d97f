"""The month-end forecast: P10/P50/P90, the alerting gate and the day of exhaustion. Pure.

P50 = month-to-date + the expected rest of the month from the seasonal baseline (today's run
rate when no complete day exists at all); P10 and P90 scale only that rest by the band.
``gated_in`` decides whether a forecast is trustworthy enough to raise conditions, and
``exhaustion_day`` finds the day the P50 path reaches the hard limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from guard.core.forecast.band import Band, band_factors
from guard.core.forecast.profile import ONE, ZERO, Profile
from guard.core.forecast.seasonal import (
    DailySeries,
    Seasonal,
    days_after,
    forecast_rest,
    seasonal,
)

GATE_HISTORY_DAYS = 14
GATE_SHARE = Decimal("0.05")
GATE_EARLY_DAYS = 2


@dataclass(frozen=True, slots=True)
class Forecast:
    """Where a budget lands at month end, and whether it is trustworthy enough to alert on."""

    p10_usd: Decimal
    p50_usd: Decimal
    p90_usd: Decimal
    gated_in: bool
    exhaustion_day: date | None
    level_usd_per_day: Decimal
    history_days: int


def forecast(*, mtd: Decimal, history: DailySeries, profile: Profile, band: Band,
             now: datetime, hard_limit: Decimal, season: Seasonal | None = None) -> Forecast:
    """P10/P50/P90 month-end spend as of ``now`` (the data watermark) for one budget;
    ``season``: ``seasonal(history, now.date())`` when the caller has it already."""
    season = season or seasonal(history, now.date())
    if season.known_days == 0:
        season = _cold_start(mtd, profile, now)
    rest = forecast_rest(season, profile, now)
    low, high = band_factors(band, season, now, rest)
    gated = gated_in(season.known_days, mtd, hard_limit, now)
    return Forecast(
        p10_usd=mtd + rest * low,
        p50_usd=mtd + rest,
        p90_usd=mtd + rest * high,
        gated_in=gated,
        exhaustion_day=exhaustion_day(mtd, season, profile, now, hard_limit),
        level_usd_per_day=season.level,
        history_days=season.known_days,
    )


def gated_in(history_days: int, mtd: Decimal, hard_limit: Decimal, now: datetime) -> bool:
    """Whether a forecast may raise conditions (reference §A3.3 gating).

    It needs two weeks of history or a month-to-date of 5 % of the limit; on the first
    ``GATE_EARLY_DAYS`` days of a month, when the forecast is last month's level, it needs
    that month-to-date as well.
    """
    substantial = mtd >= hard_limit * GATE_SHARE
    if now.day <= GATE_EARLY_DAYS:
        return substantial
    return history_days >= GATE_HISTORY_DAYS or substantial


def exhaustion_day(mtd: Decimal, season: Seasonal, profile: Profile, now: datetime,
                   limit: Decimal) -> date | None:
    """The day the P50 path reaches ``limit`` this month, or ``None`` if it does not."""
    if mtd >= limit:
        return now.date()
    day = now.date()
    spent = mtd + season.expected_day(day) * (ONE - profile.share_before(now))
    if spent >= limit:
        return day
    for offset, expected in enumerate(days_after(season, day), start=1):
        spent += expected
        if spent >= limit:
            return day + timedelta(days=offset)
    return None


def _cold_start(mtd: Decimal, profile: Profile, now: datetime) -> Seasonal:
    """No complete day at all: today's run rate, if any of today has been seen."""
    share = profile.share_before(now)
    level = mtd / share if share > 0 and now.day == 1 else ZERO
    return Seasonal((ONE,) * 7, level, 0)
