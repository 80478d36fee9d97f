"""guard.chain: reading the published chain, classifying errors, stepping down the chain."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import pytest

from guard.chain import (
    ModelChain,
    NoModelError,
    anthropic_client,
    async_anthropic_client,
    classify,
)

OPUS, SONNET, HAIKU = "claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5"
ENV_FILE = f"""\
ANTHROPIC_MODEL={SONNET}
GUARD_MODEL_CHAIN={SONNET},{HAIKU}
GUARD_TIER=sonnet
GUARD_LEVEL=1
GUARD_SOURCE=auto
GUARD_UPDATED_AT=2026-03-12T14:05:00Z
"""
ORG_CAP = "You have reached your specified API usage limits. You will regain access on 2026-04-01."
WORKSPACE_CAP = (
    "You have reached your specified workspace API usage limits. "
    "You will regain access on 2026-04-01."
)


def replace_file(path: Path, text: str) -> None:
    """Rewrite ``path`` the way the guard does (temp file, rename), with a later mtime."""
    old_mtime_ns = path.stat().st_mtime_ns if path.exists() else 0
    temp = path.with_suffix(".tmp")
    temp.write_text(text)
    os.replace(temp, path)
    later = max(path.stat().st_mtime_ns, old_mtime_ns + 1_000_000_000)
    os.utime(path, ns=(later, later))


# --- the library stays light ------------------------------------------------------------


def test_import_loads_only_the_standard_library() -> None:
    """Importing guard.chain pulls in no third-party module, so any application can use it."""
    probe = (
        "import sys; before = set(sys.modules); import guard.chain; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    loaded = {name.partition(".")[0] for name in done.stdout.split()}
    assert "guard" in loaded
    assert {"httpx", "pydantic", "anthropic", "rich", "sqlalchemy", "typer"}.isdisjoint(loaded)
    assert loaded - {"guard"} <= set(sys.stdlib_module_names)


# --- sources ----------------------------------------------------------------------------


def test_env_file_chain_is_read_in_order(tmp_path: Path) -> None:
    """The env file's GUARD_MODEL_CHAIN gives the models in order; the head is ``model``."""
    (tmp_path / "model.env").write_text(ENV_FILE)
    chain = ModelChain(env_file=tmp_path / "model.env")
    assert chain.models() == (SONNET, HAIKU)
    assert chain.model == SONNET


def test_env_file_without_chain_uses_the_single_model(tmp_path: Path) -> None:
    """An env file with only ANTHROPIC_MODEL is a chain of one."""
    (tmp_path / "model.env").write_text(f"ANTHROPIC_MODEL={HAIKU}\n")
    assert ModelChain(env_file=tmp_path / "model.env").models() == (HAIKU,)


def test_env_file_tolerates_comments_export_and_quotes(tmp_path: Path) -> None:
    """Blank lines and comments are skipped; ``export`` and quoted values read as in a shell."""
    text = f"# written by hand\n\nexport GUARD_MODEL_CHAIN=\"{OPUS}, {SONNET}\"\nX='y'\n"
    (tmp_path / "model.env").write_text(text)
    assert ModelChain(env_file=tmp_path / "model.env").models() == (OPUS, SONNET)


def test_variable_names_are_configurable(tmp_path: Path) -> None:
    """``model_var``/``chain_var`` name the variables to read; the default names are ignored."""
    (tmp_path / "model.env").write_text(f"ANTHROPIC_MODEL={OPUS}\nMY_MODEL={HAIKU}\n")
    chain = ModelChain(env_file=tmp_path / "model.env", model_var="MY_MODEL", chain_var="MY_CHAIN")
    assert chain.models() == (HAIKU,)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"tier": "sonnet", "model": SONNET, "chain": [SONNET, HAIKU], "level": 1},
         (SONNET, HAIKU)),
        ({"tier": "haiku", "model": HAIKU}, (HAIKU,)),
        ({"model": OPUS, "chain": f"{OPUS},{SONNET}"}, (OPUS, SONNET)),
    ],
    ids=["chain-list", "model-only", "chain-string"],
)
def test_state_file_is_read(tmp_path: Path, state: dict[str, Any], expected: tuple[str, ...]
                            ) -> None:
    """The state file's ``chain`` (list or comma string) is used, else its ``model``."""
    (tmp_path / "fallback.json").write_text(json.dumps(state))
    assert ModelChain(state_file=tmp_path / "fallback.json").models() == expected


