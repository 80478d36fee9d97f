"""Reading one page ahead: the next Admin API read runs while the last one is being stored.

A backfill is a chain of reads (pages of a cursor, or ranges one after another) each of
which is priced and written before the next. The simulator, the network and the API's own
work on the next page then overlap this process's work on the last. One reader thread
reads, one request at a time (the API's guidance: polling about once a minute, short paging
bursts; the consumer's own rare request, such as listing workspaces, makes two at most), and
at most ``depth`` pages wait in memory.

An error of a read reaches the consumer where that page would have (what was stored before
stays); a consumer that stops early stops the reader after its read in flight.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")

_POLL_S = 0.05
"""How often a reader with a full queue looks whether the consumer went away."""


class _End:
    """The reader's last item: the pages ran out (``error`` ``None``) or a read failed."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def ahead(pages: Iterable[T], depth: int = 1) -> Generator[T, None, None]:
    """``pages`` as they are, each read in a reader thread while the one before is used."""
    waiting: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand(item: T | _End) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        source = iter(pages)
        try:
            for page in source:
                if not hand(page):
                    return
        except BaseException as error:  # handed to the consumer as it is
            hand(_End(error))
            return
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # a generator stopped early runs its cleanup in this thread
        hand(_End())

    reader = threading.Thread(target=read, name="admin-api-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = waiting.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        reader.join()
