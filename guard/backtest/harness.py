"""Replay the forecast over past months and score it (reference/forecasting.md §A3.5).

For every organization and every complete month with at least two calendar months of history
before it, the forecast is made at the start (00:00 UTC) of days 5, 10, 15 and 20 from the data
a watermark there would see: month-to-date is the month's days before it, history is every day
before it, the band is ``calibrate``'d once per month from the months before it, and the
hour-of-week profile is uniform. Each forecast is scored against the realised month total,
next to the naive run rate MTD / (d − 1) × D.

Forecasts are made against no limit (``NO_LIMIT``): P10/P50/P90 do not depend on it; gating
and the exhaustion day are for the alert metrics, which bring their own limits.

Pure apart from ``backtest``, which may fan organizations out to worker processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from guard.core.forecast import (
    Band,
    DailySeries,
    Forecast,
    Profile,
    Replays,
    calibrate,
    forecast,
    median,
)
from guard.core.period import day_start, next_month

CHECKPOINTS = (5, 10, 15, 20)
"""Days of the month at whose start (00:00 UTC) the forecast is made."""
MIN_HISTORY_MONTHS = 2
NO_LIMIT = Decimal("Infinity")
_UNIFORM = Profile.uniform()


@dataclass(frozen=True, slots=True)
class Case:
    """One month forecast at the start of ``day``, and the naive run rate at the same moment."""

    day: int
    mtd: Decimal
    forecast: Forecast
    naive_usd: Decimal


@dataclass(frozen=True, slots=True)
class MonthReplay:
    """One (organization, month): its daily spend, realised total, band and forecasts."""

    org: str
    month: date
    days: tuple[Decimal, ...]
    """Spend on each day of the month, day 1 first."""
    total: Decimal
    band: Band
    cases: tuple[Case, ...]


@dataclass(frozen=True, slots=True)
class OrgReplay:
    """Every replayed month of one organization, with the whole series they came from."""

    org: str
    series: Mapping[date, Decimal]
    months: tuple[MonthReplay, ...]


@dataclass(frozen=True, slots=True)
class Accuracy:
    """Mean and median absolute percentage error, as fractions (0.1 is 10 %)."""

    mape: Decimal
    median_ape: Decimal


@dataclass(frozen=True, slots=True)
class DayScore:
    """How the forecasts made on one day of the month did, over every organization-month."""

    day: int
    cases: int
    ours: Accuracy
    naive: Accuracy
    p10_coverage: Decimal
    """Share of cases whose realised total is at or above P10."""
    p90_coverage: Decimal
    """Share of cases whose realised total is at or below P90."""

    @property
    def ratio(self) -> Decimal:
        """Our MAPE over the naive MAPE: below 1 means we beat the run rate."""
        return self.ours.mape / self.naive.mape if self.naive.mape else Decimal("NaN")


@dataclass(frozen=True, slots=True)
class Backtest:
    """The replays and their scores per checkpoint day."""

    orgs: tuple[OrgReplay, ...]
    scores: tuple[DayScore, ...]

    @property
    def month_count(self) -> int:
        """Organization-months replayed."""
        return sum(len(org.months) for org in self.orgs)


def backtest(orgs: Mapping[str, DailySeries], workers: int = 1) -> Backtest:
    """Replay and score every organization; ``workers`` > 1 replays them in processes."""
    items = list(orgs.items())
    if workers > 1 and len(items) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunk = max(1, len(items) // (workers * 8))
            replays = tuple(pool.map(_replay_item, items, chunksize=chunk))
    else:
        replays = tuple(_replay_item(item) for item in items)
    return Backtest(replays, score(replays))


def _replay_item(item: tuple[str, DailySeries]) -> OrgReplay:
    return replay_org(*item)


def replay_org(org: str, series: DailySeries,
               checkpoints: Sequence[int] = CHECKPOINTS) -> OrgReplay:
    """Replay every scoreable month of one organization's series."""
    replays: Replays = {}
    months = tuple(replay_month(org, series, m, checkpoints, replays)
                   for m in scoreable_months(series))
    return OrgReplay(org, dict(series), months)


