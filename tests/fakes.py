"""In-memory fakes of the shell's ports (``guard.shell.ports``), each recording what it was asked.

They keep the promises of the real adapters that the shell relies on (an outbox deduplicates
by key and hands rows out oldest first; a lease has one live holder; writing an unchanged
fallback rewrites nothing), so the order of effects can be tested in milliseconds. The real
adapters are tested against SQLite, PostgreSQL, the simulator and the Slack fake elsewhere.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from guard.core.fallback import FallbackState, render_env
from guard.core.model import Snapshot
from guard.core.policy import AlertState, Condition, Override
from guard.core.records import (
    AuditEntry,
    Blocks,
    KeyAction,
    Owed,
    Payload,
    Posted,
    ReloadResult,
    Silence,
)
from guard.errors import SlackRejected, SlackUnavailable, UpstreamUnavailable


@dataclass
class StaticFetcher:
    """A fetch that returns a fixed snapshot (re-dated to ``at``), or fails as the API would."""

    snapshot: Snapshot
    down: bool = False
    refreshes: list[datetime] = field(default_factory=list)
    cached_reads: list[datetime] = field(default_factory=list)
    read_through: datetime | None = None

    def watermark(self) -> datetime | None:
        return self.read_through

    def refresh(self, at: datetime, api_keys: Collection[str] | None = None) -> Snapshot:
        self.refreshes.append(at)
        if self.down:
            raise UpstreamUnavailable("Admin API unavailable after 3 attempts")
        return replace(self.snapshot, at=at)

    def cached(self, at: datetime, api_keys: Collection[str] | None = None) -> Snapshot:
        self.cached_reads.append(at)
        return replace(self.snapshot, at=at, api_requests=0)


@dataclass
class MemoryState:
    """Alert states, the fallback, the pin, key actions and the audit log, in memory."""

    states: dict[tuple[str, Condition], AlertState] = field(default_factory=dict)
    fallbacks: dict[str, FallbackState] = field(default_factory=dict)
    overrides: dict[str, Override] = field(default_factory=dict)
    actions: dict[str, KeyAction] = field(default_factory=dict)
    entries: list[AuditEntry] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)

    def alert_states(self) -> dict[tuple[str, Condition], AlertState]:
        return dict(self.states)

    def together(self) -> AbstractContextManager[object]:
        return nullcontext()

    def save_alert_states(self, states: dict[tuple[str, Condition], AlertState]) -> None:
        self.writes.append("alert_states")
        self.states = dict(states)

    def fallback(self, target: str = "default") -> FallbackState | None:
        return self.fallbacks.get(target)

    def save_fallback(self, state: FallbackState, target: str = "default") -> None:
        self.writes.append("fallback")
        self.fallbacks[target] = state

    def clear_fallback(self, target: str = "default") -> None:
        self.fallbacks.pop(target, None)

    def override(self, target: str = "default") -> Override | None:
        return self.overrides.get(target)

    def save_override(self, pin: Override, now: datetime, target: str = "default") -> None:
        self.overrides[target] = pin

    def clear_override(self, target: str = "default") -> None:
        self.overrides.pop(target, None)

    def key_actions(self) -> list[KeyAction]:
        return sorted(self.actions.values(), key=lambda a: a.key_id)

    def add_key_action(self, action: KeyAction) -> None:
        self.actions[action.key_id] = action

    def remove_key_action(self, key_id: str) -> None:
        self.actions.pop(key_id, None)

    def audit(self, entry: AuditEntry) -> None:
        self.writes.append("audit")
        self.entries.append(entry)

    def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        return self.entries[-limit:]


@dataclass
class _Row:
    owed: Owed
    status: str = "owed"
    claimed_by: str | None = None
    claimed_until: datetime | None = None


@dataclass
class MemoryOutbox:
    """The outbox, incidents' messages, silences and the leader lease, in memory."""

    rows: list[_Row] = field(default_factory=list)
    messages: dict[str, tuple[str, str]] = field(default_factory=dict)
    silenced: list[Silence] = field(default_factory=list)
    holders: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    epochs: dict[str, int] = field(default_factory=dict)

    # --- owed notifications -------------------------------------------------------------------

    def enqueue(self, dedup: str, incident: str, kind: str, payload: Payload,
                now: datetime) -> bool:
        if any(r.owed.dedup == dedup for r in self.rows):
            return False
        self.rows.append(_Row(Owed(len(self.rows) + 1, dedup, incident, kind, now, payload, 0)))
        return True

    def owed(self) -> list[Owed]:
        return [r.owed for r in self.rows if r.status == "owed"]

    def supersede(self, ids: list[int]) -> None:
        for row in self._rows(ids):
            row.status = "superseded"

    def claim(self, row_id: int, holder: str, now: datetime, ttl: timedelta) -> bool:
        (row,) = self._rows([row_id])
        free = row.claimed_until is None or row.claimed_until < now or row.claimed_by == holder
        if row.status != "owed" or not free:
            return False
        row.claimed_by, row.claimed_until = holder, now + ttl
        return True

    def delivered(self, row_id: int, now: datetime) -> None:
        (row,) = self._rows([row_id])
        row.status, row.claimed_by, row.claimed_until = "delivered", None, None

    def failed(self, row_id: int, error: str) -> None:
        (row,) = self._rows([row_id])
        row.owed = replace(row.owed, attempts=row.owed.attempts + 1)
        row.claimed_by, row.claimed_until = None, None

    def message_of(self, incident: str) -> tuple[str, str] | None:
        return self.messages.get(incident)

    def remember_message(self, incident: str, channel: str, ts: str, now: datetime) -> None:
        self.messages[incident] = (channel, ts)

    def history(self) -> list[tuple[str, str, str]]:
        return [(r.owed.incident, r.owed.kind, r.status) for r in self.rows]

    def _rows(self, ids: list[int]) -> list[_Row]:
        return [r for r in self.rows if r.owed.id in ids]

    # --- silences -----------------------------------------------------------------------------

    def add_silence(self, budget: str, condition: str | None, ends_at: datetime, *,
                    reason: str, who: str, now: datetime) -> int:
        self.silenced.append(Silence(len(self.silenced) + 1, budget, condition, now, ends_at,
                                     reason, who))
        return len(self.silenced)

    def silences(self, now: datetime | None = None) -> list[Silence]:
        return [s for s in self.silenced if now is None or s.starts_at <= now < s.ends_at]

    def expire_silence(self, silence_id: int, now: datetime) -> bool:
        for i, s in enumerate(self.silenced):
            if s.id == silence_id and s.ends_at > now:
                self.silenced[i] = replace(s, ends_at=now)
                return True
        return False

    # --- the leader lease ---------------------------------------------------------------------

    def hold(self, name: str, holder: str, now: datetime, ttl: timedelta) -> int | None:
        current = self.holders.get(name)
        if current is not None and current[0] != holder and current[1] > now:
            return None
        renewing = current is not None and current[0] == holder and current[1] > now
        self.epochs[name] = self.epochs.get(name, 0) + (0 if renewing else 1)
        self.holders[name] = (holder, now + ttl)
        return self.epochs[name]

    def current(self, name: str, holder: str, token: int, now: datetime) -> bool:
        held = self.holders.get(name)
        return (held is not None and held[0] == holder and held[1] > now
                and self.epochs.get(name) == token)

    def release(self, name: str, holder: str) -> bool:
        current = self.holders.get(name)
        if current is None or current[0] != holder:
            return False
        del self.holders[name]
        return True


