"""The simulator's own price table: what the simulated organization is truly billed.

It shares nothing with the guard's estimator on purpose: it is the oracle that estimator is
checked against. Prices are USD per million tokens (reference §8). Amounts come out in cents as
exact Decimals: ``cents = tokens × usd_per_mtok / 10_000``, where ``usd_per_mtok`` already has
every modifier applied.

* Every card lists its own cache-write and cache-read prices (§8.1–§8.2), not a global 0.1×.
* Cards are effective-dated: ``changes`` replace the rates from their day on (UTC), so a price
  needs the usage day (Sonnet 5.5's cache read falls from $0.20 to $0.10 on 2026-10-07). The
  first rates apply to every earlier day: the simulated organization uses models from any date.
* Fast mode (``speed == "fast"``) multiplies every rate of a model that has it (§8.3); batch
  (×0.5) and US inference (×1.1, Opus 4.6 and every later model, §8.4) stack on top.
* Haiku 5.5 is priced at its ≤ 100K-prompt band: the simulator never sends larger prompts.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

UNCACHED_INPUT = "uncached_input_tokens"
OUTPUT = "output_tokens"
CACHE_READ = "cache_read_input_tokens"
CACHE_WRITE_5M = "cache_creation.ephemeral_5m_input_tokens"
CACHE_WRITE_1H = "cache_creation.ephemeral_1h_input_tokens"

TOKEN_TYPES = (UNCACHED_INPUT, OUTPUT, CACHE_READ, CACHE_WRITE_5M, CACHE_WRITE_1H)
"""Every ``token_type`` of the cost reports, in the order the simulator reports them."""

STANDARD = "standard"
FAST = "fast"
SPEEDS = (STANDARD, FAST)
LONG_CONTEXT = "200k-1M"
WEB_SEARCH_CENTS = Decimal(1)
"""$10 per 1,000 searches."""
CODE_EXECUTION_CENTS_PER_HOUR = Decimal(5)

_BATCH = Decimal("0.5")
_US_GEO = Decimal("1.1")
_MICRO = Decimal(10_000)
"""USD per million tokens × tokens / ``_MICRO`` = cents."""


@dataclass(frozen=True, slots=True)
class Rates:
    """The five token prices of one card in USD per million tokens."""

    input: Decimal
    write_5m: Decimal
    write_1h: Decimal
    read: Decimal
    output: Decimal

    @classmethod
    def of(cls, inp: str, write_5m: str, write_1h: str, read: str, out: str) -> Rates:
        """Rates from decimal strings, in the column order of the reference tables."""
        return cls(Decimal(inp), Decimal(write_5m), Decimal(write_1h), Decimal(read),
                   Decimal(out))

    def price(self, token_type: str) -> Decimal:
        """The price of one ``token_type``."""
        return {UNCACHED_INPUT: self.input, CACHE_WRITE_5M: self.write_5m,
                CACHE_WRITE_1H: self.write_1h, CACHE_READ: self.read,
                OUTPUT: self.output}[token_type]

    def replaced(self, **fields: str) -> Rates:
        """These rates with some prices changed (decimal strings)."""
        values = {name: getattr(self, name) for name in ("input", "write_5m", "write_1h", "read",
                                                         "output")}
        values.update((name, Decimal(text)) for name, text in fields.items())
        return Rates(**values)


@dataclass(frozen=True, slots=True)
class ModelCard:
    """List prices of one model.

    ``geo_priced`` marks Opus 4.6 and later, where ``inference_geo == "us"`` costs 10 % more;
    ``long_context`` replaces the rates of rows with ``context_window == "200k-1M"`` (Sonnet 4 and
    4.5 only); ``fast`` is the fast-mode multiplier (``None``: no fast mode), ``fast_long`` its
    value past 200K where it differs; ``changes`` are ``(first day, rates)`` in date order.
    """

    model: str
    display_name: str
    rates: Rates
    geo_priced: bool = False
    long_context: Rates | None = None
    fast: Decimal | None = None
    fast_long: Decimal | None = None
    changes: tuple[tuple[date, Rates], ...] = ()

    @property
    def input_usd(self) -> Decimal:
        """Today's base input price."""
        return self.rates_on(None).input

    @property
    def output_usd(self) -> Decimal:
        """Today's output price."""
        return self.rates_on(None).output

    def epoch(self, day: date | None) -> int:
        """How many ``changes`` are in effect on ``day`` (``None``: today's price list)."""
        if day is None:
            return len(self.changes)
        return bisect.bisect_right([since for since, _ in self.changes], day)

    def rates_on(self, day: date | None) -> Rates:
        """The rates in effect on ``day`` (``None``: the newest)."""
        epoch = self.epoch(day)
        return self.rates if epoch == 0 else self.changes[epoch - 1][1]


