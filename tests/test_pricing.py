"""The estimator: every priced feature, model lookup, overrides and unknown models."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest

from guard.core.model import UsageRow
from guard.core.pricing import PriceTable

D = Decimal


def row(model: str = "claude-sonnet-4-6", *, uncached: int = 0, w5: int = 0, w1: int = 0,
        read: int = 0, out: int = 0, searches: int = 0, tier: str | None = "standard",
        context: str | None = "0-200k", geo: str | None = "global",
        speed: str | None = None) -> UsageRow:
    return UsageRow(uncached, w5, w1, read, out, searches, model=model, service_tier=tier,
                    context_window=context, inference_geo=geo, speed=speed)


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
    fast: Decimal | None = None


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
    dearest = max(table.cards.values(), key=lambda c: (c.output, c.input))
    assert (dearest.model, dearest.input, dearest.output) == ("claude-mythos-preview", 25, 125)
    assert first == (D(25) + D(125), D(0))
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


SDK_MODELS = (  # anthropic 2.16.0, types/model_param.py
    "claude-fable-5-2", "claude-mythos-5-2", "claude-haiku-5-5", "claude-sonnet-5-5",
    "claude-fable-5-1", "claude-opus-5-5", "claude-mythos-5-1", "claude-sonnet-5",
    "claude-fable-5", "claude-mythos-5", "claude-opus-5", "claude-opus-4-8", "claude-opus-4-7",
    "claude-mythos-preview", "claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5",
    "claude-haiku-4-5-20251001", "claude-opus-4-5", "claude-opus-4-5-20251101")


@pytest.mark.parametrize("model", SDK_MODELS)
def test_every_model_the_sdk_lists_has_a_card(table: PriceTable, model: str) -> None:
    """No model id of the official SDK falls back to the unknown-model card."""
    table.card(model)
    assert table.unknown_models == set()


MTOK_IN_OUT = {"uncached": 1_000_000, "out": 1_000_000}
OCT_6, OCT_7 = date(2026, 10, 6), date(2026, 10, 7)


@pytest.mark.parametrize(("usage", "day", "usd"), [
    pytest.param(row("claude-opus-5-5", **MTOK_IN_OUT), None, D(24), id="opus-5.5"),
    pytest.param(row("claude-opus-5-5", read=1_000_000), None, D("0.2"),
                 id="opus-5.5-read-0.05x"),
    pytest.param(row("claude-sonnet-5-5", read=1_000_000), OCT_6, D("0.2"),
                 id="sonnet-5.5-read-before-the-cut"),
    pytest.param(row("claude-sonnet-5-5", read=1_000_000), OCT_7, D("0.1"),
                 id="sonnet-5.5-read-from-2026-10-07"),
    pytest.param(row("claude-sonnet-5-5", **MTOK_IN_OUT), OCT_6, D(12), id="sonnet-5.5"),
    pytest.param(row("claude-haiku-5-5", **MTOK_IN_OUT), None, D("0.6"),
                 id="haiku-5.5-lower-band"),
    pytest.param(row("claude-fable-5-2", w5=1_000_000, w1=1_000_000, read=1_000_000), None,
                 D("26.2"), id="fable-5.2-explicit-cache"),
    pytest.param(row("claude-haiku-5-5", uncached=1_000_000, geo="us"), None, D("0.11"),
                 id="us-geo-haiku-5.5"),
    pytest.param(row("claude-opus-5-5", **MTOK_IN_OUT, speed="fast"), None, D(48),
                 id="fast-opus-5.5-2x"),
    pytest.param(row("claude-opus-4-7", **MTOK_IN_OUT, speed="fast"), None, D(180),
                 id="fast-opus-4.7-6x"),
    pytest.param(row("claude-opus-4-6", **MTOK_IN_OUT, speed="fast", context="200k-1M"), None,
                 D(360), id="fast-opus-4.6-long-12x"),
    pytest.param(row("claude-opus-5-5", read=1_000_000, speed="fast", geo="us"), None,
                 D("0.44"), id="fast-stacks-with-cache-and-geo"),
    pytest.param(row("claude-sonnet-5-5", **MTOK_IN_OUT, speed="fast"), OCT_7, D(12),
                 id="fast-is-1x-where-unsupported"),
])
def test_todays_models_price_by_day_speed_and_geo(table: PriceTable, usage: UsageRow,
                                                  day: date | None, usd: Decimal) -> None:
    """Current cards, their effective dates, fast mode and US inference price as published."""
    assert table.price(usage, day) == (usd, D(0))


@pytest.mark.parametrize(("model", "card"), [
    ("claude-opus-5-5[1m]", "claude-opus-5-5"),
    ("claude-sonnet-5-5@20261001", "claude-sonnet-5-5"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5-20251001"),
])
def test_variant_ids_find_their_card(table: PriceTable, model: str, card: str) -> None:
    """Claude Code's variant tags do not make a known model unknown."""
    assert table.card(model).model == card
    assert table.unknown_models == set()


def test_a_newer_version_is_unknown_not_its_older_sibling(table: PriceTable) -> None:
    """``claude-sonnet-5-7`` is not priced as ``claude-sonnet-5``: it is unknown, priced dear."""
    assert table.card("claude-sonnet-5-7").output == 125
    assert table.unknown_models == {"claude-sonnet-5-7"}


def test_a_config_override_can_set_a_fast_mode_multiplier() -> None:
    """[pricing] with ``fast`` prices that model's fast usage at the multiple, standard at 1×."""
    table = PriceTable.load({"claude-new-model": Override(input=D(4), output=D(20), fast=D(2))})
    assert table.price(row("claude-new-model", **MTOK_IN_OUT, speed="fast")) == (D(48), D(0))
    assert table.price(row("claude-new-model", **MTOK_IN_OUT)) == (D(24), D(0))
