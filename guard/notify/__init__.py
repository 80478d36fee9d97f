"""Notifications: the port the tick sends through, and the console notifier.

Slack (a later adapter) and the console implement the same ``Notifier`` protocol: ``send``
returns whether the notification was accepted. The tick records an alert as notified only
after a ``True``; a ``False`` or an exception leaves it owed, to be sent again next tick.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("guard.notify")


@dataclass(frozen=True, slots=True)
class Notification:
    """One message about one (budget, condition), or the monthly reset (``condition`` None)."""

    budget: str | None
    condition: str | None
    kind: str
    severity: str
    text: str


class Notifier(Protocol):
    """Delivers notifications; ``send`` returns True once the message was accepted."""

    def send(self, notification: Notification) -> bool:
        """Deliver one notification."""
        ...


class ConsoleNotifier:
    """Writes each notification as a log line: the default until Slack is configured."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger

    def send(self, notification: Notification) -> bool:
        """Log the notification at a level matching its severity; always accepted."""
        level = logging.WARNING if notification.severity == "critical" else logging.INFO
        self.logger.log(level, "[%s] %s", notification.kind, notification.text)
        return True
