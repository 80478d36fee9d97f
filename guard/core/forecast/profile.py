"""The hour-of-week profile: the share of a day's spend expected in each hour. Pure.

A ``Profile`` holds one weight per hour of the week (Monday 00:00 first), each day summing to 1;
``hour_profile`` learns it from complete days of hourly spend, falling back to a weekday's kind
(Monday–Friday or the weekend) or to all days when a weekday has been seen too rarely, and to a
uniform profile with too little data. The rest of the forecast reads the rest of today through
it. The shared ``ZERO`` and ``ONE`` live here, at the bottom of the package's import order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from guard.core.period import DAY, day_start, floor_hour

ZERO = Decimal(0)
ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class Profile:
    """Share of a day's spend in each hour of the week (Monday 00:00 first); days sum to 1."""

    weights: tuple[Decimal, ...]
    _before: dict[datetime, Decimal] = field(default_factory=dict, compare=False, repr=False)
    """``share_before`` once asked: every budget of a tick asks the same moments."""
    _spans: dict[tuple[datetime, datetime], tuple[tuple[date, Decimal], ...]] = field(
        default_factory=dict, compare=False, repr=False)
    """``day_shares`` once asked: every budget's burn windows end at the same moment."""

    @classmethod
    def uniform(cls) -> Profile:
        """Every hour alike."""
        return cls(tuple(ONE / 24 for _ in range(168)))

    def share_before(self, moment: datetime) -> Decimal:
        """The share of ``moment``'s day that lies before it."""
        known = self._before.get(moment)
        if known is None:
            known = self._before[moment] = self._share_before(moment)
        return known

    def _share_before(self, moment: datetime) -> Decimal:
        base = moment.weekday() * 24
        hour = moment.hour
        done = sum(self.weights[base:base + hour], ZERO)
        into = Decimal((moment - floor_hour(moment)).total_seconds()) / 3600
        return min(ONE, done + self.weights[base + hour] * into)

    def share_between(self, start: datetime, end: datetime) -> Decimal:
        """The share of a day's spend expected in ``[start, end)`` (same or adjacent days)."""
        if end.date() == start.date():
            return self.share_before(end) - self.share_before(start)
        return ONE - self.share_before(start) + self.share_before(end)

    def day_shares(self, start: datetime, end: datetime) -> tuple[tuple[date, Decimal], ...]:
        """``[start, end)`` cut at midnights: each day it touches and the share of that day's
        spend expected in it."""
        known = self._spans.get((start, end))
        if known is None:
            spans = []
            cursor = start
            while cursor < end:
                stop = min(end, day_start(cursor.date()) + DAY)
                spans.append((cursor.date(), self.share_between(cursor, stop)))
                cursor = stop
            known = self._spans[start, end] = tuple(spans)
        return known


def hour_profile(hourly: Mapping[datetime, Decimal], min_days: int = 7,
                 own_weekday: int = 4) -> Profile:
    """Mean hourly share per hour of the week from complete days of hourly spend.

    With fewer than ``min_days`` days the profile is uniform. A weekday seen at least
    ``own_weekday`` times has its own shape; otherwise it takes the pooled shape of its kind
    (Monday–Friday or the weekend), or of all days when its kind has fewer than two.
    """
    days: dict[date, list[Decimal]] = {}
    for moment, usd in hourly.items():
        days.setdefault(moment.date(), [ZERO] * 24)[moment.hour] += usd
    complete = {d: v for d, v in days.items() if sum(v, ZERO) > 0}
    if len(complete) < min_days:
        return Profile.uniform()
    overall = _mean_shares(list(complete.values()))
    weights: list[Decimal] = []
    for weekday in range(7):
        same = [v for d, v in complete.items() if d.weekday() == weekday]
        kind = [v for d, v in complete.items() if (d.weekday() >= 5) == (weekday >= 5)]
        if len(same) >= own_weekday:
            weights += _mean_shares(same)
        else:
            weights += _mean_shares(kind) if len(kind) >= 2 else overall
    return Profile(tuple(weights))


def _mean_shares(days: Sequence[Sequence[Decimal]]) -> list[Decimal]:
    sums = [ZERO] * 24
    for hours in days:
        total = sum(hours, ZERO)
        for h in range(24):
            sums[h] += hours[h] / total
    return [s / len(days) for s in sums]
