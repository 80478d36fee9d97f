"""The backtest as a rich table: one row per checkpoint day, ours against the naive run rate."""

from __future__ import annotations

from decimal import Decimal

from rich.table import Table

from guard.backtest.alerts import CHECK_DAY, AlertScore
from guard.backtest.harness import Accuracy, Backtest, DayScore
from guard.backtest.runaway import RunawayResult


def backtest_table(result: Backtest) -> Table:
    """MAPE (median APE) of ours and naive, their ratio, and P10/P90 coverage per day."""
    table = Table(title=headline(result), title_justify="left")
    table.add_column("day", justify="right")
    table.add_column("ours MAPE (median)", justify="right")
    table.add_column("naive MAPE (median)", justify="right")
    table.add_column("ours / naive", justify="right")
    table.add_column("P10 coverage", justify="right")
    table.add_column("P90 coverage", justify="right")
    for score in result.scores:
        table.add_row(*row(score))
    return table


def headline(result: Backtest) -> str:
    """``Backtest: 200 orgs, 2200 months (8800 forecasts)``."""
    forecasts = sum(score.cases for score in result.scores)
    orgs = len(result.orgs)
    return (f"Backtest: {orgs} org{'s' if orgs != 1 else ''}, {result.month_count} months "
            f"({forecasts} forecasts)")


def row(score: DayScore) -> tuple[str, ...]:
    """The cells of one checkpoint day."""
    return (f"d{score.day}", accuracy_cell(score.ours), accuracy_cell(score.naive),
            f"{score.ratio:.2f}", percent(score.p10_coverage), percent(score.p90_coverage))


def accuracy_cell(accuracy: Accuracy) -> str:
    """``11.9 % (8.3 %)``."""
    return f"{percent(accuracy.mape)} ({percent(accuracy.median_ape)})"


def percent(share: Decimal) -> str:
    """A share as a percentage with one decimal: ``0.1234`` → ``12.3 %``."""
    return f"{share * 100:.1f} %"


def alerts_table(scores: tuple[AlertScore, ...]) -> Table:
    """Precision, recall, lead time and flaps of the forecast conditions."""
    months = scores[0].months if scores else 0
    table = Table(title=f"Alerts: {months} budget-months, hard limit = realised total × "
                        f"U(0.85, 1.15), a tick every 6 h through policy",
                  title_justify="left")
    for heading in ("condition", f"firing precision d{CHECK_DAY}", f"firing recall d{CHECK_DAY}",
                    f"rule precision d{CHECK_DAY}", f"rule recall d{CHECK_DAY}",
                    "mean lead (days)", "flaps / budget-month"):
        table.add_column(heading, justify="left" if heading == "condition" else "right")
    for s in scores:
        table.add_row(str(s.condition), percent(s.precision), percent(s.recall),
                      percent(s.rule_precision), percent(s.rule_recall),
                      f"{s.lead_days:.1f}", f"{s.flaps_per_month:.3f}")
    return table


def runaway_table(result: RunawayResult, orgs: int) -> Table:
    """How fast a 10× hour-long spike trips the fast tier, and false trips in quiet traffic."""
    median_delay, worst = result.delay_summary()
    table = Table(title=f"Runaway: {orgs} synthetic organizations, minute-level traffic with "
                        "business-hour peaks at 3× the mean hour", title_justify="left")
    for heading in ("spikes (10× for 1 h)", "tripped", "median delay", "worst delay",
                    "quiet evaluations", "false trips"):
        table.add_column(heading, justify="right")
    table.add_row(str(len(result.delays)), str(result.detected), f"{median_delay:.0f} min",
                  f"{worst} min", str(result.quiet_evaluations), str(result.false_trips))
    return table
