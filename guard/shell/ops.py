"""On-call operations on the fallback: status, pin and release, each audited.

A pin holds the fallback at a tier, above or below what policy wants, until it expires or is
released; the next tick applies it to the env and state files. Who did it is the OS user (or
``$GUARD_ACTOR``, for wrappers that act for someone else).
"""

from __future__ import annotations

import getpass
import os
import re
from datetime import datetime, timedelta
from typing import Any

from guard.adapters.store.engine import Store
from guard.adapters.store.outbox import Outbox, Silence
from guard.adapters.store.state import AuditEntry, Records
from guard.config import Settings
from guard.core.policy import Condition, Override
from guard.errors import ConfigError

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")
MAX_PIN = timedelta(days=31)


def caller() -> str:
    """Who is acting: ``$GUARD_ACTOR`` or the OS user."""
    actor = os.environ.get("GUARD_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def parse_duration(raw: str) -> timedelta:
    """``30m``, ``4h``, ``2d`` or ``1h30m`` as a positive timedelta of at most 31 days."""
    match = _DURATION.fullmatch(raw.strip())
    if not raw.strip() or match is None or not any(match.groups()):
        raise ConfigError([("--for", f"not a duration like 30m, 4h or 2d: {raw!r}")])
    days, hours, minutes = (int(g or 0) for g in match.groups())
    length = timedelta(days=days, hours=hours, minutes=minutes)
    if not timedelta(0) < length <= MAX_PIN:
        raise ConfigError([("--for", f"must be more than 0 and at most 31 days: {raw!r}")])
    return length


def pin(settings: Settings, tier: str, duration: str, *, reason: str, who: str, now: datetime,
        dry_run: bool = False) -> Override:
    """Pin the fallback at ``tier`` for ``duration``; audited."""
    if tier not in settings.fallback.chain:
        raise ConfigError([("TIER", f"{tier!r} is not in fallback.chain "
                                    f"{list(settings.fallback.chain)}")])
    if not reason.strip():
        raise ConfigError([("--reason", "required: say why, for the audit log")])
    override = Override(tier, now + parse_duration(duration), reason.strip(), who)
    if not dry_run:
        with _records(settings) as records:
            before = records.override()
            records.save_override(override, now)
            records.audit(AuditEntry(now, who, "pin", "fallback", _describe(before, now),
                                     f"{tier} until {override.expires_at:%Y-%m-%dT%H:%M:%SZ}",
                                     override.reason))
    return override


def release(settings: Settings, *, reason: str, who: str, now: datetime,
            dry_run: bool = False) -> Override | None:
    """Remove the pin, if any; audited. Returns the pin that was released."""
    with _records(settings) as records:
        current = records.override()
        if current is None or dry_run:
            return current
        records.clear_override()
        records.audit(AuditEntry(now, who, "release", "fallback", _describe(current, now),
                                 None, reason))
    return current


def fallback_status(settings: Settings, now: datetime) -> dict[str, Any]:
    """The fallback in force, its reason and firing conditions, and the pin if any."""
    with _records(settings) as records:
        state, override = records.fallback(), records.override()
        recent = records.audit_entries(limit=5)
    return {
        "tier": state.tier if state else settings.fallback.chain[0],
        "model": state.model if state else settings.fallback.models.get(
            settings.fallback.chain[0]),
        "source": state.source if state else "auto",
        "updated_at": f"{state.updated_at:%Y-%m-%dT%H:%M:%SZ}" if state else None,
        "reason": state.reason if state else "no tick has run yet",
        "firing": list(state.firing) if state else [],
        "reload_pending": state.reload_pending if state else False,
        "override": None if override is None else {
            "tier": override.tier, "by": override.who, "reason": override.reason,
            "expires_at": f"{override.expires_at:%Y-%m-%dT%H:%M:%SZ}",
            "active": override.active(now)},
        "env_file": str(settings.fallback.env_file),
        "recent_changes": [{"at": f"{e.at:%Y-%m-%dT%H:%M:%SZ}", "who": e.who,
                            "action": e.action, "before": e.before, "after": e.after,
                            "reason": e.reason} for e in recent],
    }


def describe_status(status: dict[str, Any]) -> str:
    """``fallback_status`` in lines for a terminal."""
    lines = [f"tier {status['tier']} ({status['model']}), source {status['source']}, "
             f"since {status['updated_at'] or '—'}", f"why: {status['reason']}"]
    if status["firing"]:
        lines.append("firing: " + ", ".join(status["firing"]))
    pin_ = status["override"]
    if pin_:
        state = "active" if pin_["active"] else "expired"
        lines.append(f"pin ({state}): {pin_['tier']} by {pin_['by']} until "
                     f"{pin_['expires_at']}: {pin_['reason']}")
    for e in status["recent_changes"]:
        lines.append(f"  {e['at']} {e['who']}: {e['action']} {e['before'] or '—'} → "
                     f"{e['after'] or '—'} ({e['reason']})")
    return "\n".join(lines)


def _describe(override: Override | None, now: datetime) -> str | None:
    if override is None:
        return None
    state = "" if override.active(now) else " (expired)"
    return f"{override.tier} until {override.expires_at:%Y-%m-%dT%H:%M:%SZ}{state}"


class _records:
    """Open the store of ``settings`` as ``Records`` for one operation."""

    def __init__(self, settings: Settings) -> None:
        self.store = Store.connect(settings.state.url)

    def __enter__(self) -> Records:
        return Records(self.store)

    def __exit__(self, *_: object) -> None:
        self.store.close()


def silence_add(settings: Settings, budget: str, condition: str | None, duration: str, *,
                reason: str, who: str, now: datetime, dry_run: bool = False) -> Silence:
    """Mute a budget's notifications (or one condition's) for ``duration``; audited."""
    names = [b.name for b in settings.budgets]
    if budget not in names:
        raise ConfigError([("--budget", f"{budget!r} is not a configured budget {names}")])
    if condition is not None and condition not in {c.value for c in Condition}:
        raise ConfigError([("--condition", f"{condition!r} is not one of "
                                           f"{[c.value for c in Condition]}")])
    if not reason.strip():
        raise ConfigError([("--reason", "required: say why, for the audit log")])
    ends = now + parse_duration(duration)
    if dry_run:
        return Silence(0, budget, condition, now, ends, reason.strip(), who)
    with _records(settings) as records:
        outbox = Outbox(records.store)
        silence_id = outbox.add_silence(budget, condition, ends, reason=reason.strip(),
                                        who=who, now=now)
        records.audit(AuditEntry(now, who, "silence", f"{budget}:{condition or '*'}", None,
                                 f"until {ends:%Y-%m-%dT%H:%M:%SZ}", reason.strip()))
    return Silence(silence_id, budget, condition, now, ends, reason.strip(), who)


def silence_list(settings: Settings, now: datetime, everything: bool = False) -> list[Silence]:
    """Active silences (or all of them)."""
    with _records(settings) as records:
        return Outbox(records.store).silences(None if everything else now)


def silence_expire(settings: Settings, silence_id: int, *, who: str, now: datetime) -> bool:
    """End a silence now; audited. False if no such active silence."""
    with _records(settings) as records:
        ended = Outbox(records.store).expire_silence(silence_id, now)
        if ended:
            records.audit(AuditEntry(now, who, "silence_expired", f"silence {silence_id}",
                                     None, None, "expired by hand"))
    return ended
