"""Chat transports that need no Slack client: the log, and pacing around a real one.

``LogTransport`` is the transport when Slack is not configured; ``PacedTransport`` keeps any
transport to Slack's one message per second per channel. Neither imports slack-sdk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from guard.core.records import Blocks, Posted
from guard.shell.ports import SlackTransport


class NoLookup:
    """A transport that cannot read back what it sent: its posts are at-least-once."""

    supports_lookup = False

    def find(self, channel: str, dedup: str, oldest: datetime,
             thread_ts: str | None = None) -> Posted | None:
        """Nothing can be looked up."""
        return None


class LogTransport(NoLookup):
    """The transport when Slack is not configured: every message becomes a log line."""

    supports_updates = True

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("guard.notify")
        self.count = 0

    def post(self, channel: str, text: str, blocks: Blocks,
             thread_ts: str | None = None, *, dedup: str | None = None) -> Posted:
        """Log the text; a reply is indented under its parent."""
        self.count += 1
        self.logger.warning("%s%s", "  ↳ " if thread_ts else "", text)
        return Posted(channel or "log", f"{self.count}")

    def update(self, channel: str, ts: str, text: str,
               blocks: Blocks) -> Posted:
        """Updates are not worth a log line: the numbers are in each tick's report."""
        return Posted(channel, ts)


class PacedTransport:
    """Keeps to Slack's one message per second per channel by waiting between sends."""

    def __init__(self, inner: SlackTransport, min_interval: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.min_interval = min_interval
        self.sleep = sleep
        self.monotonic = monotonic
        self._last: dict[str, float] = {}

    @property
    def supports_updates(self) -> bool:
        """As the wrapped transport."""
        return self.inner.supports_updates

    @property
    def supports_lookup(self) -> bool:
        """As the wrapped transport."""
        return self.inner.supports_lookup

    def post(self, channel: str, text: str, blocks: Blocks,
             thread_ts: str | None = None, *, dedup: str | None = None) -> Posted:
        """Post after the channel's last message is at least ``min_interval`` old."""
        self._wait(channel)
        return self.inner.post(channel, text, blocks, thread_ts, dedup=dedup)

    def find(self, channel: str, dedup: str, oldest: datetime,
             thread_ts: str | None = None) -> Posted | None:
        """Look up through the wrapped transport (reads are not paced)."""
        return self.inner.find(channel, dedup, oldest, thread_ts)

    def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> Posted:
        """Update, paced like posts."""
        self._wait(channel)
        return self.inner.update(channel, ts, text, blocks)

    def _wait(self, channel: str) -> None:
        last = self._last.get(channel)
        if last is not None:
            gap = self.min_interval - (self.monotonic() - last)
            if gap > 0:
                self.sleep(gap)
        self._last[channel] = self.monotonic()
