"""The application-side library: which model to call now, and stepping down when it is busy.

budget-guard writes the fallback chain to an env file and a JSON state file (DESIGN §5).
Applications read it through ``ModelChain`` and call the API through ``ModelChain.call``::

    chain = ModelChain(env_file="/run/budget-guard/model.env", default=("claude-sonnet-5-5",))
    reply = chain.call(lambda model: client.messages.create(model=model, ...))

``call`` tries the first model of the chain and steps down to the next one only when the
error says *this model is busy right now* (529, a 429 with ``retry-after``, a ramp limit).
A spend cap is raised at once, whatever its status and headers: no cheaper model fixes it.
``classify`` holds the table.

Build the client with ``anthropic_client()`` (or pass ``max_retries=0`` yourself): a default
SDK client sleeps each ``retry-after`` in full, twice, before the chain sees the error::

    client = anthropic_client()
    reply = chain.call(lambda model: client.messages.create(model=model, ...))

The module imports nothing but the standard library (applications pay for what they use),
and it recognises the ``anthropic`` SDK's exceptions, httpx's ``HTTPStatusError`` and
look-alikes by their attributes, never by importing them.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar

if TYPE_CHECKING:
    import anthropic

__all__ = ["ModelChain", "NoModelError", "Verdict", "anthropic_client", "async_anthropic_client",
           "classify"]

Verdict = Literal["step_down", "spend_cap", "other"]
Models = tuple[str, ...]
P = ParamSpec("P")
T = TypeVar("T")

_log = logging.getLogger(__name__)
_MODEL_ID = re.compile(r"[A-Za-z0-9_.:/@+-]+")  # the env file's value alphabet (DESIGN §5)
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Spend caps: no cheaper model gets past them (reference §5, §9; the SDK 2.16.0 classes
# EnforcedSpendLimitReachedError, ContractSpendLimitReachedError,
# LinkedOrganizationSpendLimitReachedError, LinkedOrganizationBillingUnavailableError)
_SPEND_CAP_CODES = frozenset({"enforced_spend_limit_reached", "contract_spend_limit_reached",
                              "linked_organization_spend_limit_reached",
                              "linked_organization_billing_unavailable"})
_SPEND_CAP_CODE_PREFIX = "linked_organization_"  # the linked organization stops every model
# a self-set organization or workspace limit: a 400, or for the Claude Code workspace a 429
# that carries retry-after ("You have reached your specified [workspace] API usage limits")
_SPEND_CAP_PREFIX = "You have reached your specified"
_SPEND_CAP_WORDS = ("usage limit", "spend limit")
# throttling that names its code: a cheaper model's traffic may pass (RampLimitExceededError)
_THROTTLE_CODES = frozenset({"ramp_limit_exceeded"})


class NoModelError(LookupError):
    """No source named a model and the caller gave no ``default``."""


# --- reading the chain ------------------------------------------------------------------


def _split_chain(raw: object) -> Models:
    """Model ids from a comma-separated string or a list of strings; () if malformed."""
    items: object = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        return ()
    models = [item.strip() if isinstance(item, str) else "" for item in items]
    if not models or not all(_MODEL_ID.fullmatch(m) for m in models):
        return ()
    return tuple(dict.fromkeys(models))


def _chain_from_variables(values: Mapping[str, str], model_var: str, chain_var: str) -> Models:
    """The chain named by ``chain_var``, else the single model in ``model_var``, else ()."""
    return _split_chain(values.get(chain_var) or values.get(model_var))


def _env_assignments(text: str) -> dict[str, str] | None:
    """``KEY=VALUE`` lines (``export`` and quotes tolerated); ``None`` on any other line."""
    values: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.removeprefix("export ").partition("=")
        if not equals or not _ENV_KEY.fullmatch(key.strip()):
            return None
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _parse_env_file(text: str, *, model_var: str, chain_var: str) -> Models:
    values = _env_assignments(text)
    return _chain_from_variables(values, model_var, chain_var) if values else ()


def _parse_state_file(text: str) -> Models:
    """``chain`` (list or comma string) of the state-file JSON, else its ``model``."""
    try:
        state = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(state, dict):
        return ()
    return _split_chain(state.get("chain") or state.get("model"))


@dataclass(slots=True)
class _WatchedFile:
    """A file re-parsed whenever its (inode, mtime_ns, size) changes; keeps the last good chain."""

    path: str
    parse: Callable[[str], Models]
    signature: tuple[int, int, int] | None = None
    good: Models = ()

    def current(self) -> Models:
        try:
            stat = os.stat(self.path)
        except OSError:
            return self.good
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if signature != self.signature:
            models = self._read()
            if models:  # a garbage or partial file is re-read next time, not remembered
                self.good, self.signature = models, signature
        return self.good

    def _read(self) -> Models:
        try:
            with open(self.path, encoding="utf-8") as handle:
                return self.parse(handle.read())
        except (OSError, UnicodeDecodeError):
            return ()


class ModelChain:
    """The fallback chain the guard publishes, re-read whenever its file changes.

    Sources: ``env_file`` (``KEY=VALUE`` lines: ``GUARD_MODEL_CHAIN``, else
    ``ANTHROPIC_MODEL``) and then ``state_file`` (JSON: ``chain``, else ``model``), when
    given; with neither, the environment (``environ``, default ``os.environ``, same
    variables). A missing, unreadable or partial file keeps its last good chain; ``default``
    is used while no source has ever named a model. To fall back on the process environment
    instead, pass ``default=ModelChain().models()``.

    ``on_step_down(model, next_model, exc)`` is called before each step down; step-downs are
    also logged at INFO on the ``guard.chain`` logger. Safe to share between threads.
    """

    def __init__(
        self,
        *,
        env_file: str | os.PathLike[str] | None = None,
        state_file: str | os.PathLike[str] | None = None,
        default: Iterable[str] = (),
        environ: Mapping[str, str] | None = None,
        model_var: str = "ANTHROPIC_MODEL",
        chain_var: str = "GUARD_MODEL_CHAIN",
        on_step_down: Callable[[str, str, Exception], object] | None = None,
    ) -> None:
        self._files: list[_WatchedFile] = []
        if env_file is not None:
            parse_env = functools.partial(_parse_env_file, model_var=model_var,
                                          chain_var=chain_var)
            self._files.append(_WatchedFile(os.fspath(env_file), parse_env))
        if state_file is not None:
            self._files.append(_WatchedFile(os.fspath(state_file), _parse_state_file))
        self._environ = environ
        self._variables = (model_var, chain_var)
        self._default = tuple(default)
        self._on_step_down = on_step_down
        self._lock = threading.Lock()

    def models(self) -> Models:
        """The models to try, best first; empty if no source and no default names one."""
        if not self._files:
            environ = os.environ if self._environ is None else self._environ
            return _chain_from_variables(environ, *self._variables) or self._default
        with self._lock:
            for watched in self._files:
                if models := watched.current():
                    return models
        return self._default

    @property
    def model(self) -> str:
        """The model to use now (the head of the chain); ``NoModelError`` if there is none."""
        return self._require_models()[0]

    def call(self, fn: Callable[Concatenate[str, P], T], /, *args: P.args,
             **kwargs: P.kwargs) -> T:
        """Return ``fn(model, *args, **kwargs)`` for the first model that is not busy.

        Steps down the chain when ``classify`` says ``"step_down"``; any other error is
        raised at once. If every model is busy, the last model's error is raised.
        """
        models = self._require_models()
        for model, next_model in itertools.pairwise(models):
            try:
                return fn(model, *args, **kwargs)
            except Exception as exc:
                if classify(exc) != "step_down":
                    raise
                self._stepped_down(model, next_model, exc)
        return fn(models[-1], *args, **kwargs)

    async def acall(self, fn: Callable[Concatenate[str, P], Awaitable[T]], /, *args: P.args,
                    **kwargs: P.kwargs) -> T:
        """``call`` for coroutine functions: awaits ``fn(model, *args, **kwargs)``."""
        models = self._require_models()
        for model, next_model in itertools.pairwise(models):
            try:
                return await fn(model, *args, **kwargs)
            except Exception as exc:
                if classify(exc) != "step_down":
                    raise
                self._stepped_down(model, next_model, exc)
        return await fn(models[-1], *args, **kwargs)

    def _require_models(self) -> Models:
        models = self.models()
        if not models:
            raise NoModelError("no model: the fallback source names none and no default was given")
        return models

    def _stepped_down(self, model: str, next_model: str, exc: Exception) -> None:
        _log.info("%s is busy (%s); stepping down to %s", model, _describe(exc), next_model)
        if self._on_step_down is not None:
            self._on_step_down(model, next_model, exc)


# --- clients that let the chain decide --------------------------------------------------


def anthropic_client(**options: Any) -> anthropic.Anthropic:
    """An ``anthropic.Anthropic`` client for ``ModelChain.call`` (``options`` as the SDK
    takes them), with ``max_retries=0`` unless given.

    A default SDK client retries a 429 or 529 twice and sleeps the whole ``retry-after``
    before each retry, with no cap: with ``retry-after: 60`` the chain would only step down
    after about two minutes. With no SDK retries the error reaches the chain at once, and
    the chain itself never sleeps: it steps down, or raises.
    """
    import anthropic  # noqa: PLC0415  (applications that use the helper have the SDK)

    options.setdefault("max_retries", 0)
    return anthropic.Anthropic(**options)


def async_anthropic_client(**options: Any) -> anthropic.AsyncAnthropic:
    """``anthropic_client`` for ``ModelChain.acall``: an ``anthropic.AsyncAnthropic``."""
    import anthropic  # noqa: PLC0415

    options.setdefault("max_retries", 0)
    return anthropic.AsyncAnthropic(**options)


# --- classifying errors -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ErrorFacts:
    """What an API error says, read off whatever exception carried it."""

    status: int | None
    retry_after: bool
    error_type: str | None
    error_code: str | None
    message: str


def classify(exc: BaseException) -> Verdict:
    """Say whether a cheaper model could succeed where this error's model failed.

    ==========================================================  =========
    the error (rows tried top to bottom)                        verdict
    ==========================================================  =========
    ``error_code`` enforced_spend_limit_reached,                spend_cap
    contract_spend_limit_reached or any linked_organization_*
    (402 or 429), with or without ``retry-after``
    ``error.message`` starting "You have reached your           spend_cap
    specified" (an organization or workspace limit: a 400, or
    the Claude Code workspace's 429 with ``retry-after``)
    429 whose message names a usage or spend limit              spend_cap
    ``error_code`` ramp_limit_exceeded (throttling)             step_down
    429 with neither ``retry-after`` nor ``retry-after-ms``     spend_cap
    429 with ``retry-after`` or ``retry-after-ms``              step_down
    529, or ``error.type`` overloaded_error on any status       step_down
    (an overload reported mid-stream arrives on the 200)
    anything else: other statuses, timeouts, connection errors  other
    ==========================================================  =========

    Facts are read by duck typing: ``status_code`` (or
    ``response.status_code``), ``response.headers``, the error envelope in ``body`` (or
    ``response.json()``), and the SDK's ``error_code`` / ``api_message`` / ``message``.
    """
    return _verdict(_facts(exc))


def _verdict(facts: _ErrorFacts) -> Verdict:
    if _spend_cap(facts):
        return "spend_cap"
    if facts.error_code in _THROTTLE_CODES:
        return "step_down"
    if facts.status == 429:
        return "step_down" if facts.retry_after else "spend_cap"
    if facts.status == 529 or facts.error_type == "overloaded_error":
        return "step_down"
    return "other"


def _spend_cap(facts: _ErrorFacts) -> bool:
    """The spend-cap rows of ``classify``'s table: by code, else by what the message says."""
    code = facts.error_code or ""
    if code in _SPEND_CAP_CODES or code.startswith(_SPEND_CAP_CODE_PREFIX):
        return True
    if facts.status in (400, 429) and facts.message.startswith(_SPEND_CAP_PREFIX):
        return True
    return facts.status == 429 and any(w in facts.message.lower() for w in _SPEND_CAP_WORDS)


