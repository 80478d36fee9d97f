"""One simulated hour: the usage rows and code-execution sessions of the organization.

Every hour is generated on its own from ``random.Random(f"{seed}:{hour}")``, so any hour can be
computed in any process, in any order, with the same result.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from guard.sim import prices
from guard.sim.population import NOVA, Population, Stream
from guard.sim.shape import base_level, incident_on
from guard.sim.usage import SimUsage

_SPIKE_CHANCE = 0.02
_NOVA_CHANCE = 0.04


@dataclass(frozen=True, slots=True)
class SimCodeExecution:
    """One code-execution container session, billed in the minute it ended.

    Code execution appears only in the cost report, never in the usage report, and has no key.
    Sessions last a multiple of 3 minutes (5-minute minimum), so their cost is exact in cents.
    """

    workspace_id: str | None
    ended_at: datetime
    container_minutes: int

    @property
    def cents(self) -> Decimal:
        """5 cents per container-hour."""
        return prices.CODE_EXECUTION_CENTS_PER_HOUR * self.container_minutes / 60


@dataclass(frozen=True, slots=True)
class Hour:
    """Everything the organization did in one UTC hour."""

    usage: tuple[SimUsage, ...]
    code_executions: tuple[SimCodeExecution, ...]


@dataclass(frozen=True, slots=True)
class HourGenerator:
    """Generates any hour of one organization from its seed and population."""

    seed: int
    population: Population
    cum_weights: tuple[float, ...]
    peak_draws: float

    @classmethod
    def of(cls, seed: int, population: Population) -> HourGenerator:
        """Precompute the cumulative stream weights used to draw active streams."""
        weights = tuple(itertools.accumulate(s.weight for s in population.streams))
        keys = len(population.api_keys)
        return cls(seed, population, weights, 30 + 12 * keys**0.5)

    def hour(self, start: datetime) -> Hour:
        """The usage and code executions of the hour starting at ``start`` (UTC, aligned)."""
        rng = random.Random(f"{self.seed}:{start.isoformat()}")
        level = base_level(start) * rng.uniform(0.85, 1.15)
        if rng.random() < _SPIKE_CHANCE:
            level *= rng.uniform(2.0, 4.0)
        draws = self._draws(rng, start, level)
        streams = self.population.streams
        rows = [_row(streams[i], n, rng) for i, n in sorted(draws.items())]
        rows += self._nova(rng)
        return Hour(tuple(rows), self._code_executions(rng, start, level))

    def _draws(self, rng: random.Random, start: datetime, level: float) -> Counter[int]:
        """How many draws each active stream gets this hour (most streams get none)."""
        count = round(self.peak_draws * level)
        streams = range(len(self.population.streams))
        draws = Counter(rng.choices(streams, cum_weights=self.cum_weights, k=count))
        incident = incident_on(self.seed, start.date())
        if incident is not None and incident.covers(start):
            target = incident.pick * self.cum_weights[-1]
            culprit = min(bisect.bisect(self.cum_weights, target), len(streams) - 1)
            draws[culprit] += round(self.peak_draws * incident.extra_share)
        return draws

    def _nova(self, rng: random.Random) -> list[SimUsage]:
        if rng.random() >= _NOVA_CHANCE:
            return []
        key = self.population.nova_key
        return [SimUsage(key.workspace_id, key.id, NOVA, "standard", "0-200k", "not_available",
                         uncached_input_tokens=rng.randint(300, 3_000),
                         output_tokens=rng.randint(50, 600), requests=rng.randint(1, 3))]

    def _code_executions(self, rng: random.Random, start: datetime,
                         level: float) -> tuple[SimCodeExecution, ...]:
        homes = [None, *(space.id for space in self.population.workspaces)]
        rate = 0.05 * (1 + len(homes) / 4) * min(level, 1.0)
        sessions = int(rate + rng.random())
        return tuple(
            SimCodeExecution(rng.choice(homes), start + timedelta(minutes=rng.randrange(60)),
                             3 * rng.randint(2, 40))
            for _ in range(sessions)
        )


def _row(stream: Stream, draws: int, rng: random.Random) -> SimUsage:
    profile = stream.profile
    base = profile.input_per_draw * draws * rng.lognormvariate(0.0, 0.35)
    output = base * profile.output_ratio * rng.uniform(0.8, 1.2)
    searches = profile.searches_per_draw * draws * rng.uniform(0.5, 1.5)
    requests = max(1, round(profile.requests_per_draw * draws * rng.uniform(0.7, 1.3)))
    return SimUsage.of(stream.dims, (
        int(base),
        int(base * profile.write_5m_ratio),
        int(base * profile.write_1h_ratio),
        int(base * profile.read_ratio),
        int(output),
        int(searches),
        requests,
    ))
