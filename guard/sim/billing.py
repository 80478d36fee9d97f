"""What the simulated organization is billed, and what of it the analytics export has so far.

``Billing`` holds what the list prices do not say:

* ``discount``: a negotiated discount, ``amount = list_amount × (1 − discount)`` on every cost;
* ``price_errors``: model → factor on that model's token costs, both ``amount`` and
  ``list_amount``, in the analytics API and the legacy cost report alike: a price the public
  table has wrong (``{"claude-sonnet-5-5": Decimal("1.10")}``: billed 10 % above the table);
* ``revision_hours``: late-arriving billing data (below).

**Watermark.** The analytics export is refreshed on the hour: ``data_refreshed_at =
floor_hour(now − analytics_lag)``. Analytics answers hold only minutes ending at or before it, so
they are made of whole hours and nothing after the watermark.

**Revisions.** With ``revision_hours > 0``, ``max(1, n // 20)`` of the ``n ≥ 2`` usage groups of
each hour (chosen by a hash of the seed, the hour and the group: the same in any process) are
left out until the watermark is at least ``revision_hours`` after that hour's end; then they
arrive and the hour's totals grow. Code execution is never late.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from guard.sim import prices, timegrid
from guard.sim.hourly import SimCodeExecution
from guard.sim.org import SimOrg, token_factor
from guard.sim.usage import Dims, SimUsage

_LATE_SHARE = 20
"""One group in this many arrives late (at least one per hour of two groups or more)."""


@dataclass(frozen=True, slots=True)
class Billing:
    """The organization's bill beyond the list prices: discount, price errors, revisions."""

    discount: Decimal = Decimal(0)
    price_errors: Mapping[str, Decimal] = field(default_factory=dict)
    revision_hours: int = 0

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.discount < Decimal(1):
            raise ValueError(f"discount must be in [0, 1), got {self.discount}")
        if self.revision_hours < 0:
            raise ValueError(f"revision_hours must not be negative, got {self.revision_hours}")
        if any(factor <= 0 for factor in self.price_errors.values()):
            raise ValueError("price_errors factors must be positive")

    @property
    def key(self) -> tuple[object, ...]:
        """A hashable identity, for caches."""
        return self.discount, tuple(sorted(self.price_errors.items())), self.revision_hours

    def billed(self, list_cents: Decimal) -> Decimal:
        """The discounted amount of a list amount."""
        return list_cents * (1 - self.discount)

    def line_cents(self, line: prices.PriceLine, token_type: str, tokens: int,
                   day: date) -> Decimal:
        """The list amount of ``tokens`` of one type on one price line, price errors
        applied."""
        return (prices.line_cents(tokens, line, token_type, day)
                * token_factor(self.price_errors, line[0]))


def watermark(now: datetime, lag: timedelta) -> datetime:
    """``data_refreshed_at``: the last hourly export at ``now`` with ``lag``."""
    return timegrid.floor(now - lag, timegrid.HOUR)


class Export:
    """What the analytics export holds at one watermark: whole hours, late groups aside."""

    def __init__(self, org: SimOrg, mark: datetime, revision_hours: int) -> None:
        self.org = org
        self.mark = mark
        self.revision_hours = revision_hours

    def settled(self, hour_end: datetime) -> bool:
        """Whether the late groups of the hour that ends at ``hour_end`` have arrived."""
        return self.mark >= hour_end + timedelta(hours=self.revision_hours)

    def pieces(self, start: datetime,
               end: datetime) -> Iterator[tuple[date, tuple[SimUsage, ...]]]:
        """``(day, rows)`` of the exported minutes in ``[start, end)`` (whole minutes only)."""
        start = timegrid.ceil(start, timegrid.MINUTE)
        stop = min(timegrid.floor(end, timegrid.MINUTE), self.mark)
        for piece_start, piece_end in timegrid.segments(start, stop):
            if piece_end - piece_start == timegrid.DAY and not self.settled(piece_end):
                for hour in timegrid.hours(piece_start, piece_end):
                    yield hour.date(), self._on_time(hour, self.org.usage_hour(hour))
            else:
                hour = timegrid.floor(piece_start, timegrid.HOUR)
                yield piece_start.date(), self._on_time(hour, self.org.piece(piece_start,
                                                                             piece_end))

    def code_executions(self, start: datetime, end: datetime) -> Iterator[SimCodeExecution]:
        """The sessions of the exported minutes in ``[start, end)``."""
        return self.org.code_executions(start, min(end, self.mark))

    def _on_time(self, hour: datetime, rows: tuple[SimUsage, ...]) -> tuple[SimUsage, ...]:
        if self.revision_hours == 0 or self.settled(hour + timegrid.HOUR):
            return rows
        late = late_groups(self.org, hour)
        return tuple(row for row in rows if row.dims not in late) if late else rows


def late_groups(org: SimOrg, hour: datetime) -> frozenset[Dims]:
    """The usage groups of ``hour`` whose billing data arrives ``revision_hours`` late."""
    return _late_groups(org, timegrid.aligned_hour(hour))


@functools.lru_cache(maxsize=4096)
def _late_groups(org: SimOrg, hour: datetime) -> frozenset[Dims]:
    groups = [row.dims for row in org.usage_hour(hour)]
    if len(groups) < 2:
        return frozenset()
    ranked = sorted(groups, key=lambda dims: _digest(org.seed, hour, dims))
    return frozenset(ranked[:max(1, len(groups) // _LATE_SHARE)])


def _digest(seed: int, hour: datetime, dims: Dims) -> str:
    return hashlib.sha256(f"{seed}:{hour.isoformat()}:{dims!r}:late".encode()).hexdigest()