def test_env_file_is_preferred_to_state_file(tmp_path: Path) -> None:
    """With both files given, the env file wins; the state file serves while it is missing."""
    env, state = tmp_path / "model.env", tmp_path / "fallback.json"
    state.write_text(json.dumps({"model": HAIKU, "chain": [HAIKU]}))
    chain = ModelChain(env_file=env, state_file=state)
    assert chain.models() == (HAIKU,)
    env.write_text(ENV_FILE)
    assert chain.models() == (SONNET, HAIKU)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"GUARD_MODEL_CHAIN": f"{OPUS},{SONNET},{HAIKU}", "ANTHROPIC_MODEL": OPUS},
         (OPUS, SONNET, HAIKU)),
        ({"ANTHROPIC_MODEL": SONNET}, (SONNET,)),
        ({"GUARD_MODEL_CHAIN": "", "ANTHROPIC_MODEL": SONNET}, (SONNET,)),
    ],
    ids=["chain", "model-only", "empty-chain"],
)
def test_environment_is_read_without_files(environ: dict[str, str],
                                           expected: tuple[str, ...]) -> None:
    """With no file given, GUARD_MODEL_CHAIN is read, else ANTHROPIC_MODEL alone."""
    assert ModelChain(environ=environ).models() == expected


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``environ=``, ``os.environ`` is read at each access, so changes show."""
    chain = ModelChain()
    monkeypatch.setenv("ANTHROPIC_MODEL", SONNET)
    assert chain.models() == (SONNET,)
    monkeypatch.setenv("GUARD_MODEL_CHAIN", f"{HAIKU}")
    assert chain.models() == (HAIKU,)


def test_default_serves_until_a_file_is_read(tmp_path: Path) -> None:
    """The caller's ``default`` is used while the file has never existed, not the environment."""
    chain = ModelChain(env_file=tmp_path / "model.env", default=(OPUS, HAIKU),
                       environ={"ANTHROPIC_MODEL": SONNET})
    assert chain.models() == (OPUS, HAIKU)
    (tmp_path / "model.env").write_text(ENV_FILE)
    assert chain.models() == (SONNET, HAIKU)


def test_nothing_named_and_no_default_raises(tmp_path: Path) -> None:
    """With no model anywhere, ``models()`` is empty and ``model``/``call`` say so."""
    chain = ModelChain(env_file=tmp_path / "absent.env")
    assert chain.models() == ()
    with pytest.raises(NoModelError):
        _ = chain.model
    with pytest.raises(NoModelError):
        chain.call(lambda model: model)


# --- following the guard ----------------------------------------------------------------


def test_atomic_rewrite_is_followed(tmp_path: Path) -> None:
    """A long-lived chain sees the guard's next atomic rewrite without a restart."""
    path = tmp_path / "model.env"
    replace_file(path, ENV_FILE)
    chain = ModelChain(env_file=path)
    assert chain.model == SONNET
    replace_file(path, f"ANTHROPIC_MODEL={HAIKU}\nGUARD_MODEL_CHAIN={HAIKU}\n")
    assert chain.models() == (HAIKU,)


def test_in_place_rewrite_of_same_size_is_seen_by_mtime(tmp_path: Path) -> None:
    """An in-place edit of equal size is noticed through its new mtime."""
    path = tmp_path / "model.env"
    path.write_text(f"ANTHROPIC_MODEL={OPUS}\n")
    chain = ModelChain(env_file=path)
    assert chain.model == OPUS
    mtime_ns = path.stat().st_mtime_ns
    path.write_text(f"ANTHROPIC_MODEL={OPUS[:-1]}5\n")
    os.utime(path, ns=(mtime_ns + 1_000_000_000,) * 2)
    assert chain.model == OPUS[:-1] + "5"


