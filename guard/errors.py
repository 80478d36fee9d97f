"""The one exception tree of budget-guard.

Every error the guard raises on purpose is a ``GuardError``. Adapters translate library errors
(httpx, SQLAlchemy, pydantic) into this tree at the boundary, so the core and the CLI never see
a library exception. Each class says whether it is ``recoverable``: a recoverable error is worth
trying again on the next tick; an unrecoverable one needs a person (a bad key, a bad config, a
bug in a request the guard built).

    GuardError
    ├── ConfigError                 bad configuration (exit 2)
    ├── StoreError                  the state store failed
    ├── SinkError                   a fallback file could not be written (disk full, a
    │                               directory replaced or read-only)
    ├── UpstreamError               the Admin API could not give an answer (exit 3)
    │   ├── AdminKeyRejected        401/403: not a valid admin key
    │   ├── RequestRejected         400/404/other 4xx: the guard built a bad request
    │   ├── RateLimited             429 that outlasted the retry budget
    │   ├── UpstreamUnavailable     5xx/529/timeouts/connection errors after retries
    │   └── MalformedResponse       a payload that does not match the API's schema
    └── SlackError                  Slack did not accept a message or a check
        ├── SlackUnavailable        429 past the retries (``retry_after``), 5xx, timeouts,
        │                           connection errors: try again next tick
        └── SlackRejected           Slack refused the request (``error``: invalid_auth,
                                    channel_not_found, not_in_channel, missing_scope, …)

Messages never contain secrets: the admin key is sent in a header and never formatted into an
error, and response bodies are quoted only through ``error.message`` of the API's envelope;
Slack errors are built from Slack's error code, never from the token or the webhook URL.
"""

from __future__ import annotations


class GuardError(Exception):
    """Base of every error budget-guard raises on purpose."""

    recoverable: bool = False


class ConfigError(GuardError):
    """The configuration is invalid; ``problems`` lists ``(field path, reason)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {path}: {reason}" for path, reason in problems)
        super().__init__(f"invalid configuration:\n{lines}")


class InvalidInput(ConfigError):
    """What an operator asked for is invalid (a flag, an HTTP field, a Slack argument): the
    same ``problems`` as ``ConfigError``, which every face already refuses with exit 2, a
    400 or an answer in words, said as input rather than configuration."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(problems)
        lines = "\n".join(f"  {path}: {reason}" for path, reason in problems)
        self.args = (f"invalid input:\n{lines}",)


class StoreError(GuardError):
    """The state store could not be read or written."""

    recoverable = True


class SinkError(GuardError):
    """A fallback file (env or state file) could not be written; the old one stays."""

    recoverable = True


class UpstreamError(GuardError):
    """The Admin API did not give a usable answer."""

    recoverable = True

    def __init__(self, message: str, *, status: int | None = None,
                 request_id: str | None = None) -> None:
        self.status = status
        self.request_id = request_id
        suffix = f" (request-id {request_id})" if request_id else ""
        super().__init__(message + suffix)


class AdminKeyRejected(UpstreamError):
    """The Admin API refused the key: revoked, mistyped, or not an admin key."""

    recoverable = False


class RequestRejected(UpstreamError):
    """The Admin API rejected a request the guard built (a bug or an API change)."""

    recoverable = False


class RateLimited(UpstreamError):
    """Rate limited for longer than the retry budget allows."""


class SpendLimitsUnavailable(UpstreamError):
    """The organization cannot read the Spend Limits API (no early access, or not a Console
    organization): remembered, and not asked again every tick."""

    recoverable = False


class UpstreamUnavailable(UpstreamError):
    """Server errors, overload, timeouts or connection failures persisted through retries."""


class DeadlineExceeded(UpstreamError):
    """The tick's Admin API reads ran out of time; what was read so far is stored."""


class MalformedResponse(UpstreamError):
    """A response did not match the documented schema; the message says where."""


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
