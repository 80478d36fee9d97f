"""Rendering the ledger for people (a rich table) and for programs (DESIGN §3 JSON). Pure."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from rich.table import Table
from rich.text import Text

from guard.model import BudgetSpend, Ledger

_HUNDREDTH_CENT = Decimal("0.0001")


def usd_number(amount: Decimal) -> float:
    """Dollars for JSON: rounded to a hundredth of a cent, the float repr shows those digits."""
    return float(amount.quantize(_HUNDREDTH_CENT, ROUND_HALF_EVEN))


def timestamp(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def budget_json(spend: BudgetSpend) -> dict[str, Any]:
    """One budget of the report JSON."""
    b = spend.budget
    return {
        "name": b.name, "scope": str(b.scope), "match": b.match,
        "spend_usd": usd_number(spend.spend_usd),
        "authoritative_usd": usd_number(spend.authoritative_usd),
        "estimated_usd": usd_number(spend.estimated_usd),
        "soft_limit_usd": usd_number(b.soft_limit_usd),
        "hard_limit_usd": usd_number(b.hard_limit_usd),
    }


def ledger_json(ledger: Ledger, api_requests: int) -> dict[str, Any]:
    """The ``guard report --json`` object: the DESIGN §3 fields that exist at this stage."""
    through = ledger.authoritative_through
    return {
        "at": timestamp(ledger.at),
        "data_through": timestamp(ledger.data_through),
        "authoritative_through": through.isoformat() if through else None,
        "budgets": [budget_json(s) for s in ledger.budgets],
        "api_requests": api_requests,
    }


def money(amount: Decimal) -> str:
    """``$1,234.56``."""
    return f"${amount.quantize(Decimal('0.01'), ROUND_HALF_EVEN):,}"


def _share(spend: Decimal, limit: Decimal) -> Text:
    pct = spend / limit * 100 if limit else Decimal(0)
    style = "red bold" if pct >= 100 else "yellow" if pct >= 80 else "green"
    return Text(f"{pct:.1f}%", style=style)


def ledger_table(ledger: Ledger, api_requests: int) -> Table:
    """A readable month-to-date table, one row per budget."""
    table = Table(title=f"Month-to-date spend as of {timestamp(ledger.at)}",
                  caption=f"data through {timestamp(ledger.data_through)} · billed (cost report) "
                          f"through {ledger.authoritative_through or '—'} · "
                          f"{api_requests} Admin API requests")
    for heading in ("budget", "scope", "spend", "of hard", "soft", "hard", "billed", "estimated"):
        table.add_column(heading, justify="left" if heading in ("budget", "scope") else "right")
    for s in ledger.budgets:
        scope = f"{s.budget.scope}" + (f" {s.budget.match}" if s.budget.match else "")
        table.add_row(s.budget.name, scope, money(s.spend_usd),
                      _share(s.spend_usd, s.budget.hard_limit_usd),
                      money(s.budget.soft_limit_usd), money(s.budget.hard_limit_usd),
                      money(s.authoritative_usd), money(s.estimated_usd))
    return table
