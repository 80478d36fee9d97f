"""The leader lease's heartbeat (issue 12, item 2): a leader keeps a 15 s lease through a long
tick; when it stops beating (killed or paused), a standby takes the lease within one TTL and
one beat, and asks for a tick at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from guard.adapters.store.lease import Lease
from guard.entry import wiring
from guard.entry.heartbeat import Heartbeat

TTL = timedelta(seconds=15)
T0 = datetime(2026, 3, 3, tzinfo=UTC)


def test_a_standby_takes_over_within_one_ttl_and_one_beat(tmp_path: Path) -> None:
    """Beats every 5 s on a fake clock: A keeps the lease while it beats; once A stops, B
    (beating too) gains it at the first beat past A's expiry, with a higher epoch, and its
    on_gain asks for a tick; the takeover comes at most TTL + TTL/3 after A's last beat."""
    now = [T0]
    gained: list[datetime] = []
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        a = Heartbeat(Lease(store), "host-a", TTL, lambda: now[0])
        b = Heartbeat(Lease(store), "host-b", TTL, lambda: now[0],
                      on_gain=lambda: gained.append(now[0]))
        assert a.beat() == 1 and b.beat() is None
        for _ in range(12):  # a minute of A leading: B never gets it
            now[0] += TTL / 3
            assert a.beat() == 1 and b.beat() is None
        last_a = now[0]  # A dies or is paused here
        while b.token is None:
            now[0] += TTL / 3
            b.beat()
        assert b.token == 2 and gained == [now[0]]
        assert now[0] - last_a <= TTL + TTL / 3
        now[0] += TTL / 3
        assert a.beat() is None, "A resumed: the lease is B's"


def test_the_thread_renews_until_stopped(tmp_path: Path) -> None:
    """start() beats at once and then from its own thread; stop() ends it."""
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        beat = Heartbeat(Lease(store), "host-a", timedelta(seconds=0.3),
                         lambda: datetime.now(UTC))
        with beat:
            assert beat.token == 1
            while beat.beats < 3:
                beat._stop.wait(0.05)
        count = beat.beats
        beat._stop.wait(0.3)
        assert beat.beats == count
