"""Hostile Admin API answers (issue 12, item 4): a negative, absurd or implausible figure is
a named error for the tick, nothing of it is stored, and the fallback never relaxes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from guard.core.model import Budget, CostDay, PricedUsage, Scope
from guard.core.plausible import Bounds, bounds_of, cost_rows, usage_rows
from guard.sim import SimClock, SimOrg, SimServer
from guard.sim.faults import Fault

KEY = "sk-ant-admin-hostile"
ORG = SimOrg.generate(3)
MARCH = datetime(2026, 3, 1, tzinfo=UTC)
AT = MARCH + timedelta(days=20, hours=12)
SPENT_USD = ORG.truth_cents(MARCH, AT, "organization") / 100


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(ORG, SimClock(AT), admin_key=KEY) as server:
        yield server


def config(tmp_path: Path, url: str) -> Path:
    """An organization budget whose hard limit was passed days ago: the fallback is haiku."""
    hard = (SPENT_USD / 2).quantize(Decimal(1))
    path = tmp_path / "guard.toml"
    path.write_text(
        f'[anthropic]\nadmin_api_key = "{KEY}"\nbase_url = "{url}"\nmax_retries = 0\n'
        'source = "legacy"\n'
        f'[state]\nurl = "sqlite:///{tmp_path / "state.db"}"\n'
        f'[fallback]\nenv_file = "{tmp_path / "model.env"}"\n'
        f'state_file = "{tmp_path / "fallback.json"}"\n'
        '[[budgets]]\nname = "org"\nscope = "organization"\n'
        f"soft_limit_usd = {hard / 2}\nhard_limit_usd = {hard}\n")
    return path


def check(path: Path, at: datetime) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run([sys.executable, "-m", "guard", "--config", str(path), "check",
                           "--json", "--at", at.strftime("%Y-%m-%dT%H:%M:%SZ")],
                          capture_output=True, text=True, timeout=300, check=False)
    body = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return done.returncode, body, done.stderr


def each_result(change: Callable[[dict[str, Any]], None]) -> Callable[[Any], None]:
    def corrupt(payload: Any) -> None:
        for bucket in payload["data"]:
            for result in bucket["results"][:1]:
                change(result)
    return corrupt


HOSTILE = {
    "negative-tokens": ("usage_report", {"output_tokens": -5}, "`output_tokens` is negative"),
    "1e15-tokens": ("usage_report", {"output_tokens": 10**15}, "over 1e+12 for one row"),
    "implausible-tokens": ("usage_report", {"output_tokens": 10**11, "model": "claude-opus-4-7"},
                           "more than 10× the organization's hard limit"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_answer_never_relaxes_the_fallback(sim: SimServer, tmp_path: Path,
                                                     case: str) -> None:
    """Haiku after a good check; then every usage page carries a hostile row: exit 3 naming
    the row, model.env and the usage cache unchanged, still haiku."""
    path = config(tmp_path, sim.base_url)
    code, body, _ = check(path, AT)
    assert code == 0 and body["fallback"]["tier"] == "haiku"
    env = (tmp_path / "model.env").read_bytes()
    report, fields, why = HOSTILE[case]
    sim.inject(Fault(count=1000, path=report,
                     corrupt=each_result(lambda result: result.update(fields))))
    later = AT + timedelta(minutes=10)
    sim.clock.set(later)
    code, body, stderr = check(path, later)
    assert code == 3, stderr
    assert why in stderr and "malformed Admin API response" in stderr
    assert "Traceback" not in stderr
    assert body["fallback"]["tier"] == "haiku"
    assert (tmp_path / "model.env").read_bytes() == env


def test_a_negative_cost_line_is_refused_and_spend_is_unchanged(sim: SimServer,
                                                                tmp_path: Path) -> None:
    """A closed day's cost report restated with a negative line: refused by name, never
    stored, so month-to-date stays what it was (the issue's haiku → opus relaxation)."""
    path = config(tmp_path, sim.base_url)
    code, body, _ = check(path, AT)
    assert code == 0
    spend = body["budgets"][0]["spend_usd"]
    digest = hashlib.sha256((tmp_path / "model.env").read_bytes()).hexdigest()
    sim.inject(Fault(count=1000, path="cost_report",
                     corrupt=each_result(lambda r: r.update(amount="-99999999"))))
    later = AT + timedelta(days=1)  # a new closed day is due: the cost report is read
    sim.clock.set(later)
    code, body, stderr = check(path, later)
    assert code == 3 and "`amount` is negative" in stderr
    assert body["fallback"]["tier"] == "haiku"
    assert body["budgets"][0]["spend_usd"] >= spend
    assert hashlib.sha256((tmp_path / "model.env").read_bytes()).hexdigest() == digest


def test_bounds_come_from_the_organizations_hard_limit() -> None:
    """10× the organization budget's hard limit; without one no bound: a workspace budget
    says nothing of what the other workspaces spend."""
    org = Budget("org", Scope.ORGANIZATION, None, Decimal(50), Decimal(100))
    team = Budget("team", Scope.WORKSPACE, "wrkspc_a", Decimal(5), Decimal(30))
    assert bounds_of([org, team]) == Bounds(Decimal(1000))
    assert bounds_of([team, team]) == Bounds(None)
    assert bounds_of([]) == Bounds(None)


def test_one_row_over_the_bound_is_named_and_rows_under_it_pass() -> None:
    """The row over the bound is named with its day and amount; a month's worth of rows just
    under it (a real runaway) passes."""
    bounds = Bounds(Decimal(1000))
    hour = datetime(2026, 3, 4, 5, tzinfo=UTC)
    ok = [PricedUsage(hour + timedelta(hours=i), None, None, "m", Decimal(999), Decimal(0))
          for i in range(24)]
    assert bounds.check(usage_rows(ok), "the usage report") is None
    bad = [*ok, PricedUsage(hour, None, None, "m", Decimal("1000.01"), Decimal(0))]
    problem = bounds.check(usage_rows(bad), "the usage report")
    assert problem is not None and "$1,000.01 on 2026-03-04" in problem
    day = CostDay(hour.date(), {None: Decimal(5), "wrkspc_a": Decimal(2000)}, {})
    assert "$2,000.00" in (bounds.check(cost_rows([day]), "the cost report") or "")
    assert Bounds(None).check(usage_rows(bad), "x") is None