def _facts(exc: BaseException) -> _ErrorFacts:
    response = getattr(exc, "response", None)
    status = _int_or_none(getattr(exc, "status_code", None))
    if status is None:
        status = _int_or_none(getattr(response, "status_code", None))
    headers = getattr(response, "headers", None) or getattr(exc, "headers", None)
    error = _envelope_error(exc, response)
    details = error.get("details")
    error_code = getattr(exc, "error_code", None)
    if not isinstance(error_code, str) and isinstance(details, Mapping):
        error_code = details.get("error_code")
    return _ErrorFacts(
        status=status,
        retry_after=any(_header(headers, name) for name in ("retry-after", "retry-after-ms")),
        error_type=_str_or_none(error.get("type")),
        error_code=_str_or_none(error_code),
        message=_first_str(error.get("message"), getattr(exc, "api_message", None),
                           getattr(exc, "message", None)),
    )


def _envelope_error(exc: BaseException, response: object) -> Mapping[str, object]:
    """The ``error`` object of ``{"type": "error", "error": {...}}``, or an empty mapping."""
    body = getattr(exc, "body", None)
    if not isinstance(body, Mapping):
        body = _response_json(response)
    error = body.get("error") if isinstance(body, Mapping) else None
    return error if isinstance(error, Mapping) else {}


def _response_json(response: object) -> object:
    read_json = getattr(response, "json", None)
    if not callable(read_json):
        return None
    try:
        return read_json()
    except Exception:  # an unread stream, HTML from a proxy: no envelope to read
        return None


def _header(headers: object, name: str) -> str | None:
    """A header's value, case-insensitively, from any mapping-like object with ``items()``."""
    items = getattr(headers, "items", None)
    if not callable(items):
        return None
    for key, value in items():
        if str(key).lower() == name and str(value).strip():
            return str(value)
    return None


def _describe(exc: Exception) -> str:
    facts = _facts(exc)
    parts = [f"HTTP {facts.status}" if facts.status else type(exc).__name__, facts.error_type]
    return " ".join(part for part in parts if part)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _first_str(*values: object) -> str:
    return next((value for value in values if isinstance(value, str)), "")
