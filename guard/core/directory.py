"""Which workspaces and API keys that budgets name exist in the organization. Pure.

A budget whose ``match`` is one character off spends $0.00 forever and so can never alert.
The guard checks every named id against the organization's lists, keeps the answer in the
store, and reads the lists again only when a budget names an id the answer does not cover,
when an id was missing an hour ago (it may have just been created), or once a day. So the
steady tick makes no extra request.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

REREAD_AFTER = timedelta(days=1)
"""How old the lists may get before they are read again."""
MISSING_REREAD_AFTER = timedelta(hours=1)
"""How soon lists that lacked a named id are read again (it may have been created since)."""


@dataclass(frozen=True, slots=True)
class Directory:
    """The named ids looked up in the organization's lists as of ``read_at``."""

    read_at: datetime
    workspaces: frozenset[str]
    """The workspace ids budgets named when the lists were read."""
    api_keys: frozenset[str]
    """The API key ids budgets named when the lists were read."""
    found: frozenset[str]
    """Those of the named ids the organization lists."""
    workspaces_listed: int = 0
    api_keys_listed: int = 0

    def covers(self, workspaces: Collection[str], api_keys: Collection[str]) -> bool:
        """Whether every id named now was looked up."""
        return set(workspaces) <= self.workspaces and set(api_keys) <= self.api_keys

    def missing(self) -> frozenset[str]:
        """Named ids the organization does not list."""
        return (self.workspaces | self.api_keys) - self.found


def directory_due(stored: Directory | None, workspaces: Collection[str],
                  api_keys: Collection[str], at: datetime) -> bool:
    """Whether the organization's lists must be read as of ``at``."""
    if not workspaces and not api_keys:
        return False
    if stored is None or not stored.covers(workspaces, api_keys):
        return True
    age = at - stored.read_at
    if age < timedelta(0):
        return False
    return age >= REREAD_AFTER or (bool(stored.missing()) and age >= MISSING_REREAD_AFTER)


def looked_up(at: datetime, workspaces: Collection[str], api_keys: Collection[str],
              listed_workspaces: Collection[str] | None,
              listed_keys: Collection[str] | None) -> Directory:
    """The directory after reading the lists (``None``: that list was not read, no ids of
    its kind were named)."""
    found = (set(workspaces) & set(listed_workspaces or ())) | (
        set(api_keys) & set(listed_keys or ()))
    return Directory(at, frozenset(workspaces), frozenset(api_keys), frozenset(found),
                     len(listed_workspaces or ()), len(listed_keys or ()))
