"""The fetcher's caching rules, against the simulated Admin API over loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from guard.adapters.admin.client import AdminClient
from guard.adapters.store.caches import Caches
from guard.core.period import HOUR, floor_hour
from guard.core.pricing import PriceTable
from guard.core.settle import FetchPolicy
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
    """Later refreshes ask only for what is unsettled: the minutes not final (those up to
    12:19 were read ten minutes after they ended, at 12:30), the 11:00 hour once more for
    revisions (read at 12:30, after its late window), by the hour, and, hourly, the last
    three days of cost. A steady refresh makes two requests at most, so the revision, which
    can wait, is read by the next one."""
    fetcher.refresh(at(sim, datetime(2026, 3, 20, 12, 30, tzinfo=UTC)))
    fetcher.refresh(at(sim, datetime(2026, 3, 20, 13, 45, tzinfo=UTC)))
    [usage, cost] = sim.requests
    assert usage.query["starting_at"] == ["2026-03-20T12:20:00Z"]
    assert usage.query["bucket_width"] == ["1m"]
    assert cost.query["starting_at"] == ["2026-03-17T00:00:00Z"]
    assert cost.query["ending_at"] == ["2026-03-20T00:00:00Z"]
    fetcher.refresh(at(sim, datetime(2026, 3, 20, 13, 46, tzinfo=UTC)))
    [usage, revision] = sim.requests
    assert usage.query["starting_at"] == ["2026-03-20T13:35:00Z"]
    assert revision.query["starting_at"] == ["2026-03-20T11:00:00Z"]
    assert revision.query["ending_at"] == ["2026-03-20T12:00:00Z"]
    assert revision.query["bucket_width"] == ["1h"]


def test_an_hour_is_reread_for_late_rows_then_once_for_revisions(sim: SimServer,
                                                                 fetcher: Fetcher) -> None:
    """An hour is re-read every tick until a read ten minutes after it ends, then once more
    an hour later for revisions, as one 1-hour bucket; in between the stored hour stands.
    A first refresh at 15:05 backfills to 15:00 by the hour; at 15:06 the 14:00 hour, read
    before its late window ended, is read by the minute; then only the minutes not final: at
    15:10 from 14:56 (those before were read ten minutes after they ended), and the 13:00
    hour (read at 15:05) by the hour for its revision; from 15:11 only the current hour's,
    14:00 being stored for good."""
    fetcher.refresh(at(sim, datetime(2026, 3, 9, 15, 5, tzinfo=UTC)))
    assert [r.query["starting_at"][0] for r in sim.requests
            if "usage_report" in r.path and r.query["bucket_width"] == ["1m"]] == [
        "2026-03-09T15:00:00Z"]
    reads = []
    for minute in (6, 10, 11, 16):
        fetcher.refresh(at(sim, datetime(2026, 3, 9, 15, minute, tzinfo=UTC)))
        reads.append([(r.query["starting_at"][0][11:16], r.query["bucket_width"][0])
                      for r in sim.requests if "usage_report" in r.path])
    assert reads == [[("14:00", "1m")], [("14:56", "1m"), ("13:00", "1h")],
                     [("15:00", "1m")], [("15:01", "1m")]]


def test_a_late_revision_of_a_settled_hour_is_picked_up(sim: SimServer,
                                                        fetcher: Fetcher) -> None:
    """An hour whose usage changes 40 minutes after it was first settled (read at +15 min)
    is read once more an hour later (a tick later when that tick's two requests are taken),
    and the stored figure follows the revision."""
    hour = datetime(2026, 3, 9, 13, tzinfo=UTC)
    fetcher.refresh(at(sim, hour + timedelta(hours=1, minutes=15)))
    before = fetcher.caches.usage_by_hour(hour, hour + timedelta(hours=1))
    sim.inject(Fault(count=1000, path="usage_report", corrupt=double_hour(hour)))
    fetcher.refresh(at(sim, hour + timedelta(hours=2, minutes=15)))  # the cost re-read first
    revised = fetcher.refresh(at(sim, hour + timedelta(hours=2, minutes=16)))
    after = fetcher.caches.usage_by_hour(hour, hour + timedelta(hours=1))
    assert sum(r.token_usd for r in after) == 2 * sum(r.token_usd for r in before) > 0
    assert revised.data_through is not None


def test_a_cost_day_restated_after_three_days_is_picked_up(sim: SimServer,
                                                           fetcher: Fetcher) -> None:
    """A closed day is read again once a day while it can be restated (until a week after
    its month ends): a restatement five days later reaches the stored cost; after that week
    the day is never read again."""
    day = date(2026, 3, 10)
    fetcher.refresh(at(sim, datetime(2026, 3, 15, 9, tzinfo=UTC)))
    before = fetcher.caches.cost_days([day])[day].total_usd
    sim.inject(Fault(count=1000, path="cost_report", corrupt=double_day(day)))
    fetcher.refresh(at(sim, datetime(2026, 3, 16, 9, 1, tzinfo=UTC)))
    assert fetcher.caches.cost_days([day])[day].total_usd == 2 * before > 0
    sim.clear_faults()
    fetcher.refresh(at(sim, datetime(2026, 4, 8, 1, tzinfo=UTC)))
    sim.clear_requests()
    fetcher.refresh(at(sim, datetime(2026, 4, 9, 2, tzinfo=UTC)))
    starts = [r.query["starting_at"][0] for r in sim.requests if "cost_report" in r.path]
    assert all(s >= "2026-04-01" for s in starts), starts


def test_cost_days_are_due_daily_until_a_week_after_their_month() -> None:
    """Hourly for three days, then daily, then never once the month is a week closed."""
    policy = FetchPolicy()
    day = date(2026, 3, 10)
    read = datetime(2026, 3, 20, tzinfo=UTC)
    assert not policy.cost_due(day, read, read + timedelta(hours=23))
    assert policy.cost_due(day, read, read + timedelta(days=1))
    late = datetime(2026, 4, 8, 0, 1, tzinfo=UTC)
    assert not policy.cost_due(day, late, late + timedelta(days=30))


def double_day(day: date) -> Callable[[Any], None]:
    """A restatement: every amount of ``day``'s cost bucket doubled."""
    def corrupt(payload: Any) -> None:
        for bucket in payload["data"]:
            if bucket["starting_at"].startswith(day.isoformat()):
                for result in bucket["results"]:
                    result["amount"] = str(2 * Decimal(result["amount"]))
    return corrupt


def double_hour(hour: datetime) -> Callable[[Any], None]:
    """A revision: every count of ``hour``'s minute buckets doubled."""
    def corrupt(payload: Any) -> None:
        for bucket in payload["data"]:
            if floor_hour(datetime.fromisoformat(bucket["starting_at"])) != hour:
                continue
            for result in bucket["results"]:
                for name in ("uncached_input_tokens", "cache_read_input_tokens",
                             "output_tokens"):
                    result[name] *= 2
                cache = result["cache_creation"]
                for name in cache:
                    cache[name] *= 2
    return corrupt


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


def test_the_minute_window_waits_a_tick_for_a_poll_of_two_pages(sim: SimServer,
                                                                tmp_path: Path) -> None:
    """When the billed poll due needs two pages (an hour busier than a page), the minute
    window, read a minute before, waits a tick: two requests, data through the minute last
    read; the next tick reads the window on from there."""
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store, \
            wiring.admin_http(sim.base_url, KEY) as http:
        fetcher = Fetcher(AdminClient(http, sleep=lambda _: None), Caches(store),
                          PriceTable.load(), source="analytics")
        fetcher.refresh(at(sim, datetime(2026, 3, 9, 15, 2, tzinfo=UTC)))
        fetcher.refresh(at(sim, datetime(2026, 3, 9, 15, 3, tzinfo=UTC)))
        fetcher.caches.set_meta("billed_rows_per_hour", "1500")  # two pages an hour
        fetcher.caches.set_meta("billed_read_at", "2026-03-09T14:40:00+00:00")  # a poll due
        waited = fetcher.refresh(at(sim, datetime(2026, 3, 9, 15, 4, tzinfo=UTC)))
        assert not [r for r in sim.requests if "usage_report" in r.path]
        assert len(sim.requests) == waited.api_requests <= 2
        assert waited.data_through == datetime(2026, 3, 9, 15, 3, tzinfo=UTC)
        later = fetcher.refresh(at(sim, datetime(2026, 3, 9, 15, 5, tzinfo=UTC)))
        [usage] = [r for r in sim.requests if "usage_report" in r.path]
        assert usage.query["starting_at"] == ["2026-03-09T14:53:00Z"]  # final: read at 15:03
        assert later.data_through == datetime(2026, 3, 9, 15, 5, tzinfo=UTC)


def counting(fetcher: Fetcher) -> list[object]:
    """The rows ``fetcher`` prices from now on."""
    priced: list[object] = []
    price = fetcher.prices.price

    def counted(row: Any, day: date) -> Any:
        priced.append(row)
        return price(row, day)

    fetcher.prices.price = counted  # type: ignore[method-assign]
    return priced


def test_a_minute_read_again_unchanged_is_not_priced_again_but_a_revised_one_is(
        sim: SimServer, fetcher: Fetcher, tmp_path: Path) -> None:
    """A steady refresh reads the late minutes again; those sent as before keep the rows
    priced from them, and one whose counts changed is priced again. In step with a fetcher
    that parses and prices every re-read minute afresh, the usage is the same."""
    with wiring.opened_store(f"sqlite:///{tmp_path / 'afresh.db'}") as store, \
            wiring.admin_http(sim.base_url, KEY) as http:
        afresh = Fetcher(AdminClient(http, sleep=lambda _: None), Caches(store),
                         PriceTable.load())
        moment = datetime(2026, 3, 9, 14, 30, tzinfo=UTC)
        for each in (fetcher, afresh):
            each.refresh(at(sim, moment))
        kept, every = counting(fetcher), counting(afresh)

        def step(minute: int, revise: bool = False) -> tuple[Any, Any]:
            snapshots = []
            for each in (fetcher, afresh):
                if each is afresh:
                    afresh.client._seen.clear()  # nothing read before is recognised
                if revise:
                    sim.inject(Fault(count=1, path="usage_report",
                                     corrupt=double_hour(floor_hour(moment))))
                snapshots.append(each.refresh(at(sim, moment + timedelta(minutes=minute))))
            return snapshots[0], snapshots[1]

        steady = step(1)
        assert 0 < len(kept) < len(every)
        assert steady[0].usage == steady[1].usage and steady[0].today == steady[1].today
        kept.clear()
        every.clear()
        revised = step(2, revise=True)
        assert len(kept) == len(every) > 0  # every re-read minute of the hour changed
        assert revised[0].usage == revised[1].usage
        day = moment.date()
        assert revised[0].usage[day].organization != steady[0].usage[day].organization


def test_a_stored_hour_read_again_unchanged_is_not_written_again(sim: SimServer,
                                                                  fetcher: Fetcher) -> None:
    """In the first minutes of an hour the previous one is read again by the minute (the
    simulator's late rows of 14:5x arrive until about 15:03); found as stored, only its read
    time moves (the day's version stands). Written over meanwhile (another replica), it is
    written again from what was read."""
    hour = datetime(2026, 3, 9, 14, tzinfo=UTC)
    day = hour.date()
    for minute in (30, 59, 60, 61, 62, 63, 64):
        fetcher.refresh(at(sim, hour + timedelta(minutes=minute)))
    read = fetcher.caches.usage_by_hour(hour, hour + HOUR)
    version = fetcher.caches.versions("usage", day, day)
    for minute in (65, 66, 67):
        fetcher.refresh(at(sim, hour + timedelta(minutes=minute)))
        assert fetcher.caches.usage_fetched(hour, hour + HOUR) == {
            hour: hour + timedelta(minutes=minute)}
    assert fetcher.caches.versions("usage", day, day) == version
    assert fetcher.caches.usage_by_hour(hour, hour + HOUR) == read
    fetcher.caches.replace_usage_hours([hour], read[:1], hour + timedelta(minutes=67))
    assert fetcher.caches.usage_by_hour(hour, hour + HOUR) != read
    fetcher.refresh(at(sim, hour + timedelta(minutes=68)))
    assert fetcher.caches.usage_by_hour(hour, hour + HOUR) == read
