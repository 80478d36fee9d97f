"""Synthetic daily spend series for the backtest (reference/forecasting.md §A3.6).

Daily spend = level(t) · w_dow · LogNormal(−σ²/2, σ), where per organization:

- the starting level L0 ~ LogNormal(log 300, 0.8) dollars a day;
- the level grows by g ~ U(−2 %, +8 %) a month, compounded daily;
- each month, with probability 0.3, a step change (launch, migration, price) on a random day
  multiplies the level by U(0.7, 2.0) from that day on;
- Saturdays and Sundays are scaled by a weekend factor ~ U(0.4, 0.95);
- the noise σ ~ U(0.05, 0.25) (a lognormal of mean 1);
- 2 % of days spike (× U(2, 6)) and 1 % are incidents (× U(0.1, 0.5)).

Floats live only in the random draws; every spend value is a ``Decimal`` of 4 places.
Everything is a pure function of the seed: ``random.Random(seed)`` and a fixed order of draws.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from guard.core.period import day_start, next_month

STEP_CHANCE = 0.3
SPIKE_CHANCE = 0.02
INCIDENT_CHANCE = 0.01
DAYS_PER_MONTH = 365.25 / 12
ORG_SEED_STRIDE = 1_000_003


@dataclass(frozen=True, slots=True)
class Shape:
    """The parameters of one synthetic organization."""

    start_level: float
    monthly_growth: float
    weekend_factor: float
    noise_sigma: float
    step_chance: float = STEP_CHANCE
    spike_chance: float = SPIKE_CHANCE
    incident_chance: float = INCIDENT_CHANCE

    @classmethod
    def draw(cls, rng: random.Random) -> Shape:
        """A random organization, as §A3.6 describes it."""
        return cls(start_level=rng.lognormvariate(math.log(300), 0.8),
                   monthly_growth=rng.uniform(-0.02, 0.08),
                   weekend_factor=rng.uniform(0.4, 0.95),
                   noise_sigma=rng.uniform(0.05, 0.25))


def synthetic_org(seed: int, months: int = 13,
                  start: date = date(2025, 1, 1)) -> dict[date, Decimal]:
    """``months`` calendar months of daily spend from ``start``; the same seed, the same series."""
    rng = random.Random(seed)
    return daily_series(Shape.draw(rng), rng, months, start)


def synthetic_orgs(count: int, seed: int = 1, months: int = 13,
                   start: date = date(2025, 1, 1)) -> dict[str, dict[date, Decimal]]:
    """``count`` organizations named ``org-<seed>-<i>``, each from its own derived seed."""
    return {f"org-{seed}-{i}": synthetic_org(seed * ORG_SEED_STRIDE + i, months, start)
            for i in range(count)}


def daily_series(shape: Shape, rng: random.Random, months: int,
                 start: date) -> dict[date, Decimal]:
    """Daily spend of ``shape`` for ``months`` calendar months, drawn from ``rng``."""
    steps = _step_days(shape, rng, months, start)
    daily_growth = (1 + shape.monthly_growth) ** (1 / DAYS_PER_MONTH)
    level = shape.start_level
    series: dict[date, Decimal] = {}
    for day in _days(start, months):
        level *= steps.get(day, 1.0)
        series[day] = Decimal(f"{level * _day_factor(shape, rng, day):.4f}")
        level *= daily_growth
    return series


def _step_days(shape: Shape, rng: random.Random, months: int,
               start: date) -> dict[date, float]:
    """The day of each month's step change, if it has one, and its multiplier."""
    steps: dict[date, float] = {}
    month = start
    for _ in range(months):
        end = next_month(day_start(month)).date()
        if rng.random() < shape.step_chance:
            steps[month + timedelta(days=rng.randrange((end - month).days))] = \
                rng.uniform(0.7, 2.0)
        month = end
    return steps


def _day_factor(shape: Shape, rng: random.Random, day: date) -> float:
    """Weekday shape × lognormal noise of mean 1 × the odd spike or incident."""
    sigma = shape.noise_sigma
    factor = shape.weekend_factor if day.weekday() >= 5 else 1.0
    factor *= rng.lognormvariate(-sigma * sigma / 2, sigma)
    roll = rng.random()
    if roll < shape.spike_chance:
        factor *= rng.uniform(2, 6)
    elif roll < shape.spike_chance + shape.incident_chance:
        factor *= rng.uniform(0.1, 0.5)
    return factor


def _days(start: date, months: int) -> list[date]:
    """Every day of ``months`` calendar months from ``start``."""
    end = start
    for _ in range(months):
        end = next_month(day_start(end)).date()
    return [start + timedelta(days=i) for i in range((end - start).days)]
