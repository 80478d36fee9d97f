"""Fault injection: make the simulated API misbehave for the next few matching requests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from guard.sim.wire import Json, Response, error_payload

_DETAILS = {410: ": the page cursor expired; restart from the first page"}


@dataclass(frozen=True, slots=True)
class Fault:
    """How the next ``count`` requests whose path contains ``path`` are answered instead.

    With ``corrupt``, the real response is built and handed to it for mutation (deleting a
    field, setting an amount to ``"abc"``...) before serialisation, with its real status. With
    ``body``, that raw text is served with ``status``. Otherwise the API's error envelope for
    ``status`` is served (429 ``rate_limit_error``, 529 ``overloaded_error``, 5xx ``api_error``...).
    ``retry_after`` sets the ``retry-after`` header. A 410 says an analytics cursor expired.
    """

    status: int = 500
    retry_after: str | None = None
    count: int = 1
    path: str | None = None
    corrupt: Callable[[Json], None] | None = None
    body: str | None = None

    def matches(self, path: str) -> bool:
        """Whether the fault applies to a request for ``path``."""
        return self.path is None or self.path in path

    def response(self, request_id: str) -> Response:
        """The answer of a fault without ``corrupt``."""
        headers = {"retry-after": self.retry_after} if self.retry_after is not None else {}
        if self.body is not None:
            return Response(self.status, request_id, raw=self.body, headers=headers)
        message = f"injected fault: HTTP {self.status}{_DETAILS.get(self.status, '')}"
        payload = error_payload(self.status, message, request_id)
        return Response(self.status, request_id, payload, headers=headers)


@dataclass(slots=True)
class _Armed:
    fault: Fault
    remaining: int


class FaultQueue:
    """Pending faults, consumed in injection order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []

    def inject(self, fault: Fault) -> None:
        """Queue ``fault`` behind those already pending."""
        with self._lock:
            self._armed.append(_Armed(fault, fault.count))

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._armed.clear()

    def take(self, path: str) -> Fault | None:
        """The first pending fault that matches ``path``, using up one of its answers."""
        with self._lock:
            for armed in self._armed:
                if armed.fault.matches(path):
                    armed.remaining -= 1
                    if armed.remaining <= 0:
                        self._armed.remove(armed)
                    return armed.fault
        return None
