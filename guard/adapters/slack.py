"""Slack adapters: the Web API with a bot token, or an incoming webhook that can only post.

Both satisfy ``SlackTransport``, so the tick can take either (or a test fake). All network I/O
goes through slack-sdk's urllib clients with three explicit retry handlers: connection errors,
429 (sleeping ``Retry-After``, unless that is longer than ``max_retry_after``) and 500/503.
Whatever outlasts them is translated here into ``SlackUnavailable`` (429 past the retries,
5xx, timeouts, connection errors: try again next tick) or ``SlackRejected`` (Slack refused the
request: a person must act), drawn with the rest of the tree in ``guard.errors``. The clients
themselves are built in ``guard.entry.wiring``.

Messages never contain the bot token or the webhook URL (the URL is the webhook's secret):
errors are built from Slack's error code, and slack-sdk logs through a logger kept at WARNING
because at INFO it writes the full request URL on every retry.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from http.client import HTTPException
from typing import Any, TypeVar
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web import SlackResponse
from slack_sdk.webhook import WebhookClient

from guard.core.records import Blocks, Posted
from guard.errors import SlackError, SlackRejected, SlackUnavailable

__all__ = ["SDK_LOG", "SlackWebApi", "SlackWebhook", "retry_handlers"]



_T = TypeVar("_T")
_CODE = re.compile(r"[a-z0-9_.]{1,64}")
_SCOPES = re.compile(r"[a-z0-9_.:,]{1,200}")
_TRANSIENT = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error",
                        "service_unavailable", "request_timeout"})
_HINTS = {
    "invalid_auth": "check slack.bot_token",
    "not_authed": "no bot token was sent",
    "token_revoked": "the token was revoked; reinstall the app",
    "account_inactive": "the app or its user was deactivated; reinstall the app",
    "invalid_token": "the webhook was revoked or mistyped; check slack.webhook_url",
    "channel_not_found": "check slack.channel (a channel id like C0123456789, "
                         "and invite the bot to private channels)",
    "not_in_channel": "invite the bot to the channel, or grant it chat:write.public",
    "is_archived": "the channel is archived",
    "channel_is_archived": "the channel is archived",
    "missing_scope": "add the scope to the Slack app and reinstall it",
}

SDK_LOG = logging.getLogger("guard.adapters.slack.sdk")
SDK_LOG.setLevel(logging.WARNING)  # at INFO and below slack-sdk logs the (webhook) URL


METADATA_EVENT = "budget_guard_notification"
"""The ``metadata.event_type`` of every message the guard posts, with the row's dedup key."""
LOOKUP_PAGES = 5
"""How many pages of 200 messages a lookup reads at most."""
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")


