"""Reconciliation: the estimate (usage × price table) against the bill, per model and day. Pure.

For the newest billed day that usage also covers, each model's estimated token cost (scaled by
that day's billed/list ratio where the source gives list prices, so a negotiated discount is
not drift) is set against what the bill charged for that model's tokens. A model off by more than
``TOLERANCE`` (and by at least ``MIN_GAP_USD``, so cent rounding on a small model is no
alarm) is **price drift**: the price table is wrong or stale for it, and a person reading an
invoice should not be the first to find out. Models the table does not know are listed as
unpriced instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from guard.core.model import Snapshot

TOLERANCE = Decimal("0.02")
MIN_GAP_USD = Decimal("0.05")


@dataclass(frozen=True, slots=True)
class Drift:
    """One model whose estimate missed the bill on ``day``; ``ratio`` is estimated / billed."""

    model: str
    day: date
    estimated_usd: Decimal
    billed_usd: Decimal
    ratio: Decimal | None

    def describe(self) -> str:
        """A warning line for people."""
        off = f"{(self.ratio - 1) * 100:+.1f}%" if self.ratio is not None else "billed $0"
        return (f"price drift: {self.model} on {self.day} was estimated at "
                f"${self.estimated_usd:.2f} against ${self.billed_usd:.2f} billed ({off}); "
                "check its card in the price table")


def reconciled_day(snapshot: Snapshot) -> date | None:
    """The newest billed day whose usage the snapshot also holds."""
    covered = [d for d in snapshot.settled
               if snapshot.usage_from is not None and d >= snapshot.usage_from]
    return max(covered, default=None)


def price_drift(snapshot: Snapshot) -> tuple[Drift, ...]:
    """Models whose estimate on the newest reconciled day is off the bill by more than 2 %."""
    day = reconciled_day(snapshot)
    if day is None:
        return ()
    index = snapshot.usage.get(day)
    estimated = {model: sums.token_usd for model, sums in (index.model or {}).items()
                 } if index is not None else {}
    cost = snapshot.settled[day]
    billed, scale = cost.by_model, cost.calibration
    estimated = {model: usd * scale for model, usd in estimated.items()}
    unpriced = set(snapshot.unpriced_models) | set(snapshot.unknown_models)
    found = []
    for model in sorted(set(estimated) | set(billed)):
        if model in unpriced:
            continue
        drift = _drift(model, day, estimated.get(model, Decimal(0)),
                       billed.get(model, Decimal(0)))
        if drift is not None:
            found.append(drift)
    return tuple(found)


def _drift(model: str, day: date, estimated: Decimal, billed: Decimal) -> Drift | None:
    if abs(estimated - billed) < MIN_GAP_USD:
        return None
    ratio = estimated / billed if billed > 0 else None
    if ratio is not None and abs(ratio - 1) <= TOLERANCE:
        return None
    return Drift(model, day, estimated, billed, ratio)