_OPUS_45 = Rates.of("5", "6.25", "10", "0.50", "25")
_OPUS_41 = Rates.of("15", "18.75", "30", "1.50", "75")
_SONNET_4 = Rates.of("3", "3.75", "6", "0.30", "15")
_SONNET_4_LONG = Rates.of("6", "7.50", "12", "0.60", "22.50")
_FABLE_52 = Rates.of("8", "10", "16", "0.20", "40")
_FABLE_51 = Rates.of("10", "12.50", "20", "0.25", "50")
_FABLE_5 = Rates.of("10", "12.50", "20", "1.00", "50")
_SONNET_5 = Rates.of("2", "2.50", "4", "0.20", "10")
_TWO, _SIX = Decimal(2), Decimal(6)
_SONNET_55_READ_CUT = date(2026, 10, 7)

CARDS: dict[str, ModelCard] = {
    card.model: card
    for card in (
        ModelCard("claude-fable-5-2", "Claude Fable 5.2", _FABLE_52, geo_priced=True, fast=_TWO),
        ModelCard("claude-mythos-5-2", "Claude Mythos 5.2", _FABLE_52, geo_priced=True, fast=_TWO),
        ModelCard("claude-opus-5-5", "Claude Opus 5.5", Rates.of("4", "5", "8", "0.20", "20"),
              geo_priced=True, fast=_TWO),
        ModelCard("claude-sonnet-5-5", "Claude Sonnet 5.5", _SONNET_5, geo_priced=True,
              changes=((_SONNET_55_READ_CUT, _SONNET_5.replaced(read="0.10")),)),
        ModelCard("claude-haiku-5-5", "Claude Haiku 5.5",
              Rates.of("0.10", "0.125", "0.20", "0.01", "0.50"), geo_priced=True),
        ModelCard("claude-fable-5-1", "Claude Fable 5.1", _FABLE_51, geo_priced=True),
        ModelCard("claude-mythos-5-1", "Claude Mythos 5.1", _FABLE_51, geo_priced=True),
        ModelCard("claude-fable-5", "Claude Fable 5", _FABLE_5, geo_priced=True),
        ModelCard("claude-mythos-5", "Claude Mythos 5", _FABLE_5, geo_priced=True),
        ModelCard("claude-opus-5", "Claude Opus 5", _OPUS_45, geo_priced=True, fast=_TWO),
        ModelCard("claude-sonnet-5", "Claude Sonnet 5", _SONNET_5, geo_priced=True),
        ModelCard("claude-opus-4-8", "Claude Opus 4.8", _OPUS_45, geo_priced=True, fast=_TWO),
        ModelCard("claude-opus-4-7", "Claude Opus 4.7", _OPUS_45, geo_priced=True, fast=_SIX),
        ModelCard("claude-opus-4-6", "Claude Opus 4.6", _OPUS_45, geo_priced=True, fast=_SIX,
              fast_long=Decimal(12)),
        ModelCard("claude-sonnet-4-6", "Claude Sonnet 4.6", _SONNET_4, geo_priced=True),
        ModelCard("claude-opus-4-5-20251101", "Claude Opus 4.5", _OPUS_45),
        ModelCard("claude-opus-4-1-20250805", "Claude Opus 4.1", _OPUS_41),
        ModelCard("claude-opus-4-20250514", "Claude Opus 4", _OPUS_41),
        ModelCard("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", _SONNET_4,
              long_context=_SONNET_4_LONG),
        ModelCard("claude-sonnet-4-20250514", "Claude Sonnet 4", _SONNET_4,
              long_context=_SONNET_4_LONG),
        ModelCard("claude-3-7-sonnet-20250219", "Claude Sonnet 3.7", _SONNET_4),
        ModelCard("claude-haiku-4-5-20251001", "Claude Haiku 4.5",
              Rates.of("1", "1.25", "2", "0.10", "5")),
        ModelCard("claude-3-5-haiku-20241022", "Claude Haiku 3.5",
              Rates.of("0.80", "1", "1.60", "0.08", "4")),
        ModelCard("claude-3-haiku-20240307", "Claude Haiku 3",
              Rates.of("0.25", "0.30", "0.50", "0.03", "1.25")),
        # Unknown to public price lists: the guard has to price it fail-expensive.
        ModelCard("claude-nova-1", "Claude Nova 1", Rates.of("4", "5", "8", "0.40", "20")),
    )
}


