"""The local journal: critical notifications decided while the state store was down.

A tick that cannot use its store (read-only, full, locked, corrupted or deleted) still sends
``hard_reached`` and ``runaway`` alerts; the journal is their outbox until the store returns,
and it remembers the alert states those ticks decided, so a later tick without the store
neither repeats nor forgets them. When the store is back, the next leader tick merges the
journal into the store (``guard.shell.degraded.merge``) and empties it.

The journal is one small JSON document, replaced atomically on every change at the first of
its paths that can be written (the configured one, then one in the system's temporary
directory, for a state directory that is itself read-only or full). Reading takes the newest
generation any path holds. A journal that cannot be written anywhere lives on in memory for
as long as the process does, and says so once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from guard.adapters.sinks import atomic_write
from guard.core.policy import AlertState, Condition, Severity, Status
from guard.core.records import Owed, Payload

log = logging.getLogger(__name__)
VERSION = 1


@dataclass(slots=True)
class _Row:
    owed: Owed
    delivered_at: datetime | None = None
    superseded: bool = False
    claimed_by: str | None = None
    claim_until: datetime | None = None
    error: str | None = None


@dataclass(slots=True)
class _Content:
    generation: int = 0
    rows: list[_Row] = field(default_factory=list)
    messages: dict[str, tuple[str, str]] = field(default_factory=dict)
    states: dict[tuple[str, Condition], AlertState] = field(default_factory=dict)


class Journal:
    """An outbox (``OutboxPort``) and the alert states of ticks without the store, in a file."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)
        self._content = _newest(self.paths)
        self._unwritable = False

    # --- what it holds -------------------------------------------------------------------

    def empty(self) -> bool:
        """Whether there is nothing to merge into the store."""
        return not self._content.rows and not self._content.states

    def states(self) -> dict[tuple[str, Condition], AlertState]:
        """The alert states the last tick without the store decided."""
        return dict(self._content.states)

    def save_states(self, states: dict[tuple[str, Condition], AlertState]) -> None:
        """Remember ``states`` for the next tick without the store."""
        self._content.states = dict(states)
        self._save()

    def rows(self) -> list[tuple[Owed, datetime | None]]:
        """Every notification journaled and not overtaken, with when Slack accepted it."""
        return [(r.owed, r.delivered_at) for r in self._content.rows if not r.superseded]

    def messages(self) -> dict[str, tuple[str, str]]:
        """Where each incident posted from the journal lives in Slack."""
        return dict(self._content.messages)

    def clear(self) -> None:
        """Forget everything (merged into the store): the files are removed."""
        self._content = _Content(self._content.generation + 1)
        for path in self.paths:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("journal %s not removed (%s); it is empty now", path,
                            exc.strerror or type(exc).__name__)
                self._save()

    # --- OutboxPort ----------------------------------------------------------------------

    def enqueue(self, dedup: str, incident: str, kind: str, payload: Payload,
                now: datetime) -> bool:
        """Journal a notification as owed; False if the same decision is already there."""
        if any(r.owed.dedup == dedup for r in self._content.rows):
            return False
        number = max((r.owed.id for r in self._content.rows), default=0) + 1
        self._content.rows.append(_Row(Owed(number, dedup, incident, kind, now, payload, 0)))
        self._save()
        return True

    def owed(self) -> list[Owed]:
        """Every owed notification, oldest first."""
        return [r.owed for r in self._content.rows
                if r.delivered_at is None and not r.superseded]

    def supersede(self, ids: list[int]) -> None:
        """Mark rows a later notification of the same incident overtook."""
        for row in self._content.rows:
            if row.owed.id in ids:
                row.superseded = True
        if ids:
            self._save()

    def claim(self, row_id: int, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Take the row for sending (saved before the send, with when it was first taken)."""
        row = self._row(row_id)
        if row is None or row.delivered_at is not None or (
                row.claimed_by not in (None, holder) and row.claim_until is not None
                and row.claim_until > now):
            return False
        row.claimed_by, row.claim_until = holder, now + ttl
        row.owed = replace(row.owed, attempts=row.owed.attempts + 1,
                           sending_since=row.owed.sending_since or now)
        self._save()
        return True

    def delivered(self, row_id: int, now: datetime) -> None:
        """Slack accepted the row."""
        if (row := self._row(row_id)) is not None:
            row.delivered_at, row.claimed_by, row.claim_until = now, None, None
            self._save()

    def failed(self, row_id: int, error: str) -> None:
        """Sending failed: release the claim so the next tick retries it."""
        if (row := self._row(row_id)) is not None:
            row.claimed_by, row.claim_until, row.error = None, None, error
            self._save()

    def message_of(self, incident: str) -> tuple[str, str] | None:
        """(channel, ts) of the message an incident lives in, once posted."""
        return self._content.messages.get(incident)

    def remember_message(self, incident: str, channel: str, ts: str, now: datetime) -> None:
        """Remember where an incident's message is."""
        self._content.messages[incident] = (channel, ts)
        self._save()

    # --- the file ------------------------------------------------------------------------

    def _row(self, row_id: int) -> _Row | None:
        return next((r for r in self._content.rows if r.owed.id == row_id), None)

    def _save(self) -> None:
        self._content.generation += 1
        text = json.dumps(_dump(self._content), indent=1) + "\n"
        problems = []
        for path in self.paths:
            try:
                atomic_write(path, text)
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror or type(exc).__name__}")
                continue
            self._unwritable = False
            return
        if not self._unwritable:
            log.error("journal not written anywhere (%s); it is kept in memory until the "
                      "store returns", "; ".join(problems))
        self._unwritable = True