class SlackWebApi:
    """Bot-token mode (scope ``chat:write``): post, update and thread through the Web API.

    Every post carries its outbox dedup key as message metadata, so a post whose outcome is
    unknown (the process died, the answer timed out) is looked up in the channel's history
    (scope ``channels:history``) before it is ever posted again.
    """

    supports_updates = True
    supports_lookup = True

    def __init__(self, token: str, client: WebClient) -> None:
        self._token = token
        self._client = client

    def post(self, channel: str, text: str, blocks: Blocks,
             thread_ts: str | None = None, *, dedup: str | None = None) -> Posted:
        """``chat.postMessage``; the answer carries Slack's channel id and the new ``ts``."""
        _require_text("chat.postMessage", text)
        metadata = ({"event_type": METADATA_EVENT, "event_payload": {"dedup": dedup}}
                    if dedup else None)
        response = self._call("chat.postMessage", lambda: self._client.chat_postMessage(
            channel=channel, text=text, blocks=_json_blocks(blocks), thread_ts=thread_ts,
            metadata=metadata))
        return _posted("chat.postMessage", response, channel)

    def find(self, channel: str, dedup: str, oldest: datetime,
             thread_ts: str | None = None) -> Posted | None:
        """The message posted with ``dedup`` since ``oldest`` (in the thread of ``thread_ts``
        if given), if any. ``None`` too for a channel given by name: history takes ids."""
        if not _CHANNEL_ID.fullmatch(channel):
            return None
        cursor: str | None = None
        for _ in range(LOOKUP_PAGES):
            data = _data(self._history(channel, oldest, thread_ts, cursor))
            for message in data.get("messages") or []:
                if _carries(message, dedup):
                    return Posted(channel, str(message["ts"]))
            cursor = ((data.get("response_metadata") or {}).get("next_cursor")
                      if data.get("has_more") else None)
            if not cursor:
                return None
        return None

    def _history(self, channel: str, oldest: datetime, thread_ts: str | None,
                 cursor: str | None) -> SlackResponse:
        since = f"{oldest.timestamp():.6f}"
        if thread_ts is not None:
            return self._call("conversations.replies", lambda: self._client.conversations_replies(
                channel=channel, ts=thread_ts, oldest=since, limit=200,
                include_all_metadata=True, cursor=cursor))
        return self._call("conversations.history", lambda: self._client.conversations_history(
            channel=channel, oldest=since, limit=200, include_all_metadata=True,
            cursor=cursor))

    def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> Posted:
        """``chat.update`` of a message this bot posted."""
        _require_text("chat.update", text)
        response = self._call("chat.update", lambda: self._client.chat_update(
            channel=channel, ts=ts, text=text, blocks=_json_blocks(blocks)))
        return _posted("chat.update", response, channel)

    def auth_check(self) -> str:
        """``auth.test``: who the token posts as, like ``budget-guard (U01) in Acme (T01)``."""
        data = _data(self._call("auth.test", self._client.auth_test))
        return (f"{data.get('user', '?')} ({data.get('user_id', '?')}) "
                f"in {data.get('team', '?')} ({data.get('team_id', '?')})")

    def channel_check(self, channel: str) -> None:
        """``conversations.info`` (scope ``channels:read``): the channel exists and is live.

        It takes a channel id; Slack answers ``channel_not_found`` for a name like ``#budget``
        even though ``chat.postMessage`` accepts names.
        """
        response = self._call("conversations.info",
                              lambda: self._client.conversations_info(channel=channel))
        info = _data(response).get("channel")
        if isinstance(info, dict) and info.get("is_archived"):
            raise _failure("conversations.info", 200, "is_archived", None)

    def _call(self, method: str, call: Callable[[], SlackResponse]) -> SlackResponse:
        try:
            return _guarded(method, self._token, call)
        except SlackApiError as exc:
            raise _api_failure(method, exc.response) from None


class SlackWebhook:
    """Post-only mode through an incoming webhook.

    The webhook's channel is fixed when it is installed and Slack answers ``ok`` without a
    ``ts``, so a webhook cannot choose a channel, update a message or reply in a thread:
    ``post`` ignores ``channel`` and ``thread_ts`` (a reply becomes a top-level message) and
    ``update`` raises ``SlackRejected``. Check ``supports_updates`` first.
    """

    supports_updates = False
    supports_lookup = False
    """A webhook cannot read history: its posts are at-least-once."""

    def __init__(self, url: str, client: WebhookClient) -> None:
        self._url = url
        self._client = client

    def find(self, channel: str, dedup: str, oldest: datetime,
             thread_ts: str | None = None) -> Posted | None:
        """A webhook cannot look anything up: always ``None``."""
        return None

    def post(self, channel: str, text: str, blocks: Blocks,
             thread_ts: str | None = None, *, dedup: str | None = None) -> Posted:
        """Post to the webhook's own channel; returns ``Posted("webhook", "")``."""
        _require_text("webhook", text)
        response = _guarded("webhook", self._url, lambda: self._client.send(
            text=text, blocks=_json_blocks(blocks)))
        if response.status_code != 200:
            retry_after = _retry_after(response.headers)
            raise _failure("webhook", response.status_code, response.body.strip(), retry_after)
        return Posted(channel="webhook", ts="")

    def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> Posted:
        """Always raises: webhook messages cannot be updated."""
        raise SlackRejected("Slack webhooks cannot update messages; configure slack.bot_token "
                            "to update alerts in place", error="updates_not_supported")


def retry_handlers(retries: int, max_retry_after: float = 30.0) -> list[RetryHandler]:
    """slack-sdk's three built-in handlers; ``retry_handlers=`` replaces its defaults."""
    return [ConnectionErrorRetryHandler(max_retry_count=retries),
            CappedRateLimitRetryHandler(max_retry_count=retries, max_wait=max_retry_after),
            ServerErrorRetryHandler(max_retry_count=retries)]


class CappedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """Retries a 429 only when ``Retry-After`` is an integer of at most ``max_wait`` seconds.

    slack-sdk's handler sleeps whatever Slack asks (a minute would stall a tick) and crashes
    on a non-integer header; a longer wait surfaces as ``SlackUnavailable.retry_after``.
    """

    def __init__(self, max_retry_count: int = 1, max_wait: float = 30.0) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    def _can_retry(self, *, state: RetryState, request: HttpRequest,
                   response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        if response is None or not super()._can_retry(
                state=state, request=request, response=response, error=error):
            return False
        raw = _header(response.headers, "retry-after")
        return raw is None or (raw.strip().isdigit() and int(raw) <= self.max_wait)


def _guarded(method: str, secret: str, call: Callable[[], _T]) -> _T:
    """``call()``, with transport failures translated; ``secret`` is kept out of messages."""
    try:
        return call()
    except (OSError, HTTPException) as exc:
        reason = _describe(exc).replace(secret, "***")
        raise SlackUnavailable(f"Slack {method} unreachable: {reason}") from None
    except SlackRequestError:
        raise SlackRejected(f"Slack {method}: the request could not be sent (is the URL http(s)?)",
                            error="invalid_request") from None


def _describe(exc: BaseException) -> str:
    """A short reason for a transport failure, like "Connection refused" or "timed out"."""
    reason: object = exc.reason if isinstance(exc, URLError) else exc
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _api_failure(method: str, response: SlackResponse) -> SlackError:
    data = _data(response)
    needed = data.get("needed")
    hint = f"add the {needed} scope to the Slack app and reinstall it" if (
        isinstance(needed, str) and _SCOPES.fullmatch(needed)) else None
    return _failure(method, response.status_code, data.get("error"),
                    _retry_after(response.headers), hint)


def _failure(method: str, status: int, error: object, retry_after: float | None,
             hint: str | None = None) -> SlackError:
    """Classify a failed answer: 408/429/5xx and Slack's transient codes are recoverable."""
    code = error if isinstance(error, str) and _CODE.fullmatch(error) else f"http_{status}"
    if status in (408, 429) or status >= 500 or code in _TRANSIENT:
        wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        return SlackUnavailable(f"Slack {method} unavailable: {code} (HTTP {status}){wait}",
                                error=code, status=status, retry_after=retry_after)
    hint = hint or _HINTS.get(code)
    suffix = f" ({hint})" if hint else ""
    return SlackRejected(f"Slack {method} rejected: {code}{suffix}", error=code, status=status)


def _retry_after(headers: Mapping[str, Any]) -> float | None:
    raw = _header(headers, "retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    """A header's value, case-insensitively; the retry API gives values as lists."""
    for key, value in headers.items():
        if key.lower() == name:
            first = value[0] if isinstance(value, list) and value else value
            return first if isinstance(first, str) else None
    return None


def _carries(message: object, dedup: str) -> bool:
    """Whether a history ``message`` is the guard's post of ``dedup``."""
    if not isinstance(message, dict) or "ts" not in message:
        return False
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != METADATA_EVENT:
        return False
    payload = metadata.get("event_payload")
    return isinstance(payload, dict) and payload.get("dedup") == dedup


def _require_text(method: str, text: str) -> None:
    """The top-level text is the notification and the screen-reader fallback: never blank."""
    if not text.strip():
        raise SlackRejected(f"Slack {method}: a message needs a non-blank text", error="no_text")


def _json_blocks(blocks: Blocks) -> list[dict[str, Any]] | None:
    return [dict(block) for block in blocks] or None


def _data(response: SlackResponse) -> dict[str, Any]:
    """The JSON object of an answer (slack-sdk gives bytes for binary ones)."""
    return response.data if isinstance(response.data, dict) else {}


def _posted(method: str, response: SlackResponse, channel: str) -> Posted:
    data = _data(response)
    ts = data.get("ts")
    if not isinstance(ts, str):
        raise SlackError(f"Slack {method} answered ok without a ts")
    return Posted(channel=str(data.get("channel") or channel), ts=ts)
