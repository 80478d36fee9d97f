"""The state store on real SQLite and real PostgreSQL: exact money, replace semantics."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from guard.adapters.store.caches import Caches
from guard.adapters.store.engine import from_units, to_units
from guard.adapters.store.state import Records
from guard.core.billed import BilledHour
from guard.core.fallback import FallbackState
from guard.core.model import CostDay, PricedUsage
from guard.core.period import HOUR
from guard.core.usage import days_of
from guard.entry import wiring
from guard.errors import StoreError

H10 = datetime(2026, 3, 2, 10, tzinfo=UTC)
H11 = datetime(2026, 3, 2, 11, tzinfo=UTC)
MODELS = {"opus": "claude-opus-4-7", "sonnet": "claude-sonnet-4-6", "haiku": "claude-haiku-4-5"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Caches]:
    """The caches of a fresh store on each backend."""
    if request.param == "sqlite":
        opened = wiring.connect_store(f"sqlite:///{tmp_path / 'state.db'}")
    else:
        opened = wiring.connect_store(request.getfixturevalue("pg_url"))
        with opened.engine.begin() as conn:
            for table in ("usage_hours", "usage_fetches", "cost_days", "cost_fetches", "meta",
                          "billed_hours", "usage_scope_days", "billed_scope_days",
                          "usage_hour_totals", "day_versions"):
                conn.execute(sa.text(f"DELETE FROM {table}"))
    yield Caches(opened)
    opened.close()


def priced(hour: datetime, usd: str, key: str | None = "apikey_1",
           ws: str | None = None) -> PricedUsage:
    return PricedUsage(start=hour, workspace_id=ws, api_key_id=key, model="claude-opus-4-7",
                       token_usd=Decimal(usd), web_search_usd=Decimal("0.01"), input_tokens=10,
                       output_tokens=2, web_search_requests=1)


def test_money_round_trips_exactly() -> None:
    """Cost-report precision (cents with six decimals) survives the integer units."""
    for usd in ("5.27999760", "0.0000000001", "123456789.1234567891", "0"):
        assert from_units(to_units(Decimal(usd))) == Decimal(usd)


def test_usage_hours_sum_per_day_exactly(store: Caches) -> None:
    """Stored hours come back summed per (day, workspace, key, model) without rounding."""
    store.replace_usage_hours([H10, H11], [priced(H10, "0.000123456"), priced(H11, "1.1"),
                                           priced(H11, "2", key=None, ws="wrkspc_x")], H11)
    rows = sorted(store.usage_by_day(datetime(2026, 3, 1, tzinfo=UTC),
                                     datetime(2026, 3, 3, tzinfo=UTC)),
                  key=lambda r: r.api_key_id or "")
    assert [(r.api_key_id, r.token_usd, r.web_search_usd, r.web_search_requests)
            for r in rows] == [(None, Decimal(2), Decimal("0.01"), 1),
                               ("apikey_1", Decimal("1.100123456"), Decimal("0.02"), 2)]
    assert all(r.start == datetime(2026, 3, 2, tzinfo=UTC) for r in rows)


def test_replacing_an_hour_drops_its_old_rows(store: Caches) -> None:
    """Re-reading an hour replaces it whole: late rows are never added twice."""
    store.replace_usage_hours([H10], [priced(H10, "1"), priced(H10, "2", key="apikey_2")], H10)
    store.replace_usage_hours([H10], [priced(H10, "5")], H11)
    [row] = store.usage_by_day(H10, H11)
    assert row.token_usd == Decimal(5)
    assert store.usage_fetched(H10, H11) == {H10: H11}


def test_an_empty_hour_is_recorded_as_fetched(store: Caches) -> None:
    """An hour read with no usage is known-empty, not unknown."""
    store.replace_usage_hours([H10], [], H11)
    assert store.usage_fetched(H10, H11) == {H10: H11}
    assert store.usage_by_day(H10, H11) == []


def test_cost_days_round_trip_with_the_default_workspace(store: Caches) -> None:
    """Cost days keep the default workspace (None) and per-model token costs exactly."""
    day = CostDay(date(2026, 3, 1), {None: Decimal("1.0921875"), "wrkspc_a": Decimal("3")},
                  {"claude-sonnet-4-6": Decimal("9.751875")})
    empty = CostDay(date(2026, 3, 2))
    store.replace_cost_days([day, empty], H10)
    got = store.cost_days([date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)])
    assert got == {date(2026, 3, 1): day, date(2026, 3, 2): empty}
    assert got[date(2026, 3, 1)].total_usd == Decimal("4.0921875")
    assert store.cost_fetched(date(2026, 3, 1), date(2026, 3, 3)) == {
        date(2026, 3, 1): H10, date(2026, 3, 2): H10}


def test_meta_values_are_replaced(store: Caches) -> None:
    """A named value is overwritten, not duplicated."""
    store.set_meta("usage_through", "a")
    store.set_meta("usage_through", "b")
    assert store.get_meta("usage_through") == "b"
    assert store.get_meta("missing") is None


def test_unreachable_store_is_a_store_error(tmp_path: Path) -> None:
    """A store that cannot be opened raises StoreError without the password in it."""
    with pytest.raises(StoreError) as info:
        wiring.connect_store("postgresql+psycopg://u:hunter2@127.0.0.1:1/none?connect_timeout=2")
    assert "hunter2" not in str(info.value)


@pytest.fixture(params=["sqlite", "postgresql"])
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Records]:
    """The state part of a fresh store on each backend."""
    url = (f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    opened = wiring.connect_store(url)
    with opened.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM fallback_state"))
    yield Records(opened)
    opened.close()


def test_the_fallback_in_force_round_trips_whole(records: Records) -> None:
    """What the tick saves (chain, pin details, reload owed) is what it reads back."""
    state = FallbackState.build(("opus", "sonnet", "haiku"), MODELS, 1, source="override",
                                updated_at=H10, reason="pinned to sonnet by dave: drill",
                                firing=("org: soft_reached",), override_expires_at=H11,
                                override_by="dave", override_reason="drill")
    state = replace(state, reload_pending=True)
    records.save_fallback(state)
    assert records.fallback() == state


def test_a_store_made_by_0_1_gains_the_new_columns_and_keeps_its_row(tmp_path: Path) -> None:
    """An old fallback_state table is altered in place; its row loads with a one-model chain."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE fallback_state (target VARCHAR(64) PRIMARY KEY, tier VARCHAR(64) NOT "
            "NULL, level INTEGER NOT NULL, model VARCHAR(128) NOT NULL, source VARCHAR(16) NOT "
            "NULL, updated_at BIGINT NOT NULL, reason TEXT NOT NULL, firing TEXT NOT NULL, "
            "reload_pending BOOLEAN NOT NULL)"))
        conn.execute(sa.text(
            "INSERT INTO fallback_state VALUES ('default', 'sonnet', 1, 'claude-sonnet-4-6', "
            "'auto', 1773151200, 'org: soft_reached → sonnet', '[]', 0)"))
    engine.dispose()
    with wiring.opened_store(url) as store:
        columns = {c["name"] for c in sa.inspect(store.engine).get_columns("fallback_state")}
        loaded = Records(store).fallback()
    assert {"chain", "override_expires_at", "override_by", "override_reason"} <= columns
    assert loaded is not None and (loaded.tier, loaded.chain) == ("sonnet", ("claude-sonnet-4-6",))