@dataclass
class RecordingTransport:
    """A Slack stand-in: accepts every message (or is down, or rejects), remembers each one."""

    accept: bool = True
    reject: str | None = None
    supports_updates: bool = True
    posts: list[tuple[str, str | None]] = field(default_factory=list)
    updates: list[str] = field(default_factory=list)

    supports_lookup: bool = False

    def post(self, channel: str, text: str, blocks: Blocks,
             thread_ts: str | None = None, *, dedup: str | None = None) -> Posted:
        self._check()
        self.posts.append((text, thread_ts))
        return Posted(channel or "C1", f"{len(self.posts)}.0")

    def find(self, channel: str, dedup: str, oldest: datetime,
             thread_ts: str | None = None) -> Posted | None:
        return None

    def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> Posted:
        self._check()
        self.updates.append(ts)
        return Posted(channel, ts)

    def _check(self) -> None:
        if self.reject is not None:
            raise SlackRejected(f"Slack chat.postMessage rejected: {self.reject}",
                                error=self.reject)
        if not self.accept:
            raise SlackUnavailable("slack is down")


@dataclass
class RecordingSinks:
    """The fallback sinks: what each write would put in the env file, and each reload."""

    reload_ok: bool = True
    env: str | None = None
    writes: list[FallbackState] = field(default_factory=list)
    rewrites: int = 0
    reloads: int = 0

    def write(self, state: FallbackState) -> list[Path]:
        self.writes.append(state)
        text = render_env(state)
        if text == self.env:
            return []
        self.env = text
        self.rewrites += 1
        return [Path("model.env")]

    def last(self) -> FallbackState | None:
        return self.writes[-1] if self.writes and self.env is not None else None

    def reload(self) -> ReloadResult:
        self.reloads += 1
        if self.reload_ok:
            return ReloadResult(True, True, "reload exited 0")
        return ReloadResult(True, False, "reload exited 1")
