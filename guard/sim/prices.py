"""The simulator's own price table: what the simulated organization is truly billed.

It shares nothing with the guard's estimator on purpose: it is the oracle that estimator is
checked against. Prices are USD per million tokens (reference §5). Amounts come out in cents as
exact Decimals: ``cents = tokens × usd_per_mtok / 10_000 × multipliers``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal

UNCACHED_INPUT = "uncached_input_tokens"
OUTPUT = "output_tokens"
CACHE_READ = "cache_read_input_tokens"
CACHE_WRITE_5M = "cache_creation.ephemeral_5m_input_tokens"
CACHE_WRITE_1H = "cache_creation.ephemeral_1h_input_tokens"

TOKEN_TYPES = (UNCACHED_INPUT, OUTPUT, CACHE_READ, CACHE_WRITE_5M, CACHE_WRITE_1H)
"""Every ``token_type`` of the cost report, in the order the simulator reports them."""

LONG_CONTEXT = "200k-1M"
WEB_SEARCH_CENTS = Decimal(1)
"""$10 per 1,000 searches."""
CODE_EXECUTION_CENTS_PER_HOUR = Decimal(5)

_INPUT_MULTIPLIERS = {
    UNCACHED_INPUT: Decimal(1),
    CACHE_WRITE_5M: Decimal("1.25"),
    CACHE_WRITE_1H: Decimal(2),
    CACHE_READ: Decimal("0.1"),
}
_BATCH = Decimal("0.5")
_US_GEO = Decimal("1.1")
_MICRO = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class ModelCard:
    """List prices of one model in USD per million tokens.

    ``geo_priced`` marks Claude 4.6 and later, where ``inference_geo == "us"`` costs 10 % more;
    ``long_context`` is the (input, output) card of rows with ``context_window == "200k-1M"``.
    """

    model: str
    display_name: str
    input_usd: Decimal
    output_usd: Decimal
    geo_priced: bool = False
    long_context: tuple[Decimal, Decimal] | None = None


def _card(
    model: str,
    name: str,
    inp: str,
    out: str,
    *,
    geo_priced: bool = False,
    long_context: tuple[Decimal, Decimal] | None = None,
) -> ModelCard:
    return ModelCard(model, name, Decimal(inp), Decimal(out), geo_priced, long_context)


_LONG = (Decimal(6), Decimal("22.50"))

CARDS: dict[str, ModelCard] = {
    card.model: card
    for card in (
        _card("claude-opus-5", "Claude Opus 5", "5", "25", geo_priced=True),
        _card("claude-sonnet-5", "Claude Sonnet 5", "2", "10", geo_priced=True),
        _card("claude-opus-4-8", "Claude Opus 4.8", "5", "25", geo_priced=True),
        _card("claude-opus-4-7", "Claude Opus 4.7", "5", "25", geo_priced=True),
        _card("claude-opus-4-6", "Claude Opus 4.6", "5", "25", geo_priced=True),
        _card("claude-sonnet-4-6", "Claude Sonnet 4.6", "3", "15", geo_priced=True),
        _card("claude-opus-4-5-20251101", "Claude Opus 4.5", "5", "25"),
        _card("claude-opus-4-1-20250805", "Claude Opus 4.1", "15", "75"),
        _card("claude-opus-4-20250514", "Claude Opus 4", "15", "75"),
        _card("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "3", "15", long_context=_LONG),
        _card("claude-sonnet-4-20250514", "Claude Sonnet 4", "3", "15", long_context=_LONG),
        _card("claude-3-7-sonnet-20250219", "Claude Sonnet 3.7", "3", "15"),
        _card("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "1", "5"),
        _card("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "0.80", "4"),
        _card("claude-3-haiku-20240307", "Claude Haiku 3", "0.25", "1.25"),
        # Unknown to public price lists: the guard has to price it fail-expensive.
        _card("claude-nova-1", "Claude Nova 1", "4", "20"),
    )
}


def card(model: str) -> ModelCard:
    """The price card of ``model``; ``ValueError`` if the simulator does not know it."""
    try:
        return CARDS[model]
    except KeyError:
        raise ValueError(f"the simulator has no price for model {model!r}") from None


@functools.lru_cache(maxsize=1024)
def usd_per_mtok(
    model: str, token_type: str, service_tier: str, context_window: str, inference_geo: str
) -> Decimal:
    """The true price of one token type in USD per million tokens, every modifier applied."""
    prices = card(model)
    inp, out = prices.input_usd, prices.output_usd
    if context_window == LONG_CONTEXT and prices.long_context is not None:
        inp, out = prices.long_context
    price = out if token_type == OUTPUT else inp * _INPUT_MULTIPLIERS[token_type]
    if service_tier == "batch":
        price *= _BATCH
    if inference_geo == "us" and prices.geo_priced:
        price *= _US_GEO
    return price


def token_cents(
    tokens: int,
    model: str,
    token_type: str,
    *,
    service_tier: str,
    context_window: str,
    inference_geo: str,
) -> Decimal:
    """The exact cost in cents of ``tokens`` tokens of one type."""
    price = usd_per_mtok(model, token_type, service_tier, context_window, inference_geo)
    return Decimal(tokens) * price / _MICRO


def web_search_cents(requests: int) -> Decimal:
    """The exact cost in cents of ``requests`` web searches."""
    return Decimal(requests) * WEB_SEARCH_CENTS
