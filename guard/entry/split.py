"""Replicas on one PostgreSQL store split the organizations between them (``guard.core.split``).

The leases table is all the coordination there is: each replica's ``SplitHeartbeat`` holds
its membership row (``member:…``) and, every third of ``state.lease_ttl_s``, reads which
replicas are alive and who leads what, renews its share of the organizations' leader
leases, gives up what is beyond its share, and takes free ones up to it. A replica that
dies stops renewing: its rows expire and the others take its organizations on their next
beats, each organization's epoch raised, so a paused replica that resumes is fenced. A
tick renews its organization's lease but never takes one (``Renewing``): only the split
decides who leads. A replica's first beat only joins: it takes nothing until the next, so
replicas started together split the organizations from the start.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from guard.adapters.store.lease import Lease
from guard.core.split import share, split
from guard.entry.heartbeat import Heartbeat
from guard.errors import GuardError
from guard.shell.tick import LEADER

log = logging.getLogger(__name__)
MEMBER = "member:"


def member_row(holder: str) -> str:
    """The membership row of ``holder`` (hashed: a row name has at most 64 characters)."""
    return MEMBER + hashlib.sha256(holder.encode()).hexdigest()[:16]


class SplitHeartbeat(Heartbeat):
    """Holds this replica's membership and its share of the organizations' leader leases."""

    def __init__(self, members: Lease, leases: Mapping[str, Lease], holder: str,
                 ttl: timedelta, clock: Callable[[], datetime], *,
                 on_gain: Callable[[str], None] | None = None,
                 busy: Callable[[str], bool] = lambda _: False) -> None:
        super().__init__(members, holder, ttl, clock)
        self.members = members
        self.leases = dict(leases)
        self.gained = on_gain
        self.busy = busy
        """Whether an organization's tick is in flight (it is not given up meanwhile)."""
        self.tokens: dict[str, int] = {}
        """Organization → the epoch of its leader lease this replica holds."""

    def beat(self) -> int | None:
        """Hold the membership and this replica's share once; how many it leads."""
        try:
            held = self._hold(self.clock())
        except GuardError as exc:
            log.warning("organization leases heartbeat failed (they lapse on their own): "
                        "%s", exc)
            held = {}
        self.beats += 1
        gained = [org for org, token in held.items() if self.tokens.get(org) != token]
        self.tokens = held
        for org in gained:
            log.info("leader lease of organization %s held by %s at epoch %d", org,
                     self.holder, held[org])
            if self.gained is not None:
                self.gained(org)
        return len(held)

    def _hold(self, now: datetime) -> dict[str, int]:
        self.members.hold(member_row(self.holder), self.holder, now, self.ttl)
        live = self.members.live(now)
        members = [holder for row, holder in live.items() if row.startswith(MEMBER)]
        leaders = {org: live[lease.row(LEADER)] for org, lease in self.leases.items()
                   if lease.row(LEADER) in live}
        busy = [org for org in self.leases if self.busy(org)]
        plan = split(self.holder, list(self.leases), leaders, members, busy)
        joining = self.beats == 0 and not any(leader == self.holder
                                               for leader in leaders.values())
        for org in plan.release:
            self.leases[org].release(LEADER, self.holder)
            log.info("organization %s given up: this replica's share is %d of %d among "
                     "%d replicas", org, share(self.holder, members, len(self.leases)),
                     len(self.leases), len({*members, self.holder}))
        held: dict[str, int] = {}
        for org in (*plan.keep, *(() if joining else plan.take)):
            token = self.leases[org].hold(LEADER, self.holder, now, self.ttl)
            if token is not None:
                held[org] = token
        return held

    def release(self) -> int:
        """Give every lease this replica holds up (a clean exit); how many it gave up."""
        given = 0
        try:
            for org in list(self.tokens):
                given += self.leases[org].release(LEADER, self.holder)
            self.members.release(member_row(self.holder), self.holder)
        except GuardError as exc:
            log.warning("organization leases not released (they expire on their own): %s",
                        exc)
        self.tokens = {}
        return given
