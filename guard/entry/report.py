"""Rendering the ledger for people (a rich table) and for programs (DESIGN §3 JSON). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from guard.core.forecast import Forecast
from guard.core.model import BudgetSpend, Ledger
from guard.core.outlook import describe_burn
from guard.core.policy import BudgetInput, Condition, ceiling

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

    from guard.core.assess import Assessment

_HUNDREDTH_CENT = Decimal("0.0001")


def usd_number(amount: Decimal) -> float:
    """Dollars for JSON: rounded to a hundredth of a cent, the float repr shows those digits."""
    return float(amount.quantize(_HUNDREDTH_CENT, ROUND_HALF_EVEN))


def timestamp(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def budget_json(spend: BudgetSpend, item: BudgetInput | None = None,
                firing: Sequence[Condition] = (), tier: str | None = None) -> dict[str, Any]:
    """One budget of the report JSON."""
    b = spend.budget
    out: dict[str, Any] = {
        "name": b.name, "scope": str(b.scope), "match": b.match,
        "spend_usd": usd_number(spend.spend_usd),
        "authoritative_usd": usd_number(spend.authoritative_usd),
        "estimated_usd": usd_number(spend.estimated_usd),
        "soft_limit_usd": usd_number(b.soft_limit_usd),
        "hard_limit_usd": usd_number(b.hard_limit_usd),
    }
    if item is not None and item.forecast is not None:
        out["forecast"] = forecast_json(item.forecast)
    if item is not None and item.burn is not None:
        out["burn"] = describe_burn(item.burn)
    out["firing"] = [str(c) for c in firing]
    out["ceiling"] = tier
    return out


def forecast_json(f: Forecast) -> dict[str, Any]:
    """The forecast of one budget for JSON."""
    return {"p10_usd": usd_number(f.p10_usd), "p50_usd": usd_number(f.p50_usd),
            "p90_usd": usd_number(f.p90_usd), "gated_in": f.gated_in,
            "exhaustion_day": f.exhaustion_day.isoformat() if f.exhaustion_day else None,
            "level_usd_per_day": usd_number(f.level_usd_per_day),
            "history_days": f.history_days}


def ledger_json(ledger: Ledger, api_requests: int) -> dict[str, Any]:
    """The ledger alone as report JSON (no forecast, no conditions)."""
    through = ledger.authoritative_through
    return {
        "at": timestamp(ledger.at),
        "data_through": timestamp(ledger.data_through),
        "authoritative_through": through.isoformat() if through else None,
        "budgets": [budget_json(s) for s in ledger.budgets],
        "api_requests": api_requests,
    }


def report_json(a: Assessment) -> dict[str, Any]:
    """The ``guard report --json`` object: DESIGN §3 fields plus billed/estimated splits."""
    out = ledger_json(a.ledger, a.api_requests)
    firing = a.outcome.firing
    out["budgets"] = [
        budget_json(spend, item, firing.get(spend.budget.name, ()),
                    budget_ceiling(spend, firing, a))
        for spend, item in zip(a.ledger.budgets, a.inputs, strict=True)]
    out["data_stale"] = a.stale
    return out


def budget_ceiling(spend: BudgetSpend, firing: Mapping[str, Sequence[Condition]],
                   a: Assessment) -> str | None:
    """The tier this budget alone would cap the fallback at (None: no cap)."""
    pairs = [(spend.budget, c) for c in firing.get(spend.budget.name, ())]
    chosen = ceiling(pairs, a.policy)
    return chosen.tier if chosen.level > 0 else None


def money(amount: Decimal) -> str:
    """``$1,234.56``."""
    return f"${amount.quantize(Decimal('0.01'), ROUND_HALF_EVEN):,}"


def _share(spend: Decimal, limit: Decimal) -> Text:
    from rich.text import Text  # noqa: PLC0415  (rich loads only for tables)

    pct = spend / limit * 100 if limit else Decimal(0)
    style = "red bold" if pct >= 100 else "yellow" if pct >= 80 else "green"
    return Text(f"{pct:.1f}%", style=style)


def ledger_table(ledger: Ledger, api_requests: int) -> Table:
    """A readable month-to-date table, one row per budget."""
    return _table(ledger, api_requests, None)


def report_table(a: Assessment) -> Table:
    """The report table: spend, limits, forecast band and firing conditions per budget."""
    return _table(a.ledger, a.api_requests, a)


def _table(ledger: Ledger, api_requests: int, a: Assessment | None) -> Table:
    from rich.table import Table  # noqa: PLC0415  (rich loads only for tables)

    table = Table(title=f"Month-to-date spend as of {timestamp(ledger.at)}",
                  caption=f"data through {timestamp(ledger.data_through)} · billed (cost report) "
                          f"through {ledger.authoritative_through or '—'} · "
                          f"{api_requests} Admin API requests")
    headings = ["budget", "scope", "spend", "of hard", "soft", "hard", "billed", "estimated"]
    if a is not None:
        headings += ["month-end P50 (P10–P90)", "firing"]
    for heading in headings:
        table.add_column(heading, justify="left" if heading in ("budget", "scope", "firing")
                         else "right")
    for i, s in enumerate(ledger.budgets):
        scope = f"{s.budget.scope}" + (f" {s.budget.match}" if s.budget.match else "")
        row: list[str | Text] = [
            s.budget.name, scope, money(s.spend_usd), _share(s.spend_usd, s.budget.hard_limit_usd),
            money(s.budget.soft_limit_usd), money(s.budget.hard_limit_usd),
            money(s.authoritative_usd), money(s.estimated_usd)]
        if a is not None:
            row += [_band(a.inputs[i].forecast),
                    ", ".join(a.outcome.firing.get(s.budget.name, ())) or "—"]
        table.add_row(*row)
    return table


def _band(f: Forecast | None) -> str:
    if f is None:
        return "—"
    text = f"{money(f.p50_usd)} ({money(f.p10_usd)}–{money(f.p90_usd)})"
    return text if f.gated_in else text + " ungated"