def test_unchanged_file_is_not_reread(tmp_path: Path) -> None:
    """While inode, mtime and size stay put, the cached chain is served (a stat per access)."""
    path = tmp_path / "model.env"
    path.write_text(f"ANTHROPIC_MODEL={OPUS}\n")
    chain = ModelChain(env_file=path)
    assert chain.model == OPUS
    stat = path.stat()
    path.write_text(f"ANTHROPIC_MODEL={OPUS[:-1]}5\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert chain.model == OPUS


@pytest.mark.parametrize(
    "garbage",
    [
        "ANTHROPIC_MODEL=claude-haiku-4-5\nGUARD_MODEL_CH",
        "GUARD_MODEL_CHAIN=claude-haiku-4-5,,claude-opus-4-6\n",
        "ANTHROPIC_MODEL=claude haiku\n",
        "GUARD_TIER=haiku\n",
        "",
        "\x00\x01\x02",
    ],
    ids=["truncated-line", "empty-item", "bad-characters", "no-model", "empty", "binary"],
)
def test_garbage_env_file_keeps_last_good_chain(tmp_path: Path, garbage: str) -> None:
    """A partial or malformed env file leaves the last good chain in force."""
    path = tmp_path / "model.env"
    replace_file(path, ENV_FILE)
    chain = ModelChain(env_file=path, default=(OPUS,))
    assert chain.models() == (SONNET, HAIKU)
    replace_file(path, garbage)
    assert chain.models() == (SONNET, HAIKU)


@pytest.mark.parametrize(
    "garbage",
    ['{"tier": "haiku", "model": "claude-ha', "[]", '{"chain": [1, 2]}', '{"tier": "haiku"}'],
    ids=["truncated-json", "not-an-object", "non-string-models", "no-model"],
)
def test_garbage_state_file_keeps_last_good_chain(tmp_path: Path, garbage: str) -> None:
    """A partial or malformed state file leaves the last good chain in force."""
    path = tmp_path / "fallback.json"
    replace_file(path, json.dumps({"model": SONNET, "chain": [SONNET, HAIKU]}))
    chain = ModelChain(state_file=path)
    assert chain.models() == (SONNET, HAIKU)
    replace_file(path, garbage)
    assert chain.models() == (SONNET, HAIKU)


def test_vanished_file_keeps_last_good_chain_and_recovers(tmp_path: Path) -> None:
    """A deleted file keeps the last chain; garbage is not remembered, so a fix is picked up."""
    path = tmp_path / "model.env"
    replace_file(path, ENV_FILE)
    chain = ModelChain(env_file=path, default=(OPUS,))
    assert chain.models() == (SONNET, HAIKU)
    path.unlink()
    assert chain.models() == (SONNET, HAIKU)
    replace_file(path, "garbage")
    assert chain.models() == (SONNET, HAIKU)
    replace_file(path, f"ANTHROPIC_MODEL={HAIKU}\n")
    assert chain.models() == (HAIKU,)


# --- classify -----------------------------------------------------------------------------


@dataclass
class FakeResponse:
    """Shaped like ``httpx.Response``: status, headers, a JSON body."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    payload: object = None

    def json(self) -> object:
        if self.payload is None:
            raise ValueError("not JSON")
        return self.payload


class FakeSDKError(Exception):
    """Shaped like ``anthropic.APIStatusError``; ``error_code`` only as newer SDKs have it."""

    def __init__(self, status: int, error_type: str, message: str, *,
                 headers: dict[str, str] | None = None, code: str | None = None,
                 with_error_code_attribute: bool = True) -> None:
        error: dict[str, Any] = {"type": error_type, "message": message}
        if code is not None:
            error["details"] = {"error_code": code}
        self.body = {"type": "error", "error": error, "request_id": "req_1"}
        self.message = f"Error code: {status} - {self.body}"
        super().__init__(self.message)
        self.status_code = status
        self.response = FakeResponse(status, headers or {})
        if with_error_code_attribute:
            self.error_code = code


class FakeHTTPStatusError(Exception):
    """Shaped like ``httpx.HTTPStatusError``: only ``.response`` carries the facts."""

    def __init__(self, response: FakeResponse) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def envelope(error_type: str, message: str, code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if code:
        error["details"] = {"error_code": code}
    return {"type": "error", "error": error}


CAP = "enforced_spend_limit_reached"
CLASSIFY_TABLE = [
    ("overloaded-529", FakeSDKError(529, "overloaded_error", "Overloaded"), "step_down"),
    ("rate-limit-retry-after",
     FakeSDKError(429, "rate_limit_error", "slow down", headers={"retry-after": "1"}),
     "step_down"),
    ("rate-limit-retry-after-ms",
     FakeSDKError(429, "rate_limit_error", "slow down", headers={"retry-after-ms": "800"}),
     "step_down"),
    ("rate-limit-header-case",
     FakeSDKError(429, "rate_limit_error", "slow down", headers={"Retry-After": "3"}),
     "step_down"),
    ("overloaded-mid-stream-200", FakeSDKError(200, "overloaded_error", "Overloaded"),
     "step_down"),
    ("tier-cap-429", FakeSDKError(429, "rate_limit_error", "You have reached your API usage "
                                  "limits", code=CAP), "spend_cap"),
    ("tier-cap-old-sdk", FakeSDKError(429, "rate_limit_error", "capped", code=CAP,
                                      with_error_code_attribute=False), "spend_cap"),
    ("429-no-retry-after-no-code", FakeSDKError(429, "rate_limit_error", "capped"), "spend_cap"),
    ("cap-code-beats-retry-after",
     FakeSDKError(429, "rate_limit_error", "capped", headers={"retry-after": "60"}, code=CAP),
     "spend_cap"),
    ("contract-cap", FakeSDKError(429, "rate_limit_error", "contract",
                                  code="contract_spend_limit_reached"), "spend_cap"),
    ("contract-cap-with-retry-after",
     FakeSDKError(429, "rate_limit_error", "contract", headers={"retry-after": "30"},
                  code="contract_spend_limit_reached"), "spend_cap"),
    ("linked-org-cap-402", FakeSDKError(402, "billing_error", "linked org capped",
                                        code="linked_organization_spend_limit_reached"),
     "spend_cap"),
    ("linked-org-cap-429-retry-after",
     FakeSDKError(429, "rate_limit_error", "linked org capped", headers={"retry-after": "60"},
                  code="linked_organization_spend_limit_reached"), "spend_cap"),
    ("linked-org-billing-402", FakeSDKError(402, "billing_error", "cannot bill",
                                            code="linked_organization_billing_unavailable"),
     "spend_cap"),
    ("linked-org-other-code-402", FakeSDKError(402, "billing_error", "new reason",
                                               code="linked_organization_suspended"),
     "spend_cap"),
    ("claude-code-workspace-cap-429",
     FakeSDKError(429, "rate_limit_error", WORKSPACE_CAP, headers={"retry-after": "3600"}),
     "spend_cap"),
    ("429-spend-limit-words",
     FakeSDKError(429, "rate_limit_error", "Workspace spend limit reached",
                  headers={"retry-after": "60"}), "spend_cap"),
    ("ramp-limit-retry-after",
     FakeSDKError(429, "rate_limit_error", "ramp", headers={"retry-after": "5"},
                  code="ramp_limit_exceeded"), "step_down"),
    ("ramp-limit-no-retry-after",
     FakeSDKError(429, "rate_limit_error", "ramp", code="ramp_limit_exceeded"), "step_down"),
    ("payment-402", FakeSDKError(402, "billing_error", "card declined"), "other"),
    ("org-limit-400", FakeSDKError(400, "invalid_request_error", ORG_CAP), "spend_cap"),
    ("workspace-limit-400", FakeSDKError(400, "invalid_request_error", WORKSPACE_CAP),
     "spend_cap"),
    ("bad-request-400", FakeSDKError(400, "invalid_request_error", "max_tokens: required"),
     "other"),
    ("server-error-500", FakeSDKError(500, "api_error", "Internal error"), "other"),
    ("auth-401", FakeSDKError(401, "authentication_error", "invalid x-api-key"), "other"),
    ("httpx-529", FakeHTTPStatusError(FakeResponse(529)), "step_down"),
    ("httpx-429-retry-after",
     FakeHTTPStatusError(FakeResponse(429, {"retry-after": "2"})), "step_down"),
    ("httpx-429-cap-body",
     FakeHTTPStatusError(FakeResponse(429, {}, envelope("rate_limit_error", "x", CAP))),
     "spend_cap"),
    ("httpx-400-cap-body",
     FakeHTTPStatusError(FakeResponse(400, {}, envelope("invalid_request_error", ORG_CAP))),
     "spend_cap"),
    ("httpx-503", FakeHTTPStatusError(FakeResponse(503)), "other"),
    ("plain-exception", ValueError("boom"), "other"),
    ("timeout", TimeoutError("read timed out"), "other"),
]


@pytest.mark.parametrize(
    ("exc", "verdict"), [(exc, verdict) for _, exc, verdict in CLASSIFY_TABLE],
    ids=[name for name, _, _ in CLASSIFY_TABLE],
)
def test_classify(exc: BaseException, verdict: str) -> None:
    """Each error shape gets the verdict of the table in ``classify``'s docstring."""
    assert classify(exc) == verdict


# --- call / acall with fakes --------------------------------------------------------------


class Scripted:
    """A callable that raises or returns per model and records the models it was called with."""

    def __init__(self, outcomes: dict[str, BaseException | str]) -> None:
        self.outcomes = outcomes
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, model: str, *args: Any, **kwargs: Any) -> str:
        self.calls.append((model, args, kwargs))
        outcome = self.outcomes[model]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def coroutine(self, model: str, *args: Any, **kwargs: Any) -> str:
        return self(model, *args, **kwargs)

    @property
    def models(self) -> list[str]:
        return [model for model, _, _ in self.calls]


