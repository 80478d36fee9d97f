"""What the guard remembers and sends: notifications, silences, audit entries, key actions.

Plain frozen values shared by the core (which decides them), the shell (which applies them in
order) and the store adapters (which keep them). Nothing here does I/O.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

Blocks = Sequence[Mapping[str, Any]]
"""Block Kit blocks as JSON objects; empty for a text-only message."""


class NotificationKind(enum.StrEnum):
    """What a notification is about; the value is the ``kind`` of DESIGN §3's JSON."""

    FIRING = "firing"
    REPEAT = "repeat"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    RESET = "reset"
    DIGEST = "digest"
    KEYS = "keys"
    PRICE = "price"
    """A model unpriced or drifting from the bill: once per model per month."""
    UPDATE = "update"
    """A firing incident's message refreshed with current numbers (never reported)."""


THREADED = frozenset({NotificationKind.REPEAT, NotificationKind.ESCALATED,
                      NotificationKind.RESOLVED})
"""Kinds that also reply in their incident's thread."""

COLLAPSIBLE = frozenset({NotificationKind.REPEAT, NotificationKind.UPDATE})
"""Kinds that a later notification of the same incident makes pointless to send."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One message about one (budget, condition), or the monthly reset (``condition`` None)."""

    budget: str | None
    condition: str | None
    kind: str
    severity: str
    text: str


@dataclass(frozen=True, slots=True)
class Payload:
    """What to send: the parent message, and a thread reply for lifecycle notices."""

    text: str
    blocks: tuple[dict[str, Any], ...]
    reply_text: str | None = None
    reply_blocks: tuple[dict[str, Any], ...] = ()

    def dumps(self) -> str:
        """As JSON for the store."""
        return json.dumps({"reply_text": self.reply_text, "reply_blocks": self.reply_blocks,
                           "blocks": self.blocks})

    @classmethod
    def loads(cls, text: str, raw: str) -> Payload:
        """From the store."""
        data = json.loads(raw)
        return cls(text, tuple(data["blocks"]), data["reply_text"], tuple(data["reply_blocks"]))


@dataclass(frozen=True, slots=True)
class Owed:
    """One notification decided and not yet delivered."""

    id: int
    dedup: str
    incident: str
    kind: str
    created_at: datetime
    payload: Payload
    attempts: int
    sending_since: datetime | None = None
    """When a sender first took the row: set, an earlier send may have reached Slack (its
    process died, or the answer was lost), so Slack is asked before it is posted again."""


@dataclass(frozen=True, slots=True)
class Posted:
    """Where a message landed: the channel id and its ``ts`` (both needed to update it)."""

    channel: str
    ts: str


@dataclass(frozen=True, slots=True)
class Silence:
    """Notifications of ``budget`` (and ``condition``, or all) are not sent until ``ends_at``."""

    id: int
    budget: str
    condition: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    who: str

    def covers(self, budget: str, condition: str | None, now: datetime) -> bool:
        """Whether this silence mutes (budget, condition) at ``now``."""
        return (self.budget == budget and self.condition in (None, condition)
                and self.starts_at <= now < self.ends_at)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the append-only audit log: who did what, when, from what to what, and why."""

    at: datetime
    who: str
    action: str
    subject: str
    before: str | None
    after: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class KeyAction:
    """A key the hard stop deactivated, with the status to restore."""

    key_id: str
    budget: str
    prior_status: str
    deactivated_at: datetime
    period: date


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What the reload hook did: ``ran`` is False only when it was skipped (none configured)."""

    ran: bool
    ok: bool
    detail: str
