"""What ``guard backtest`` needs beyond the library: its inputs resolved, errors worded."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from guard.backtest import runaway
from guard.backtest.alerts import AlertScore, alert_scores
from guard.backtest.harness import Backtest, backtest, scoreable_months
from guard.backtest.history import load_history
from guard.backtest.runaway import RunawayResult
from guard.backtest.synthetic import synthetic_orgs
from guard.errors import ConfigError

WORKERS = 2
EXPORT_MONTHS = 13


def run_backtest(*, orgs: int, months: int, seed: int,
                 history: Path | None) -> tuple[Backtest, tuple[AlertScore, ...]]:
    """Replay ``history`` if given, else ``orgs`` synthetic organizations of ``months`` months.

    Returns the forecast scores and the alert scores of the forecast conditions.
    """
    if history is None:
        result = backtest(synthetic_orgs(orgs, seed, months), workers=WORKERS)
    else:
        series = load_history(history, "--history")
        if not scoreable_months(series):
            raise ConfigError([("--history", f"{history}: no complete month has two calendar "
                                             "months of history before it")])
        result = backtest({history.stem: series})
    return result, alert_scores(result.orgs, workers=WORKERS)


def export_start(raw: str | None, today: date) -> date:
    """``--since`` as a date; by default the first of the month 13 months before ``today``."""
    if raw is None:
        index = today.year * 12 + today.month - 1 - EXPORT_MONTHS
        return date(index // 12, index % 12 + 1, 1)
    try:
        start = date.fromisoformat(raw)
    except ValueError:
        raise ConfigError([("--since", f"not a date (YYYY-MM-DD): {raw!r}")]) from None
    if start >= today:
        raise ConfigError([("--since", f"{start} is not before today ({today})")])
    return start



def run_runaway(orgs: int, seed: int) -> RunawayResult:
    """The runaway replay over ``orgs`` synthetic organizations."""
    return runaway.run(orgs, seed, workers=WORKERS)