def billed_hour(hour: datetime, token: str, other: str = "0", *, listed: str | None = None,
                key: str | None = "apikey_1", ws: str | None = None) -> BilledHour:
    return BilledHour(hour, ws, key, "claude-opus-5-5", Decimal(token), Decimal(other),
                      Decimal(listed or token))


def test_billed_hours_replace_a_range_and_sum_per_day_exactly(store: Caches) -> None:
    """A re-read replaces exactly its range; sums keep fractional cents; other keys fold."""
    day = datetime(2026, 11, 2, tzinfo=UTC)
    store.replace_billed_hours(day, day + timedelta(hours=3), [
        billed_hour(day, "5.30000001", "0.14"), billed_hour(day + timedelta(hours=1), "1"),
        billed_hour(day + timedelta(hours=2), "2", key="apikey_2", ws="wrkspc_x")])
    store.replace_billed_hours(day + timedelta(hours=1), day + timedelta(hours=2),
                               [billed_hour(day + timedelta(hours=1), "1.5", listed="2")])
    rows = store.billed_by_day(day, day + timedelta(days=1), api_keys={"apikey_1"})
    totals = {(r.api_key_id, r.workspace_id): (r.token_usd, r.web_search_usd) for r in rows}
    assert totals == {("apikey_1", None): (Decimal("6.80000001"), Decimal("0.14")),
                      (None, "wrkspc_x"): (Decimal(2), Decimal(0))}
    assert store.billed_totals(day, day + timedelta(days=1)) == (Decimal("8.94000001"),
                                                                  Decimal("9.30000001"))
    [cost] = store.billed_days(day, day + timedelta(days=1)).values()
    assert cost.by_workspace == {None: Decimal("6.94000001"), "wrkspc_x": Decimal(2)}
    assert cost.by_model == {"claude-opus-5-5": Decimal("8.80000001")}
    assert cost.list_usd == Decimal("9.30000001")