def scoreable_months(series: DailySeries) -> list[date]:
    """Complete months, with spend, that start at least two calendar months after the data."""
    if not series:
        return []
    first = min(series)
    month = _add_months(date(first.year, first.month, 1), MIN_HISTORY_MONTHS)
    if first.day != 1:
        month = _add_months(month, 1)
    found = []
    while month <= max(series):
        days = _month_days(month)
        if all(d in series for d in days) and sum((series[d] for d in days), Decimal(0)) > 0:
            found.append(month)
        month = _add_months(month, 1)
    return found


def replay_month(org: str, series: DailySeries, month: date,
                 checkpoints: Sequence[int] = CHECKPOINTS,
                 replays: Replays | None = None) -> MonthReplay:
    """Forecast one complete month at the start of each checkpoint day."""
    days = _month_days(month)
    spend = tuple(series[d] for d in days)
    band = calibrate(_before(series, month), month, replays=replays)
    cases = tuple(_case(series, spend, band, month.replace(day=d)) for d in checkpoints
                  if d <= len(days))
    return MonthReplay(org, month, spend, sum(spend, Decimal(0)), band, cases)


def _case(series: DailySeries, spend: tuple[Decimal, ...], band: Band, now: date) -> Case:
    """The forecast and the naive run rate at 00:00 UTC of ``now``."""
    mtd = sum(spend[:now.day - 1], Decimal(0))
    made = forecast(mtd=mtd, history=_before(series, now), profile=_UNIFORM, band=band,
                    now=day_start(now), hard_limit=NO_LIMIT)
    return Case(now.day, mtd, made, naive_run_rate(mtd, now.day, len(spend)))


def naive_run_rate(mtd: Decimal, day: int, days_in_month: int) -> Decimal:
    """MTD / (d − 1) × D: the complete days so far, extrapolated to the month."""
    return mtd / (day - 1) * days_in_month if day > 1 else Decimal(0)


def score(replays: Iterable[OrgReplay],
          checkpoints: Sequence[int] = CHECKPOINTS) -> tuple[DayScore, ...]:
    """Accuracy and coverage per checkpoint day over every replayed month."""
    by_day: dict[int, list[tuple[Case, Decimal]]] = {d: [] for d in checkpoints}
    for org in replays:
        for month in org.months:
            for case in month.cases:
                by_day.setdefault(case.day, []).append((case, month.total))
    return tuple(_day_score(day, cases) for day, cases in by_day.items() if cases)


def _day_score(day: int, cases: Sequence[tuple[Case, Decimal]]) -> DayScore:
    n = Decimal(len(cases))
    low = sum(1 for case, total in cases if total >= case.forecast.p10_usd)
    high = sum(1 for case, total in cases if total <= case.forecast.p90_usd)
    return DayScore(
        day=day, cases=len(cases),
        ours=accuracy([(c.forecast.p50_usd, total) for c, total in cases]),
        naive=accuracy([(c.naive_usd, total) for c, total in cases]),
        p10_coverage=low / n, p90_coverage=high / n,
    )


def accuracy(pairs: Sequence[tuple[Decimal, Decimal]]) -> Accuracy:
    """MAPE and median APE of ``(predicted, actual)`` pairs; actuals must be positive."""
    errors = [abs(predicted - actual) / actual for predicted, actual in pairs]
    return Accuracy(sum(errors, Decimal(0)) / len(errors), median(errors))


def _before(series: DailySeries, day: date) -> dict[date, Decimal]:
    return {d: v for d, v in series.items() if d < day}


def _month_days(month: date) -> list[date]:
    end = next_month(day_start(month)).date()
    return [month + timedelta(days=i) for i in range((end - month).days)]


def _add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


# --- alert metrics: reserved ------------------------------------------------------------------
#
# Precision, recall, lead time and flaps per month (§A3.5) belong here, scored with the policy
# module against limits drawn near each month's realised total (e.g. total × U(0.85, 1.15)).
# Everything they need is in ``Backtest.orgs``: per (organization, month) a ``MonthReplay`` with
# ``days`` (the month's daily spend), ``total`` (the realised total) and ``band`` (reusable for
# any evaluation time in that month), and ``OrgReplay.series`` for the history before any
# evaluation time. A result type (say ``AlertScore``) would join ``Backtest`` as a new field,
# computed in ``backtest`` after ``score``.
