"""A unit of an analytics answer: one bucket × group with its fan-out rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

Values = tuple[str | None, ...]
"""Values of ``analytics_query.ROW_DIMENSIONS``, ``None`` where ungrouped or null."""
Fan = tuple[str | None, str | None]
"""``(cost_type, token_type)`` of a row, ``None`` where ungrouped."""


@dataclass(frozen=True, slots=True)
class Unit:
    """One bucket × group and its rows: ``(fan, metrics)`` with cost ``(list cents, requests)``
    or usage counts; ``rank`` is the value the unit is ranked by. A unit counts once toward
    ``limit`` and never straddles two pages."""

    start: datetime
    end: datetime
    values: Values
    rows: tuple[tuple[Fan, Any], ...]
    rank: Decimal | int
