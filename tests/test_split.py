"""Replicas split organizations through the leases table alone: shares within one of even,
each organization led by one replica, a dead replica's organizations taken over, each with
its own fencing epoch. Driven in-process with an explicit clock on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from guard.adapters.store.engine import Store
from guard.adapters.store.lease import Lease, Renewing
from guard.core.split import share, split
from guard.entry import wiring
from guard.entry.split import SplitHeartbeat
from guard.shell.tick import LEADER

T0 = datetime(2026, 3, 12, 14, 0, tzinfo=UTC)
TTL = timedelta(seconds=15)
BEAT = TTL / 3
ORGS = [f"org{i:02d}" for i in range(12)]


# --- the pure split ------------------------------------------------------------------------------


@pytest.mark.parametrize(("total", "members", "shares"), [
    (12, 3, [4, 4, 4]), (10, 3, [4, 3, 3]), (2, 3, [1, 1, 0]), (12, 1, [12]), (0, 2, [0, 0]),
], ids=["even", "remainder-first", "fewer-than-replicas", "alone", "none"])
def test_shares_add_up_and_differ_by_one_at_most(total: int, members: int,
                                                 shares: list[int]) -> None:
    """The first M mod N replicas by holder take one more; the shares add up to M."""
    names = [f"r{i}" for i in range(members)]
    assert [share(name, names, total) for name in names] == shares


def test_a_replica_over_its_share_gives_the_rest_up() -> None:
    """Holding all twelve among three replicas: keep four, give eight up, take none."""
    plan = split("a", ORGS, dict.fromkeys(ORGS, "a"), ["a", "b", "c"])
    assert (len(plan.keep), len(plan.release), plan.take) == (4, 8, ())


def test_an_organization_ticking_now_is_kept_beyond_the_share() -> None:
    """A busy organization is kept (and kept first) rather than given up mid-tick."""
    busy = ORGS[-3:]
    plan = split("a", ORGS, dict.fromkeys(ORGS, "a"), ["a", "b", "c"], busy)
    assert set(busy) <= set(plan.keep) and len(plan.keep) == 4 and len(plan.release) == 8
    every = split("a", ORGS, dict.fromkeys(ORGS, "a"), ["a", "b", "c"], ORGS)
    assert len(every.keep) == 12 and every.release == ()


def test_replicas_started_together_split_from_the_start(store: Store) -> None:
    """Three replicas whose first beats fall together: none takes on joining, and their
    second beats give each four."""
    cluster = Cluster(store, ORGS)
    for name in "abc":
        cluster.add(name)
    cluster.beat()
    assert cluster.counts() == [0, 0, 0]
    cluster.beat()
    assert sorted(cluster.counts()) == [4, 4, 4] and len(cluster.leaders()) == 12


def test_a_replica_takes_free_organizations_up_to_its_share() -> None:
    """Four free organizations, one replica short of two: it takes two, never a led one."""
    leaders = {org: "b" for org in ORGS[:8]}
    plan = split("a", ORGS, leaders, ["a", "b"])
    assert plan.keep == () and len(plan.take) == 4 and not set(plan.take) & set(leaders)


def test_replicas_starting_together_reach_for_different_organizations() -> None:
    """With everything free, each replica starts from its own point of the list."""
    takes = [split(me, ORGS, {}, ["a", "b", "c"]).take for me in "abc"]
    assert [len(t) for t in takes] == [4, 4, 4] and len({o for t in takes for o in t}) == 12


# --- on the store --------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty leases table: a SQLite file, or a fresh schema of the test database."""
    if request.param == "sqlite":
        opened = wiring.connect_store(f"sqlite:///{tmp_path / 'state.db'}")
        yield opened
        opened.close()
        return
    base = wiring.connect_store(request.getfixturevalue("pg_url"))
    schema = f"split_{uuid.uuid4().hex[:8]}"
    within = Store(base.engine.execution_options(schema_translate_map={None: schema}),
                   schema=schema, owns_engine=False)
    within.create_schema()
    yield within
    base.close()