THREE = {"GUARD_MODEL_CHAIN": f"{OPUS},{SONNET},{HAIKU}"}


def test_call_steps_down_on_busy_models() -> None:
    """Overloaded and rate-limited models are skipped; arguments reach every attempt."""
    busy = FakeSDKError(529, "overloaded_error", "Overloaded")
    limited = FakeSDKError(429, "rate_limit_error", "slow", headers={"retry-after": "1"})
    fn = Scripted({OPUS: busy, SONNET: limited, HAIKU: "ok"})
    steps: list[tuple[str, str, Exception]] = []
    chain = ModelChain(environ=THREE, on_step_down=lambda *step: steps.append(step))
    assert chain.call(fn, "prompt", max_tokens=5) == "ok"
    assert fn.calls == [(m, ("prompt",), {"max_tokens": 5}) for m in (OPUS, SONNET, HAIKU)]
    assert steps == [(OPUS, SONNET, busy), (SONNET, HAIKU, limited)]


@pytest.mark.parametrize(
    "error",
    [FakeSDKError(429, "rate_limit_error", "capped", code=CAP),
     FakeSDKError(400, "invalid_request_error", ORG_CAP),
     FakeSDKError(500, "api_error", "Internal error"),
     ValueError("bug in fn")],
    ids=["tier-cap", "org-limit", "server-error", "bug"],
)
def test_call_raises_without_stepping_down(error: Exception) -> None:
    """A spend cap (or any non-busy error) is raised at once; cheaper models are not tried."""
    fn = Scripted({OPUS: error, SONNET: "ok", HAIKU: "ok"})
    with pytest.raises(type(error)) as raised:
        ModelChain(environ=THREE).call(fn)
    assert raised.value is error
    assert fn.models == [OPUS]


