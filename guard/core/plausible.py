"""Whether figures the Admin API sent are believable. Pure.

A hostile or broken response must never relax anything, and a figure so large that it cannot
be true would otherwise be stored, fire every alert for the rest of the month, or overflow
the store. The parser refuses negatives and absurd magnitudes per row; this module refuses a
row (an hour of one key and model, a day of one workspace) of more than ``FACTOR`` × the
organization's hard limit (its largest organization budget). A whole month's budget ten times
over in one row is not a runaway but a broken or hostile answer. Without an organization
budget there is no such bound (budgets of some workspaces say nothing of the others' spend),
and only the parser's per-row limits apply. Such a response is an error for the tick, which then
decides on what is stored; nothing of it is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from guard.core.billed import BilledHour
from guard.core.model import Budget, CostDay, PricedUsage, Scope

FACTOR = 10
"""How many times the organization's hard limit one row may hold before it is refused."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """The largest amount one row may plausibly hold (``None``: no bound)."""

    row_usd: Decimal | None = None

    def check(self, rows: Iterable[tuple[date, Decimal]], what: str) -> str | None:
        """Why one of ``rows`` (day, dollars) cannot be true, if one cannot."""
        if self.row_usd is None:
            return None
        for day, usd in rows:
            if usd > self.row_usd:
                return (f"{what} has a row of ${usd:,.2f} on {day}, more than {FACTOR}× the "
                        f"organization's hard limit (${self.row_usd / FACTOR:,.2f}): rejected "
                        "as malformed")
        return None


def bounds_of(budgets: Sequence[Budget]) -> Bounds:
    """``FACTOR`` × the organization budget's hard limit (no bound without one)."""
    org = [b.hard_limit_usd for b in budgets if b.scope is Scope.ORGANIZATION]
    return Bounds(max(org) * FACTOR if org else None)


def usage_rows(rows: Iterable[PricedUsage]) -> Iterator[tuple[date, Decimal]]:
    """Each priced usage row's day and dollars."""
    return ((row.start.date(), row.usd) for row in rows)


def cost_rows(days: Iterable[CostDay]) -> Iterator[tuple[date, Decimal]]:
    """Each (day, workspace) amount of the cost report."""
    return ((d.day, usd) for d in days for usd in d.by_workspace.values())


def billed_rows(hours: Iterable[BilledHour]) -> Iterator[tuple[date, Decimal]]:
    """Each billed hour's day and dollars."""
    return ((h.start.date(), h.token_usd + h.other_usd) for h in hours)
