"""``guard demo``: a simulated organization over real HTTP, reported as its month goes.

The simulated Admin API runs on loopback; the real client, fetcher, store and ledger read it
exactly as they would read Anthropic's, on a simulated clock. At the end every budget is
checked against the simulator's own ground truth.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_UP, Decimal
from pathlib import Path

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from guard.admin.client import API_VERSION, AdminClient
from guard.errors import ConfigError
from guard.fetch import Fetcher
from guard.ledger import budget_api_keys, month_to_date
from guard.model import Budget, Ledger, Scope
from guard.period import MINUTE, next_month
from guard.pricing import PriceTable
from guard.report import ledger_table, money, timestamp
from guard.sim import SimClock, SimOrg, SimServer
from guard.store import Store

OUT = Path("demo-out")


@dataclass(frozen=True, slots=True)
class Check:
    """One budget's ledger figure against the simulator's truth."""

    budget: Budget
    spend: Decimal
    truth: Decimal

    @property
    def error_pct(self) -> Decimal:
        """Relative error in percent."""
        return (self.spend - self.truth) / self.truth * 100 if self.truth else Decimal(0)


def run_demo(*, seed: int, month: str, step_hours: int, console: Console) -> None:
    """Simulate ``month`` for organization ``seed``, refreshing every ``step_hours``."""
    start = _month(month)
    org = SimOrg.generate(seed)
    budgets = demo_budgets(org, start)
    key = "sk-ant-admin01-demo-" + secrets.token_hex(8)
    OUT.mkdir(exist_ok=True)
    for stale in OUT.glob("state.db*"):
        stale.unlink()
    console.print(f"[bold]budget-guard demo[/]: simulated organization {seed} "
                  f"({len(org.workspaces)} workspaces + default, {len(org.api_keys)} keys, "
                  f"{len(org.models)} models), {month}, a refresh every {step_hours} h")
    with SimServer(org, SimClock(start), admin_key=key) as sim, \
            httpx.Client(base_url=sim.base_url, headers={"x-api-key": key,
                                                         "anthropic-version": API_VERSION}) as http:
        store = Store.connect(f"sqlite:///{OUT / 'state.db'}")
        fetcher = Fetcher(AdminClient(http), store, PriceTable.load())
        try:
            ledger, checks = _run_month(fetcher, sim, budgets, start,
                                        step_hours=step_hours, console=console)
        finally:
            store.close()
    console.print(ledger_table(ledger, len(sim.requests)))
    console.print(_truth_table(checks))


def demo_budgets(org: SimOrg, start: datetime) -> list[Budget]:
    """Budgets sized so the month ends between the soft and the hard limit."""
    end = next_month(start)

    def sized(name: str, scope: Scope, match: str | None) -> Budget:
        month_usd = org.truth_cents(start, end, str(scope), match) / 100
        hard = (month_usd * Decimal("1.1")).quantize(Decimal(100), ROUND_UP)
        soft = (hard * Decimal("0.8")).quantize(Decimal(1))
        return Budget(name, scope, match, soft, hard)

    first_ws = org.workspaces[0].id
    return [sized("org-monthly", Scope.ORGANIZATION, None),
            sized("first-workspace", Scope.WORKSPACE, first_ws),
            sized("default-workspace", Scope.WORKSPACE, "default"),
            sized("first-key", Scope.API_KEY, org.api_keys[0].id),
            sized("opus-models", Scope.MODEL, "claude-opus")]


def _run_month(fetcher: Fetcher, sim: SimServer, budgets: list[Budget], start: datetime, *,
               step_hours: int, console: Console) -> tuple[Ledger, list[Check]]:
    live = Live(console=console, auto_refresh=False, transient=True)
    ledger: Ledger | None = None
    with live if console.is_terminal else nullcontext():
        for at in _steps(start, step_hours):
            sim.clock.set(at)
            snapshot = fetcher.refresh(at, budget_api_keys(budgets))
            ledger = month_to_date(budgets, at=at, settled=snapshot.settled,
                                   usage=snapshot.usage, data_through=snapshot.data_through)
            if at.hour < step_hours:
                console.print(_day_line(ledger, snapshot.api_requests))
            if console.is_terminal:
                live.update(ledger_table(ledger, snapshot.api_requests), refresh=True)
                time.sleep(0.08)
    assert ledger is not None
    return ledger, _checks(sim, ledger)


def _steps(start: datetime, step_hours: int) -> Iterator[datetime]:
    end = next_month(start)
    at = start + timedelta(hours=step_hours)
    while at < end:
        yield at
        at += timedelta(hours=step_hours)
    yield end - MINUTE


def _checks(sim: SimServer, ledger: Ledger) -> list[Check]:
    visible = ledger.at - sim.lag
    return [Check(s.budget, s.spend_usd,
                  sim.org.truth_cents(ledger.period_start, visible, str(s.budget.scope),
                                      s.budget.match) / 100)
            for s in ledger.budgets]


def _day_line(ledger: Ledger, requests: int) -> Text:
    org = ledger.budgets[0]
    pct = org.spend_usd / org.budget.hard_limit_usd * 100
    return Text(f"{timestamp(ledger.at)}  {org.budget.name} {money(org.spend_usd):>12} "
                f"({pct:5.1f} % of hard)  billed through {ledger.authoritative_through or '—'}"
                f"  {requests} API requests")


def _truth_table(checks: list[Check]) -> Table:
    table = Table(title="Ledger against the simulator's ground truth")
    for heading in ("budget", "ledger", "truth", "error"):
        table.add_column(heading, justify="left" if heading == "budget" else "right")
    for c in checks:
        table.add_row(c.budget.name, money(c.spend), money(c.truth), f"{c.error_pct:+.4f} %")
    return table


def _month(raw: str) -> datetime:
    try:
        return datetime.strptime(raw, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ConfigError([("--month", f"expected YYYY-MM, got {raw!r}")]) from None