def test_call_raises_last_error_when_all_are_busy() -> None:
    """When every model is busy, the last model's error is raised."""
    errors = {m: FakeSDKError(529, "overloaded_error", m) for m in (OPUS, SONNET, HAIKU)}
    fn = Scripted(dict(errors))
    with pytest.raises(FakeSDKError) as raised:
        ModelChain(environ=THREE).call(fn)
    assert raised.value is errors[HAIKU]
    assert fn.models == [OPUS, SONNET, HAIKU]


def test_step_down_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Each step down is logged on ``guard.chain`` with the status and error type."""
    fn = Scripted({OPUS: FakeSDKError(529, "overloaded_error", "x"), SONNET: "ok"})
    with caplog.at_level(logging.INFO, logger="guard.chain"):
        ModelChain(environ={"GUARD_MODEL_CHAIN": f"{OPUS},{SONNET}"}).call(fn)
    assert caplog.messages == [f"{OPUS} is busy (HTTP 529 overloaded_error); "
                               f"stepping down to {SONNET}"]


def test_acall_steps_down_and_stops_at_spend_cap() -> None:
    """``acall`` awaits each model in turn, with the same rules as ``call``."""
    busy = FakeSDKError(529, "overloaded_error", "Overloaded")
    capped = FakeSDKError(429, "rate_limit_error", "capped", code=CAP)
    fn = Scripted({OPUS: busy, SONNET: capped, HAIKU: "ok"})
    with pytest.raises(FakeSDKError) as raised:
        asyncio.run(ModelChain(environ=THREE).acall(fn.coroutine, "prompt"))
    assert raised.value is capped
    assert fn.models == [OPUS, SONNET]


# --- loopback: the real anthropic SDK against a fake Messages API -------------------------


@dataclass
class Answer:
    """One canned reply of the fake API: a message, an error envelope, or an event stream."""

    status: int
    error_type: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    code: str | None = None
    events: list[dict[str, Any]] | None = None

    def body(self, model: str) -> dict[str, Any]:
        if self.status == 200:
            return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": f"hello from {model}"}],
                    "stop_reason": "end_turn", "stop_sequence": None,
                    "usage": {"input_tokens": 3, "output_tokens": 4}}
        return {**envelope(self.error_type, self.message, self.code), "request_id": "req_1"}


OK = Answer(200)
OVERLOADED = Answer(529, "overloaded_error", "Overloaded")
RATE_LIMITED = Answer(429, "rate_limit_error", "Rate limited", {"retry-after": "1"})
TIER_CAP = Answer(429, "rate_limit_error", "You have reached your API usage limits.", code=CAP)
STREAM_START = {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "model": OPUS, "content": [],
    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 0}}}
OVERLOADED_MID_STREAM = Answer(200, events=[
    STREAM_START,
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}])
STREAMED_OK = Answer(200, events=[
    STREAM_START,
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
    {"type": "message_stop"}])


class FakeMessagesAPI:
    """POST /v1/messages answered per model from ``answers``; requested models recorded."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.models: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["content-length"])))
                api.models.append(request["model"])
                answer = api.answers[request["model"]]
                if answer.events is not None:
                    self.stream(answer.events)
                    return
                payload = json.dumps(answer.body(request["model"])).encode()
                self.send_response(answer.status)
                for name, value in {"content-type": "application/json",
                                    "x-should-retry": "false", **answer.headers}.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def stream(self, events: list[dict[str, Any]]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for event in events:
                    self.wfile.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
                                     .encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def fake_messages_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesAPI]:
    """A fake Messages API serving on loopback; proxies are switched off so requests stay
    local."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    fake = FakeMessagesAPI()
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join()


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesAPI]:
    """A fake Messages API on loopback."""
    with fake_messages_api(monkeypatch) as fake:
        yield fake


def ask(client: anthropic.Anthropic, model: str) -> str:
    """What an application's ``fn`` looks like: one Messages call with the given model."""
    reply = client.messages.create(model=model, max_tokens=16,
                                   messages=[{"role": "user", "content": "hi"}])
    block = reply.content[0]
    assert block.type == "text"
    return block.text


