"""Notifications: rendering (``render``), the outbox (``outbox``), planning (``plan``),
delivery (``delivery``) and the Slack adapter (``slack``).

``Notification`` is how a tick reports what it decided to send.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Notification:
    """One message about one (budget, condition), or the monthly reset (``condition`` None)."""

    budget: str | None
    condition: str | None
    kind: str
    severity: str
    text: str
