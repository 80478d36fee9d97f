"""The forecast band: conformal quantiles of the remaining spend, per day of month. Pure.

``calibrate`` replays every complete month in the history, day by day, and records
log(actual rest / forecast rest); the quantiles are pooled over days d ± 3 and fall back to
±0.35 while fewer than 10 residuals exist. The band scales only the remaining spend, and
``narrowing`` caps it so it never widens in dollars as the month goes on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from guard.core.forecast.profile import ONE, ZERO, Profile
from guard.core.forecast.seasonal import (
    MIN_DOW_DAYS,
    DailySeries,
    Seasonal,
    forecast_rest,
    seasonal,
)
from guard.core.period import day_start, next_month

MIN_RESIDUALS = 10
POOL_RADIUS = 3
COLD_SPREAD = Decimal("0.35")
LOW_LEVEL = Decimal("0.06")
HIGH_LEVEL = Decimal("0.95")


@dataclass(frozen=True, slots=True)
class Band:
    """Log-scale quantiles of the remaining spend, per day of month (index 0 = day 1)."""

    low: tuple[Decimal, ...]
    high: tuple[Decimal, ...]
    residuals: int
    widths: tuple[Decimal, ...] = ()
    factors: tuple[tuple[Decimal, Decimal], ...] = ()
    """``(e^low, e^high)`` per day: what the rest is multiplied by, computed once per band."""

    def __post_init__(self) -> None:
        if not self.factors:
            factors = tuple((lo.exp(), h.exp()) for lo, h in zip(self.low, self.high, strict=True))
            object.__setattr__(self, "factors", factors)
        if not self.widths:
            object.__setattr__(self, "widths", tuple(h - lo for lo, h in self.factors))

    @classmethod
    def cold(cls) -> Band:
        """±0.35 on the log scale: used until enough months have been replayed."""
        return cls(tuple(-COLD_SPREAD for _ in range(31)), tuple(COLD_SPREAD for _ in range(31)),
                   0)

    def width(self, day_of_month: int) -> Decimal:
        """e^high − e^low for a day of the month: the band's width per dollar of rest."""
        return self.widths[day_of_month - 1]

    def at(self, day_of_month: int) -> tuple[Decimal, Decimal]:
        """``(low, high)`` for a day of the month."""
        return self.low[day_of_month - 1], self.high[day_of_month - 1]


Replays = dict[date, list[tuple[int, Decimal]]]
"""Residuals of replayed months, by month: a month's residuals never change once complete."""


def calibrate(history: DailySeries, before: date, profile: Profile | None = None,
              replays: Replays | None = None) -> Band:
    """Conformal band from every complete month in ``history`` before ``before``.

    ``replays`` may carry residuals of months already replayed (with the same history and
    profile) so that calibrating month after month costs one replay per month.
    """
    profile = profile or Profile.uniform()
    replays = {} if replays is None else replays
    residuals: list[list[Decimal]] = [[] for _ in range(31)]
    for month in _complete_months(history, before):
        if month not in replays:
            replays[month] = _replay_month(history, month, profile)
        for day_index, value in replays[month]:
            residuals[day_index].append(value)
    return _band(residuals)


def _complete_months(history: DailySeries, before: date) -> list[date]:
    if not history:
        return []
    first = min(history)
    months: list[date] = []
    month = date(first.year, first.month, 1)
    while True:
        end = next_month(day_start(month)).date()
        if end > before:
            return months
        if month >= first and all(month + timedelta(days=i) in history
                                  for i in range((end - month).days)):
            months.append(month)
        month = end


def _replay_month(history: DailySeries, month: date,
                  profile: Profile) -> list[tuple[int, Decimal]]:
    """log(actual rest / forecast rest) at the start of each day of a complete month."""
    end = next_month(day_start(month)).date()
    days = [month + timedelta(days=i) for i in range((end - month).days)]
    out = []
    for index, day in enumerate(days):
        season = seasonal(history, day)
        if season.known_days < MIN_DOW_DAYS:
            continue
        predicted = forecast_rest(season, profile, day_start(day))
        actual = sum((history[d] for d in days[index:]), ZERO)
        if predicted > 0 and actual > 0:
            out.append((index, (actual / predicted).ln()))
    return out


