"""Chat transports that need no Slack client: the log, pacing around a real one, and labels.

``LogTransport`` is the transport when Slack is not configured; ``PacedTransport`` keeps any
transport to Slack's one message per second per channel (shared by several organizations'
ticks, from their threads); ``Labelled`` names the organization a message is about. None
imports slack-sdk.
"""

from __future__ import annotations

import logging
import threading
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


class _Wrapping:
    """A transport around another: what it supports is what the wrapped one does."""

    inner: SlackTransport

    @property
    def supports_updates(self) -> bool:
        """As the wrapped transport."""
        return self.inner.supports_updates

    @property
    def supports_lookup(self) -> bool:
        """As the wrapped transport."""
        return self.inner.supports_lookup


class PacedTransport(_Wrapping):
    """Keeps to Slack's one message per second per channel by waiting between sends."""

    def __init__(self, inner: SlackTransport, min_interval: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.min_interval = min_interval
        self.sleep = sleep
        self.monotonic = monotonic
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

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
        """Wait for this send's slot: each sender books the next one, then sleeps unlocked."""
        with self._lock:
            now = self.monotonic()
            last = self._last.get(channel)
            slot = now if last is None else max(now, last + self.min_interval)
            self._last[channel] = slot
        if slot > now:
            self.sleep(slot - now)


class Labelled(_Wrapping):
    """Names the organization in every message (text and blocks) of one of several, and keeps
    its deduplication keys apart from the others' in a shared channel."""

    def __init__(self, inner: SlackTransport, organization: str) -> None:
        self.inner = inner
        self.organization = organization

    def post(self, channel: str, text: str, blocks: Blocks,
             thread_ts: str | None = None, *, dedup: str | None = None) -> Posted:
        """Post, labelled."""
        return self.inner.post(channel, self._text(text), self._blocks(blocks), thread_ts,
                               dedup=self._dedup(dedup) if dedup is not None else None)

    def find(self, channel: str, dedup: str, oldest: datetime,
             thread_ts: str | None = None) -> Posted | None:
        """Look up this organization's message."""
        return self.inner.find(channel, self._dedup(dedup), oldest, thread_ts)

    def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> Posted:
        """Update, labelled."""
        return self.inner.update(channel, ts, self._text(text), self._blocks(blocks))

    def _text(self, text: str) -> str:
        return f"[{self.organization}] {text}"

    def _blocks(self, blocks: Blocks) -> Blocks:
        if not blocks:
            return blocks
        label = {"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"organization *{self.organization}*"}]}
        return [label, *blocks]

    def _dedup(self, dedup: str) -> str:
        return f"{self.organization}/{dedup}"
