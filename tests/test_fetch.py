"""The fetcher's caching rules, against the simulated Admin API over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from guard.adapters.admin.client import AdminClient
from guard.adapters.store.caches import Caches
from guard.core.pricing import PriceTable
from guard.entry import wiring
from guard.errors import UpstreamUnavailable
from guard.shell.sync import WATERMARK, Fetcher
from guard.sim import Fault, SimClock, SimOrg, SimServer

KEY = "sk-ant-admin01-fetch-test"
ORG = SimOrg.generate(3)


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(ORG, SimClock(datetime(2026, 3, 1, tzinfo=UTC)), admin_key=KEY) as server:
        yield server


@pytest.fixture
def fetcher(sim: SimServer, tmp_path: Path) -> Iterator[Fetcher]:
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store, \
            wiring.admin_http(sim.base_url, KEY) as http:
        yield Fetcher(AdminClient(http, sleep=lambda _: None), Caches(store), PriceTable.load())


def at(sim: SimServer, moment: datetime) -> datetime:
    sim.clock.set(moment)
    sim.clear_requests()
    return moment


def paths(sim: SimServer) -> list[str]:
    return [r.path.rsplit("/", 1)[-1] for r in sim.requests]


def test_yesterday_turns_authoritative_only_after_it_settles(sim: SimServer,
                                                             fetcher: Fetcher) -> None:
    """Just after midnight yesterday is estimated; half an hour later it is billed."""
    fetcher.refresh(at(sim, datetime(2026, 3, 5, 0, 10, tzinfo=UTC)))
    early = fetcher.refresh(at(sim, datetime(2026, 3, 5, 0, 11, tzinfo=UTC)))
    assert max(early.settled) == date(2026, 3, 3)
    late = fetcher.refresh(at(sim, datetime(2026, 3, 5, 0, 41, tzinfo=UTC)))
    assert max(late.settled) == date(2026, 3, 4)
    assert paths(sim).count("cost_report") == 1


def test_settled_data_is_never_fetched_twice(sim: SimServer, fetcher: Fetcher) -> None:
    """Later refreshes ask only for the unsettled hours and, hourly, the last three days."""
    fetcher.refresh(at(sim, datetime(2026, 3, 20, 12, 30, tzinfo=UTC)))
    fetcher.refresh(at(sim, datetime(2026, 3, 20, 13, 45, tzinfo=UTC)))
    [usage, cost] = sim.requests
    assert usage.query["starting_at"] == ["2026-03-20T12:00:00Z"]
    assert usage.query["bucket_width"] == ["1m"]
    assert cost.query["starting_at"] == ["2026-03-17T00:00:00Z"]
    assert cost.query["ending_at"] == ["2026-03-20T00:00:00Z"]


def test_the_previous_hour_is_reread_until_it_settles(sim: SimServer, fetcher: Fetcher) -> None:
    """At 14:05 the 13:00 hour is still re-read (late rows); at 14:15 it no longer is."""
    fetcher.refresh(at(sim, datetime(2026, 3, 9, 14, 5, tzinfo=UTC)))
    fetcher.refresh(at(sim, datetime(2026, 3, 9, 14, 6, tzinfo=UTC)))
    assert sim.requests[0].query["starting_at"] == ["2026-03-09T13:00:00Z"]
    fetcher.refresh(at(sim, datetime(2026, 3, 9, 14, 15, tzinfo=UTC)))
    fetcher.refresh(at(sim, datetime(2026, 3, 9, 14, 16, tzinfo=UTC)))
    assert sim.requests[0].query["starting_at"] == ["2026-03-09T14:00:00Z"]


def test_a_failed_refresh_records_nothing_it_did_not_read(sim: SimServer,
                                                          fetcher: Fetcher) -> None:
    """A refresh that fails part-way leaves the rest to be fetched next time, not zeroed."""
    moment = at(sim, datetime(2026, 3, 12, 9, 0, tzinfo=UTC))
    sim.inject(Fault(status=500, count=100, path="cost_report"))
    with pytest.raises(UpstreamUnavailable):
        fetcher.refresh(moment)
    sim.clear_faults()
    snapshot = fetcher.refresh(at(sim, moment + timedelta(minutes=1)))
    assert paths(sim).count("cost_report") >= 1
    assert max(snapshot.settled) == date(2026, 3, 11)


def test_the_in_progress_hour_is_not_stored(sim: SimServer, fetcher: Fetcher,
                                            tmp_path: Path) -> None:
    """Only complete hours reach the store; the current one is re-read each refresh."""
    moment = at(sim, datetime(2026, 3, 2, 10, 40, tzinfo=UTC))
    fetcher.refresh(moment)
    stored = fetcher.caches.usage_fetched(datetime(2026, 3, 1, tzinfo=UTC), moment)
    assert max(stored) == datetime(2026, 3, 2, 9, tzinfo=UTC)


def test_the_watermark_only_moves_forward(sim: SimServer, fetcher: Fetcher) -> None:
    """The store records how far usage was read; a refresh --at in the past keeps it."""
    fetcher.refresh(at(sim, datetime(2026, 3, 6, 8, 30, tzinfo=UTC)))
    fetcher.refresh(at(sim, datetime(2026, 3, 4, 8, 30, tzinfo=UTC)))
    assert fetcher.caches.get_meta(WATERMARK) == "2026-03-06T08:30:00+00:00"
