"""Month-end forecast with an honest band, burn rate and time to exhaustion. Pure.

The forecast (reference/forecasting.md §A3):

- **level** L: a robust level of the last one to two weeks of known de-seasonalised complete
  days (a trimmed 7-day mean blended with the 14-day median), read across the month
  boundary, so day 1 already has one, with a clipped growth rate from the last eight weeks;
- **day-of-week factors** f: the median of each weekday over the last 8 weeks over the mean of
  the seven medians (all ones with fewer than 14 days);
- P50 = month-to-date + the expected rest of today (from an hour-of-week profile) + Σ L·f over
  the remaining days;
- **band**: conformal quantiles of log(actual rest / forecast rest), replayed over the complete
  months in the history and pooled over days d ± 3; ±0.35 while fewer than 10 residuals exist.
  The band scales only the remaining spend, and is capped so it never widens in dollars as the
  month goes on.

Burn rate follows the SRE multi-window rule: spend over a long and a short window, each divided
by the spend the seasonal baseline expects there, must both exceed the tier's factor, and the
long window must also exceed an absolute floor (a share of the hard limit).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from guard.core.period import DAY, HOUR, day_start, floor_hour, next_month

ZERO = Decimal(0)
ONE = Decimal(1)
LEVEL_DAYS = 14
DOW_WEEKS = 8
MIN_DOW_DAYS = 14
MIN_RESIDUALS = 10
POOL_RADIUS = 3
COLD_SPREAD = Decimal("0.35")
GATE_HISTORY_DAYS = 14
GATE_SHARE = Decimal("0.05")
GATE_EARLY_DAYS = 2
LEVEL_AGE_DAYS = 5
LOW_LEVEL = Decimal("0.06")
HIGH_LEVEL = Decimal("0.95")
GROWTH_DAYS = 28
GROWTH_MIN = Decimal("-0.03")
GROWTH_MAX = Decimal("0.03")

DailySeries = Mapping[date, Decimal]
"""Spend per complete UTC day; a missing day is unknown, not zero."""


@dataclass(frozen=True, slots=True)
class Profile:
    """Share of a day's spend in each hour of the week (Monday 00:00 first); days sum to 1."""

    weights: tuple[Decimal, ...]

    @classmethod
    def uniform(cls) -> Profile:
        """Every hour alike."""
        return cls(tuple(ONE / 24 for _ in range(168)))

    def share_before(self, moment: datetime) -> Decimal:
        """The share of ``moment``'s day that lies before it."""
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


@dataclass(frozen=True, slots=True)
class Seasonal:
    """What a normal day costs: level, day-of-week factors and a damped growth rate.

    ``level`` describes the day ``anchor``; ``growth`` is the relative change per day.
    """

    factors: tuple[Decimal, ...]
    level: Decimal
    known_days: int
    growth: Decimal = ZERO
    anchor: date | None = None

    def expected_day(self, day: date) -> Decimal:
        """The spend a normal ``day`` is expected to have."""
        trend = ONE
        if self.growth and self.anchor is not None:
            trend += self.growth * (day - self.anchor).days
        return self.level * self.factors[day.weekday()] * trend


@dataclass(frozen=True, slots=True)
class Band:
    """Log-scale quantiles of the remaining spend, per day of month (index 0 = day 1)."""

    low: tuple[Decimal, ...]
    high: tuple[Decimal, ...]
    residuals: int
    widths: tuple[Decimal, ...] = ()

    def __post_init__(self) -> None:
        if not self.widths:
            widths = tuple(h.exp() - lo.exp() for lo, h in zip(self.low, self.high, strict=True))
            object.__setattr__(self, "widths", widths)

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


@dataclass(frozen=True, slots=True)
class Forecast:
    """Where a budget lands at month end, and whether it is trustworthy enough to alert on."""

    p10_usd: Decimal
    p50_usd: Decimal
    p90_usd: Decimal
    gated_in: bool
    exhaustion_day: date | None
    level_usd_per_day: Decimal
    history_days: int