class Cluster:
    """Replicas as ``SplitHeartbeat``s over one store, on one explicit clock."""

    def __init__(self, store: Store, orgs: list[str]) -> None:
        self.store, self.orgs, self.now = store, orgs, T0
        self.replicas: dict[str, SplitHeartbeat] = {}
        self.gains: Counter[str] = Counter()

    def add(self, name: str) -> SplitHeartbeat:
        leases = {org: Lease(self.store, org) for org in self.orgs}
        self.replicas[name] = SplitHeartbeat(Lease(self.store), leases, f"host:{name}", TTL,
                                             lambda: self.now,
                                             on_gain=lambda org: self.gains.update([org]))
        return self.replicas[name]

    def beat(self, *names: str) -> None:
        """One beat of each of ``names`` (all replicas by default), then a third of a TTL."""
        for name in names or tuple(self.replicas):
            self.replicas[name].beat()
        self.now += BEAT

    def leaders(self) -> dict[str, str]:
        """Organization → live leader, as the leases table says."""
        live = Lease(self.store).live(self.now)
        return {org: live[Lease(self.store, org).row(LEADER)] for org in self.orgs
                if Lease(self.store, org).row(LEADER) in live}

    def counts(self) -> list[int]:
        led = Counter(self.leaders().values())
        return [led[f"host:{name}"] for name in self.replicas]


def test_three_replicas_split_twelve_organizations_and_take_a_dead_ones_over(
        store: Store) -> None:
    """One replica alone leads all twelve (after a beat of joining); two more join and get
    four each; one dies and
    the other two take its four within a TTL and two beats, at a higher epoch; each beat
    every organization has at most one leader."""
    cluster = Cluster(store, ORGS)
    for name in "abc":
        cluster.add(name)
    cluster.beat("a")
    assert cluster.counts() == [0, 0, 0]  # a first beat only joins
    cluster.beat("a")
    assert cluster.counts() == [12, 0, 0]
    for _ in range(3):
        cluster.beat()
    assert sorted(cluster.counts()) == [4, 4, 4] and len(cluster.leaders()) == 12
    dead = cluster.replicas.pop("c")
    orphans = [org for org, leader in cluster.leaders().items() if leader == "host:c"]
    epochs = dict(dead.tokens)
    died, beats = cluster.now, 0
    while len(cluster.leaders()) < 12 or sorted(cluster.counts()) != [6, 6]:
        cluster.beat()
        beats += 1
        assert beats < 20, cluster.leaders()
    assert cluster.now - died <= TTL + 2 * BEAT
    taken = {**cluster.replicas["a"].tokens, **cluster.replicas["b"].tokens}
    assert all(taken[org] > epochs[org] for org in orphans)
    assert not Lease(store, orphans[0]).current(LEADER, "host:c", epochs[orphans[0]],
                                                cluster.now)


def test_a_replica_that_comes_back_is_given_its_share(store: Store) -> None:
    """Two replicas lead five each of ten; a third joins and the split becomes 4/3/3."""
    orgs = ORGS[:10]
    cluster = Cluster(store, orgs)
    cluster.add("a"), cluster.add("b")
    for _ in range(3):
        cluster.beat()
    assert cluster.counts() == [5, 5]
    cluster.add("c")
    for _ in range(3):
        cluster.beat()
    assert sorted(cluster.counts()) == [3, 3, 4] and len(cluster.leaders()) == 10


def test_a_clean_exit_hands_over_at_once(store: Store) -> None:
    """Released leases (and the membership) are free on the others' next beat."""
    cluster = Cluster(store, ORGS[:4])
    cluster.add("a"), cluster.add("b")
    for _ in range(3):
        cluster.beat()
    assert cluster.counts() == [2, 2]
    assert cluster.replicas["b"].release() == 2
    del cluster.replicas["b"]
    cluster.beat()
    assert cluster.counts() == [4]


def test_a_tick_renews_its_organizations_lease_but_never_takes_one(store: Store) -> None:
    """`Renewing` keeps the epoch of a held lease and answers standby for a free one."""
    lease = Lease(store, "acme")
    renewing = Renewing(lease)
    assert renewing.hold(LEADER, "me", T0, TTL) is None
    token = lease.hold(LEADER, "me", T0, TTL)
    assert token is not None and renewing.hold(LEADER, "me", T0 + BEAT, TTL) == token
    assert renewing.hold(LEADER, "other", T0 + BEAT, TTL) is None
    assert Lease(store).live(T0)[f"{LEADER}:acme"] == "me"
