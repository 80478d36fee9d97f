"""Runaway detection replayed minute by minute on synthetic hourly-shaped traffic.

Each synthetic organization spends with a business-hours profile (weekday 09:00–15:00 UTC at
three times the mean hour, nights and weekends low), day-to-day, hour-to-hour and
minute-to-minute noise. Two checks, with the real ``guard.core.forecast.burn``:

The level and day-of-week factors are learned from eight weeks of daily spend and the
hour-of-week profile from the last two of them, as the daemon learns them from the cost
report and priced usage.

- **quiet**: four weeks of normal traffic, evaluated every ``step`` minutes, must trip nothing;
- **spike**: spend at 10× what is expected for that time of week, for one hour from a random
  minute; the delay is how many minutes of spike data the fast tier needs before it trips.

The burn rate sees data only up to the evaluation time (the daemon's windows end at the data
watermark less the lag), so the delay is counted from the spike's first minute of data.
"""

from __future__ import annotations

import math
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from statistics import median

from guard.core.forecast import Profile, Seasonal, burn, hour_profile, seasonal
from guard.core.period import MINUTE

START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 84
HISTORY_DAYS = 56
PROFILE_DAYS = 14
SPIKE_FACTOR = 10
SPIKE_MINUTES = 60
QUIET_STEP = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Traffic:
    """Minute spend of one synthetic organization, as prefix sums for O(1) windows."""

    prefix: tuple[Decimal, ...]
    season: Seasonal
    profile: Profile
    hard_limit: Decimal

    def spent_between(self, start: datetime, end: datetime) -> Decimal:
        """Spend in ``[start, end)`` (whole minutes)."""
        a, b = _index(start), _index(end)
        return self.prefix[max(0, b)] - self.prefix[max(0, a)]


@dataclass(frozen=True, slots=True)
class RunawayResult:
    """Detection delays (minutes) and false trips over quiet evaluations."""

    delays: tuple[int | None, ...]
    quiet_evaluations: int
    false_trips: int

    @property
    def detected(self) -> int:
        """Spikes the fast tier caught within the hour."""
        return sum(d is not None for d in self.delays)

    def delay_summary(self) -> tuple[float, int]:
        """Median and worst delay among detected spikes."""
        found = [d for d in self.delays if d is not None]
        return (median(found), max(found)) if found else (math.nan, 0)


def _index(moment: datetime) -> int:
    return int((moment - START) / MINUTE)


def _minute_weights(rng: random.Random) -> list[float]:
    """Expected share of the mean rate per hour of the week (mean 1 over a weekday)."""
    weights = []
    for weekday in range(7):
        for hour in range(24):
            busy = weekday < 5 and 9 <= hour < 15
            weights.append(9.0 if busy else 1.0)
    scale = 24 / sum(weights[:24])
    weekend = rng.uniform(0.4, 0.95)
    return [w * scale * (weekend if i >= 120 else 1.0) for i, w in enumerate(weights)]


def traffic(seed: int, spike_at: datetime | None = None) -> Traffic:
    """Twelve weeks of minute spend; the first eight train the level and the profile."""
    rng = random.Random(seed)
    daily = math.exp(rng.gauss(math.log(300), 0.8))
    weights = _minute_weights(rng)
    minutes: list[float] = []
    for day in range(DAYS):
        day_noise = rng.lognormvariate(-0.01, 0.15)
        for hour in range(24):
            how = ((START + timedelta(days=day)).weekday() * 24) + hour
            rate = daily / 24 * weights[how] * day_noise * rng.lognormvariate(-0.02, 0.2) / 60
            minutes += [rate * rng.lognormvariate(-0.08, 0.4) for _ in range(60)]
    if spike_at is not None:
        first = _index(spike_at)
        for m in range(first, first + SPIKE_MINUTES):
            how = (START + MINUTE * m).weekday() * 24 + (START + MINUTE * m).hour
            minutes[m] += daily / 24 * weights[how] / 60 * (SPIKE_FACTOR - 1)
    return _assemble(minutes, daily)


def _assemble(minutes: list[float], daily: float) -> Traffic:
    prefix = [Decimal(0)]
    for value in minutes:
        prefix.append(prefix[-1] + Decimal(f"{value:.6f}"))
    first_hour = (HISTORY_DAYS - PROFILE_DAYS) * 24
    hourly = {START + timedelta(hours=h): prefix[(h + 1) * 60] - prefix[h * 60]
              for h in range(first_hour, HISTORY_DAYS * 24)}
    days = {(START + timedelta(days=d)).date(): prefix[(d + 1) * 1440] - prefix[d * 1440]
            for d in range(HISTORY_DAYS)}
    training_end: date = (START + timedelta(days=HISTORY_DAYS)).date()
    hard = Decimal(f"{daily * 31 * 1.2:.2f}")
    return Traffic(tuple(prefix), seasonal(days, training_end), hour_profile(hourly), hard)


def _tripped(t: Traffic, end: datetime) -> bool:
    result = burn(spent_between=t.spent_between, season=t.season, profile=t.profile, end=end,
                  mtd=Decimal(0), hard_limit=t.hard_limit)
    return result.tripped is not None and result.tripped.name == "fast"


def quiet_trips(seed: int, step: timedelta) -> tuple[int, int]:
    """(evaluations, trips of any tier) over four weeks of normal traffic."""
    t = traffic(seed)
    at = START + timedelta(days=HISTORY_DAYS)
    evaluations = trips = 0
    while at < START + timedelta(days=DAYS):
        result = burn(spent_between=t.spent_between, season=t.season, profile=t.profile,
                      end=at, mtd=Decimal(0), hard_limit=t.hard_limit)
        evaluations += 1
        trips += result.tripped is not None
        at += step
    return evaluations, trips


def spike_delay(seed: int) -> int | None:
    """Minutes of spike data the fast tier needs to trip (None: not within the hour)."""
    rng = random.Random(seed * 7919)
    offset = rng.randrange(HISTORY_DAYS * 1440 + 360, DAYS * 1440 - 120)
    spike_at = START + MINUTE * offset
    t = traffic(seed, spike_at)
    for minutes in range(1, SPIKE_MINUTES + 1):
        if _tripped(t, spike_at + MINUTE * minutes):
            return minutes
    return None


def _one(seed: int) -> tuple[int | None, int, int]:
    evaluations, trips = quiet_trips(seed, QUIET_STEP)
    return spike_delay(seed), evaluations, trips


def run(orgs: int, seed: int = 1, workers: int = 1) -> RunawayResult:
    """Spike delays and quiet false trips over ``orgs`` synthetic organizations."""
    seeds = [seed + i for i in range(orgs)]
    if workers > 1 and orgs > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            found = list(pool.map(_one, seeds))
    else:
        found = [_one(s) for s in seeds]
    return RunawayResult(tuple(f[0] for f in found), sum(f[1] for f in found),
                         sum(f[2] for f in found))
