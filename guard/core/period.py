"""UTC calendar arithmetic: budget periods are calendar months in UTC, buckets are UTC-snapped."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is refused rather than guessed."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()} has no time zone")
    return moment.astimezone(UTC)


def floor_minute(moment: datetime) -> datetime:
    """The start of the UTC minute containing ``moment``."""
    return utc(moment).replace(second=0, microsecond=0)


def floor_hour(moment: datetime) -> datetime:
    """The start of the UTC hour containing ``moment``."""
    return utc(moment).replace(minute=0, second=0, microsecond=0)


def floor_day(moment: datetime) -> datetime:
    """The start of the UTC day containing ``moment``."""
    return utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(moment: datetime) -> datetime:
    """The start of the UTC calendar month containing ``moment``."""
    return floor_day(moment).replace(day=1)


def next_month(moment: datetime) -> datetime:
    """The start of the UTC calendar month after the one containing ``moment``."""
    start = month_start(moment)
    return (start + timedelta(days=32)).replace(day=1)


def day_start(day: date) -> datetime:
    """The UTC midnight that starts ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """Every hour start in ``[start, end)``; ``start`` must be on the hour."""
    count = int((end - start) / HOUR)
    return [start + HOUR * i for i in range(max(0, count))]


def days_between(first: date, end: date) -> list[date]:
    """Every day in ``[first, end)``."""
    return [first + timedelta(days=i) for i in range(max(0, (end - first).days))]


def epoch(moment: datetime) -> int:
    """UTC epoch seconds of an aware datetime."""
    return int(utc(moment).timestamp())
