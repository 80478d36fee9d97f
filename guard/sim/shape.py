"""How busy the simulated organization is in a given UTC hour.

Pure functions of the seed and the hour: business-hour diurnal shape (UTC, Europe then the
Americas), quieter weekends, mild month-on-month growth, and on the odd day an incident: one
workload runs away for a few hours.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

GROWTH_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
MONTHLY_GROWTH = 1.03
_WEEKEND = 0.35
_INCIDENT_DAY_CHANCE = 0.04


@dataclass(frozen=True, slots=True)
class Incident:
    """A runaway workload: more traffic on one stream for some hours of one UTC day.

    ``pick`` in ``[0, 1)`` chooses the stream, weighted by stream weight, so a busy workload is
    the likely culprit; ``extra_share`` is a fraction of the organization's peak hourly draws.
    """

    start: datetime
    hours: int
    pick: float
    extra_share: float

    def covers(self, hour: datetime) -> bool:
        """Whether the incident is running during ``hour``."""
        return self.start <= hour < self.start + timedelta(hours=self.hours)


def diurnal(hour_of_day: int) -> float:
    """Relative traffic by UTC hour of day: a night floor, a European and an American bump."""
    europe = 0.55 * math.exp(-(((hour_of_day - 10) / 3.0) ** 2))
    americas = 0.85 * math.exp(-(((hour_of_day - 17) / 3.5) ** 2))
    return min(1.0, 0.12 + europe + americas)


def growth(hour: datetime) -> float:
    """Mild compound growth: 3 % a month since ``GROWTH_EPOCH``."""
    months = (hour - GROWTH_EPOCH) / timedelta(days=30.44)
    return float(MONTHLY_GROWTH**months)


def base_level(hour: datetime) -> float:
    """Traffic in ``hour`` relative to a weekday peak hour, before spikes and incidents."""
    weekday = _WEEKEND if hour.weekday() >= 5 else 1.0
    return diurnal(hour.hour) * weekday * growth(hour)


def incident_on(seed: int, day: date) -> Incident | None:
    """The incident of ``day``, if that day has one (about one day in 25)."""
    rng = random.Random(f"{seed}:incident:{day.isoformat()}")
    if rng.random() >= _INCIDENT_DAY_CHANCE:
        return None
    first_hour = rng.randrange(24)
    start = datetime(day.year, day.month, day.day, first_hour, tzinfo=UTC)
    hours = min(rng.randint(2, 6), 24 - first_hour)
    return Incident(start, hours, rng.random(), rng.uniform(1.0, 3.0))
