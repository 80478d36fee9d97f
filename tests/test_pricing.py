"""The estimator: every priced feature, model lookup, overrides and unknown models."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

import pytest

from guard.core.model import UsageRow
from guard.core.pricing import PriceTable

D = Decimal


def row(model: str = "claude-sonnet-4-6", *, uncached: int = 0, w5: int = 0, w1: int = 0,
        read: int = 0, out: int = 0, searches: int = 0, tier: str | None = "standard",
        context: str | None = "0-200k", geo: str | None = "global") -> UsageRow:
    return UsageRow(uncached, w5, w1, read, out, searches, model=model, service_tier=tier,
                    context_window=context, inference_geo=geo)


@dataclass
class Override:
    input: Decimal
    output: Decimal
    cache_write_5m: Decimal | None = None
    cache_write_1h: Decimal | None = None
    cache_read: Decimal | None = None
    long_context_input: Decimal | None = None
    long_context_output: Decimal | None = None
    inference_geo_us: bool | None = None


@pytest.fixture
def table() -> PriceTable:
    return PriceTable.load()


@pytest.mark.parametrize(("usage", "usd"), [
    pytest.param(row(uncached=1_000_000), D("3"), id="uncached-input"),
    pytest.param(row(w5=1_000_000), D("3.75"), id="cache-write-5m"),
    pytest.param(row(w1=1_000_000), D("6"), id="cache-write-1h"),
    pytest.param(row(read=1_000_000), D("0.3"), id="cache-read"),
    pytest.param(row(out=1_000_000), D("15"), id="output"),
    pytest.param(row(uncached=1_000_000, out=1_000_000, tier="batch"), D("9"), id="batch-half"),
    pytest.param(row(uncached=1_000_000, geo="us"), D("3.3"), id="us-geo-4.6"),
    pytest.param(row("claude-haiku-4-5-20251001", uncached=1_000_000, geo="us"), D("1"),
                 id="us-geo-not-on-haiku-4.5"),
    pytest.param(row(w1=1_000_000, tier="batch", geo="us"), D("3.3"), id="stacked"),
    pytest.param(row("claude-sonnet-4-5-20250929", uncached=1_000_000, out=1_000_000,
                     context="200k-1M"), D("28.5"), id="long-context-sonnet-4.5"),
    pytest.param(row("claude-sonnet-4-5-20250929", w5=1_000_000, context="200k-1M"),
                 D("7.5"), id="long-context-cache-write"),
    pytest.param(row(uncached=1_000_000, out=1_000_000, context="200k-1M"), D("18"),
                 id="no-long-context-premium-on-4.6"),
    pytest.param(row("claude-3-haiku-20240307", w5=1_000_000, read=1_000_000), D("0.33"),
                 id="haiku-3-explicit-cache-prices"),
])
def test_token_prices(table: PriceTable, usage: UsageRow, usd: Decimal) -> None:
    """Each token category, tier, residency and context rule prices exactly as published."""
    tokens, searches = table.price(usage)
    assert tokens == usd
    assert searches == 0


def test_web_searches_cost_a_cent_each(table: PriceTable) -> None:
    """Web searches are $0.01 each, separate from tokens and not discounted by batch."""
    assert table.price(row(searches=12, tier="batch")) == (D(0), D("0.12"))


def test_the_reference_example_row_prices_exactly(table: PriceTable) -> None:
    """The reference's example row (Sonnet 4.6, 5m writes, reads, 7 searches) to the digit."""
    usage = row(uncached=184230, w5=52000, read=1450000, out=61240, searches=7)
    assert table.price(usage) == (D("2.10129"), D("0.07"))


@pytest.mark.parametrize(("model", "card"), [
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5-20251001"),
    ("claude-haiku-4-5", "claude-haiku-4-5-20251001"),
    ("claude-opus-4-5", "claude-opus-4-5-20251101"),
    ("claude-sonnet-4-6-20260401", "claude-sonnet-4-6"),
    ("claude-opus-4-20250514", "claude-opus-4-20250514"),
])
def test_models_match_by_dated_id_or_alias(table: PriceTable, model: str, card: str) -> None:
    """A dated id, an alias, or an id with a date appended find the same card."""
    assert table.card(model).model == card
    assert table.unknown_models == set()


def test_unknown_model_is_priced_at_the_most_expensive_card_and_warned_once(
        table: PriceTable, caplog: pytest.LogCaptureFixture) -> None:
    """An unknown model costs what the dearest card costs, with a single warning."""
    caplog.set_level(logging.WARNING)
    first = table.price(row("claude-opus-4-9", uncached=1_000_000, out=1_000_000))
    table.price(row("claude-opus-4-9", uncached=1_000_000))
    assert first == (D(15) + D(75), D(0))
    assert table.unknown_models == {"claude-opus-4-9"}
    assert len([r for r in caplog.records if "claude-opus-4-9" in r.getMessage()]) == 1


def test_config_adds_and_overrides_models() -> None:
    """[pricing] adds a new model and replaces a shipped card wholesale."""
    table = PriceTable.load({
        "claude-new-model": Override(input=D(4), output=D(20)),
        "claude-sonnet-4-6": Override(input=D(2), output=D(10), cache_read=D("0.1")),
    })
    assert table.price(row("claude-new-model", uncached=1_000_000, w1=1_000_000)) == (
        D(12), D(0))
    assert table.price(row(read=1_000_000, out=1_000_000)) == (D("10.1"), D(0))
    assert table.unknown_models == set()
