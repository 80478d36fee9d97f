"""UTC time arithmetic on minute, hour and day grids."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; ``ValueError`` for a naive datetime, whose zone would be a guess."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: pass an aware UTC datetime")
    return moment.astimezone(UTC)


def floor(moment: datetime, width: timedelta) -> datetime:
    """The start of the ``width`` slot (minute, hour or UTC day) that holds ``moment``."""
    return _EPOCH + (utc(moment) - _EPOCH) // width * width


def ceil(moment: datetime, width: timedelta) -> datetime:
    """The first slot start at or after ``moment``."""
    start = floor(moment, width)
    return start if start == utc(moment) else start + width


def aligned_hour(moment: datetime) -> datetime:
    """``moment`` in UTC if it starts an hour; ``ValueError`` otherwise."""
    if floor(moment, HOUR) != utc(moment):
        raise ValueError(f"{moment.isoformat()} is not the start of an hour")
    return utc(moment)


def hours(start: datetime, end: datetime) -> Iterator[datetime]:
    """Starts of the hours that overlap ``[start, end)``."""
    hour = floor(start, HOUR)
    while hour < end:
        yield hour
        hour += HOUR


def segments(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Cut minute-aligned ``[start, end)`` into whole UTC days, whole hours and minute runs.

    A minute run never crosses an hour, so each piece can be read from one cached day, one
    cached hour, or a slice of one hour's minutes.
    """
    moment = start
    while moment < end:
        stop = _largest_step(moment, end)
        yield moment, stop
        moment = stop


def _largest_step(moment: datetime, end: datetime) -> datetime:
    for width in (DAY, HOUR):
        if floor(moment, width) == moment and moment + width <= end:
            return moment + width
    return min(end, floor(moment, HOUR) + HOUR)
