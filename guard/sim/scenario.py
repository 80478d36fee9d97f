"""Scenarios for the demo: the simulated organization's traffic, bent on purpose.

A scenario multiplies the token counts of chosen hours, so the simulated bill, the usage and
cost reports and the ground truth all bend together and stay consistent.

- ``steady``: the organization as generated;
- ``spike``: ten times the traffic for three hours on the 14th from 13:00 UTC;
- ``runaway``: from the 18th at 12:00 UTC, a job triples everything until the month ends;
- ``breach``: steady traffic against budgets that are too small (the demo sizes them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from guard.sim.hourly import Hour, HourGenerator
from guard.sim.org import SimOrg
from guard.sim.usage import SimUsage

Multiplier = Callable[[datetime], int]


def _steady(_: datetime) -> int:
    return 1


def _spike(hour: datetime) -> int:
    return 10 if hour.day == 14 and 13 <= hour.hour < 16 else 1


def _runaway(hour: datetime) -> int:
    return 3 if (hour.day, hour.hour) >= (18, 12) else 1


SCENARIOS: dict[str, Multiplier] = {"steady": _steady, "spike": _spike, "runaway": _runaway,
                                    "breach": _steady}


@dataclass(frozen=True, slots=True)
class ScenarioGenerator:
    """An ``HourGenerator`` whose hours are scaled by a scenario."""

    inner: HourGenerator
    multiplier: Multiplier

    def hour(self, start: datetime) -> Hour:
        """The inner hour with every token count multiplied."""
        hour = self.inner.hour(start)
        factor = self.multiplier(start)
        if factor == 1:
            return hour
        return replace(hour, usage=tuple(_scaled(row, factor) for row in hour.usage))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _scaled(row: SimUsage, factor: int) -> SimUsage:
    return replace(row, uncached_input_tokens=row.uncached_input_tokens * factor,
                   cache_write_5m=row.cache_write_5m * factor,
                   cache_write_1h=row.cache_write_1h * factor,
                   cache_read=row.cache_read * factor, output_tokens=row.output_tokens * factor,
                   web_search_requests=row.web_search_requests * factor,
                   requests=row.requests * factor)


def with_scenario(seed: int, scenario: str) -> SimOrg:
    """The small simulated organization ``seed`` under ``scenario``."""
    org = SimOrg.generate(seed)
    generator = org._generator
    return SimOrg(seed, ScenarioGenerator(generator, SCENARIOS[scenario]))  # type: ignore[arg-type]