def test_bulk_rows_land_in_an_organizations_own_schema_only(pg_url: str) -> None:
    """Usage and billed rows go in by one driver ``executemany`` (``insert_many``): in an
    organization's PostgreSQL schema they land in that schema, not beside the default
    tables, with ``None`` ids and amounts past 32 bits intact."""
    from guard.entry.stores import schema_store  # noqa: PLC0415

    schema = f"org_{os.urandom(4).hex()}"
    big = "123456789.1234567891"  # 1.2e18 store units
    with wiring.opened_store(pg_url) as base:
        within = Caches(schema_store(base, schema))
        try:
            within.replace_usage_hours([H10], [priced(H10, big), priced(H10, "1", key=None,
                                                                      ws="wrkspc_x")], H10)
            within.replace_billed_hours(H10, H11, [billed_hour(H10, big, key=None)])
            with base.engine.connect() as conn:
                mine = conn.execute(sa.text(
                    f'SELECT api_key_id, workspace_id, token_units FROM "{schema}".usage_hours '
                    "ORDER BY token_units")).all()
                billed = conn.execute(sa.text(
                    f'SELECT api_key_id, token_units FROM "{schema}".billed_hours')).all()
                default = conn.execute(sa.text(
                    "SELECT count(*) FROM public.usage_hours WHERE hour = :h"),
                    {"h": int(H10.timestamp())}).scalar_one()
        finally:
            with base.engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    assert mine == [(None, "wrkspc_x", to_units(Decimal(1))),
                    ("apikey_1", None, to_units(Decimal(big)))]
    assert billed == [(None, to_units(Decimal(big)))]
    assert default == 0


def test_a_cost_day_keeps_its_list_price(store: Caches) -> None:
    day = datetime(2026, 11, 2, tzinfo=UTC).date()
    store.replace_cost_days([CostDay(day, {None: Decimal("9.3")}, {}, Decimal(10))],
                            datetime(2026, 11, 3, tzinfo=UTC))
    assert store.cost_days([day])[day].calibration == Decimal("0.93")


def test_a_new_sqlite_store_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    """The state database (and its WAL files) hold reasons, who pinned and incident ids:
    created 0600 even under umask 000; an existing file keeps the mode it has."""
    path = tmp_path / "state.db"
    old = os.umask(0)
    try:
        with wiring.opened_store(f"sqlite:///{path}") as store:
            Caches(store).set_meta("probe", "1")
            modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    finally:
        os.umask(old)
    assert modes["state.db"] == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes
    existing = tmp_path / "kept.db"
    existing.touch(mode=0o640)
    existing.chmod(0o640)
    with wiring.opened_store(f"sqlite:///{existing}"):
        pass
    assert existing.stat().st_mode & 0o777 == 0o640