def run_chain(api: FakeMessagesAPI, **answers: Answer) -> tuple[str, list[Exception]]:
    """Call through a three-model chain with the real SDK; return the text and step-downs."""
    api.answers = answers
    steps: list[Exception] = []
    chain = ModelChain(environ=THREE, on_step_down=lambda _m, _n, exc: steps.append(exc))
    with anthropic.Anthropic(api_key="test", base_url=api.url, max_retries=0) as client:
        return chain.call(lambda model: ask(client, model)), steps


def test_sdk_steps_down_on_529_and_429_with_retry_after(api: FakeMessagesAPI) -> None:
    """With the real SDK: opus 529 and sonnet 429+retry-after step down; haiku answers."""
    text, steps = run_chain(api, **{OPUS: OVERLOADED, SONNET: RATE_LIMITED, HAIKU: OK})
    assert text == f"hello from {HAIKU}"
    assert api.models == [OPUS, SONNET, HAIKU]
    assert all(isinstance(exc, anthropic.APIStatusError) for exc in steps)
    assert [getattr(exc, "status_code", None) for exc in steps] == [529, 429]


@pytest.mark.parametrize(
    ("answer", "sdk_error"),
    [(TIER_CAP, anthropic.RateLimitError),
     (Answer(400, "invalid_request_error", ORG_CAP), anthropic.BadRequestError),
     (Answer(400, "invalid_request_error", WORKSPACE_CAP), anthropic.BadRequestError)],
    ids=["429-enforced-spend-limit", "400-org-limit", "400-workspace-limit"],
)
def test_sdk_spend_cap_is_raised_without_stepping_down(
    api: FakeMessagesAPI, answer: Answer, sdk_error: type[Exception]
) -> None:
    """With the real SDK: a spend cap on opus is raised; sonnet and haiku are never called."""
    with pytest.raises(sdk_error) as raised:
        run_chain(api, **{OPUS: answer, SONNET: OK, HAIKU: OK})
    assert classify(raised.value) == "spend_cap"
    assert api.models == [OPUS]


