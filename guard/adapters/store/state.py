"""What the tick remembers: alert states, the fallback in force, overrides, key actions, audit.

The audit log is append-only: every decision that changed something (a fallback change, a pin
or a release, a key deactivated or restored) gets one row with who, when, what, before, after
and why.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from datetime import datetime

import sqlalchemy as sa

from guard.adapters.store.engine import Store, at_epoch, day_epoch, epoch
from guard.adapters.store.schema import (
    alert_states,
    audit_log,
    fallback_state,
    key_actions,
    overrides,
)
from guard.core.fallback import FallbackState
from guard.core.policy import AlertState, Condition, Override, Severity, Status
from guard.core.records import AuditEntry, KeyAction
from guard.core.targets import DEFAULT_TARGET


class Records:
    """Typed reads and writes of the tick's memory in the state store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- alert states ------------------------------------------------------------------------

    def alert_states(self) -> dict[tuple[str, Condition], AlertState]:
        """Every remembered (budget, condition) state."""
        with self.store.reading() as conn:
            rows = conn.execute(sa.select(alert_states)).all()
        return {(r.budget, Condition(r.condition)): _state(r) for r in rows}

    def together(self) -> AbstractContextManager[object]:
        """One transaction that every write to this store inside it joins."""
        return self.store.writing()

    def save_alert_states(self, states: dict[tuple[str, Condition], AlertState]) -> None:
        """Replace the remembered states with ``states``."""
        with self.store.writing() as conn:
            conn.execute(alert_states.delete())
            if states:
                conn.execute(alert_states.insert(), [_state_row(k, s) for k, s in states.items()])

    # --- fallback ----------------------------------------------------------------------------

    def fallback(self, target: str = DEFAULT_TARGET) -> FallbackState | None:
        """The fallback last put in force for ``target``."""
        with self.store.reading() as conn:
            row = conn.execute(sa.select(fallback_state)
                               .where(fallback_state.c.target == target)).first()
        return None if row is None else _fallback(row)

    def save_fallback(self, state: FallbackState, target: str = DEFAULT_TARGET) -> None:
        """Remember ``state`` as the fallback in force."""
        values = {"target": target, "tier": state.tier, "level": state.level,
                  "model": state.model, "chain": json.dumps(list(state.chain)),
                  "source": state.source, "updated_at": epoch(state.updated_at),
                  "reason": state.reason, "firing": json.dumps(list(state.firing)),
                  "reload_pending": state.reload_pending,
                  "override_expires_at": _epoch_or_none(state.override_expires_at),
                  "override_by": state.override_by, "override_reason": state.override_reason}
        with self.store.writing() as conn:
            conn.execute(fallback_state.delete().where(fallback_state.c.target == target))
            conn.execute(fallback_state.insert().values(**values))

    def clear_fallback(self, target: str = DEFAULT_TARGET) -> None:
        """Forget the fallback of ``target`` (one no longer configured)."""
        with self.store.writing() as conn:
            conn.execute(fallback_state.delete().where(fallback_state.c.target == target))

    # --- overrides ---------------------------------------------------------------------------

    def override(self, target: str = DEFAULT_TARGET) -> Override | None:
        """The pin on ``target``, expired or not."""
        with self.store.reading() as conn:
            row = conn.execute(sa.select(overrides).where(overrides.c.target == target)).first()
        if row is None:
            return None
        return Override(row.tier, at_epoch(row.expires_at), row.reason, row.who)

    def save_override(self, pin: Override, now: datetime,
                      target: str = DEFAULT_TARGET) -> None:
        """Pin ``target``; replaces any earlier pin."""
        with self.store.writing() as conn:
            conn.execute(overrides.delete().where(overrides.c.target == target))
            conn.execute(overrides.insert().values(
                target=target, tier=pin.tier, expires_at=epoch(pin.expires_at),
                reason=pin.reason, who=pin.who, created_at=epoch(now)))

    def clear_override(self, target: str = DEFAULT_TARGET) -> None:
        """Remove the pin on ``target``."""
        with self.store.writing() as conn:
            conn.execute(overrides.delete().where(overrides.c.target == target))

    # --- key enforcement ---------------------------------------------------------------------

    def key_actions(self) -> list[KeyAction]:
        """Keys enforcement deactivated and has not restored yet."""
        with self.store.reading() as conn:
            rows = conn.execute(sa.select(key_actions).order_by(key_actions.c.key_id)).all()
        return [KeyAction(r.key_id, r.budget, r.prior_status, at_epoch(r.deactivated_at),
                          at_epoch(r.period).date()) for r in rows]

    def add_key_action(self, action: KeyAction) -> None:
        """Remember a deactivation (after the Admin API accepted it)."""
        with self.store.writing() as conn:
            conn.execute(key_actions.insert().values(
                key_id=action.key_id, budget=action.budget, prior_status=action.prior_status,
                deactivated_at=epoch(action.deactivated_at), period=day_epoch(action.period)))

    def remove_key_action(self, key_id: str) -> None:
        """Forget a deactivation once the key is restored."""
        with self.store.writing() as conn:
            conn.execute(key_actions.delete().where(key_actions.c.key_id == key_id))

    # --- audit -------------------------------------------------------------------------------

    def audit(self, entry: AuditEntry) -> None:
        """Append one entry to the audit log."""
        with self.store.writing() as conn:
            conn.execute(audit_log.insert().values(
                at=epoch(entry.at), who=entry.who, action=entry.action, subject=entry.subject,
                before=entry.before, after=entry.after, reason=entry.reason))

    def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        """The newest ``limit`` entries, oldest first."""
        with self.store.reading() as conn:
            rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.id.desc())
                                .limit(limit)).all()
        return [AuditEntry(at_epoch(r.at), r.who, r.action, r.subject, r.before, r.after,
                           r.reason) for r in reversed(rows)]


def _fallback(row: sa.Row[object]) -> FallbackState:
    m = row._mapping
    chain = tuple(json.loads(str(m["chain"]))) if m["chain"] else (str(m["model"]),)
    return FallbackState(
        str(m["tier"]), int(str(m["level"])), str(m["model"]), chain, str(m["source"]),
        at_epoch(int(str(m["updated_at"]))), str(m["reason"]),
        tuple(json.loads(str(m["firing"]))), _moment(m["override_expires_at"]),
        _text(m["override_by"]), _text(m["override_reason"]), bool(m["reload_pending"]))


def _epoch_or_none(moment: datetime | None) -> int | None:
    return epoch(moment) if moment is not None else None


def _text(value: object) -> str | None:
    return str(value) if value is not None else None


def _state(row: sa.Row[object]) -> AlertState:
    m = row._mapping
    return AlertState(
        status=Status(str(m["status"])), period=at_epoch(int(str(m["period"]))).date(),
        since=at_epoch(int(str(m["since"]))), severity=Severity(str(m["severity"])),
        clear_since=_moment(m["clear_since"]), last_notified=_moment(m["last_notified"]),
        notified_severity=Severity(str(m["notified_severity"])) if m["notified_severity"]
        else None)


def _moment(value: object) -> datetime | None:
    return at_epoch(int(str(value))) if value is not None else None


def _state_row(key: tuple[str, Condition], s: AlertState) -> dict[str, object]:
    return {"budget": key[0], "condition": key[1].value, "status": s.status.value,
            "period": day_epoch(s.period), "since": epoch(s.since),
            "severity": s.severity.value,
            "clear_since": epoch(s.clear_since) if s.clear_since else None,
            "last_notified": epoch(s.last_notified) if s.last_notified else None,
            "notified_severity": s.notified_severity.value if s.notified_severity else None}

