"""The price table and the estimator: usage rows → dollars.

Prices are US dollars per million tokens. The table ships in ``prices.toml`` and is extended or
overridden by ``[pricing]`` in the config. A model is found by its exact id, an alias, or its id
with a trailing ``-YYYYMMDD`` date removed (``claude-haiku-4-5-20251001`` and
``claude-haiku-4-5`` are one card), or by the longest known id followed by ``[``, ``@`` or ``:``
(Claude Code's ``claude-opus-5-5[1m]``). A model the table does not know is priced at the most
expensive card, so an unknown model can only make the guard cautious, and is logged once.

Cards are effective-dated: a card's ``changes`` take effect from their ``since`` day (UTC), so
usage is priced at the prices of its own day. Fast mode (``speed = "fast"``) multiplies every
rate of a model that has a ``fast`` multiplier.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any, Protocol

from guard.core.model import UsageRow

log = logging.getLogger(__name__)

MTOK = Decimal(1_000_000)
_DATE_SUFFIX = re.compile(r"-\d{8}$")
_VARIANT = re.compile(r"[\[@:]")
_LONG_CONTEXT = "200k-1M"
_FAST = "fast"


class PriceOverride(Protocol):
    """What ``[pricing]`` in the config says about one model ($/MTok)."""

    @property
    def input(self) -> Decimal: ...
    @property
    def output(self) -> Decimal: ...
    @property
    def cache_write_5m(self) -> Decimal | None: ...
    @property
    def cache_write_1h(self) -> Decimal | None: ...
    @property
    def cache_read(self) -> Decimal | None: ...
    @property
    def long_context_input(self) -> Decimal | None: ...
    @property
    def long_context_output(self) -> Decimal | None: ...
    @property
    def inference_geo_us(self) -> bool | None: ...
    @property
    def fast(self) -> Decimal | None: ...


@dataclass(frozen=True, slots=True)
class Multipliers:
    """Price rules that apply across models."""

    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    batch: Decimal
    inference_geo_us: Decimal
    web_search_usd: Decimal


@dataclass(frozen=True, slots=True)
class PriceCard:
    """One model's prices in $/MTok."""

    model: str
    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    long_context_input: Decimal | None = None
    long_context_output: Decimal | None = None
    inference_geo_us: bool = False
    fast: Decimal | None = None
    fast_long_context: Decimal | None = None
    since: date | None = None
    lifecycle: str = "current"