def test_sdk_all_busy_raises_the_last_models_error(api: FakeMessagesAPI) -> None:
    """With the real SDK: when all three are overloaded, haiku's 529 is what the caller sees."""
    with pytest.raises(anthropic.APIStatusError) as raised:
        run_chain(api, **{OPUS: OVERLOADED, SONNET: RATE_LIMITED, HAIKU: OVERLOADED})
    assert raised.value.status_code == 529
    assert api.models == [OPUS, SONNET, HAIKU]


def test_sdk_async_client_steps_down_with_acall(api: FakeMessagesAPI) -> None:
    """With the real async SDK: ``acall`` steps past an overloaded opus to sonnet."""
    api.answers = {OPUS: OVERLOADED, SONNET: OK, HAIKU: OK}

    async def main() -> str:
        async with anthropic.AsyncAnthropic(api_key="test", base_url=api.url,
                                            max_retries=0) as client:
            async def ask_async(model: str) -> str:
                reply = await client.messages.create(
                    model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
                block = reply.content[0]
                assert block.type == "text"
                return block.text

            return await ModelChain(environ=THREE).acall(ask_async)

    assert asyncio.run(main()) == f"hello from {SONNET}"
    assert api.models == [OPUS, SONNET]


def test_sdk_overload_reported_mid_stream_steps_down(api: FakeMessagesAPI) -> None:
    """With the real SDK: an overloaded_error event on opus's 200 stream steps down to sonnet."""
    api.answers = {OPUS: OVERLOADED_MID_STREAM, SONNET: STREAMED_OK, HAIKU: STREAMED_OK}

    def ask_streaming(client: anthropic.Anthropic, model: str) -> str:
        stream = client.messages.create(model=model, max_tokens=16, stream=True,
                                        messages=[{"role": "user", "content": "hi"}])
        return "".join(event.delta.text for event in stream
                       if event.type == "content_block_delta" and event.delta.type == "text_delta")

    steps: list[Exception] = []
    chain = ModelChain(environ=THREE, on_step_down=lambda _m, _n, exc: steps.append(exc))
    with anthropic.Anthropic(api_key="test", base_url=api.url, max_retries=0) as client:
        assert chain.call(lambda model: ask_streaming(client, model)) == "hi"
    assert api.models == [OPUS, SONNET]
    assert [getattr(exc, "status_code", None) for exc in steps] == [200]


# --- the classification with the real SDK's exception classes -------------------------------

LINKED_CAP = "linked_organization_spend_limit_reached"
SDK_TABLE = [
    ("529-overloaded", OVERLOADED, "OverloadedError", "step_down"),
    ("429-retry-after", RATE_LIMITED, "RateLimitError", "step_down"),
    ("429-ramp-limit", Answer(429, "rate_limit_error", "Would exceed a ramp limit",
                              {"retry-after": "5"}, code="ramp_limit_exceeded"),
     "RampLimitExceededError", "step_down"),
    ("429-enforced-spend-limit", TIER_CAP, "EnforcedSpendLimitReachedError", "spend_cap"),
    ("429-contract-spend-limit", Answer(429, "rate_limit_error", "Contract spend limit",
                                        code="contract_spend_limit_reached"),
     "ContractSpendLimitReachedError", "spend_cap"),
    ("429-linked-org-spend-limit-retry-after",
     Answer(429, "rate_limit_error", "The linked organization has reached a spend limit",
            {"retry-after": "60"}, code=LINKED_CAP), "RateLimitError", "spend_cap"),
    ("402-linked-org-spend-limit",
     Answer(402, "billing_error", "The linked organization has reached a spend limit",
            code=LINKED_CAP), "LinkedOrganizationSpendLimitReachedError", "spend_cap"),
    ("402-linked-org-billing-unavailable",
     Answer(402, "billing_error", "Anthropic cannot bill the linked organization",
            code="linked_organization_billing_unavailable"),
     "LinkedOrganizationBillingUnavailableError", "spend_cap"),
    ("429-claude-code-workspace-cap",
     Answer(429, "rate_limit_error", WORKSPACE_CAP, {"retry-after": "3600"}),
     "RateLimitError", "spend_cap"),
    ("400-org-usage-limits", Answer(400, "invalid_request_error", ORG_CAP),
     "BadRequestError", "spend_cap"),
    ("400-workspace-usage-limits", Answer(400, "invalid_request_error", WORKSPACE_CAP),
     "BadRequestError", "spend_cap"),
    ("402-payment", Answer(402, "billing_error", "Your credit balance is too low"),
     "PaymentRequiredError", "other"),
    ("400-bad-request", Answer(400, "invalid_request_error", "max_tokens: Field required"),
     "BadRequestError", "other"),
    ("500-api-error", Answer(500, "api_error", "Internal server error"),
     "InternalServerError", "other"),
]


@pytest.mark.parametrize(("answer", "sdk_class", "verdict"),
                         [(a, c, v) for _, a, c, v in SDK_TABLE],
                         ids=[name for name, _, _, _ in SDK_TABLE])
def test_sdk_error_classes_get_their_verdict(api: FakeMessagesAPI, answer: Answer,
                                            sdk_class: str, verdict: str) -> None:
    """Each real error shape, raised by the real SDK as its own exception class, gets its
    verdict: a step-down reaches sonnet, a spend cap or another error stops at opus."""
    api.answers = {OPUS: answer, SONNET: OK, HAIKU: OK}
    seen: list[BaseException] = []
    chain = ModelChain(environ=THREE, on_step_down=lambda _m, _n, exc: seen.append(exc))
    with anthropic_client(api_key="test", base_url=api.url) as client:
        try:
            text = chain.call(lambda model: ask(client, model))
        except anthropic.APIStatusError as exc:
            seen.append(exc)
            text = None
    assert type(seen[0]) is getattr(anthropic, sdk_class)
    assert classify(seen[0]) == verdict
    if verdict == "step_down":
        assert (text, api.models) == (f"hello from {SONNET}", [OPUS, SONNET])
    else:
        assert (text, api.models) == (None, [OPUS])


def test_helper_client_leaves_the_wait_to_the_chain(api: FakeMessagesAPI) -> None:
    """The helper's client sends one request per model even when the server invites retries
    (``x-should-retry: true``, ``retry-after: 60``): the chain steps down at once instead of
    after the SDK's two full waits. An explicit ``max_retries`` is kept."""
    api.answers = {OPUS: Answer(429, "rate_limit_error", "slow down",
                                {"retry-after": "60", "x-should-retry": "true"}),
                   SONNET: OK, HAIKU: OK}
    with anthropic_client(api_key="test", base_url=api.url) as client:
        assert client.max_retries == 0
        assert ModelChain(environ=THREE).call(lambda m: ask(client, m)) == f"hello from {SONNET}"
    assert api.models == [OPUS, SONNET]
    with anthropic_client(api_key="test", base_url=api.url, max_retries=1) as kept:
        assert kept.max_retries == 1
    aclient = async_anthropic_client(api_key="test", base_url=api.url)
    assert aclient.max_retries == 0
    asyncio.run(aclient.close())
