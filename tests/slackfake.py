"""A loopback fake of the Slack Web API and of an incoming webhook, for contract tests.

slack-sdk sends its requests with urllib, which respx cannot see, so tests point the real
client at this server instead (``base_url=fake.base_url``, ``slack_webhook(fake.webhook_url)``).
It checks the bearer token, keeps the messages it accepted (so ``chat.update`` of an unknown
``ts`` fails as on Slack), records every request in order, and injects faults into the next
requests: HTTP errors, 429s with ``Retry-After``, Slack error codes, dropped connections, or a
server that refuses connections altogether (``down()``).

    with SlackFake() as fake:
        api = slack_web_api(fake.token, base_url=fake.base_url)
        fake.rate_limit_next(1)
        api.post(fake.channel, "text", [])
        assert [c.status for c in fake.calls] == [429, 200]
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

CHANNEL = "C0123456789"
CHANNEL_NAME = "budget-alerts"
API_PREFIX = "/api/"
WEBHOOK_PREFIX = "/webhook/"
_FIRST_TS = 1_700_000_000_000_100
_WEBHOOK_STATUS = {"invalid_token": 403, "action_prohibited": 403, "no_service": 404,
                   "channel_not_found": 404, "channel_is_archived": 410, "rate_limited": 429}


@dataclass(frozen=True, slots=True)
class Call:
    """One request as the fake saw it; ``status`` 0 means the connection was dropped."""

    method: str
    channel: str | None
    ts: str | None
    thread_ts: str | None
    text: str | None
    blocks: list[dict[str, Any]] | None
    status: int
    error: str | None

    @property
    def accepted(self) -> bool:
        """Whether the fake answered 200 and ok."""
        return self.status == 200 and self.error is None


@dataclass(frozen=True, slots=True)
class _Fault:
    kind: str  # "http", "ratelimit", "error" or "drop"
    status: int = 200
    error: str = ""
    retry_after: int = 0


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: dict[str, Any] | str
    headers: tuple[tuple[str, str], ...] = ()


class SlackFake:
    """A fake Slack on 127.0.0.1 (a free port) in a daemon thread; use it as a context manager."""

    def __init__(self, token: str = "xoxb-fake-0000-secret-token",
                 channels: Mapping[str, str] | None = None,
                 webhook_secret: str = "T0FAKE/B0FAKE/fake-webhook-secret") -> None:
        self.token = token
        self.channels = dict(channels if channels is not None else {CHANNEL: CHANNEL_NAME})
        self.webhook_secret = webhook_secret
        self.port = 0
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._faults: deque[_Fault] = deque()
        self._messages: set[tuple[str, str]] = set()
        self._history: list[dict[str, Any]] = []
        """Every accepted post: channel, ts, thread_ts, text, metadata (oldest first)."""
        self._archived: set[str] = set()
        self._next_ts = _FIRST_TS
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SlackFake:
        self.up()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def channel(self) -> str:
        """The first known channel id."""
        return next(iter(self.channels))

    @property
    def base_url(self) -> str:
        """The Web API root, ending with "/" (slack-sdk appends method names)."""
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def webhook_url(self) -> str:
        """The incoming-webhook URL; its path holds the secret, as on hooks.slack.com."""
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PREFIX}{self.webhook_secret}"

    # -- lifecycle and faults ----------------------------------------------------------------

    def up(self) -> None:
        """Start serving (on the same port again after ``down()``)."""
        if self._server is not None:
            return
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.fake = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop listening: connections are refused until ``up()``; records are kept."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join()
        self._server = self._thread = None

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next ``n`` requests with HTTP ``status`` and ``internal_error``."""
        self._inject(n, _Fault("http", status=status, error="internal_error"))

    def rate_limit_next(self, n: int, retry_after: int = 1) -> None:
        """Answer the next ``n`` requests with 429, ``Retry-After`` and ``ratelimited``."""
        self._inject(n, _Fault("ratelimit", status=429, error="ratelimited",
                               retry_after=retry_after))

    def error_next(self, n: int, error: str) -> None:
        """Answer the next ``n`` API requests 200 with ``ok: false`` and ``error``.

        Webhooks answer plain text instead, with the status Slack uses for that code.
        """
        self._inject(n, _Fault("error", error=error))

    def drop_next(self, n: int) -> None:
        """Close the next ``n`` connections without answering (a reset mid-request)."""
        self._inject(n, _Fault("drop"))

    def archive(self, channel: str) -> None:
        """Archive a known channel: posts fail with ``is_archived``."""
        with self._lock:
            self._archived.add(channel)

    def _inject(self, n: int, fault: _Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    # -- records -----------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Every request so far, in order, faults and rejections included."""
        with self._lock:
            return list(self._calls)

    def posts(self) -> list[Call]:
        """Accepted ``chat.postMessage`` calls, thread replies included."""
        return [c for c in self.calls if c.method == "chat.postMessage" and c.accepted]

    def updates(self) -> list[Call]:
        """Accepted ``chat.update`` calls."""
        return [c for c in self.calls if c.method == "chat.update" and c.accepted]

    def thread_replies(self, thread_ts: str | None = None) -> list[Call]:
        """Accepted posts in a thread (of ``thread_ts`` when given)."""
        return [c for c in self.posts()
                if c.thread_ts is not None and thread_ts in (None, c.thread_ts)]

    def webhook_posts(self) -> list[Call]:
        """Accepted incoming-webhook posts."""
        return [c for c in self.calls if c.method == "webhook" and c.accepted]

    # -- serving -----------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        path = urlsplit(handler.path).path
        params = _params(handler)
        webhook = path.startswith(WEBHOOK_PREFIX)
        method = "webhook" if webhook else path.removeprefix(API_PREFIX)
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            if fault is not None and fault.kind == "drop":
                self._record(method, params, None, 0, "dropped")
                return
            if fault is not None:
                answer = _fault_answer(fault, webhook)
            elif webhook:
                answer = self._webhook(path.removeprefix(WEBHOOK_PREFIX), params)
            else:
                answer = self._api(method, handler.headers.get("Authorization"), params)
            self._record(method, params, answer, answer.status, _error_of(answer))
        _respond(handler, answer)

    def _record(self, method: str, params: Mapping[str, Any], answer: _Answer | None,
                status: int, error: str | None) -> None:
        body = answer.body if answer is not None and isinstance(answer.body, dict) else {}
        blocks = params.get("blocks")
        self._calls.append(Call(
            method=method, channel=params.get("channel"),
            ts=body.get("ts") or params.get("ts"), thread_ts=params.get("thread_ts"),
            text=params.get("text"), blocks=json.loads(blocks) if isinstance(blocks, str)
            else blocks, status=status, error=error))

    def _api(self, method: str, authorization: str | None, params: Mapping[str, Any]) -> _Answer:
        if authorization != f"Bearer {self.token}":
            return _not_ok("invalid_auth" if authorization else "not_authed")
        route = {"auth.test": _auth_test, "conversations.info": self._info,
                 "chat.postMessage": self._post, "chat.update": self._update,
                 "conversations.history": self._conversation,
                 "conversations.replies": self._conversation}.get(method)
        return route(params) if route else _not_ok("unknown_method")

    def _info(self, params: Mapping[str, Any]) -> _Answer:
        channel = params.get("channel")
        if channel not in self.channels:  # conversations.info takes ids only
            return _not_ok("channel_not_found")
        assert isinstance(channel, str)
        return _ok(channel={"id": channel, "name": self.channels[channel], "is_channel": True,
                            "is_member": True, "is_archived": channel in self._archived})

    def _post(self, params: Mapping[str, Any]) -> _Answer:
        channel = self._resolve(params.get("channel"))
        if channel is None:
            return _not_ok("channel_not_found")
        if channel in self._archived:
            return _not_ok("is_archived")
        if not params.get("text") and not params.get("blocks"):
            return _not_ok("no_text")
        self._next_ts = max(self._next_ts + 100, time.time_ns() // 1000)  # Slack's ts: its clock
        ts = f"{self._next_ts // 10**6}.{self._next_ts % 10**6:06d}"
        self._messages.add((channel, ts))
        metadata = params.get("metadata")
        self._history.append({"channel": channel, "ts": ts, "thread_ts": params.get("thread_ts"),
                              "text": params.get("text"),
                              "metadata": json.loads(metadata) if isinstance(metadata, str)
                              else metadata})
        return _ok(channel=channel, ts=ts, message={"text": params.get("text"), "ts": ts})

    def _conversation(self, params: Mapping[str, Any]) -> _Answer:
        """conversations.history (top-level messages) or .replies (a thread, ``ts``): newest
        first, after ``oldest``; metadata only with ``include_all_metadata``; ids only."""
        channel = params.get("channel")
        if channel not in self.channels:
            return _not_ok("channel_not_found")
        oldest = float(params.get("oldest") or 0)
        thread = params.get("ts")
        found = [m for m in self._history if m["channel"] == channel
                 and float(m["ts"]) > oldest
                 and (m["thread_ts"] == thread if thread else m["thread_ts"] is None)]
        wanted = str(params.get("include_all_metadata")).lower() in ("1", "true")
        messages = [{"ts": m["ts"], "text": m["text"], "type": "message",
                     **({"metadata": m["metadata"]} if wanted and m["metadata"] else {})}
                    for m in reversed(found)]
        return _ok(messages=messages, has_more=False)

    def _update(self, params: Mapping[str, Any]) -> _Answer:
        channel = self._resolve(params.get("channel"))
        if channel is None:
            return _not_ok("channel_not_found")
        ts = params.get("ts")
        if not isinstance(ts, str) or (channel, ts) not in self._messages:
            return _not_ok("message_not_found")
        return _ok(channel=channel, ts=ts, text=params.get("text"))

    def _resolve(self, channel: object) -> str | None:
        """A channel id from an id, a name or a #name, as chat.postMessage accepts."""
        for cid, name in self.channels.items():
            if channel in (cid, name, f"#{name}"):
                return cid
        return None

    def _webhook(self, secret: str, params: Mapping[str, Any]) -> _Answer:
        if secret != self.webhook_secret:
            return _Answer(403, "invalid_token")
        if not params.get("text") and not params.get("blocks"):
            return _Answer(400, "no_text")
        return _Answer(200, "ok")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: SlackFake


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


def _params(handler: BaseHTTPRequestHandler) -> dict[str, Any]:
    """Query string plus a JSON or form body (slack-sdk sends JSON for chat.*, forms else)."""
    params: dict[str, Any] = dict(parse_qsl(urlsplit(handler.path).query))
    raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    if not raw:
        return params
    if (handler.headers.get("Content-Type") or "").startswith("application/json"):
        body = json.loads(raw)
        params.update(body if isinstance(body, dict) else {})
    else:
        params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    return params


def _fault_answer(fault: _Fault, webhook: bool) -> _Answer:
    headers = (("Retry-After", str(fault.retry_after)),) if fault.kind == "ratelimit" else ()
    if webhook:
        status = _WEBHOOK_STATUS.get(fault.error, 400) if fault.kind == "error" else fault.status
        return _Answer(status, fault.error, headers)
    return _Answer(fault.status, {"ok": False, "error": fault.error}, headers)


def _auth_test(params: Mapping[str, Any]) -> _Answer:
    return _ok(url="https://fake.slack.com/", team="Fake Team", user="budget-guard",
               team_id="T0FAKE", user_id="U0FAKE", bot_id="B0FAKE")


def _ok(**fields: Any) -> _Answer:
    return _Answer(200, {"ok": True, **fields})


def _not_ok(error: str) -> _Answer:
    return _Answer(200, {"ok": False, "error": error})


def _error_of(answer: _Answer) -> str | None:
    if isinstance(answer.body, dict):
        return None if answer.body.get("ok") else str(answer.body.get("error"))
    return None if answer.status == 200 else answer.body


def _respond(handler: BaseHTTPRequestHandler, answer: _Answer) -> None:
    if isinstance(answer.body, dict):
        payload, kind = json.dumps(answer.body).encode(), "application/json; charset=utf-8"
    else:
        payload, kind = answer.body.encode(), "text/html"
    handler.send_response(answer.status)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(payload)))
    for name, value in answer.headers:
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(payload)
