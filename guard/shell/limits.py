"""Keeping Anthropic's spend limits current (reference §7): read about hourly, remembered.

The Spend Limits API is an early-access beta: an organization without access answers 403
(``spend_limits_admin_api_writes_not_enabled``), one of another type 400 or 404. That answer
is remembered (the named value ``provider_limits``) and asked again only once a day, so a
tick never spends a request on it; ``guard doctor`` shows it. An hourly re-read waits for a
spare request (a steady tick stays within its two), and a failed read keeps the limits read
before: they only warn, so a stale answer is better than none, and none never relaxes
anything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from guard.core.limits import ProviderLimit
from guard.core.model import Budget, Scope
from guard.errors import SpendLimitsUnavailable, UpstreamError
from guard.shell.ports import AdminReports, CachePort
from guard.shell.spare import Spare, may_read

log = logging.getLogger("guard.sync")

REREAD = timedelta(hours=1)
"""How old the limits may be before a tick with a spare request reads them again."""
UNAVAILABLE_REREAD = timedelta(days=1)
"""How long an organization without access is left alone."""


@dataclass(frozen=True, slots=True)
class LimitsRead:
    """When the spend limits were last asked for, and what came of it."""

    at: datetime
    available: bool
    status: int | None = None
    detail: str = ""

    def encode(self) -> str:
        """The named value stored for this read."""
        return json.dumps({"at": self.at.isoformat(), "available": self.available,
                           "status": self.status, "detail": self.detail[:120]})

    @staticmethod
    def decode(raw: str | None) -> LimitsRead | None:
        """The read a stored value describes; ``None`` for none or an unreadable one."""
        if not raw:
            return None
        try:
            body = json.loads(raw)
            return LimitsRead(datetime.fromisoformat(body["at"]), bool(body["available"]),
                              body.get("status"), str(body.get("detail", "")))
        except (ValueError, KeyError, TypeError):
            return None


def wants_limits(budgets: Collection[Budget]) -> bool:
    """Whether any budget's scope can have an Anthropic limit of its own."""
    return any(b.scope in (Scope.ORGANIZATION, Scope.WORKSPACE) for b in budgets)


class LimitsSync:
    """Reads the spend limits when due; keeps them in the store."""

    def __init__(self, client: AdminReports, caches: CachePort) -> None:
        self.client = client
        self.caches = caches

    def last_read(self) -> LimitsRead | None:
        """The last read, as remembered."""
        return LimitsRead.decode(self.caches.provider_limits_read())

    def stored(self) -> tuple[ProviderLimit, ...]:
        """The limits as last read (none when the organization has no access)."""
        read = self.last_read()
        return tuple(self.caches.provider_limits()) if read and read.available else ()

    def refresh(self, at: datetime, *, keep: bool = True,
                spare: Spare | None = None) -> tuple[ProviderLimit, ...]:
        """The limits, read again first when due and a request is spare (``keep`` false:
        a what-if, which stores nothing)."""
        read = self.last_read()
        if read is not None and not self._due(read, at):
            return self.stored()
        if read is not None and not may_read(spare):
            return self.stored()
        try:
            limits = self.client.spend_limits()
        except SpendLimitsUnavailable as exc:
            if keep:
                if read is None or read.available:
                    log.warning("Anthropic's spend limits cannot be read (asked again in a "
                                "day): %s", exc)
                self.caches.replace_provider_limits(
                    [], LimitsRead(at, False, exc.status, str(exc)).encode())
            return ()
        except UpstreamError as exc:
            log.warning("could not read Anthropic's spend limits, keeping the last read: %s",
                        exc)
            return self.stored()
        if keep:
            self.caches.replace_provider_limits(limits, LimitsRead(at, True).encode())
        return tuple(limits)

    @staticmethod
    def _due(read: LimitsRead, at: datetime) -> bool:
        wait = REREAD if read.available else UNAVAILABLE_REREAD
        return at - read.at >= wait