def _newest(paths: Sequence[Path]) -> _Content:
    """The newest readable journal among ``paths`` (an unreadable one is skipped, named)."""
    best = _Content()
    for path in paths:
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("journal %s unreadable, skipped: %s", path,
                        exc.strerror or type(exc).__name__)
            continue
        try:
            content = _load(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("journal %s is damaged, skipped: %s", path, exc)
            continue
        if content.generation > best.generation:
            best = content
    return best


def _dump(content: _Content) -> dict[str, Any]:
    return {
        "version": VERSION, "generation": content.generation,
        "rows": [{"id": r.owed.id, "dedup": r.owed.dedup, "incident": r.owed.incident,
                  "kind": r.owed.kind, "created_at": _t(r.owed.created_at),
                  "text": r.owed.payload.text, "payload": r.owed.payload.dumps(),
                  "attempts": r.owed.attempts, "sending_since": _t(r.owed.sending_since),
                  "delivered_at": _t(r.delivered_at), "superseded": r.superseded,
                  "claimed_by": r.claimed_by, "claim_until": _t(r.claim_until),
                  "error": r.error} for r in content.rows],
        "messages": {k: list(v) for k, v in content.messages.items()},
        "states": [{"budget": b, "condition": c.value, "status": s.status.value,
                    "period": s.period.isoformat(), "since": _t(s.since),
                    "severity": s.severity.value, "clear_since": _t(s.clear_since),
                    "last_notified": _t(s.last_notified),
                    "notified_severity": s.notified_severity.value
                    if s.notified_severity else None}
                   for (b, c), s in content.states.items()],
    }


def _load(data: dict[str, Any]) -> _Content:
    if data.get("version") != VERSION:
        raise ValueError(f"version {data.get('version')!r} is not {VERSION}")
    rows = [_Row(Owed(int(r["id"]), str(r["dedup"]), str(r["incident"]), str(r["kind"]),
                      _must(r["created_at"]), Payload.loads(str(r["text"]), str(r["payload"])),
                      int(r["attempts"]), _m(r["sending_since"])),
                 _m(r["delivered_at"]), bool(r["superseded"]), r["claimed_by"],
                 _m(r["claim_until"]), r["error"]) for r in data["rows"]]
    messages = {str(k): (str(v[0]), str(v[1])) for k, v in data["messages"].items()}
    states = {(str(s["budget"]), Condition(s["condition"])): AlertState(
        Status(s["status"]), date.fromisoformat(s["period"]), _must(s["since"]),
        Severity(s["severity"]), _m(s["clear_since"]), _m(s["last_notified"]),
        Severity(s["notified_severity"]) if s["notified_severity"] else None)
        for s in data["states"]}
    return _Content(int(data["generation"]), rows, messages, states)


def _t(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _m(value: object) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(str(value)), UTC)


def _must(value: object) -> datetime:
    moment = _m(value)
    if moment is None:
        raise ValueError("a required time is missing")
    return moment
