"""``guard demo``: a simulated month through the real tick, in about a minute.

The simulated Admin API runs on loopback. The real tick runs on a simulated clock that jumps
``step_hours`` at a time: fetch, ledger, forecast, policy, the fallback files under
``./demo-out/``, notifications (to Slack when ``--config`` names a token, else to the
terminal) and the state store. A scenario bends the traffic (``steady``, ``spike``,
``runaway``) or the budgets (``breach``). The simulated organization has a 7 % negotiated
discount and the analytics API (billed cost, four hours behind), so the ledger is billed
through the watermark and estimated after it. At the end: billed and estimated spend per
budget against the simulator's billed ground truth, the reconciliation of the price table
against the bill, the alerts sent and every fallback change.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_UP, Decimal
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from guard.adapters.chat import NoLookup
from guard.adapters.store.engine import Store
from guard.adapters.store.outbox import Outbox
from guard.adapters.store.state import Records
from guard.config.sections import FallbackSettings
from guard.core.assess import Assessment
from guard.core.decide import TickConfig
from guard.core.model import Budget, Ledger, Scope
from guard.core.period import MINUTE, next_month
from guard.core.policy import PolicyConfig
from guard.core.pricing import PriceTable
from guard.core.records import Blocks, Posted
from guard.core.summary import TickReport, timestamp, unpriced_warning
from guard.entry import wiring
from guard.entry.report import ledger_table, money
from guard.errors import InvalidInput
from guard.shell.ports import SlackTransport
from guard.shell.tick import Tick, run_tick
from guard.sim import SimClock, SimOrg, SimServer
from guard.sim.scenario import SCENARIOS, with_scenario

OUT = Path("demo-out")
MODELS = {"opus": "claude-opus-5-5", "sonnet": "claude-sonnet-5-5", "haiku": "claude-haiku-5-5"}
DISCOUNT = Decimal("0.07")
"""The simulated organization's negotiated discount: billed = list × 0.93."""
TIGHT = {"breach": Decimal("0.8")}


@dataclass(frozen=True, slots=True)
class Check:
    """One budget's ledger figure against the simulator's truth."""

    budget: Budget
    spend: Decimal
    truth: Decimal
    billed: Decimal = Decimal(0)
    estimated: Decimal = Decimal(0)

    @property
    def error_pct(self) -> Decimal:
        """Relative error in percent."""
        return (self.spend - self.truth) / self.truth * 100 if self.truth else Decimal(0)


@dataclass
class TerminalTransport(NoLookup):
    """Notifications printed in the terminal, one line each, as Slack would show them."""

    console: Console
    supports_updates: bool = True
    sent: list[str] = field(default_factory=list)

    def post(self, channel: str, text: str, blocks: Blocks,
             thread_ts: str | None = None, *, dedup: str | None = None) -> Posted:
        """Print the message (a thread reply indented)."""
        first = text.splitlines()[0] if text else ""
        self.sent.append(first)
        if thread_ts is None or first.startswith(("Resolved", "Escalated")):
            self.console.print(f"  {'  ↳ ' if thread_ts else '📣 '}{first}", markup=False,
                               highlight=False)
        return Posted(channel or "terminal", str(len(self.sent)))

    def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> Posted:
        """Updates are silent in the terminal: the table shows the numbers."""
        return Posted(channel, ts)


def run_demo(*, seed: int, month: str, step_hours: int, console: Console,
             scenario: str = "breach", transport: SlackTransport | None = None,
             channel: str = "") -> None:
    """Simulate ``month`` for organization ``seed`` under ``scenario``."""
    if scenario not in SCENARIOS:
        raise InvalidInput([("--scenario", f"one of {', '.join(SCENARIOS)}")])
    start = _month(month)
    org = with_scenario(seed, scenario)
    budgets = demo_budgets(SimOrg.generate(seed), start, TIGHT.get(scenario, Decimal("1.1")))
    key = "sk-ant-admin-demo-" + secrets.token_hex(8)
    _fresh_output()
    shown = transport or TerminalTransport(console)
    console.print(f"[bold]budget-guard demo[/]: scenario [bold]{scenario}[/], organization {seed}"
                  f" ({len(org.workspaces)} workspaces + default, {len(org.api_keys)} keys), "
                  f"{month}, a tick every {step_hours} h; env file {OUT / 'model.env'}")
    config = TickConfig(tuple(budgets), PolicyConfig(), timedelta(minutes=5), MODELS)
    sinks = wiring.file_sinks(FallbackSettings(env_file=OUT / "model.env",
                                               state_file=OUT / "fallback.json", models=MODELS))
    with SimServer(org, SimClock(start), admin_key=key, discount=DISCOUNT) as sim, \
            wiring.opened_store(f"sqlite:///{OUT / 'state.db'}") as store:
        admin = wiring.admin_at(sim.base_url, key)
        try:
            tick = wiring.tick_for(admin, store, config, prices=PriceTable.load(), sinks=sinks,
                                   transport=shown, channel=channel, source="auto")
            last = _run_month(tick, sim, start, step_hours=step_hours, console=console)
            _summary(console, store, sim, last)
        finally:
            admin.http.close()