def median(values: Sequence[Decimal]) -> Decimal:
    """The median (mean of the middle two for an even count)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return ZERO
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def seasonal(history: DailySeries, before: date) -> Seasonal:
    """Day-of-week factors, level and growth from the complete days before ``before``.

    The level blends a trimmed mean of the last 7 de-seasonalised days (quick to follow a step
    change) with the median of the last 14 (steady); a single outlier moves neither. Growth
    compares the medians of the last four weeks and the four before, clipped and spread per
    day; it applies from the level's anchor, about five days back.
    """
    window = [(d, v) for d, v in history.items()
              if before - timedelta(weeks=DOW_WEEKS) <= d < before]
    factors = _dow_factors(window)
    recent = sorted(window, reverse=True)
    values = [v / factors[d.weekday()] for d, v in recent if factors[d.weekday()] > 0]
    level = (_trimmed_mean(values[:7]) + median(values[:LEVEL_DAYS])) / 2
    return Seasonal(factors, level, len(window), _growth(values),
                    before - timedelta(days=LEVEL_AGE_DAYS))


def _trimmed_mean(values: Sequence[Decimal]) -> Decimal:
    """The mean without the lowest and the highest value (the median below five values)."""
    if len(values) < 5:
        return median(values)
    ordered = sorted(values)[1:-1]
    return sum(ordered, ZERO) / len(ordered)


def _growth(values: Sequence[Decimal]) -> Decimal:
    """Relative growth per day from two four-week medians, clipped to a sane monthly range."""
    if len(values) < 2 * GROWTH_DAYS:
        return ZERO
    recent, earlier = median(values[:GROWTH_DAYS]), median(values[GROWTH_DAYS:2 * GROWTH_DAYS])
    if earlier <= 0:
        return ZERO
    monthly = min(max(recent / earlier - ONE, GROWTH_MIN), GROWTH_MAX)
    return monthly / GROWTH_DAYS


def _dow_factors(window: Sequence[tuple[date, Decimal]]) -> tuple[Decimal, ...]:
    if len(window) < MIN_DOW_DAYS:
        return (ONE,) * 7
    by_day: list[list[Decimal]] = [[] for _ in range(7)]
    for day, value in window:
        by_day[day.weekday()].append(value)
    medians = [median(values) if values else None for values in by_day]
    known = [m for m in medians if m is not None]
    mean = sum(known, ZERO) / len(known)
    if mean <= 0:
        return (ONE,) * 7
    return tuple(m / mean if m is not None else ONE for m in medians)


def forecast_rest(season: Seasonal, profile: Profile, now: datetime) -> Decimal:
    """Expected spend from ``now`` to the end of its UTC month."""
    today = now.date()
    rest_today = season.expected_day(today) * (ONE - profile.share_before(now))
    end = next_month(now).date()
    days = (today + timedelta(days=i) for i in range(1, (end - today).days))
    return rest_today + sum((season.expected_day(d) for d in days), ZERO)


def exhaustion_day(mtd: Decimal, season: Seasonal, profile: Profile, now: datetime,
                   limit: Decimal) -> date | None:
    """The day the P50 path reaches ``limit`` this month, or ``None`` if it does not."""
    if mtd >= limit:
        return now.date()
    spent = mtd + season.expected_day(now.date()) * (ONE - profile.share_before(now))
    day = now.date()
    end = next_month(now).date()
    while True:
        if spent >= limit:
            return day
        day += timedelta(days=1)
        if day >= end:
            return None
        spent += season.expected_day(day)


def forecast(*, mtd: Decimal, history: DailySeries, profile: Profile, band: Band,
             now: datetime, hard_limit: Decimal) -> Forecast:
    """P10/P50/P90 month-end spend as of ``now`` (the data watermark) for one budget."""
    season = seasonal(history, now.date())
    if season.known_days == 0:
        season = _cold_start(mtd, profile, now)
    rest = forecast_rest(season, profile, now)
    low, high = narrowing(band, season, profile, now, rest)
    gated = gated_in(season.known_days, mtd, hard_limit, now)
    return Forecast(
        p10_usd=mtd + rest * min(low, ZERO).exp(),
        p50_usd=mtd + rest,
        p90_usd=mtd + rest * max(high, ZERO).exp(),
        gated_in=gated,
        exhaustion_day=exhaustion_day(mtd, season, profile, now, hard_limit),
        level_usd_per_day=season.level,
        history_days=season.known_days,
    )


def gated_in(history_days: int, mtd: Decimal, hard_limit: Decimal, now: datetime) -> bool:
    """Whether a forecast may raise conditions (reference §A3.3 gating).

    It needs two weeks of history or a month-to-date of 5 % of the limit; on the first
    ``GATE_EARLY_DAYS`` days of a month, when the forecast is last month's level, it needs
    that month-to-date as well.
    """
    substantial = mtd >= hard_limit * GATE_SHARE
    if now.day <= GATE_EARLY_DAYS:
        return substantial
    return history_days >= GATE_HISTORY_DAYS or substantial


def narrowing(band: Band, season: Seasonal, profile: Profile, now: datetime,
              rest: Decimal) -> tuple[Decimal, Decimal]:
    """Today's band, capped so its dollar width is no wider than any earlier day's would be.

    Pooled quantiles may grow later in the month (fewer days average out less); the cap keeps
    the promise that the band narrows as the month goes on, given the same expectations.
    """
    low, high = band.at(now.day)
    width = band.width(now.day)
    if rest <= 0 or width <= 0:
        return low, high
    first = now.date().replace(day=1)
    days = (next_month(now).date() - first).days
    expected = [season.expected_day(first + timedelta(days=i)) for i in range(days)]
    remaining = sum(expected, ZERO)
    cap = width * rest
    for index in range(now.day - 1):
        cap = min(cap, band.width(index + 1) * remaining)
        remaining -= expected[index]
    if cap >= width * rest:
        return low, high
    scale = cap / (width * rest)
    return ((ONE - (ONE - low.exp()) * scale).ln(), (ONE + (high.exp() - ONE) * scale).ln())


def _cold_start(mtd: Decimal, profile: Profile, now: datetime) -> Seasonal:
    """No complete day at all: today's run rate, if any of today has been seen."""
    share = profile.share_before(now)
    level = mtd / share if share > 0 and now.day == 1 else ZERO
    return Seasonal((ONE,) * 7, level, 0)


