"""Offline evaluation of the forecast (reference/forecasting.md §A3.5, §A3.6).

* ``synthetic_org``/``synthetic_orgs``: seeded synthetic daily spend series;
* ``load_history``/``export_history``: an organization's own daily cost history, as a file;
* ``backtest``: replay months at days 5, 10, 15 and 20 and score them against the naive run
  rate; ``backtest_table`` renders the scores.
"""

from guard.backtest.harness import (
    Accuracy,
    Backtest,
    Case,
    DayScore,
    MonthReplay,
    OrgReplay,
    backtest,
    replay_org,
)
from guard.backtest.history import export_history, fetch_history, load_history
from guard.backtest.report import alerts_table, backtest_table, runaway_table
from guard.backtest.synthetic import Shape, synthetic_org, synthetic_orgs

__all__ = [
    "Accuracy",
    "Backtest",
    "Case",
    "DayScore",
    "MonthReplay",
    "OrgReplay",
    "Shape",
    "alerts_table",
    "backtest",
    "backtest_table",
    "export_history",
    "fetch_history",
    "load_history",
    "replay_org",
    "runaway_table",
    "synthetic_org",
    "synthetic_orgs",
]