def test_writes_inside_one_transaction_commit_together_or_not_at_all(tmp_path: Path) -> None:
    """Writes of two adapters inside `together()` join one transaction: a failure before it
    ends leaves neither; a clean end keeps both."""
    from guard.adapters.store.outbox import Outbox  # noqa: PLC0415
    from guard.core.records import Payload  # noqa: PLC0415

    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        records, outbox = Records(store), Outbox(store)
        at = datetime(2026, 3, 3, tzinfo=UTC)
        with pytest.raises(RuntimeError), records.together():
            outbox.enqueue("d1", "i1", "firing", Payload("text", ()), at)
            Caches(store).set_meta("probe", "1")
            raise RuntimeError("crash between the two writes")
        assert outbox.owed() == [] and Caches(store).get_meta("probe") is None
        with records.together():
            outbox.enqueue("d1", "i1", "firing", Payload("text", ()), at)
            assert [o.dedup for o in outbox.owed()] == ["d1"]  # reads see the open writes
            Caches(store).set_meta("probe", "1")
        assert [o.dedup for o in outbox.owed()] == ["d1"]
        assert Caches(store).get_meta("probe") == "1"


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL on each backend (PostgreSQL's database is shared by the session)."""
    return (f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite"
            else request.getfixturevalue("pg_url"))


def test_the_lease_epoch_rises_with_every_change_of_holder(fresh_url: str) -> None:
    """Renewing keeps the epoch; a takeover, or taking a released lease again, raises it;
    `current` holds only for the holder at its epoch before expiry. The very first hold of
    a fresh lease takes it, on PostgreSQL too (SQLAlchemy 2.1 on psycopg reports no row count
    for an INSERT, which once left a fresh PostgreSQL store without a leader)."""
    from guard.adapters.store.lease import Lease  # noqa: PLC0415

    t0, ttl = datetime(2026, 3, 3, tzinfo=UTC), timedelta(seconds=15)
    name = f"leader-{os.urandom(4).hex()}"
    with wiring.opened_store(fresh_url) as store:
        lease = Lease(store)
        assert lease.hold(name, "a", t0, ttl) == 1
        assert lease.hold(name, "a", t0 + timedelta(seconds=5), ttl) == 1
        assert lease.hold(name, "b", t0 + timedelta(seconds=10), ttl) is None
        assert lease.current(name, "a", 1, t0 + timedelta(seconds=19))
        assert lease.hold(name, "b", t0 + timedelta(seconds=21), ttl) == 2
        assert not lease.current(name, "a", 1, t0 + timedelta(seconds=22))
        assert lease.current(name, "b", 2, t0 + timedelta(seconds=22))
        assert lease.release(name, "b")
        assert not lease.current(name, "b", 2, t0 + timedelta(seconds=23))
        assert lease.hold(name, "b", t0 + timedelta(seconds=24), ttl) == 3


def test_an_outbox_row_is_recorded_once_on_each_backend(fresh_url: str) -> None:
    """`enqueue` says True for a new decision and False for the same one again."""
    from guard.adapters.store.outbox import Outbox  # noqa: PLC0415
    from guard.core.records import Payload  # noqa: PLC0415

    dedup = f"2026-03:org:hard_reached:{os.urandom(4).hex()}:firing"
    with wiring.opened_store(fresh_url) as store:
        outbox = Outbox(store)
        payload = Payload("Hard limit reached", ())
        assert outbox.enqueue(dedup, "org:hard", "firing", payload, H10)
        assert not outbox.enqueue(dedup, "org:hard", "firing", payload, H11)
        assert [o.dedup for o in outbox.owed()].count(dedup) == 1


def test_a_postgresql_session_ends_a_transaction_left_idle(pg_url: str) -> None:
    """A replica paused between a write and its commit cannot hold the lease row's lock for
    longer than 10 s: its sessions carry idle_in_transaction_session_timeout."""
    with wiring.opened_store(pg_url) as store, store.engine.connect() as conn:
        shown = conn.execute(sa.text("SHOW idle_in_transaction_session_timeout")).scalar()
    assert shown == "10s"


# --- running sums (issue 13) ---------------------------------------------------------------------

DAY2 = date(2026, 3, 2)


def mixed_hours() -> list[PricedUsage]:
    return [priced(H10, "0.000123456"), priced(H11, "1.1"), priced(H11, "2", key=None,
                                                                  ws="wrkspc_x"),
            replace(priced(H11, "0.5", key="apikey_2", ws="wrkspc_x"), model="claude-nova-1")]


def test_the_running_sums_equal_the_rows_they_sum(store: Caches) -> None:
    """Per scope and day, the sums the store keeps are what grouping the hours gives."""
    rows = mixed_hours()
    store.replace_usage_hours([H10, H11], rows, H11, known=lambda m: m != "claude-nova-1")
    [(day, index)] = store.usage_days([DAY2]).items()
    grouped = days_of(store.usage_rows(H10, H10 + timedelta(days=1), 86_400),
                      {"claude-nova-1"})[DAY2]
    assert day == DAY2 and index == grouped
    assert index.organization.usd == sum((r.usd for r in rows), Decimal(0))
    assert set(index.workspace or {}) == {"default", "wrkspc_x"}
    assert (index.model or {})["claude-nova-1"].unpriced_usd == Decimal("0.51")
    assert store.hourly_totals(H10, H11 + timedelta(hours=1)) == {
        H10: Decimal("0.010123456"), H11: Decimal("3.63")}


def test_only_the_keys_and_workspaces_asked_for_come_back(store: Caches) -> None:
    store.replace_usage_hours([H10, H11], mixed_hours(), H11)
    index = store.usage_days([DAY2], workspaces=(), api_keys={"apikey_2"})[DAY2]
    assert set(index.api_key or {}) == {"apikey_2"}
    assert set(index.workspace or {}) == {"default"}  # the default workspace always
    assert index.organization.usd == Decimal("3.640123456")


def test_a_reread_with_the_same_rows_changes_no_version(store: Caches) -> None:
    """An hour read again unchanged only moves its read time; a change raises the day's
    version and the sums follow."""
    store.replace_usage_hours([H10, H11], mixed_hours(), H11)
    first = store.versions("usage", DAY2, DAY2)
    store.replace_usage_hours([H11], [r for r in mixed_hours() if r.start == H11], H11 + HOUR)
    assert store.versions("usage", DAY2, DAY2) == first
    assert store.usage_fetched(H11, H11 + HOUR) == {H11: H11 + HOUR}
    store.replace_usage_hours([H11], [priced(H11, "7")], H11 + 2 * HOUR)
    assert store.versions("usage", DAY2, DAY2)[DAY2] == first[DAY2] + 1
    assert store.usage_days([DAY2])[DAY2].organization.usd == Decimal("7.020123456")


def test_touching_an_hour_moves_its_read_time_only_while_it_is_stored_as_given(
        store: Caches) -> None:
    """An hour read again unchanged has only its read time moved, and only if the store
    still holds it with the digest it was written with; an hour written since (by another
    replica) or never written comes back to be written."""
    digests = store.replace_usage_hours([H10, H11], mixed_hours(), H11)
    assert set(digests) == {H10, H11}
    version = store.versions("usage", DAY2, DAY2)
    store.replace_usage_hours([H11], [priced(H11, "7")], H11 + HOUR)  # someone else's write
    missed = store.touch_usage_hours({**digests, H11 + HOUR: "none"}, H11 + 2 * HOUR)
    assert sorted(missed) == [H11, H11 + HOUR]
    assert store.usage_fetched(H10, H11 + 2 * HOUR) == {H10: H11 + 2 * HOUR, H11: H11 + HOUR}
    assert store.versions("usage", DAY2, DAY2)[DAY2] == version[DAY2] + 1  # touch: none


def test_an_emptied_day_has_no_sums(store: Caches) -> None:
    store.replace_usage_hours([H10], [priced(H10, "1")], H11)
    store.replace_usage_hours([H10], [], H11 + HOUR)
    assert store.usage_days([DAY2]) == {}


def test_billed_sums_equal_the_billed_hours(store: Caches) -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    hours = [BilledHour(day + timedelta(hours=h), ws, key, "claude-opus-4-7", Decimal("1.5"),
                        Decimal("0.25"), Decimal(2))
             for h, ws, key in ((1, None, "apikey_1"), (2, "wrkspc_x", "apikey_2"),
                                (5, "wrkspc_x", None))]
    store.replace_billed_hours(day, day + timedelta(days=1), hours)
    index = store.billed_sums([DAY2], api_keys={"apikey_1"})[DAY2]
    assert index == days_of(store.billed_by_day(day, day + timedelta(days=1),
                                                api_keys={"apikey_1"}))[DAY2]
    assert store.versions("billed", DAY2, DAY2) == {DAY2: 1}


def test_a_store_written_before_the_sums_gets_them_once(store: Caches) -> None:
    store.replace_usage_hours([H10, H11], mixed_hours(), H11)
    expected = store.usage_days([DAY2])
    with store.store.writing() as conn:
        conn.execute(sa.text("DELETE FROM usage_scope_days"))
        conn.execute(sa.text("DELETE FROM usage_hour_totals"))
    assert store.usage_days([DAY2]) == {}
    store.ensure_sums(None)
    assert store.usage_days([DAY2]) == expected
    assert store.hourly_totals(H10, H11 + HOUR)[H11] == Decimal("3.63")
