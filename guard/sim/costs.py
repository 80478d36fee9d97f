"""Cost-report lines: the organization's usage priced with the simulator's own table.

Lines are built at the finest grain the cost report knows (workspace × description), priced
once per line and speed from summed token counts at the prices of the bucket's day, then summed
into the grouping asked for. The report has no ``speed`` field: fast-mode tokens are in the same
line as standard ones, at their own price. Decimal arithmetic is exact here, so every grouping
adds up to ``SimOrg.truth_cents`` (with the same ``price_errors``) to the last digit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from guard.sim import prices
from guard.sim.hourly import SimCodeExecution
from guard.sim.org import token_factor
from guard.sim.usage import SimUsage

LineKey = tuple[str | None, str, str | None, str | None, str | None, str | None, str | None]
"""``(workspace_id, cost_type, model, token_type, service_tier, context_window, inference_geo)``."""

_COST_TYPES = ("tokens", "web_search", "code_execution")
_TOKEN_LABELS = {
    prices.UNCACHED_INPUT: "Input Tokens",
    prices.OUTPUT: "Output Tokens",
    prices.CACHE_READ: "Input Tokens, Cache Hit",
    prices.CACHE_WRITE_5M: "Input Tokens, Cache Write",
    prices.CACHE_WRITE_1H: "Input Tokens, Cache Write",
}
_FIELDS = ("cost_type", "description", "model", "token_type", "service_tier", "context_window",
           "inference_geo", "workspace_id")


def cost_results(rows: Iterable[SimUsage], sessions: Iterable[SimCodeExecution], *,
                 day: date, price_errors: Mapping[str, Decimal] | None = None,
                 by_workspace: bool, by_description: bool, salt: int) -> list[dict[str, Any]]:
    """The ``results`` of one cost-report bucket; ``salt`` varies the amounts' formatting."""
    grouped: dict[LineKey, Decimal] = {}
    for key, amount in price_lines(rows, sessions, day, price_errors).items():
        kept = _project(key, by_workspace=by_workspace, by_description=by_description)
        grouped[kept] = grouped.get(kept, Decimal(0)) + amount
    ordered = sorted(grouped.items(), key=lambda item: _line_order(item[0]))
    return [_item(key, amount, by_description, salt + i) for i, (key, amount) in enumerate(ordered)]


def price_lines(rows: Iterable[SimUsage], sessions: Iterable[SimCodeExecution], day: date,
                price_errors: Mapping[str, Decimal] | None = None) -> dict[LineKey, Decimal]:
    """Cents per finest cost-report line: tokens per type, web searches, code execution."""
    counts: dict[tuple[LineKey, str], int] = {}
    for row in rows:
        for key, count in _row_lines(row):
            counts[key, row.speed] = counts.get((key, row.speed), 0) + count
    lines: dict[LineKey, Decimal] = {}
    for (key, speed), count in counts.items():
        amount = _price(key, count, speed, day) * token_factor(price_errors, key[2] or "")
        lines[key] = lines.get(key, Decimal(0)) + amount
    for session in sessions:
        key = (session.workspace_id, "code_execution", None, None, None, None, None)
        lines[key] = lines.get(key, Decimal(0)) + session.cents
    return lines


def _row_lines(row: SimUsage) -> list[tuple[LineKey, int]]:
    lines: list[tuple[LineKey, int]] = [
        ((row.workspace_id, "tokens", row.model, token_type, row.service_tier,
          row.context_window, row.inference_geo), tokens)
        for token_type, tokens in row.tokens_by_type() if tokens
    ]
    if row.web_search_requests:
        web: LineKey = (row.workspace_id, "web_search", None, None, None, None, None)
        lines.append((web, row.web_search_requests))
    return lines


def _price(key: LineKey, count: int, speed: str, day: date) -> Decimal:
    _, cost_type, model, token_type, tier, window, geo = key
    if cost_type == "web_search":
        return prices.web_search_cents(count)
    assert model and token_type and tier and window and geo  # a token line has every field
    return prices.token_cents(count, model, token_type, service_tier=tier,
                              context_window=window, inference_geo=geo, speed=speed, day=day)


def _project(key: LineKey, *, by_workspace: bool, by_description: bool) -> LineKey:
    workspace = key[0] if by_workspace else None
    if by_description:
        return (workspace, *key[1:])
    return (workspace, "", None, None, None, None, None)


def _line_order(key: LineKey) -> tuple[object, ...]:
    workspace, cost_type, *rest = key
    token_rank = prices.TOKEN_TYPES.index(rest[1]) if rest[1] else -1
    return (workspace is None, workspace or "", _COST_TYPES.index(cost_type) if cost_type else -1,
            rest[0] or "", rest[2] or "", rest[3] or "", rest[4] or "", token_rank)


def _item(key: LineKey, amount: Decimal, by_description: bool, variant: int) -> dict[str, Any]:
    workspace, cost_type, model, token_type, tier, window, geo = key
    item: dict[str, Any] = {"amount": format_amount(amount, variant), "currency": "USD"}
    item.update(dict.fromkeys(_FIELDS))
    item["workspace_id"] = workspace
    if by_description:
        item.update(cost_type=cost_type, description=_description(cost_type, model, token_type),
                    model=model, token_type=token_type, service_tier=tier,
                    context_window=window, inference_geo=geo)
    return item


def _description(cost_type: str, model: str | None, token_type: str | None) -> str:
    if cost_type == "web_search":
        return "Web Search Usage"
    if cost_type == "code_execution":
        return "Code Execution Usage"
    assert model and token_type
    return f"{prices.card(model).display_name} Usage - {_TOKEN_LABELS[token_type]}"


def format_amount(amount: Decimal, variant: int) -> str:
    """A decimal string in plain notation, formatted one of three ways by ``variant``.

    ``"225"``/``"360.1875"`` (trailing zeros stripped), the exact digits as computed, or padded
    with three more zeros (``"240.000"``): clients must parse the value, not the text.
    """
    text = format(amount, "f")
    if variant % 3 == 0:
        return text.rstrip("0").rstrip(".") if "." in text else text
    if variant % 3 == 1:
        return text
    return text + "000" if "." in text else text + ".000"
