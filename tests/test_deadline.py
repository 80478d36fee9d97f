"""A tick's deadline (issue 12, item 4): a first read longer than one tick is cut off, keeps
what it read, and completes over the next ticks to the same figures as an unbounded read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from guard.adapters.admin.client import AdminClient, RetryPolicy
from guard.adapters.store.caches import Caches
from guard.core.ledger import ledger_of
from guard.core.model import Budget, Scope
from guard.core.pricing import PriceTable
from guard.entry import wiring
from guard.errors import DeadlineExceeded
from guard.shell.sync import Fetcher
from guard.sim import SimClock, SimOrg, SimServer

KEY = "sk-ant-admin-deadline"
ORG = SimOrg.generate(5)
AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
BUDGETS = [Budget("org", Scope.ORGANIZATION, None, 10**6, 2 * 10**6)]
REQUEST_S = 1.0
"""What each request costs on the fake clock: the deadline counts requests, not speed."""


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(ORG, SimClock(AT), admin_key=KEY) as server:
        yield server


def spend_after(sim: SimServer, state: Path, deadline_s: float | None,
                ticks: int) -> tuple[str, int, list[str]]:
    """Month-to-date after up to ``ticks`` refreshes at ``AT``, how many were cut off."""
    outcomes: list[str] = []
    with wiring.opened_store(f"sqlite:///{state}") as store, \
            wiring.admin_http(sim.base_url, KEY) as http:
        client = AdminClient(http, retry=RetryPolicy(attempts=1), sleep=lambda _: None)
        client.clock = lambda: client.requests * REQUEST_S
        fetcher = Fetcher(client, Caches(store), PriceTable.load(), source="analytics",
                          deadline_s=deadline_s)
        for _ in range(ticks):
            try:
                snapshot = fetcher.refresh(AT)
            except DeadlineExceeded:
                outcomes.append("cut")
                continue
            outcomes.append("done")
            spend = ledger_of(BUDGETS, snapshot).budgets[0].spend_usd
            return str(spend), client.requests, outcomes
    return "", client.requests, outcomes


def test_a_first_read_cut_by_the_deadline_completes_over_the_next_ticks(
        sim: SimServer, tmp_path: Path) -> None:
    """With room for 12 requests a tick, the first read takes several ticks, each cut off
    by name; the month then comes out to the cent as one unbounded read has it."""
    whole, requests, _ = spend_after(sim, tmp_path / "whole.db", None, 1)
    assert requests > 24, "the first read must be longer than two ticks for this test"
    cut, _, outcomes = spend_after(sim, tmp_path / "cut.db", 12 * REQUEST_S, 40)
    assert outcomes[0] == "cut" and outcomes[-1] == "done"
    assert outcomes.count("cut") >= 2
    assert cut == whole


def test_deadline_defaults_to_fifty_seconds(tmp_path: Path) -> None:
    """`anthropic.tick_deadline_s` is 50 s unless set, so a whole tick (deciding and a
    check's start-up included) ends within the issue's minute."""
    path = tmp_path / "guard.toml"
    path.write_text(f'[state]\nurl = "sqlite:///{tmp_path / "s.db"}"\n')
    from guard.config import load_settings  # noqa: PLC0415

    assert load_settings(path).anthropic.tick_deadline_s == 50
    assert timedelta(seconds=load_settings(path).anthropic.tick_deadline_s) <= timedelta(
        minutes=1)
