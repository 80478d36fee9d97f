"""Query parameters of the simulated Admin API, and the error the handlers raise.

Parsing is strict the way the real API is: a bad value is a 400 ``invalid_request_error`` that
says which parameter was wrong.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime

Query = Mapping[str, list[str]]
"""A parsed query string: every name with all of its values, in order."""

ERROR_TYPES = {  # 410 (an expired analytics cursor) has no type of its own (reference §5)
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    410: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """The ``error.type`` the API uses for an HTTP status."""
    fallback = "api_error" if status >= 500 else "invalid_request_error"
    return ERROR_TYPES.get(status, fallback)


class ApiError(Exception):
    """A request the simulated API refuses; becomes the API's error envelope."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        """``error.details.error_code`` (reference §5), when the API gives one."""

    @property
    def error_type(self) -> str:
        """``error.type`` for this status."""
        return error_type(self.status)


def bad_request(message: str) -> ApiError:
    """A 400 ``invalid_request_error``."""
    return ApiError(400, message)


def values(query: Query, name: str) -> list[str]:
    """Every value of an array parameter, sent as ``name[]=`` (SDK style) or bare ``name=``."""
    return [*query.get(f"{name}[]", []), *query.get(name, [])]


def single(query: Query, name: str) -> str | None:
    """The value of a scalar parameter (the last one, if repeated)."""
    found = query.get(name)
    return found[-1] if found else None


def parse_time(text: str, name: str) -> datetime:
    """An RFC 3339 datetime with an explicit zone (``Z`` or an offset), in UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"{name}: {text!r} is not an RFC 3339 datetime") from None
    if moment.tzinfo is None:
        raise bad_request(f"{name}: {text!r} has no time zone")
    return moment.astimezone(UTC)


def required_time(query: Query, name: str) -> datetime:
    """A required RFC 3339 parameter."""
    text = single(query, name)
    if text is None:
        raise bad_request(f"{name}: field required")
    return parse_time(text, name)


def optional_time(query: Query, name: str) -> datetime | None:
    """An optional RFC 3339 parameter."""
    text = single(query, name)
    return None if text is None else parse_time(text, name)


def limit(query: Query, default: int, maximum: int) -> int:
    """``limit`` between 1 and ``maximum``."""
    text = single(query, "limit")
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"limit: {text!r} is not an integer") from None
    if not 1 <= value <= maximum:
        raise bad_request(f"limit: must be between 1 and {maximum}, got {value}")
    return value


def flag(query: Query, name: str) -> bool:
    """A boolean parameter (``true``/``false``), false when absent."""
    text = single(query, name)
    if text is None or text.lower() == "false":
        return False
    if text.lower() == "true":
        return True
    raise bad_request(f"{name}: {text!r} is not a boolean")


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as the API writes it: ``2026-03-10T00:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def page_token(bucket_start: datetime) -> str:
    """The API's ``next_page``: ``page_`` + base64 of the next bucket's start."""
    return "page_" + base64.b64encode(iso(bucket_start).encode()).decode()


def parse_page(token: str) -> datetime:
    """The bucket start a ``page`` token points at."""
    try:
        text = base64.b64decode(token.removeprefix("page_"), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise bad_request("page: not a valid page token") from None
    if not token.startswith("page_"):
        raise bad_request("page: not a valid page token")
    return parse_time(text, "page")