def demo_budgets(org: SimOrg, start: datetime, share: Decimal) -> list[Budget]:
    """Budgets whose hard limit is ``share`` of what steady traffic spends in the month."""
    end = next_month(start)

    def sized(name: str, scope: Scope, match: str | None) -> Budget:
        month_usd = org.truth_cents(start, end, str(scope), match) / 100
        hard = (month_usd * share).quantize(Decimal(100), ROUND_UP)
        soft = (hard * Decimal("0.8")).quantize(Decimal(1))
        return Budget(name, scope, match, soft, hard)

    return [sized("org-monthly", Scope.ORGANIZATION, None),
            sized("first-workspace", Scope.WORKSPACE, org.workspaces[0].id),
            sized("first-key", Scope.API_KEY, org.api_keys[0].id),
            sized("opus-models", Scope.MODEL, "claude-opus")]


def _fresh_output() -> None:
    OUT.mkdir(exist_ok=True)
    for stale in [*OUT.glob("state.db*"), OUT / "model.env", OUT / "fallback.json"]:
        stale.unlink(missing_ok=True)


def _run_month(tick: Tick, sim: SimServer, start: datetime, *, step_hours: int,
               console: Console) -> TickReport:
    live = Live(console=console, auto_refresh=False, transient=True)
    report: TickReport | None = None
    tier = None
    with live if console.is_terminal else nullcontext():
        for at in _steps(start, step_hours):
            sim.clock.set(at)
            report = run_tick(tick, at)
            if report.fallback.tier != tier:
                tier = report.fallback.tier
                console.print(f"{timestamp(at)}  fallback → {tier} ({report.fallback.model}): "
                              f"{report.fallback.reason}", markup=False, highlight=False)
            if at.hour < step_hours:
                console.print(_day_line(report), markup=False, highlight=False)
            if console.is_terminal:
                live.update(ledger_table(report.assessment.ledger, report.assessment.api_requests),
                            refresh=True)
                time.sleep(0.02)
    assert report is not None
    return report


def _steps(start: datetime, step_hours: int) -> Iterator[datetime]:
    end = next_month(start)
    at = start + timedelta(hours=step_hours)
    while at < end:
        yield at
        at += timedelta(hours=step_hours)
    yield end - MINUTE


def _day_line(report: TickReport) -> str:
    ledger = report.assessment.ledger
    org = ledger.budgets[0]
    pct = org.spend_usd / org.budget.hard_limit_usd * 100
    firing = report.assessment.outcome.firing.get(org.budget.name, ())
    return (f"{timestamp(ledger.at)}  {org.budget.name} {money(org.spend_usd):>12} "
            f"({pct:5.1f} % of hard)  tier {report.fallback.tier:<6} "
            f"firing: {', '.join(firing) or '—'}")


def _summary(console: Console, store: Store, sim: SimServer, last: TickReport) -> None:
    a = last.assessment
    ledger = a.ledger
    console.print(ledger_table(ledger, len(sim.requests)))
    console.print(_truth_table(_checks(sim, ledger)))
    console.print(f"billing source: {a.source}, billed through {timestamp(a.billed_through)}; "
                  "after it usage × price table × the billed/list ratio", markup=False,
                  highlight=False)
    for line in _reconciliation(a):
        console.print(line, markup=False, highlight=False)
    kinds = Counter(kind for _, kind, status in Outbox(store).history() if status == "delivered")
    console.print("alerts sent: " + (", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
                                     or "none"))
    changes = [e for e in Records(store).audit_entries(limit=1000)
               if e.action == "fallback_changed"]
    console.print(f"fallback changes: {len(changes)}")
    for e in changes:
        console.print(f"  {timestamp(e.at)}  {e.before or '—'} → {e.after}: {e.reason}",
                      markup=False, highlight=False)


def _reconciliation(a: Assessment) -> list[str]:
    """The price table against the bill, in words."""
    drift, unpriced = len(a.price_drift), len(a.unpriced_models)
    lines = [f"reconciliation: {_models(drift)} off the bill by more than 2 % on the newest "
             f"billed day; {_models(unpriced)} not in the price table"]
    lines += [f"  {d.describe()}" for d in a.price_drift]
    lines += [f"  {unpriced_warning(m)}" for m in a.unpriced_models]
    return lines


def _models(count: int) -> str:
    return f"{count} model" if count == 1 else f"{count} models"


def _checks(sim: SimServer, ledger: Ledger) -> list[Check]:
    visible = ledger.at - sim.lag
    return [Check(s.budget, s.spend_usd,
                  sim.billed_truth_cents(ledger.period_start, visible, str(s.budget.scope),
                                         s.budget.match) / 100, s.authoritative_usd,
                  s.estimated_usd)
            for s in ledger.budgets]


def _truth_table(checks: list[Check]) -> Table:
    table = Table(title="Ledger against the simulator's billed ground truth")
    for heading in ("budget", "billed", "estimated", "ledger", "truth", "error"):
        table.add_column(heading, justify="left" if heading == "budget" else "right")
    for c in checks:
        table.add_row(c.budget.name, money(c.billed), money(c.estimated), money(c.spend),
                      money(c.truth), f"{c.error_pct:+.4f} %")
    return table


def _month(raw: str) -> datetime:
    try:
        return datetime.strptime(raw, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput([("--month", f"expected YYYY-MM, got {raw!r}")]) from None
