"""Usage rows of the simulated organization, and the integer arithmetic that splits them.

A ``SimUsage`` is what the usage report would say for one group of the finest grain
(workspace, API key, model, service tier, context window, inference geo, speed) over some period,
with the number of API requests behind it.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from guard.sim import prices

Dims = tuple[str | None, str | None, str, str, str, str, str]
"""``(workspace_id, api_key_id, model, service_tier, context_window, inference_geo, speed)``."""

Counts = tuple[int, int, int, int, int, int, int]
"""``(uncached input, 5m cache write, 1h cache write, cache read, output, web searches,
requests)``."""

ZERO: Counts = (0, 0, 0, 0, 0, 0, 0)
_MINUTES = 60


@dataclass(frozen=True, slots=True)
class SimUsage:
    """Token counts of one finest-grain group over one period (a minute, an hour, a day...).

    ``workspace_id`` is ``None`` for the default workspace and ``api_key_id`` is ``None`` for
    Console/Workbench usage, as the legacy reports show them. ``speed`` is ``"standard"`` or
    ``"fast"`` (fast mode, only on models that have it); ``requests`` counts API requests.
    """

    workspace_id: str | None
    api_key_id: str | None
    model: str
    service_tier: str
    context_window: str
    inference_geo: str
    speed: str = prices.STANDARD
    uncached_input_tokens: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    output_tokens: int = 0
    web_search_requests: int = 0
    requests: int = 0

    @classmethod
    def of(cls, dims: Dims, counts: Counts) -> SimUsage:
        """Build a row from its dimensions and its counts."""
        return cls(*dims, *counts)

    @property
    def dims(self) -> Dims:
        """The seven dimensions that identify the row's group."""
        return (self.workspace_id, self.api_key_id, self.model, self.service_tier,
                self.context_window, self.inference_geo, self.speed)

    @property
    def counts(self) -> Counts:
        """The seven counts, in the order of ``Counts``."""
        return (self.uncached_input_tokens, self.cache_write_5m, self.cache_write_1h,
                self.cache_read, self.output_tokens, self.web_search_requests, self.requests)

    def tokens_by_type(self) -> tuple[tuple[str, int], ...]:
        """``(token_type, tokens)`` pairs, token types named as in the cost report."""
        return (
            (prices.UNCACHED_INPUT, self.uncached_input_tokens),
            (prices.OUTPUT, self.output_tokens),
            (prices.CACHE_READ, self.cache_read),
            (prices.CACHE_WRITE_5M, self.cache_write_5m),
            (prices.CACHE_WRITE_1H, self.cache_write_1h),
        )

    def type_cents(self, token_type: str, tokens: int, day: date | None) -> Decimal:
        """The exact list cost of ``tokens`` of one type with this row's dimensions, in cents."""
        return prices.token_cents(tokens, self.model, token_type, service_tier=self.service_tier,
                                  context_window=self.context_window,
                                  inference_geo=self.inference_geo, speed=self.speed, day=day)

    def token_cents(self, day: date | None = None) -> Decimal:
        """The exact list cost of the row's tokens used on ``day``, in cents.

        ``None`` prices at the newest rates; pass the usage day for prices that changed.
        """
        line = self.line
        return sum((prices.line_cents(tokens, line, token_type, day)
                    for token_type, tokens in self.tokens_by_type() if tokens), Decimal(0))

    @property
    def line(self) -> prices.PriceLine:
        """What the row's token prices depend on besides the token type and the day."""
        return (self.model, self.service_tier, self.context_window, self.inference_geo,
                self.speed)

    def web_search_cents(self) -> Decimal:
        """The exact cost of the row's web searches, in cents."""
        return prices.web_search_cents(self.web_search_requests)


def add_counts(a: Counts, b: Counts) -> Counts:
    """Field-wise sum of two count tuples."""
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4], a[5] + b[5],
            a[6] + b[6])


def merge(rows: Iterable[SimUsage]) -> tuple[SimUsage, ...]:
    """Sum rows of the same group into one row each, in order of first appearance."""
    totals: dict[Dims, Counts] = {}
    for row in rows:
        totals[row.dims] = add_counts(totals.get(row.dims, ZERO), row.counts)
    return tuple(SimUsage.of(dims, counts) for dims, counts in totals.items())


def split_evenly(value: int, cumulative: list[int]) -> list[int]:
    """Split ``value`` into parts proportional to the weights whose running sums are given.

    Integer arithmetic only: part ``i`` is ``⌊value·c_i/T⌋ - ⌊value·c_{i-1}/T⌋``, so the
    parts always add up to ``value`` exactly.
    """
    total = cumulative[-1]
    edges = [value * c // total for c in cumulative]
    return [edges[0], *(b - a for a, b in itertools.pairwise(edges))]


def split_hour(rows: tuple[SimUsage, ...], rng: random.Random) -> tuple[tuple[SimUsage, ...], ...]:
    """Spread each hourly row over some of the hour's 60 minutes; one tuple per minute.

    A row is active in a number of minutes that grows with its size; every count of every
    row over the 60 minutes adds up exactly to the hourly value.
    """
    minutes: list[list[SimUsage]] = [[] for _ in range(_MINUTES)]
    for row in rows:
        for minute, counts in _spread(row.counts, rng):
            if any(counts):
                minutes[minute].append(SimUsage.of(row.dims, counts))
    return tuple(tuple(rows_of_minute) for rows_of_minute in minutes)


def _spread(counts: Counts, rng: random.Random) -> list[tuple[int, Counts]]:
    size = counts[0] + counts[4]
    active = min(_MINUTES, max(1, int(rng.uniform(0.3, 1.0) * (1 + size // 15_000))))
    chosen = sorted(rng.sample(range(_MINUTES), active))
    cumulative: list[int] = []
    running = 0
    for _ in chosen:
        running += rng.randint(1, 100)
        cumulative.append(running)
    parts = [split_evenly(value, cumulative) for value in counts]
    return [(minute, (parts[0][i], parts[1][i], parts[2][i], parts[3][i], parts[4][i],
                      parts[5][i], parts[6][i]))
            for i, minute in enumerate(chosen)]
