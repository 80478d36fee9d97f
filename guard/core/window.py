"""The minute window a daemon keeps between ticks: only the minutes not final are read again.

A steady tick used to read the whole window again (the hour in progress, and in the first
minutes of an hour the previous one too), so its cost grew with the minute of the hour. A
minute's usage is final once read ``late`` after it ended (the same late window an hour has,
``FetchPolicy.late_window``); until then each tick reads it again. A final minute is summed
into its hour and its rows let go, so what is kept stays bounded: the rows of the last
``late`` minutes, one sum per (workspace, API key, model) per hour of the window, and one
``Period`` per minute for burn rates. Pure: time is an argument.

    window = MinuteWindow(late)
    start = window.read_from(fresh_from, through, at)   # the first minute to read
    window.take(rows, minutes, at)                      # the minutes read (priced per minute)
    window.again(minutes, at)                           # minutes read again, found unchanged
    window.hour_rows(hour)                               # priced rows of an hour, as read
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from guard.core.model import PricedUsage
from guard.core.period import HOUR, MINUTE, floor_hour
from guard.core.settle import accumulate
from guard.core.usage import Period, PeriodIndex

ZERO = Decimal(0)
_Key = tuple[str | None, str | None, str | None]
_Acc = list[Decimal | int]


class MinuteWindow:
    """The minutes read of the hours not stored for good, and what is due again."""

    def __init__(self, late: timedelta) -> None:
        self.late = late
        self._read_at: dict[datetime, datetime] = {}
        """When each kept minute was last read."""
        self._rows: dict[datetime, list[PricedUsage]] = {}
        """The rows of the minutes not final yet."""
        self._hours: dict[datetime, dict[_Key, _Acc]] = {}
        """The final minutes of each hour, summed per (workspace, API key, model)."""
        self._periods: dict[datetime, Period] = {}
        """Every kept minute's index, for burn rates."""
        self._built: dict[datetime, list[PricedUsage]] = {}
        """Each hour's rows as last built: kept while the hour stands."""
        self._indexes: dict[datetime, tuple[tuple[object, ...], PeriodIndex]] = {}
        """Each hour's index, with the arguments it was built with, kept likewise."""
        self._stored: dict[datetime, str] = {}
        """The digest each hour was stored with, while the hour stands (nothing taken)."""

    def final(self, minute: datetime) -> bool:
        """Whether ``minute`` was read late enough not to change any more."""
        read_at = self._read_at.get(minute)
        return read_at is not None and read_at >= minute + MINUTE + self.late

    def read_from(self, fresh_from: datetime, through: datetime) -> datetime:
        """The first minute of ``[fresh_from, through)`` to read: the first not final."""
        minute = fresh_from
        while minute < through and self.final(minute):
            minute += MINUTE
        return minute

    def take(self, rows: Iterable[PricedUsage], minutes: Collection[datetime], at: datetime,
             *, unpriced: Container[str] = (), keys: Container[str] | None = None,
             workspaces: Container[str] | None = None) -> None:
        """Keep ``rows`` (priced per minute) as the usage of ``minutes``, read at ``at``:
        each minute read replaces what was kept of it; a minute now final is summed into its
        hour."""
        by_minute: dict[datetime, list[PricedUsage]] = {m: [] for m in minutes}
        for row in rows:
            by_minute.setdefault(row.start, []).append(row)
        for minute, group in by_minute.items():
            if self.final(minute):
                continue  # never read again once final; an overlapping read changes nothing
            self._read_at[minute] = at
            self._changed(floor_hour(minute))
            self._periods[minute] = Period(minute, MINUTE,
                                           PeriodIndex.of(group, unpriced, keys, workspaces))
            if self.final(minute):
                self._rows.pop(minute, None)
                self._sum(floor_hour(minute), group)
            else:
                self._rows[minute] = group

    def holds(self, minute: datetime) -> bool:
        """Whether ``minute``'s rows are kept (read, not final yet)."""
        return minute in self._rows

    def again(self, minutes: Iterable[datetime], at: datetime) -> None:
        """``minutes`` read again at ``at`` and found as kept: their rows and indexes stand,
        only when they were read moves on (a minute now final is summed into its hour)."""
        for minute in minutes:
            rows = self._rows.get(minute)
            if rows is None:  # not taken, forgotten or final: nothing kept to stand
                continue
            self._read_at[minute] = at
            if self.final(minute):
                del self._rows[minute]
                self._sum(floor_hour(minute), rows)

    def _sum(self, hour: datetime, rows: Iterable[PricedUsage]) -> None:
        sums = self._hours.setdefault(hour, {})
        for row in rows:
            _add(sums, row)

    def complete(self, hour: datetime) -> bool:
        """Whether every minute of ``hour`` has been read (its rows are all here)."""
        return all(m in self._read_at for m in _minutes_of(hour))

    def whole(self, hour: datetime) -> bool:
        """Whether every minute of ``hour`` has its index (for burn rates)."""
        return all(m in self._periods for m in _minutes_of(hour))

    def hour_rows(self, hour: datetime) -> list[PricedUsage]:
        """The hour's usage as read, one row per (workspace, API key, model); built again
        only once a minute of it was taken (a minute read again unchanged, or turning final,
        leaves it as it was)."""
        built = self._built.get(hour)
        if built is None:
            sums = {key: list(acc) for key, acc in self._hours.get(hour, {}).items()}
            for minute in _minutes_of(hour):
                for row in self._rows.get(minute, ()):
                    _add(sums, row)
            built = self._built[hour] = [_priced(hour, key, acc) for key, acc in sums.items()]
        return built

    def hour_index(self, hour: datetime, unpriced: Container[str] = (),
                   keys: Container[str] | None = None,
                   workspaces: Container[str] | None = None) -> PeriodIndex:
        """``PeriodIndex.of`` the hour's rows, kept with them while the hour stands."""
        args = (unpriced, keys, workspaces)
        known = self._indexes.get(hour)
        if known is not None and known[0] == args:
            return known[1]
        index = PeriodIndex.of(self.hour_rows(hour), unpriced, keys, workspaces)
        self._indexes[hour] = (args, index)
        return index

    def stored_as(self, hour: datetime) -> str | None:
        """The digest ``hour`` was stored with, if nothing of it was taken since."""
        return self._stored.get(hour)

    def stored(self, digests: dict[datetime, str]) -> None:
        """Hours stored as they stand now, with their digests."""
        self._stored.update(digests)

    def _changed(self, hour: datetime) -> None:
        self._built.pop(hour, None)
        self._indexes.pop(hour, None)
        self._stored.pop(hour, None)

    def periods(self, start: datetime, end: datetime) -> list[Period]:
        """The kept minutes of ``[start, end)``, in order."""
        return [self._periods[m] for m in sorted(self._periods) if start <= m < end]

    def through(self) -> datetime | None:
        """The end of the last minute read (``None``: none kept)."""
        return max(self._read_at) + MINUTE if self._read_at else None

    def forget(self, rows_before: datetime, periods_before: datetime) -> None:
        """Let go of the rows of hours before ``rows_before`` (stored for good) and the
        indexes of minutes before ``periods_before`` (too old for burn rates)."""
        for minute in [m for m in self._read_at if m < rows_before]:
            del self._read_at[minute]  # read again should the window ever reach back here
            self._rows.pop(minute, None)
        for hour in [h for h in self._hours if h < rows_before]:
            del self._hours[hour]
        for hour in [h for h in {*self._built, *self._stored} if h < rows_before]:
            self._changed(hour)
        for minute in [m for m in self._periods if m < periods_before]:
            del self._periods[minute]

    def forget_hour(self, hour: datetime) -> None:
        """Let go of everything of ``hour`` (read again by the hour: the store has it)."""
        for minute in _minutes_of(hour):
            self._read_at.pop(minute, None)
            self._rows.pop(minute, None)
            self._periods.pop(minute, None)
        self._hours.pop(hour, None)
        self._changed(hour)


def _minutes_of(hour: datetime) -> Iterable[datetime]:
    return (hour + MINUTE * i for i in range(HOUR // MINUTE))


def _add(sums: dict[_Key, _Acc], row: PricedUsage) -> None:
    key = (row.workspace_id, row.api_key_id, row.model)
    acc = sums.get(key)
    if acc is None:
        acc = sums[key] = [ZERO, ZERO, 0, 0, 0, 0, 0]
    accumulate(acc, row)


def _priced(hour: datetime, key: _Key, acc: _Acc) -> PricedUsage:
    workspace_id, api_key_id, model = key
    tok, web, inp, cache_write, cache_read, out, searches = acc
    return PricedUsage(hour, workspace_id, api_key_id, model, tok, web,  # type: ignore[arg-type]
                       inp, cache_write, cache_read, out, searches)  # type: ignore[arg-type]
