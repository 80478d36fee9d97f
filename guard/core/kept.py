"""What a budget's forecast needs of complete days, kept between ticks. Pure.

A daemon's snapshots hold the same day objects tick after tick while a day's data does not
change (``guard.shell.memo``), so the parts of each budget's outlook that depend only on
complete days (its daily history, its conformal band, its seasonal baseline) are the same
too. The fetcher keeps one ``Kept`` and hands it over with each snapshot; the outlook asks it
with the tick's day objects and gets each budget's parts back while every one of them is the
very object it was (identity, one comparison per day per tick, not per budget), or an empty
table to fill.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any


class Kept:
    """Parts per key, valid while the same sources stand; one table per ``slot`` (the
    outlook's, the ledger's)."""

    def __init__(self) -> None:
        self._slots: dict[str, tuple[tuple[object, ...], dict[Hashable, Any]]] = {}

    def parts(self, sources: Sequence[object], slot: str = "outlook") -> dict[Hashable, Any]:
        """The parts kept for ``sources``: those of the last call if every source is the
        same object (a value compared with ``==`` where ``Value`` wraps it), else a new
        empty table."""
        fresh = tuple(sources)
        known = self._slots.get(slot)
        if known is None or len(known[0]) != len(fresh) or any(
                a is not b and not (isinstance(a, Value) and a == b)
                for a, b in zip(known[0], fresh, strict=True)):
            known = self._slots[slot] = (fresh, {})
        return known[1]


class Value:
    """A source compared by value, not identity (a date, a profile rebuilt each tick)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Value) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)
