"""Reconciliation of the estimate against the bill, per model, on the newest billed day."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from guard.core.model import CostDay, PricedUsage, Snapshot
from guard.core.reconcile import price_drift, reconciled_day
from guard.core.usage import days_of

AT = datetime(2026, 3, 15, 12, tzinfo=UTC)
D14 = date(2026, 3, 14)


def snapshot(estimated: dict[str, str], billed: dict[str, str],
             unpriced: tuple[str, ...] = ()) -> Snapshot:
    """March 14 billed per model, and that day's usage estimated per model."""
    usage = [PricedUsage(datetime(2026, 3, 14, tzinfo=UTC), None, None, model, Decimal(usd),
                         Decimal("0.5")) for model, usd in estimated.items()]
    settled = {D14: CostDay(D14, {None: Decimal(100)},
                            {model: Decimal(usd) for model, usd in billed.items()})}
    return Snapshot(AT, settled, days_of(usage), AT, 0, usage_from=date(2026, 2, 15),
                    unpriced_models=unpriced)


@pytest.mark.parametrize(("estimated", "billed", "ratio"), [
    pytest.param("110", "100", Decimal("1.1"), id="ten-percent-dear"),
    pytest.param("90", "100", Decimal("0.9"), id="ten-percent-cheap"),
    pytest.param("5", "0", None, id="estimated-but-never-billed"),
])
def test_a_model_off_the_bill_is_drift(estimated: str, billed: str,
                                       ratio: Decimal | None) -> None:
    """Past 2 % (and five cents) the model is listed with its day, both figures and ratio."""
    [drift] = price_drift(snapshot({"m": estimated}, {"m": billed}))
    assert (drift.model, drift.day, drift.ratio) == ("m", D14, ratio)
    assert (drift.estimated_usd, drift.billed_usd) == (Decimal(estimated), Decimal(billed))


@pytest.mark.parametrize(("estimated", "billed"), [
    pytest.param("101.9", "100", id="within-two-percent"),
    pytest.param("1.04", "1", id="four-percent-but-four-cents"),
    pytest.param("100", "100", id="exact"),
])
def test_small_or_cent_sized_gaps_are_not_drift(estimated: str, billed: str) -> None:
    """Rounding and a tolerance of 2 % never raise drift."""
    assert price_drift(snapshot({"m": estimated}, {"m": billed})) == ()


def test_web_searches_and_unpriced_models_are_left_out() -> None:
    """Only token cost is compared (the bill's per-model figure); unknown models are unpriced."""
    assert price_drift(snapshot({"m": "100", "x": "50"}, {"m": "100", "x": "10"},
                                unpriced=("x",))) == ()


def test_without_billed_days_in_usage_there_is_nothing_to_reconcile() -> None:
    """A billed day older than the usage the snapshot holds is not reconciled."""
    data = snapshot({"m": "1"}, {"m": "2"})
    old = Snapshot(AT, data.settled, data.usage, AT, 0, usage_from=date(2026, 3, 15))
    assert reconciled_day(old) is None and price_drift(old) == ()


def test_a_model_unknown_on_last_months_billed_day_is_not_drift() -> None:
    """On the 1st the newest billed day is last month's: its unknown models are unknown too,
    though this month has no usage of them yet."""
    data = snapshot({"m": "100", "x": "50"}, {"m": "100", "x": "10"})
    assert [d.model for d in price_drift(data)] == ["x"]
    assert price_drift(replace(data, unknown_models=("x",))) == ()


def test_a_negotiated_discount_is_not_drift() -> None:
    """Where the bill gives list prices, the estimate is scaled by billed/list first."""
    data = snapshot({"m": "100"}, {"m": "93"})
    assert [d.model for d in price_drift(data)] == ["m"]
    day = data.settled[D14]
    discounted = {D14: CostDay(D14, day.by_workspace, day.by_model, Decimal(100) / Decimal(
        "0.93"))}
    assert price_drift(replace(data, settled=discounted)) == ()
