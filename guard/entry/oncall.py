"""On call from Slack: the alert's buttons and ``/budget`` act like ``guard fallback``.

Parsing is pure and never raises: ``parse_action`` (a ``block_actions`` payload) and
``parse_slash`` (the form fields of a slash command) turn what Slack sends into a ``Command``,
or into a ``Refusal`` saying politely what was wrong. ``OnCall.handle`` is the shell: it checks
that the user is on call (``slack.oncall_user_ids``), runs the command through
``guard.shell.ops`` as ``slack:<user id>``, and posts the answer (in the alert's thread for a
button) through the ``SlackTransport``. Someone not on call changes nothing, not even the audit log.

    button "Acknowledge"            audit only
    button "Pin current tier 4h"    pin the tier in force for 4h
    button "Release"                release the pin
    button "Silence 24h"            silence the alert's budget and condition for 24h
    /budget status
    /budget pin TIER DURATION [target=NAME] REASON…     e.g. /budget pin haiku 2h incident 42
    /budget release [target=NAME] [REASON…]

A button on an alert acts on every fallback target the alert's budget caps; a command on the
target it names, else the first.

``socket_mode_listener`` acknowledges every Socket Mode request first, inside Slack's 3 s, and
only then parses and handles it; ``start_socket_mode`` connects with the app-level token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from http.client import HTTPException
from typing import Any, Literal, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from guard.core.policy import Condition
from guard.core.records import AuditEntry
from guard.core.render import KEY_MAX, REASON_CAP, TEXT_MAX, clip, clock, escape, name, words
from guard.errors import ConfigError, GuardError, SlackRejected, SlackUnavailable
from guard.shell.ops import Ops, describe_status
from guard.shell.ports import SlackTransport

Verb = Literal["ack", "pin", "release", "silence", "status"]

BUTTONS: dict[str, Verb] = {"budget_ack": "ack", "budget_pin_4h": "pin",
                            "budget_release": "release", "budget_silence_24h": "silence"}
"""The alert's buttons (``guard.core.render``) by action_id."""

PIN_FOR = "4h"
SILENCE_FOR = "24h"
USAGE = ("Usage: `/budget status`, `/budget pin TIER DURATION REASON…` "
         "or `/budget release [REASON…]`.")
SUBJECT_MAX = 128  # audit_log.subject is VARCHAR(128); the reason keeps the whole key

_USER = re.compile(r"[UW][A-Z0-9]{2,40}")
_CHANNEL = re.compile(r"[CDG][A-Z0-9]{2,40}")
_TS = re.compile(r"\d{1,12}\.\d{1,9}")
_PERIOD = re.compile(r"\d{4}-(?:0[1-9]|1[0-2])")
_CODE = re.compile(r"[a-z0-9_.]{1,64}")
_CONDITIONS = frozenset(c.value for c in Condition)

_log = logging.getLogger(__name__)
SDK_LOG = logging.getLogger("guard.entry.oncall.sdk")
SDK_LOG.setLevel(logging.WARNING)  # below WARNING slack-sdk logs the WebSocket URL (a ticket)