# --- the band: replay complete months, pool residuals --------------------------------------


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


# --- hour-of-week profile ---------------------------------------------------------------------


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


# --- burn rate --------------------------------------------------------------------------------


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
    for tier in tiers:
        long_spend = spent_between(end - tier.long, end)
        long_rate = _ratio(long_spend, _expected(season, profile, end - tier.long, end))
        short_rate = _ratio(spent_between(end - tier.short, end),
                            _expected(season, profile, end - tier.short, end))
        rates.append((tier.name, long_rate, short_rate))
        if (tripped is None and long_rate >= tier.long_factor
                and short_rate >= tier.short_factor
                and long_spend >= hard_limit * tier.floor_share):
            tripped = tier
    hourly = spent_between(end - HOUR, end)
    tte = (hard_limit - mtd) / hourly if hourly > 0 and mtd < hard_limit else None
    return Burn(tuple(rates), tripped, tte)


def _expected(season: Seasonal, profile: Profile, start: datetime, end: datetime) -> Decimal:
    total = ZERO
    cursor = start
    while cursor < end:
        stop = min(end, day_start(cursor.date()) + DAY)
        total += season.expected_day(cursor.date()) * profile.share_between(cursor, stop)
        cursor = stop
    return total


def _ratio(spend: Decimal, expected: Decimal) -> Decimal:
    if expected > 0:
        return spend / expected
    return Decimal("Infinity") if spend > 0 else ZERO

