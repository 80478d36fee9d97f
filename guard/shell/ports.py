"""What the tick needs from a chat transport, without importing slack-sdk.

The errors, ``Posted`` and the ``SlackTransport`` protocol live here so that the tick, the
outbox and the demo load no Slack client unless Slack is configured (``guard.adapters.slack``
implements them with slack-sdk).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from guard.errors import GuardError

Blocks = Sequence[Mapping[str, Any]]
"""Block Kit blocks as JSON objects; empty for a text-only message."""


class SlackError(GuardError):
    """Slack did not accept a message or a check; ``error`` is Slack's code when it gave one."""

    def __init__(self, message: str, *, error: str | None = None,
                 status: int | None = None) -> None:
        self.error = error
        self.status = status
        super().__init__(message)


class SlackUnavailable(SlackError):
    """Slack was unreachable, overloaded or rate limiting after retries: try again next tick."""

    recoverable = True

    def __init__(self, message: str, *, error: str | None = None, status: int | None = None,
                 retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, error=error, status=status)


class SlackRejected(SlackError):
    """Slack refused the request (token, channel, scope or payload): a person must act."""

    error: str

    def __init__(self, message: str, *, error: str, status: int | None = None) -> None:
        super().__init__(message, error=error, status=status)


@dataclass(frozen=True, slots=True)
class Posted:
    """Where a message landed: the channel id and its ``ts`` (both needed to update it)."""

    channel: str
    ts: str


class SlackTransport(Protocol):
    """What the tick needs from Slack: post, and update or thread where ``supports_updates``."""

    @property
    def supports_updates(self) -> bool:
        """Whether ``update`` and ``thread_ts`` work (a bot token) or not (a webhook)."""
        ...

    def post(self, channel: str, text: str, blocks: Blocks,
             thread_ts: str | None = None) -> Posted:
        """Post a message, or a reply in the thread of ``thread_ts``."""
        ...

    def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> Posted:
        """Replace the text and blocks of the message ``ts``."""
        ...