@dataclass(frozen=True, slots=True)
class Command:
    """What an on-call user asked for, and where to answer (``thread_ts`` for a button)."""

    verb: Verb
    user: str
    channel: str
    thread_ts: str | None = None
    incident: str | None = None
    tier: str | None = None
    duration: str | None = None
    reason: str = ""
    target: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request not acted on: why, and where to say so (nowhere when ``channel`` is None)."""

    reason: str
    channel: str | None = None
    thread_ts: str | None = None


# --- parsing (pure) --------------------------------------------------------------------------


def parse_action(payload: Mapping[str, Any]) -> Command | Refusal:
    """A ``block_actions`` payload (a click on an alert's button) as a ``Command``."""
    if payload.get("type") != "block_actions":
        return Refusal("Only the buttons of budget alerts are understood; nothing changed.")
    user, channel = _id(_at(payload, "user", "id"), _USER), _channel_of(payload)
    thread_ts = _message_ts(payload)
    if user is None or channel is None or thread_ts is None:
        return Refusal("The click did not say who clicked in which alert; nothing changed.",
                       channel, thread_ts if channel else None)
    action = _at(payload, "actions", 0)
    verb = BUTTONS.get(str(_at(action, "action_id")))
    key = _at(action, "value")
    if verb is None or not isinstance(key, str) or split_incident(key) is None:
        return Refusal("That button is not one of a budget alert's; nothing changed.",
                       channel, thread_ts)
    duration = {"pin": PIN_FOR, "silence": SILENCE_FOR}.get(verb)
    return Command(verb, user, channel, thread_ts, incident=key, duration=duration,
                   reason=f"Slack button on alert {key}")


def parse_slash(payload: Mapping[str, Any]) -> Command | Refusal:
    """The form fields of ``/budget status|pin TIER DURATION REASON…|release [REASON…]``."""
    user = _id(payload.get("user_id"), _USER)
    channel = _id(payload.get("channel_id"), _CHANNEL)
    if user is None or channel is None:
        return Refusal("The command did not say who sent it where; nothing changed.", channel)
    text = payload.get("text")
    match (text if isinstance(text, str) else "").split():
        case [verb] if verb.lower() == "status":
            return Command("status", user, channel)
        case [verb, tier, duration, *reason] if verb.lower() == "pin" and _said(reason):
            target, reason = _target_word(reason)
            return Command("pin", user, channel, tier=tier, duration=duration,
                           reason=" ".join(reason), target=target)
        case [verb, *reason] if verb.lower() == "release":
            target, reason = _target_word(reason)
            return Command("release", user, channel,
                           reason=" ".join(reason) or "released from Slack", target=target)
        case []:
            return Refusal(USAGE, channel)
        case _:
            return Refusal(f"I did not understand `{name(str(text), 60)}`. {USAGE}", channel)


def _said(words: list[str]) -> bool:
    """Whether ``words`` hold a reason besides a ``target=NAME``."""
    return bool(_target_word(words)[1])


def _target_word(words: list[str]) -> tuple[str | None, list[str]]:
    """A leading ``target=NAME`` of ``words`` and the rest."""
    if words and words[0].lower().startswith("target="):
        return words[0].partition("=")[2] or None, words[1:]
    return None, words


def split_incident(key: str) -> tuple[str, str] | None:
    """(budget, condition) of an incident key like ``2026-03:org-monthly:hard_likely``."""
    period, _, rest = key.partition(":")
    budget, _, condition = rest.rpartition(":")
    if len(key) > KEY_MAX or not (_PERIOD.fullmatch(period) and budget.strip()):
        return None
    return (budget, condition) if condition in _CONDITIONS else None


def _at(node: object, *path: str | int) -> object:
    """The value at ``path`` inside nested JSON, or None wherever the shape differs."""
    for step in path:
        if isinstance(step, int) and isinstance(node, list) and len(node) > step:
            node = node[step]
        elif isinstance(step, str) and isinstance(node, Mapping):
            node = node.get(step)
        else:
            return None
    return node


def _id(value: object, pattern: re.Pattern[str]) -> str | None:
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def _channel_of(payload: Mapping[str, Any]) -> str | None:
    return (_id(_at(payload, "channel", "id"), _CHANNEL)
            or _id(_at(payload, "container", "channel_id"), _CHANNEL))


def _message_ts(payload: Mapping[str, Any]) -> str | None:
    """The thread to answer in: the alert's own thread, else the alert message itself."""
    for path in (("message", "thread_ts"), ("message", "ts"), ("container", "message_ts")):
        if found := _id(_at(payload, *path), _TS):
            return found
    return None


# --- acting ----------------------------------------------------------------------------------


_FIELDS = {"TIER": "tier", "--for": "duration", "--reason": "reason", "--budget": "budget",
           "--condition": "condition", "--target": "target"}
"""The on-call functions name CLI flags; a Slack answer names the command's arguments."""

class OnCall:
    """Runs on-call commands from Slack through ``Ops`` and answers in Slack."""

    def __init__(self, ops: Ops, oncall_user_ids: Collection[str], transport: SlackTransport,
                 now: Callable[[], datetime]) -> None:
        self.ops = ops
        self.allowed = frozenset(oncall_user_ids)
        self.transport = transport
        self.now = now

    def handle(self, request: Command | Refusal) -> str:
        """Act on ``request`` if its user is on call; post the answer where it came from."""
        answer = request.reason if isinstance(request, Refusal) else self._answer(request)
        _log.info("slack on-call %s: %s", _describe(request), clip(" ".join(answer.split()), 200))
        if request.channel is not None:
            self._post(request.channel, answer, request.thread_ts)
        return answer

    def _answer(self, command: Command) -> str:
        if command.user not in self.allowed:
            return f"<@{command.user}> is not on call; nothing changed."
        try:
            return self._act(command, self.now())
        except ConfigError as exc:
            problems = "; ".join(f"{_FIELDS.get(field, field)}: {reason}"
                                 for field, reason in exc.problems)
            return f"Could not {command.verb}: {name(problems, REASON_CAP)}. Nothing changed."
        except GuardError as exc:
            return f"Could not {command.verb}: {name(str(exc), REASON_CAP)}."

    def _act(self, command: Command, now: datetime) -> str:
        act = {"ack": self._ack, "pin": self._pin, "release": self._release,
               "silence": self._silence, "status": self._status}[command.verb]
        return act(command, now)

    def _ack(self, c: Command, now: datetime) -> str:
        if c.incident is None:
            return "There is no alert to acknowledge; nothing changed."
        self.ops.records.audit(AuditEntry(now, _who(c), "ack", c.incident[:SUBJECT_MAX], None,
                                          None, c.reason or "acknowledged in Slack"))
        return f"<@{c.user}> acknowledged `{name(c.incident, KEY_MAX)}`."

    def _targets(self, c: Command) -> list[str | None]:
        """The targets a command acts on: the one it names; for an alert's button, every
        target the alert's budget caps; else the first."""
        if c.target is not None:
            return [c.target]
        parts = split_incident(c.incident or "")
        if parts is None or not self.ops.targets:
            return [None]
        return [t.name for t in self.ops.targets if t.covers(parts[0])] or [None]

    def _pin(self, c: Command, now: datetime) -> str:
        lines = []
        for target in self._targets(c):
            tier = c.tier or self.ops.tier_in_force(target)
            pin = self.ops.pin(tier, c.duration or PIN_FOR, reason=c.reason, who=_who(c),
                               now=now, target=target)
            lines.append(f"<@{c.user}> pinned the fallback{self._on(target)} at "
                         f"{self._tier_words(pin.tier)} until {clock(pin.expires_at, now)}: "
                         f"{name(pin.reason, REASON_CAP)}.")
        return "\n".join([*lines[:-1], lines[-1] + " The next tick puts it in force; "
                           "*Release* ends it early."])

    def _release(self, c: Command, now: datetime) -> str:
        lines = []
        for target in self._targets(c):
            released = self.ops.release(reason=c.reason or "released from Slack",
                                        who=_who(c), now=now, target=target)
            if released is not None:
                lines.append(f"<@{c.user}> released the pin{self._on(target)} at "
                             f"{self._tier_words(released.tier)}; the next tick puts the "
                             "budgets' tier back in force.")
        return "\n".join(lines) or "There was no pin to release; nothing changed."

    @staticmethod
    def _on(target: str | None) -> str:
        return f" of target {name(target, 40)}" if target is not None else ""

    def _silence(self, c: Command, now: datetime) -> str:
        parts = split_incident(c.incident or "")
        if parts is None:
            return "There is no alert to silence; nothing changed."
        budget, condition = parts
        silence = self.ops.silence_add(budget, condition, c.duration or SILENCE_FOR,
                                       reason=c.reason or "silenced in Slack", who=_who(c),
                                       now=now)
        return (f"<@{c.user}> silenced {escape(words(condition))} for {name(budget)} until "
                f"{clock(silence.ends_at, now)}.")

    def _status(self, c: Command, now: datetime) -> str:
        status = describe_status(self.ops.fallback_status(now))
        return f"```\n{escape(status)}\n```"

    def _tier_words(self, tier: str) -> str:
        model = self.ops.models.get(tier)
        return f"{name(tier, 40)} (`{name(model, 60)}`)" if model else name(tier, 40)

    def _post(self, channel: str, answer: str, thread_ts: str | None) -> None:
        """Answer in Slack; a failed answer is logged, the effect already happened."""
        try:
            self.transport.post(channel, clip(answer, TEXT_MAX), (), thread_ts=thread_ts)
        except GuardError as exc:
            _log.warning("could not answer in Slack channel %s: %s", channel, exc)


def _who(command: Command) -> str:
    return f"slack:{command.user}"


def _describe(request: Command | Refusal) -> str:
    if isinstance(request, Refusal):
        return "refused"
    return f"{request.verb} by {_who(request)}"


# --- Socket Mode -----------------------------------------------------------------------------


class SocketClient(Protocol):
    """What a listener needs of a Socket Mode client: to acknowledge an envelope."""

    def send_socket_mode_response(self, response: SocketModeResponse) -> None:
        """Acknowledge one request."""
        ...


_PARSERS: dict[str, Callable[[Mapping[str, Any]], Command | Refusal]] = {
    "interactive": parse_action, "slash_commands": parse_slash}


def socket_mode_listener(oncall: OnCall) -> Callable[[SocketClient, SocketModeRequest], None]:
    """A request listener that acks every request first, then handles clicks and commands."""

    def listen(client: SocketClient, request: SocketModeRequest) -> None:
        client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
        parse = _PARSERS.get(request.type)
        if parse is not None:
            oncall.handle(parse(request.payload))

    return listen


def start_socket_mode(client: SocketModeClient, oncall: OnCall) -> SocketModeClient:
    """Connect ``client`` (``guard.entry.wiring.socket_mode_client``) and serve ``oncall``."""
    client.socket_mode_request_listeners.append(socket_mode_listener(oncall))
    try:
        client.connect()
    except SlackApiError as exc:
        client.close()
        code = exc.response.get("error")
        code = code if isinstance(code, str) and _CODE.fullmatch(code) else "unknown_error"
        raise SlackRejected(f"Slack apps.connections.open rejected: {code} "
                            "(check slack.app_token)", error=code) from None
    except (OSError, HTTPException) as exc:
        client.close()
        raise SlackUnavailable(f"Slack Socket Mode unreachable: {type(exc).__name__}") from None
    return client
