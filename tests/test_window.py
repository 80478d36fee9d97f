"""The minute window a daemon keeps between ticks (``guard.core.window``): pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from guard.core.model import PricedUsage
from guard.core.window import MinuteWindow

HOUR = datetime(2026, 10, 28, 14, tzinfo=UTC)
LATE = timedelta(minutes=10)


def row(minute: datetime, usd: str, key: str = "k1", ws: str = "w1") -> PricedUsage:
    return PricedUsage(minute, ws, key, "claude-sonnet-5-5", Decimal(usd), Decimal(0),
                       10, 0, 0, 5, 0)


def minutes(start: datetime, end: datetime) -> list[datetime]:
    count = (end - start) // timedelta(minutes=1)
    return [start + timedelta(minutes=i) for i in range(count)]


def read(window: MinuteWindow, start: datetime, end: datetime, at: datetime,
         usd: str = "1") -> None:
    span = minutes(start, end)
    window.take([row(m, usd) for m in span], span, at)


def test_an_empty_window_reads_from_where_the_fresh_window_starts() -> None:
    window = MinuteWindow(LATE)
    assert window.read_from(HOUR, HOUR + timedelta(minutes=5)) == HOUR


def test_only_minutes_read_late_enough_are_final_and_skipped() -> None:
    """Read at 14:20, the minutes up to 14:09 were read ten minutes after they ended: the
    next read starts at 14:10."""
    window = MinuteWindow(LATE)
    at = HOUR + timedelta(minutes=20)
    read(window, HOUR, at, at)
    assert window.final(HOUR + timedelta(minutes=9))
    assert not window.final(HOUR + timedelta(minutes=10))
    assert window.read_from(HOUR, at + timedelta(minutes=1)) == HOUR + timedelta(minutes=10)


def test_a_gap_in_what_was_read_is_read_again_from_the_gap() -> None:
    """Minutes the API returned no bucket for are not kept: the next read starts there."""
    window = MinuteWindow(LATE)
    at = HOUR + timedelta(minutes=30)
    span = [m for m in minutes(HOUR, at) if m != HOUR + timedelta(minutes=3)]
    window.take([row(m, "1") for m in span], span, at)
    assert window.read_from(HOUR, at) == HOUR + timedelta(minutes=3)


def test_hour_rows_sum_final_and_fresh_minutes_per_key_exactly() -> None:
    """The hour's rows are the final minutes' sums plus the minutes still re-read, the latter
    as last read (a re-read replaces, never adds)."""
    window = MinuteWindow(LATE)
    at = HOUR + timedelta(minutes=30)
    read(window, HOUR, at, at, usd="0.10")
    later = at + timedelta(minutes=1)
    read(window, HOUR + timedelta(minutes=20), later, later, usd="0.25")
    [hour] = window.hour_rows(HOUR)
    assert hour.start == HOUR
    assert hour.token_usd == Decimal("0.10") * 20 + Decimal("0.25") * 11
    assert hour.input_tokens == 31 * 10


def test_rows_of_different_keys_stay_apart() -> None:
    window = MinuteWindow(LATE)
    at = HOUR + timedelta(minutes=2)
    span = minutes(HOUR, at)
    window.take([row(m, "1", key=k) for m in span for k in ("k1", "k2")], span, at)
    assert sorted((r.api_key_id, r.token_usd) for r in window.hour_rows(HOUR)) == [
        ("k1", Decimal(2)), ("k2", Decimal(2))]


def test_a_final_minute_is_never_replaced_by_an_overlapping_read() -> None:
    window = MinuteWindow(LATE)
    at = HOUR + timedelta(minutes=30)
    read(window, HOUR, at, at, usd="1")
    read(window, HOUR, at, at + timedelta(minutes=1), usd="5")
    first = window.hour_rows(HOUR)[0].token_usd
    assert first == 20 * Decimal(1) + 10 * Decimal(5)


def test_complete_needs_every_minute_of_the_hour() -> None:
    window = MinuteWindow(LATE)
    at = HOUR + timedelta(minutes=65)
    read(window, HOUR, HOUR + timedelta(minutes=59), at)
    assert not window.complete(HOUR)
    read(window, HOUR + timedelta(minutes=59), at, at)
    assert window.complete(HOUR)
    assert window.whole(HOUR)


def test_periods_index_each_minute_for_burn_rates() -> None:
    window = MinuteWindow(LATE)
    at = HOUR + timedelta(minutes=3)
    read(window, HOUR, at, at, usd="2")
    periods = window.periods(HOUR, at)
    assert [p.start for p in periods] == minutes(HOUR, at)
    assert all(p.index.organization.token_usd == Decimal(2) for p in periods)


def test_forget_lets_rows_go_but_keeps_recent_indexes() -> None:
    """Once an hour is stored for good its rows go; its minute indexes stay while recent,
    and a window that reaches back there again reads it again."""
    window = MinuteWindow(LATE)
    at = HOUR + timedelta(minutes=75)
    read(window, HOUR, at, at)
    window.forget(HOUR + timedelta(hours=1), HOUR)
    assert window.hour_rows(HOUR) == []
    assert window.whole(HOUR)
    assert window.read_from(HOUR, at) == HOUR
    window.forget(HOUR + timedelta(hours=1), HOUR + timedelta(hours=1))
    assert not window.whole(HOUR)


def test_forget_hour_drops_everything_of_it() -> None:
    window = MinuteWindow(LATE)
    at = HOUR + timedelta(minutes=75)
    read(window, HOUR, at, at)
    window.forget_hour(HOUR)
    assert not window.whole(HOUR)
    assert window.hour_rows(HOUR) == []
    assert window.hour_rows(HOUR + timedelta(hours=1))


def test_a_minute_read_again_unchanged_becomes_final_with_its_kept_rows() -> None:
    """``again`` moves only when a kept minute was read: once read late enough it is final
    and summed into its hour, as if its rows had been taken once more."""
    window, taken = MinuteWindow(LATE), MinuteWindow(LATE)
    first = HOUR + timedelta(minutes=5)
    read(window, HOUR, first, first, usd="0.5")
    read(taken, HOUR, first, first, usd="0.5")
    later = HOUR + timedelta(minutes=12)
    assert window.holds(HOUR) and not window.final(HOUR)
    window.again(minutes(HOUR, first), later)
    read(taken, HOUR, first, later, usd="0.5")
    assert window.final(HOUR + timedelta(minutes=1))
    assert not window.holds(HOUR + timedelta(minutes=1))
    assert window.hour_rows(HOUR) == taken.hour_rows(HOUR)
    assert window.read_from(HOUR, later) == taken.read_from(HOUR, later)
    assert window.read_from(HOUR, later) == HOUR + timedelta(minutes=2)


def test_again_ignores_minutes_the_window_does_not_hold() -> None:
    """A minute never taken, or forgotten, is not made read by ``again``: it is read and
    priced afresh."""
    window = MinuteWindow(LATE)
    at = HOUR + timedelta(minutes=30)
    window.again([HOUR], at)
    assert not window.holds(HOUR)
    assert window.read_from(HOUR, at) == HOUR
    read(window, HOUR, HOUR + timedelta(minutes=2), HOUR + timedelta(minutes=2))
    window.forget_hour(HOUR)
    window.again([HOUR], at)
    assert window.read_from(HOUR, at) == HOUR
    assert window.hour_rows(HOUR) == []


def test_an_hour_stands_until_a_minute_of_it_is_taken() -> None:
    """The hour's rows and index are built once while only re-reads found unchanged (or
    minutes turning final) touch it; a minute taken builds them again, with its new rows."""
    window = MinuteWindow(LATE)
    at = HOUR + timedelta(minutes=5)
    read(window, HOUR, at, at)
    rows, index = window.hour_rows(HOUR), window.hour_index(HOUR)
    window.again(minutes(HOUR, at), at + timedelta(minutes=11))  # every minute now final
    assert window.hour_rows(HOUR) is rows and window.hour_index(HOUR) is index
    assert index.organization.usd == Decimal(5)
    window.take([row(HOUR + timedelta(minutes=5), "2")], [HOUR + timedelta(minutes=5)],
                at + timedelta(minutes=11))
    assert window.hour_rows(HOUR) is not rows
    assert window.hour_index(HOUR).organization.usd == Decimal(7)
    keys = frozenset({"k2"})
    assert window.hour_index(HOUR, keys=keys).api_key == {}  # other arguments, built anew


def test_a_stored_digest_lasts_while_the_hour_stands() -> None:
    """What the store holds of an hour is known only until a minute of it is taken or the
    hour is forgotten."""
    window = MinuteWindow(LATE)
    at = HOUR + timedelta(minutes=61)
    read(window, HOUR, HOUR + timedelta(minutes=60), at)
    window.stored({HOUR: "d1"})
    window.again(minutes(HOUR, HOUR + timedelta(minutes=60)), at + timedelta(minutes=1))
    assert window.stored_as(HOUR) == "d1"
    read(window, HOUR + timedelta(minutes=59), HOUR + timedelta(minutes=60),
         at + timedelta(minutes=2), usd="3")
    assert window.stored_as(HOUR) is None
    window.stored({HOUR: "d2"})
    window.forget_hour(HOUR)
    assert window.stored_as(HOUR) is None
    window.stored({HOUR: "d3"})
    window.forget(HOUR + timedelta(hours=1), HOUR)
    assert window.stored_as(HOUR) is None
