"""Budgets whose match names nothing (issue 11): checked against the organization's lists,
which are read once and remembered, so the steady tick makes no extra request."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from guard.core.directory import Directory, directory_due, looked_up
from guard.entry.cli import app
from guard.shell.directory import decode, encode
from guard.sim import SimClock, SimOrg, SimServer
from guard.sim.faults import Fault
from tests.test_doctor import KEY, config

MORNING = datetime(2026, 3, 1, 6, tzinfo=UTC)
"""Six hours into the month: too early for a $0 budget alone to mean anything."""


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimOrg.generate(3), SimClock(MORNING), admin_key=KEY) as server:
        yield server


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def typo_of(real: str) -> str:
    return real[:-1] + ("x" if real[-1] != "x" else "y")


def with_budgets(path: Path, *budgets: tuple[str, str, str]) -> Path:
    path.write_text(path.read_text() + "".join(
        f'[[budgets]]\nname = "{name}"\nscope = "{scope}"\nmatch = "{match}"\n'
        "soft_limit_usd = 1\nhard_limit_usd = 2\n" for name, scope, match in budgets))
    return path


def report(path: Path, at: datetime) -> dict[str, object]:
    result = CliRunner().invoke(app, ["--config", str(path), "report", "--json", "--at",
                                      stamp(at)])
    assert result.exit_code == 0, result.output
    body: dict[str, object] = json.loads(result.stdout)
    return body


def warnings_of(body: dict[str, object]) -> list[str]:
    found = body["warnings"]
    assert isinstance(found, list)
    return [str(w) for w in found]


def listings(sim: SimServer) -> list[str]:
    return [r.path for r in sim.requests
            if r.path.endswith(("/workspaces", "/api_keys"))]


def test_mistyped_ids_are_named_at_once_and_real_idle_ones_never(tmp_path: Path,
                                                                 sim: SimServer) -> None:
    """Six hours into the month a workspace id and a key id one character off each get a
    warning that says the organization has no such id; the real ones get none, even at $0."""
    org = SimOrg.generate(3)
    real_ws, real_key = org.workspaces[0].id, org.api_keys[0].id
    path = with_budgets(config(tmp_path, sim, None),
                        ("ws-typo", "workspace", typo_of(real_ws)),
                        ("ws-real", "workspace", real_ws),
                        ("key-typo", "api_key", typo_of(real_key)),
                        ("key-real", "api_key", real_key))
    warned = warnings_of(report(path, MORNING))
    [ws] = [w for w in warned if "budget ws-typo" in w]
    assert f"the organization has no workspace {typo_of(real_ws)}" in ws
    assert re.search(r"\(\d+ workspaces listed\)", ws)
    [key] = [w for w in warned if "budget key-typo" in w]
    assert f"the organization has no API key {typo_of(real_key)}" in key
    assert not any("ws-real" in w or "key-real" in w for w in warned)
    later = warnings_of(report(path, MORNING + timedelta(days=3)))
    assert not any("ws-real" in w or "key-real" in w for w in later)


def test_the_lists_are_read_once_not_every_tick(tmp_path: Path, sim: SimServer) -> None:
    """The first report reads both lists; reports after it read neither until a day has
    passed. (Legacy source: the analytics source lists workspaces once per process for the
    default workspace's id, which is its own business.)"""
    org = SimOrg.generate(3)
    legacy = config(tmp_path, sim, None)
    legacy.write_text(legacy.read_text().replace("max_retries = 0\n",
                                                 'max_retries = 0\nsource = "legacy"\n'))
    path = with_budgets(legacy,
                        ("ws", "workspace", org.workspaces[0].id),
                        ("key", "api_key", org.api_keys[0].id))
    report(path, MORNING)
    assert sorted(p.rsplit("/", 1)[1] for p in listings(sim)) == ["api_keys", "workspaces"]
    sim.clear_requests()
    report(path, MORNING + timedelta(minutes=5))
    report(path, MORNING + timedelta(hours=3))
    assert listings(sim) == []
    report(path, MORNING + timedelta(days=1, minutes=1))
    assert len(listings(sim)) == 2


def test_a_missing_id_is_looked_up_again_an_hour_later(tmp_path: Path, sim: SimServer) -> None:
    """A key id the organization lacks may be a key just created: its list is read again
    after an hour, not every tick; the warning stays while it is still missing."""
    org = SimOrg.generate(3)
    path = with_budgets(config(tmp_path, sim, None),
                        ("key", "api_key", typo_of(org.api_keys[0].id)))
    report(path, MORNING)
    sim.clear_requests()
    report(path, MORNING + timedelta(minutes=30))
    assert not [p for p in listings(sim) if p.endswith("/api_keys")]
    warned = warnings_of(report(path, MORNING + timedelta(hours=1, minutes=1)))
    assert len([p for p in listings(sim) if p.endswith("/api_keys")]) == 1
    assert any("budget key" in w and "has no API key" in w for w in warned)


def test_a_new_budget_id_is_looked_up_on_the_next_tick(tmp_path: Path, sim: SimServer) -> None:
    """Adding a budget whose id the stored answer does not cover reads the lists again."""
    org = SimOrg.generate(3)
    path = with_budgets(config(tmp_path, sim, None), ("ws", "workspace", org.workspaces[0].id))
    report(path, MORNING)
    sim.clear_requests()
    with_budgets(path, ("typo", "workspace", typo_of(org.workspaces[1].id)))
    warned = warnings_of(report(path, MORNING + timedelta(minutes=5)))
    assert len(listings(sim)) == 1
    assert any("budget typo" in w and "has no workspace" in w for w in warned)


def test_a_model_prefix_no_priced_model_starts_with_is_named(tmp_path: Path,
                                                             sim: SimServer) -> None:
    """`claude-opsu` matches no model: a warning at once; `claude-opus` (priced) gets none."""
    path = with_budgets(config(tmp_path, sim, None),
                        ("typo", "model", "claude-opsu"), ("opus", "model", "claude-opus"))
    warned = warnings_of(report(path, MORNING))
    assert any("budget typo" in w and "no model in the price table starts with 'claude-opsu'"
               in w for w in warned)
    assert not any("budget opus" in w for w in warned)


def test_an_unreadable_list_falls_back_to_the_usage_alone(tmp_path: Path,
                                                          sim: SimServer) -> None:
    """When the key list cannot be read the tick still answers; a $0 key budget is then
    warned about a day into the month, from its usage alone."""
    org = SimOrg.generate(3)
    path = with_budgets(config(tmp_path, sim, None),
                        ("key", "api_key", typo_of(org.api_keys[0].id)))
    sim.inject(Fault(status=500, count=10, path="/organizations/api_keys"))
    early = warnings_of(report(path, MORNING))
    assert not any("budget key" in w for w in early)
    sim.inject(Fault(status=500, count=10, path="/organizations/api_keys"))
    later = warnings_of(report(path, MORNING + timedelta(days=1)))
    assert any("budget key" in w and "guard doctor" in w for w in later)


def test_due_when_missing_uncovered_stale_or_lacking_an_id() -> None:
    """The lists are due with no answer, a new id, a day's age, or an hour after a miss."""
    at = MORNING
    full = looked_up(at, {"w1"}, {"k1"}, ["w1", "w2"], ["k1"])
    assert full.missing() == frozenset()
    assert not directory_due(None, (), (), at)
    assert directory_due(None, {"w1"}, (), at)
    assert directory_due(full, {"w1", "w3"}, {"k1"}, at)
    assert not directory_due(full, {"w1"}, {"k1"}, at + timedelta(hours=23))
    assert directory_due(full, {"w1"}, {"k1"}, at + timedelta(days=1))
    assert not directory_due(full, {"w1"}, {"k1"}, at - timedelta(days=3))
    miss = looked_up(at, {"w9"}, (), ["w1"], None)
    assert miss.missing() == frozenset({"w9"}) and miss.workspaces_listed == 1
    assert not directory_due(miss, {"w9"}, (), at + timedelta(minutes=59))
    assert directory_due(miss, {"w9"}, (), at + timedelta(hours=1))


def test_the_stored_answer_round_trips_and_garbage_is_reread() -> None:
    """What is stored decodes to the same directory; an unreadable value decodes to None."""
    d = Directory(MORNING, frozenset({"w1"}), frozenset({"k1", "k2"}), frozenset({"k1"}), 4, 9)
    assert decode(encode(d)) == d
    assert decode("{not json") is None
    assert decode(json.dumps({"read_at": "yesterday"})) is None
