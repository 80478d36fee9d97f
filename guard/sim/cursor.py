"""Paging the analytics API: opaque cursors over ranked units, and a cache of ranked units.

``next_page`` is ``rpt_`` + base64 of ``{"o": offset, "q": query digest, "w": watermark}``. A
token that does not parse, or belongs to another query, is a 400; one minted at another
watermark (the data was refreshed since) is a 410, and paging restarts from the first page.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from guard.sim import params
from guard.sim.params import ApiError, bad_request
from guard.sim.units import Unit

_PREFIX = "rpt_"


def token(offset: int, digest: str, mark: datetime) -> str:
    """The ``next_page`` of a page that ends before unit ``offset``."""
    text = json.dumps({"o": offset, "q": digest, "w": params.iso(mark)})
    return _PREFIX + base64.urlsafe_b64encode(text.encode()).decode()


def offset_of(page: str | None, digest: str, mark: datetime) -> int:
    """The unit a ``page`` token resumes at (0 without one), checked against the query."""
    if page is None:
        return 0
    cursor = _decode(page)
    if cursor.get("q") != digest:
        raise bad_request("page: the token does not belong to this query")
    if cursor.get("w") != params.iso(mark):
        raise ApiError(410, "page: the cursor expired because the data was refreshed; "
                            "restart from the first page")
    return int(cursor["o"])


def _decode(page: str) -> dict[str, Any]:
    try:
        if not page.startswith(_PREFIX):
            raise ValueError(page)
        cursor = json.loads(base64.urlsafe_b64decode(page.removeprefix(_PREFIX)))
        if not isinstance(cursor, dict) or not isinstance(cursor.get("o"), int) or (
                cursor["o"] < 0):
            raise ValueError(page)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request("page: not a valid page token") from None
    return cursor


class UnitCache:
    """The ranked units of the last few queries, so paging does not recompute (thread-safe)."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[object, ...], list[Unit]] = OrderedDict()

    def get(self, key: tuple[object, ...], build: Callable[[], list[Unit]]) -> list[Unit]:
        """The cached units of ``key``, built on a miss."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        units = build()
        with self._lock:
            self._entries[key] = units
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return units