def band_from_residuals(residuals: list[list[Decimal]]) -> Band:
    """The band from log residuals per day of month (index 0 = day 1), pooled d ± 3."""
    return _band(residuals)


def _band(residuals: list[list[Decimal]]) -> Band:
    low: list[Decimal] = []
    high: list[Decimal] = []
    total = sum(len(r) for r in residuals)
    for index in range(31):
        pool = sorted(v for r in residuals[max(0, index - POOL_RADIUS):index + POOL_RADIUS + 1]
                      for v in r)
        if len(pool) < MIN_RESIDUALS:
            low.append(-COLD_SPREAD)
            high.append(COLD_SPREAD)
        else:
            low.append(min(ZERO, _conformal(pool, LOW_LEVEL)))
            high.append(max(ZERO, _conformal(pool, HIGH_LEVEL)))
    return Band(tuple(low), tuple(high), total)


def _conformal(pool: Sequence[Decimal], level: Decimal) -> Decimal:
    """The split-conformal quantile: rank ⌈(n+1)·level⌉ (upper) or ⌊(n+1)·level⌋ (lower)."""
    n = len(pool)
    if level >= Decimal("0.5"):
        rank = math.ceil((n + 1) * level)
    else:
        rank = max(1, math.floor((n + 1) * level))
    return pool[min(n, rank) - 1]


def _earlier_cap(band: Band, season: Seasonal, today: date) -> Decimal | None:
    """The narrowest dollar width an earlier day of the month would have had (``None``: the
    first of the month), kept on ``season`` for the day (it depends on nothing later)."""
    known = season.memo.get(("cap", today))
    if known is not None and known[0] is band:
        return known[1]  # type: ignore[no-any-return]
    first = today.replace(day=1)
    days = (next_month(day_start(today)).date() - first).days
    expected = [season.expected_day(first + timedelta(days=i)) for i in range(days)]
    remaining = sum(expected, ZERO)
    cap: Decimal | None = None
    for index in range(today.day - 1):
        width = band.width(index + 1) * remaining
        cap = width if cap is None else min(cap, width)
        remaining -= expected[index]
    season.memo["cap", today] = (band, cap)
    return cap


def narrowing(band: Band, season: Seasonal, profile: Profile, now: datetime,
              rest: Decimal) -> tuple[Decimal, Decimal]:
    """Today's band, capped so its dollar width is no wider than any earlier day's would be.

    Pooled quantiles may grow later in the month (fewer days average out less); the cap keeps
    the promise that the band narrows as the month goes on, given the same expectations.
    """
    scale = _cap_scale(band, season, now, rest)
    if scale is None:
        return band.at(now.day)
    low_factor, high_factor = _scaled(band, now.day, scale)
    return low_factor.ln(), high_factor.ln()


def band_factors(band: Band, season: Seasonal, now: datetime,
                 rest: Decimal) -> tuple[Decimal, Decimal]:
    """``narrowing`` as the factors P10 and P90 scale the rest by: e^low capped at 1 and
    e^high floored at 1 (the band's own factors when the cap does not bite, no ``exp`` or
    ``ln`` per budget)."""
    scale = _cap_scale(band, season, now, rest)
    low, high = (band.factors[now.day - 1] if scale is None
                 else _scaled(band, now.day, scale))
    return min(low, ONE), max(high, ONE)


def _cap_scale(band: Band, season: Seasonal, now: datetime, rest: Decimal) -> Decimal | None:
    """How much the cap of earlier days narrows today's band (``None``: it does not bite)."""
    width = band.width(now.day)
    if rest <= 0 or width <= 0:
        return None
    earlier = _earlier_cap(band, season, now.date())
    if earlier is None or earlier >= width * rest:
        return None
    return earlier / (width * rest)


def _scaled(band: Band, day_of_month: int, scale: Decimal) -> tuple[Decimal, Decimal]:
    """The day's factors with the band's width scaled by ``scale`` around 1."""
    low, high = band.factors[day_of_month - 1]
    return ONE - (ONE - low) * scale, ONE + (high - ONE) * scale
