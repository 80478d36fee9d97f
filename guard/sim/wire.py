"""Requests and responses as the simulated API's application sees them, free of HTTP plumbing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from guard.sim.params import error_type

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request as the application sees it (header names in lower case)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    """What the application answers: a JSON payload, or a raw body when a fault says so."""

    status: int
    request_id: str
    payload: Json | None = None
    raw: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        """The serialised body."""
        text = self.raw if self.raw is not None else json.dumps(self.payload)
        return text.encode()


def error_payload(status: int, message: str, request_id: str,
                  code: str | None = None) -> Json:
    """The API's error envelope (with ``details.error_code`` when there is a ``code``)."""
    error: Json = {"type": error_type(status), "message": message}
    if code is not None:
        error["details"] = {"error_code": code}
    return {"type": "error", "error": error, "request_id": request_id}


def error_response(status: int, message: str, request_id: str,
                   code: str | None = None) -> Response:
    """A response carrying the API's error envelope."""
    return Response(status, request_id, error_payload(status, message, request_id, code))