class PriceTable:
    """Looks up price cards and prices usage rows."""

    def __init__(self, cards: Mapping[str, PriceCard], aliases: Mapping[str, str],
                 multipliers: Multipliers,
                 changes: Mapping[str, tuple[PriceCard, ...]] | None = None) -> None:
        self.cards = dict(cards)
        self.aliases = dict(aliases)
        self.multipliers = multipliers
        self._names = {_undated(name): name for name in cards}
        self._names.update({_undated(alias): name for alias, name in aliases.items()})
        self._history = {name: (card, *sorted((changes or {}).get(name, ()),
                                              key=lambda c: c.since or date.min))
                         for name, card in self.cards.items()}
        self.fallback = max(cards.values(), key=lambda c: (c.output, c.input))
        self.unknown_models: set[str] = set()
        self._resolved: dict[str | None, tuple[PriceCard, ...]] = {}
        self._by_day: dict[tuple[str | None, date | None], PriceCard] = {}
        self._terms: dict[tuple[str | None, date | None, str | None, str | None, str | None,
                                str | None], tuple[Decimal, ...]] = {}

    def names(self) -> tuple[str, ...]:
        """Every model id the table prices: card names and their aliases, sorted."""
        return tuple(sorted({*self.cards, *self.aliases}))

    @classmethod
    def load(cls, overrides: Mapping[str, PriceOverride] | None = None) -> PriceTable:
        """The shipped table with ``overrides`` applied (an override replaces a whole card)."""
        raw = tomllib.loads(resources.files("guard.core").joinpath("prices.toml").read_text())
        multipliers = Multipliers(**{k: Decimal(v) for k, v in raw["multipliers"].items()})
        cards: dict[str, PriceCard] = {}
        aliases: dict[str, str] = {}
        changes: dict[str, tuple[PriceCard, ...]] = {}
        for name, entry in raw["models"].items():
            cards[name] = _card(name, entry, multipliers)
            changes[name] = tuple(_card(name, {**entry, **change}, multipliers)
                                  for change in entry.get("changes", []))
            aliases.update({alias: name for alias in entry.get("aliases", [])})
        for name, override in (overrides or {}).items():
            cards[name] = _override_card(name, override, multipliers)
            changes.pop(name, None)
            aliases.pop(name, None)
        return cls(cards, aliases, multipliers, changes)

    def card(self, model: str | None, day: date | None = None) -> PriceCard:
        """The card for ``model`` on ``day`` (the newest without a day); the most expensive
        one (logged once) when the model is unknown."""
        found = self._by_day.get((model, day))
        if found is None:
            history = self._resolved.get(model)
            if history is None:
                history = self._resolved[model] = self._lookup(model)
            found = history[-1] if day is None else [
                c for c in history if c.since is None or c.since <= day][-1]
            self._by_day[model, day] = found
        return found

    def price(self, row: UsageRow, day: date | None = None) -> tuple[Decimal, Decimal]:
        """``(token_usd, web_search_usd)`` for one usage row of ``day``."""
        terms = self._terms.get((row.model, day, row.context_window, row.service_tier,
                                 row.speed, row.inference_geo))
        if terms is None:
            terms = self._terms_of(row, day)
        price_in, write_5m, write_1h, read, scale_in, price_out, scale_out, modifier = terms
        input_side = (row.uncached_input_tokens * price_in
                      + row.cache_write_5m_tokens * write_5m
                      + row.cache_write_1h_tokens * write_1h
                      + row.cache_read_input_tokens * read)
        tokens = (input_side * scale_in + row.output_tokens * price_out * scale_out) / MTOK
        tokens *= modifier
        return tokens, row.web_search_requests * self.multipliers.web_search_usd

    def _terms_of(self, row: UsageRow, day: date | None) -> tuple[Decimal, ...]:
        """What ``price`` multiplies a row's counts by, the same for every row of one card,
        context window, tier, speed and geo (kept: a page has thousands of such rows)."""
        card = self.card(row.model, day)
        price_in, price_out = card.input, card.output
        scale_in = scale_out = Decimal(1)
        if row.context_window == _LONG_CONTEXT and card.long_context_input is not None:
            scale_in = card.long_context_input / price_in if price_in else Decimal(1)
            scale_out = ((card.long_context_output or price_out) / price_out if price_out
                         else Decimal(1))
        terms = (price_in, card.cache_write_5m, card.cache_write_1h, card.cache_read, scale_in,
                 price_out, scale_out, self._modifier(card, row))
        self._terms[row.model, day, row.context_window, row.service_tier, row.speed,
                    row.inference_geo] = terms
        return terms

    def _modifier(self, card: PriceCard, row: UsageRow) -> Decimal:
        factor = Decimal(1)
        if row.service_tier == "batch":
            factor *= self.multipliers.batch
        if row.speed == _FAST and card.fast is not None:
            long = row.context_window == _LONG_CONTEXT and card.fast_long_context is not None
            factor *= card.fast_long_context if long and card.fast_long_context else card.fast
        if row.inference_geo == "us" and card.inference_geo_us:
            factor *= self.multipliers.inference_geo_us
        return factor

    def _lookup(self, model: str | None) -> tuple[PriceCard, ...]:
        name = self._name(model) if model else None
        if name is not None:
            return self._history[name]
        if model not in self.unknown_models:
            self.unknown_models.add(str(model))
            log.warning("unknown model %r: priced at the most expensive card (%s) until "
                        "[pricing] in the config names it", model, self.fallback.model)
        return (replace(self.fallback, model=str(model), since=None),)

    def known(self, model: str) -> bool:
        """Whether ``model`` has a card of its own (without noting it as unknown)."""
        return self._name(model) is not None

    def _name(self, model: str) -> str | None:
        """The card's name for ``model``: exact, undated, or a known id and a variant tag."""
        found = self._names.get(_undated(model))
        if found is not None:
            return found
        cut = _VARIANT.search(model)
        return self._names.get(_undated(model[:cut.start()])) if cut else None


def _undated(model: str | None) -> str:
    return _DATE_SUFFIX.sub("", model or "")


def _card(name: str, entry: Mapping[str, Any], m: Multipliers) -> PriceCard:
    price_in = Decimal(entry["input"])

    def given(key: str, default: Decimal) -> Decimal:
        return Decimal(entry[key]) if key in entry else default

    def optional(key: str) -> Decimal | None:
        return Decimal(entry[key]) if key in entry else None

    return PriceCard(
        model=name, input=price_in, output=Decimal(entry["output"]),
        cache_write_5m=given("cache_write_5m", price_in * m.cache_write_5m),
        cache_write_1h=given("cache_write_1h", price_in * m.cache_write_1h),
        cache_read=given("cache_read", price_in * m.cache_read),
        long_context_input=optional("long_context_input"),
        long_context_output=optional("long_context_output"),
        inference_geo_us=bool(entry.get("inference_geo_us", False)),
        fast=optional("fast"), fast_long_context=optional("fast_long_context"),
        since=date.fromisoformat(str(entry["since"])) if "since" in entry else None,
        lifecycle=str(entry.get("lifecycle", "current")),
    )


def _override_card(name: str, o: PriceOverride, m: Multipliers) -> PriceCard:
    entry: dict[str, Any] = {"input": o.input, "output": o.output,
                             "inference_geo_us": bool(o.inference_geo_us)}
    for key in ("cache_write_5m", "cache_write_1h", "cache_read", "long_context_input",
                "long_context_output", "fast"):
        if (value := getattr(o, key)) is not None:
            entry[key] = value
    return _card(name, entry, m)
