"""The ledger and the report for people: rich tables (the JSON is ``guard.core.summary``)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

from guard.core.forecast import Forecast
from guard.core.model import Ledger
from guard.core.summary import timestamp

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

    from guard.core.assess import Assessment


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
                  caption=f"data through {timestamp(ledger.data_through)} · {_billed(ledger)}"
                          f" · {api_requests} Admin API requests")
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


def _billed(ledger: Ledger) -> str:
    """Where billed figures come from, and how far they reach."""
    if ledger.source == "analytics":
        return f"billed (analytics) through {timestamp(ledger.billed_through) or '—'}"
    return f"billed (cost report) through {ledger.authoritative_through or '—'}"


def _band(f: Forecast | None) -> str:
    if f is None:
        return "—"
    text = f"{money(f.p50_usd)} ({money(f.p10_usd)}–{money(f.p90_usd)})"
    return text if f.gated_in else text + " ungated"
