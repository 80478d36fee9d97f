"""Keeping the directory current: which ids budgets name exist in the organization.

``guard.core.directory`` says when the lists are due; this reads them (all pages), keeps the
answer as a named value of the store and never fails a tick for it: the directory only
sharpens a warning, so an unreadable list leaves the stored answer (or none) in force.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from datetime import datetime

from guard.core.directory import Directory, directory_due, looked_up
from guard.errors import UpstreamError
from guard.shell.billed import WorkspaceListing
from guard.shell.ports import AdminReports, CachePort
from guard.shell.spare import Spare, may_read

log = logging.getLogger("guard.sync")

DIRECTORY = "org_directory"


class DirectorySync:
    """Reads the organization's workspace and key lists when due; remembers the answer."""

    def __init__(self, client: AdminReports, caches: CachePort,
                 listing: WorkspaceListing | None = None) -> None:
        self.client = client
        self.caches = caches
        self.listing = listing or WorkspaceListing(client)

    def refresh(self, at: datetime, workspaces: Collection[str],
                api_keys: Collection[str], *, keep: bool = True,
                spare: Spare | None = None) -> Directory | None:
        """The directory for the ids named now, read again first when due; stored unless
        ``keep`` is false (an earlier ``--at``: a what-if writes no named value). The daily
        re-read of lists that found every id named can wait a tick for ``spare``."""
        stored = self.stored()
        if not directory_due(stored, workspaces, api_keys, at):
            return stored
        if (stored is not None and stored.covers(workspaces, api_keys)
                and not stored.missing() and not may_read(spare)):
            return stored
        try:
            listed_workspaces = self.listing.current() if workspaces else None
            listed_keys = [k.id for k in self.client.api_keys()] if api_keys else None
        except UpstreamError as exc:
            log.warning("could not list the organization's workspaces and keys to check "
                        "budget matches: %s", exc)
            return stored if stored is not None and stored.covers(workspaces, api_keys) \
                else None
        found = looked_up(at, workspaces, api_keys, listed_workspaces, listed_keys)
        if keep:
            self.caches.set_meta(DIRECTORY, encode(found))
        return found

    def stored(self) -> Directory | None:
        """The directory as last read, if any (and readable)."""
        raw = self.caches.get_meta(DIRECTORY)
        return decode(raw) if raw else None


def encode(d: Directory) -> str:
    """The named value stored for ``d``."""
    return json.dumps({"read_at": d.read_at.isoformat(), "workspaces": sorted(d.workspaces),
                       "api_keys": sorted(d.api_keys), "found": sorted(d.found),
                       "workspaces_listed": d.workspaces_listed,
                       "api_keys_listed": d.api_keys_listed})


def decode(raw: str) -> Directory | None:
    """The directory of a stored value; ``None`` for anything unreadable (it is re-read)."""
    try:
        body = json.loads(raw)
        return Directory(datetime.fromisoformat(body["read_at"]),
                         frozenset(map(str, body["workspaces"])),
                         frozenset(map(str, body["api_keys"])),
                         frozenset(map(str, body["found"])),
                         int(body["workspaces_listed"]), int(body["api_keys_listed"]))
    except (ValueError, KeyError, TypeError):
        return None
