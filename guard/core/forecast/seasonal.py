"""The seasonal baseline: what a normal day costs, and the expected rest of a month. Pure.

The **level** L is a robust level of the last one to two weeks of known de-seasonalised complete
days (a trimmed 7-day mean blended with the 14-day median), read across the month boundary, so
day 1 already has one, with a clipped growth rate from the last eight weeks; the **day-of-week
factors** f are the median of each weekday over the last 8 weeks over the mean of the seven
medians (all ones with fewer than 14 days). ``forecast_rest`` sums the expected rest of today
(from the hour-of-week profile) and L·f over the remaining days of the month.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from guard.core.forecast.profile import ONE, ZERO, Profile
from guard.core.period import day_start, next_month

LEVEL_DAYS = 14
DOW_WEEKS = 8
MIN_DOW_DAYS = 14
LEVEL_AGE_DAYS = 5
GROWTH_DAYS = 28
GROWTH_MIN = Decimal("-0.03")
GROWTH_MAX = Decimal("0.03")

DailySeries = Mapping[date, Decimal]
"""Spend per complete UTC day; a missing day is unknown, not zero."""


@dataclass(frozen=True, slots=True)
class Seasonal:
    """What a normal day costs: level, day-of-week factors and a damped growth rate.

    ``level`` describes the day ``anchor``; ``growth`` is the relative change per day.
    """

    factors: tuple[Decimal, ...]
    level: Decimal
    known_days: int
    growth: Decimal = ZERO
    anchor: date | None = None
    memo: dict[Hashable, Any] = field(default_factory=dict, compare=False, repr=False)
    """What the forecast derived from this baseline for a day (the rest of the month after
    it, the band's cap from earlier days): a daemon keeps a budget's baseline all day."""

    def expected_day(self, day: date) -> Decimal:
        """The spend a normal ``day`` is expected to have."""
        trend = ONE
        if self.growth and self.anchor is not None:
            trend += self.growth * (day - self.anchor).days
        return self.level * self.factors[day.weekday()] * trend


def median(values: Sequence[Decimal]) -> Decimal:
    """The median (mean of the middle two for an even count)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return ZERO
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def seasonal(history: DailySeries, before: date) -> Seasonal:
    """Day-of-week factors, level and growth from the complete days before ``before``.

    The level blends a trimmed mean of the last 7 de-seasonalised days (quick to follow a step
    change) with the median of the last 14 (steady); a single outlier moves neither. Growth
    compares the medians of the last four weeks and the four before, clipped and spread per
    day; it applies from the level's anchor, about five days back.
    """
    window = [(d, v) for d, v in history.items()
              if before - timedelta(weeks=DOW_WEEKS) <= d < before]
    factors = _dow_factors(window)
    recent = sorted(window, reverse=True)
    values = [v / factors[d.weekday()] for d, v in recent if factors[d.weekday()] > 0]
    level = (_trimmed_mean(values[:7]) + median(values[:LEVEL_DAYS])) / 2
    return Seasonal(factors, level, len(window), _growth(values),
                    before - timedelta(days=LEVEL_AGE_DAYS))


def _trimmed_mean(values: Sequence[Decimal]) -> Decimal:
    """The mean without the lowest and the highest value (the median below five values)."""
    if len(values) < 5:
        return median(values)
    ordered = sorted(values)[1:-1]
    return sum(ordered, ZERO) / len(ordered)


def _growth(values: Sequence[Decimal]) -> Decimal:
    """Relative growth per day from two four-week medians, clipped to a sane monthly range."""
    if len(values) < 2 * GROWTH_DAYS:
        return ZERO
    recent, earlier = median(values[:GROWTH_DAYS]), median(values[GROWTH_DAYS:2 * GROWTH_DAYS])
    if earlier <= 0:
        return ZERO
    monthly = min(max(recent / earlier - ONE, GROWTH_MIN), GROWTH_MAX)
    return monthly / GROWTH_DAYS


def _dow_factors(window: Sequence[tuple[date, Decimal]]) -> tuple[Decimal, ...]:
    if len(window) < MIN_DOW_DAYS:
        return (ONE,) * 7
    by_day: list[list[Decimal]] = [[] for _ in range(7)]
    for day, value in window:
        by_day[day.weekday()].append(value)
    medians = [median(values) if values else None for values in by_day]
    known = [m for m in medians if m is not None]
    mean = sum(known, ZERO) / len(known)
    if mean <= 0:
        return (ONE,) * 7
    return tuple(m / mean if m is not None else ONE for m in medians)


def forecast_rest(season: Seasonal, profile: Profile, now: datetime) -> Decimal:
    """Expected spend from ``now`` to the end of its UTC month."""
    today = now.date()
    rest_today = season.expected_day(today) * (ONE - profile.share_before(now))
    later = season.memo.get(("later", today))
    if later is None:
        later = season.memo["later", today] = sum(days_after(season, today), ZERO)
    return rest_today + later


def days_after(season: Seasonal, today: date) -> tuple[Decimal, ...]:
    """The expected spend of each day of ``today``'s month after it, kept on ``season``."""
    known = season.memo.get(("after", today))
    if known is None:
        end = next_month(day_start(today)).date()
        known = season.memo["after", today] = tuple(
            season.expected_day(today + timedelta(days=i)) for i in range(1, (end - today).days))
    return known