def card(model: str) -> ModelCard:
    """The price card of ``model``; ``ValueError`` if the simulator does not know it."""
    try:
        return CARDS[model]
    except KeyError:
        raise ValueError(f"the simulator has no price for model {model!r}") from None


def has_fast_mode(model: str) -> bool:
    """Whether ``model`` can run at ``speed == "fast"``."""
    return card(model).fast is not None


@dataclass(frozen=True, slots=True)
class Line:
    """What a token price depends on besides the day: the model, the token type, the modifiers."""

    model: str
    token_type: str
    service_tier: str = STANDARD
    context_window: str = "0-200k"
    inference_geo: str = "global"
    speed: str = STANDARD


def usd_per_mtok(line: Line, day: date | None = None) -> Decimal:
    """The true price of one token type in USD per million tokens, every modifier applied.

    ``day`` is the usage day (UTC); ``None`` prices at the newest rates.
    """
    return _usd_per_mtok(line, _epoch(line.model, day))


@functools.lru_cache(maxsize=8192)
def _epoch(model: str, day: date | None) -> int:
    return card(model).epoch(day)


@functools.lru_cache(maxsize=4096)
def _usd_per_mtok(line: Line, epoch: int) -> Decimal:
    prices = card(line.model)
    long = line.context_window == LONG_CONTEXT
    rates = prices.rates if epoch == 0 else prices.changes[epoch - 1][1]
    if long and prices.long_context is not None:
        rates = prices.long_context
    price = rates.price(line.token_type) * _fast_multiplier(prices, line.speed, long=long)
    if line.service_tier == "batch":
        price *= _BATCH
    if line.inference_geo == "us" and prices.geo_priced:
        price *= _US_GEO
    return price


def _fast_multiplier(prices: ModelCard, speed: str, *, long: bool) -> Decimal:
    if speed == STANDARD:
        return Decimal(1)
    if speed != FAST:
        raise ValueError(f"unknown speed {speed!r}; expected one of {SPEEDS}")
    if prices.fast is None:
        raise ValueError(f"{prices.model} has no fast mode")
    return prices.fast_long if long and prices.fast_long is not None else prices.fast


def token_cents(
    tokens: int,
    model: str,
    token_type: str,
    *,
    service_tier: str,
    context_window: str,
    inference_geo: str,
    speed: str = STANDARD,
    day: date | None = None,
) -> Decimal:
    """The exact cost in cents of ``tokens`` tokens of one type used on ``day``."""
    return line_cents(tokens, (model, service_tier, context_window, inference_geo, speed),
                      token_type, day)


PriceLine = tuple[str, str, str, str, str]
"""What a token's price depends on besides its type and day: model, service tier, context
window, inference geo and speed."""


@functools.lru_cache(maxsize=65536)
def line_price(line: PriceLine, token_type: str, day: date | None) -> Decimal:
    """``usd_per_mtok`` of one token type of ``line`` on ``day``, remembered (a simulated
    month prices millions of rows over a few hundred lines)."""
    model, service_tier, context_window, inference_geo, speed = line
    return usd_per_mtok(Line(model, token_type, service_tier, context_window, inference_geo,
                             speed), day)


def line_cents(tokens: int, line: PriceLine, token_type: str, day: date | None) -> Decimal:
    """``token_cents`` of ``tokens`` of one type on one price line."""
    return Decimal(tokens) * line_price(line, token_type, day) / _MICRO


def web_search_cents(requests: int) -> Decimal:
    """The exact cost in cents of ``requests`` web searches."""
    return Decimal(requests) * WEB_SEARCH_CENTS
