"""Burn rate by the SRE multi-window rule, and hours until the hard limit. Pure.

Spend over a long and a short window, each divided by the spend the seasonal baseline and the
hour-of-week profile expect there, must both exceed the tier's factor, and the long window must
also exceed an absolute floor (a share of the hard limit); the first tier that trips is the
worst. Time to exhaustion extrapolates the last hour's spend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from guard.core.forecast.profile import ZERO, Profile
from guard.core.forecast.seasonal import Seasonal
from guard.core.period import HOUR


@dataclass(frozen=True, slots=True)
class BurnTier:
    """One multi-window rule: both windows above ``factor`` × the seasonal expectation."""

    name: str
    long: timedelta
    short: timedelta
    long_factor: Decimal
    short_factor: Decimal
    floor_share: Decimal
    severity: str


DEFAULT_TIERS = (
    BurnTier("fast", HOUR, timedelta(minutes=10), Decimal(2), Decimal(5),
             Decimal("0.0004"), "critical"),
    BurnTier("slow", 6 * HOUR, timedelta(minutes=30), Decimal("2.5"), Decimal(3),
             Decimal("0.005"), "warning"),
)


@dataclass(frozen=True, slots=True)
class Burn:
    """Burn rates per tier, the worst tier that tripped, and hours until the hard limit."""

    rates: tuple[tuple[str, Decimal, Decimal], ...]
    tripped: BurnTier | None
    tte_hours: Decimal | None


def burn(*, spent_between: Callable[[datetime, datetime], Decimal], season: Seasonal,
         profile: Profile, end: datetime, mtd: Decimal, hard_limit: Decimal,
         tiers: Sequence[BurnTier] = DEFAULT_TIERS) -> Burn:
    """Multi-window burn rate ending at ``end`` (the last complete minute of data)."""
    rates = []
    tripped: BurnTier | None = None
    spent: dict[timedelta, Decimal] = {}
    days: dict[date, Decimal] = {}
    for tier in tiers:
        long_spend = spent[tier.long] = spent_between(end - tier.long, end)
        short_spend = spent_between(end - tier.short, end)
        # no spend is a rate of nothing whatever was expected: an idle budget asks for none
        long_rate = long_spend and _ratio(long_spend, _expected(
            season, profile, end - tier.long, end, days))
        short_rate = short_spend and _ratio(short_spend, _expected(
            season, profile, end - tier.short, end, days))
        rates.append((tier.name, long_rate, short_rate))
        if (tripped is None and long_rate >= tier.long_factor
                and short_rate >= tier.short_factor
                and long_spend >= hard_limit * tier.floor_share):
            tripped = tier
    hourly = spent[HOUR] if HOUR in spent else spent_between(end - HOUR, end)
    tte = (hard_limit - mtd) / hourly if hourly > 0 and mtd < hard_limit else None
    return Burn(tuple(rates), tripped, tte)


def _expected(season: Seasonal, profile: Profile, start: datetime, end: datetime,
              days: dict[date, Decimal]) -> Decimal:
    """What ``season`` expects in ``[start, end)``; ``days``: its days' expectations so far."""
    total = ZERO
    for day, share in profile.day_shares(start, end):
        expected = days.get(day)
        if expected is None:
            expected = days[day] = season.expected_day(day)
        total += expected * share
    return total


def _ratio(spend: Decimal, expected: Decimal) -> Decimal:
    if expected > 0:
        return spend / expected
    return Decimal("Infinity") if spend > 0 else ZERO
