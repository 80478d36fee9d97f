"""How replicas on one store split organizations between them. Pure.

Every replica holds a membership lease, so the leases table says which replicas are alive;
each organization has a leader lease of its own. A replica's share is the organizations
divided by the live replicas, the first ``M mod N`` of them (by holder, an order every
replica sees alike) taking one more, so the shares add up to ``M`` and differ by one at most.
Each beat, a replica renews what it leads up to its share, gives up the rest, and takes
free organizations until it has its share: a new replica is given organizations by the
others giving them up, and a dead one's are taken once its leases expire. An organization
whose tick is in flight is not given up until the tick is done (two replicas would
otherwise read the same organization's Admin API into its store at once).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Split:
    """What one replica does with the organizations' leases this beat."""

    keep: tuple[str, ...]
    take: tuple[str, ...]
    release: tuple[str, ...]


def share(me: str, members: Sequence[str], total: int) -> int:
    """How many of ``total`` organizations ``me`` leads among the live ``members``."""
    ordered = sorted({*members, me})
    base, extra = divmod(total, len(ordered))
    return base + (1 if ordered.index(me) < extra else 0)


def split(me: str, organizations: Sequence[str], leaders: Mapping[str, str],
          members: Sequence[str], busy: Collection[str] = ()) -> Split:
    """This beat's split for ``me``: ``leaders`` maps an organization to its live leader
    (organizations without one are free); ``busy`` ones (ticking) are kept first, and kept
    beyond the share rather than given up. Free organizations are tried from a point that
    differs per replica, so replicas starting together rarely reach for the same one."""
    quota = share(me, members, len(organizations))
    mine = sorted((org for org in organizations if leaders.get(org) == me),
                  key=lambda org: org not in busy)
    keep, release = mine[:quota], mine[quota:]
    keep += [org for org in release if org in busy]
    release = [org for org in release if org not in busy]
    free = [org for org in organizations if org not in leaders]
    if free:
        ordered = sorted({*members, me})
        start = ordered.index(me) * len(free) // len(ordered)
        free = free[start:] + free[:start]
    return Split(tuple(keep), tuple(free[:max(0, quota - len(keep))]), tuple(release))
