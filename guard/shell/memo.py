"""What this process read of the store, kept while the store says it has not changed.

The store raises a day's version whenever that day's usage, billed hours or cost change
(``guard.adapters.store.sums``), whichever replica wrote it. A ``DayMemo`` keeps each day it
read with the version it had, and on the next read asks the store only for the days whose
version moved: a steady tick re-reads today (and the hour that just settled), not the month.
Reading the versions first and the data second can only make it read a day once too often,
never keep a day that changed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from datetime import date
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Versions(Protocol):
    """The store's day versions."""

    def versions(self, kind: str, first: date, last: date) -> dict[date, int]:
        """The version of each day in ``[first, last]`` that has one."""
        ...


class DayMemo:
    """Per (kind, name, day): the value read and the day's version when it was read."""

    def __init__(self, store: Versions) -> None:
        self.store = store
        self._days: dict[tuple[str, Hashable], dict[date, tuple[int | None, Any]]] = {}
        self._spans: dict[tuple[str, Hashable], tuple[Hashable, Any]] = {}
        self.reads = 0
        """Store reads of data this memo made (versions apart): what a benchmark counts."""

    def days(self, kind: str, name: Hashable, days: Sequence[date],
             read: Callable[[list[date]], Mapping[date, T]]) -> dict[date, T]:
        """The value of each of ``days`` (those ``read`` has one for), reading only the days
        not kept or whose version moved. Days not asked for are forgotten."""
        if not days:
            return {}
        versions = self.store.versions(kind, min(days), max(days))
        kept = self._days.get((kind, name), {})
        stale = [d for d in days if d not in kept or kept[d][0] != versions.get(d)]
        if stale:
            self.reads += 1
            found = read(stale)
            for day in stale:
                kept[day] = (versions.get(day), found.get(day))
        wanted = set(days)
        self._days[(kind, name)] = {d: v for d, v in kept.items() if d in wanted}
        return {d: value for d in days if (value := kept[d][1]) is not None}

    def span(self, kind: str, name: Hashable, days: Collection[date], key: Hashable,
             read: Callable[[], T]) -> T:
        """One value that depends on ``days`` and on ``key`` (e.g. the bounds of a range),
        read again when either changed."""
        versions = (self.store.versions(kind, min(days), max(days)) if days else {})
        current = (key, tuple(sorted(versions.items())))
        kept = self._spans.get((kind, name))
        if kept is not None and kept[0] == current:
            return kept[1]  # type: ignore[no-any-return]
        self.reads += 1
        value = read()
        self._spans[(kind, name)] = (current, value)
        return value
