"""On-call operations: the fallback's status, pin and release, and silences, each audited.

A pin holds the fallback at a tier, above or below what policy wants, until it expires or is
released; the next tick applies it to the env and state files. ``Ops`` works over the state
store's parts; the CLI, the HTTP endpoint and Slack all call it, each saying who acts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from guard.core.policy import Condition, Override
from guard.core.records import AuditEntry, Silence
from guard.errors import InvalidInput
from guard.shell.ports import SilencePort, StatePort

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")
MAX_PIN = timedelta(days=31)
MAX_REASON = 500
"""The longest reason kept in the audit log (characters)."""


def parse_duration(raw: str) -> timedelta:
    """``30m``, ``4h``, ``2d`` or ``1h30m`` as a positive timedelta of at most 31 days."""
    match = _DURATION.fullmatch(raw.strip())
    if not raw.strip() or match is None or not any(match.groups()):
        raise InvalidInput([("--for", f"not a duration like 30m, 4h or 2d: {_echo(raw)}")])
    try:
        days, hours, minutes = (int(g or 0) for g in match.groups())
        length = timedelta(days=days, hours=hours, minutes=minutes)
    except (OverflowError, ValueError):  # 10**30h, or more digits than int() reads
        length = MAX_PIN * 2
    if not timedelta(0) < length <= MAX_PIN:
        raise InvalidInput([("--for", f"must be more than 0 and at most 31 days: {_echo(raw)}")])
    return length


@dataclass(frozen=True, slots=True)
class Ops:
    """On-call operations over the state store, for a chain, its models and the budgets."""

    records: StatePort
    silences: SilencePort
    chain: tuple[str, ...]
    models: Mapping[str, str]
    budgets: tuple[str, ...]
    env_file: str = ""

    def pin(self, tier: str, duration: str, *, reason: str, who: str, now: datetime,
            dry_run: bool = False) -> Override:
        """Pin the fallback at ``tier`` for ``duration``; audited."""
        if tier not in self.chain:
            raise InvalidInput([("TIER", f"{tier!r} is not in fallback.chain "
                                        f"{list(self.chain)}")])
        why = check_reason(reason)
        override = Override(tier, now + parse_duration(duration), why, who)
        if not dry_run:
            before = self.records.override()
            self.records.save_override(override, now)
            self.records.audit(AuditEntry(
                now, who, "pin", "fallback", _describe(before, now),
                f"{tier} until {override.expires_at:%Y-%m-%dT%H:%M:%SZ}", override.reason))
        return override

    def release(self, *, reason: str, who: str, now: datetime,
                dry_run: bool = False) -> Override | None:
        """Remove the pin, if any; audited. Returns the pin that was released."""
        why = check_reason(reason)
        current = self.records.override()
        if current is None or dry_run:
            return current
        self.records.clear_override()
        self.records.audit(AuditEntry(now, who, "release", "fallback", _describe(current, now),
                                      None, why))
        return current

    def tier_in_force(self) -> str:
        """The tier the last tick put in force (the chain's first before any tick)."""
        state = self.records.fallback()
        return state.tier if state else self.chain[0]

    def fallback_status(self, now: datetime) -> dict[str, Any]:
        """The fallback in force, its reason and firing conditions, and the pin if any."""
        state, override = self.records.fallback(), self.records.override()
        recent = self.records.audit_entries(limit=5)
        return {
            "tier": state.tier if state else self.chain[0],
            "model": state.model if state else self.models.get(self.chain[0]),
            "source": state.source if state else "auto",
            "updated_at": f"{state.updated_at:%Y-%m-%dT%H:%M:%SZ}" if state else None,
            "reason": state.reason if state else "no tick has run yet",
            "firing": list(state.firing) if state else [],
            "reload_pending": state.reload_pending if state else False,
            "override": None if override is None else {
                "tier": override.tier, "by": override.who, "reason": override.reason,
                "expires_at": f"{override.expires_at:%Y-%m-%dT%H:%M:%SZ}",
                "active": override.active(now)},
            "env_file": self.env_file,
            "recent_changes": [{"at": f"{e.at:%Y-%m-%dT%H:%M:%SZ}", "who": e.who,
                                "action": e.action, "before": e.before, "after": e.after,
                                "reason": e.reason} for e in recent],
        }

    def silence_add(self, budget: str, condition: str | None, duration: str, *, reason: str,
                    who: str, now: datetime, dry_run: bool = False) -> Silence:
        """Mute a budget's notifications (or one condition's) for ``duration``; audited."""
        if budget not in self.budgets:
            raise InvalidInput([("--budget", f"{budget!r} is not a configured budget "
                                            f"{list(self.budgets)}")])
        if condition is not None and condition not in {c.value for c in Condition}:
            raise InvalidInput([("--condition", f"{condition!r} is not one of "
                                               f"{[c.value for c in Condition]}")])
        why, ends = check_reason(reason), now + parse_duration(duration)
        if dry_run:
            return Silence(0, budget, condition, now, ends, why, who)
        silence_id = self.silences.add_silence(budget, condition, ends, reason=why, who=who,
                                               now=now)
        self.records.audit(AuditEntry(now, who, "silence", f"{budget}:{condition or '*'}",
                                      None, f"until {ends:%Y-%m-%dT%H:%M:%SZ}", why))
        return Silence(silence_id, budget, condition, now, ends, why, who)

    def silence_list(self, now: datetime, everything: bool = False) -> list[Silence]:
        """Active silences (or all of them)."""
        return self.silences.silences(None if everything else now)

    def silence_expire(self, silence_id: int, *, who: str, now: datetime) -> bool:
        """End a silence now; audited. False if no such active silence."""
        ended = self.silences.expire_silence(silence_id, now)
        if ended:
            self.records.audit(AuditEntry(now, who, "silence_expired", f"silence {silence_id}",
                                          None, None, "expired by hand"))
        return ended


def describe_status(status: dict[str, Any]) -> str:
    """``Ops.fallback_status`` in lines for a terminal."""
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


def _echo(raw: str, limit: int = 40) -> str:
    """``raw`` quoted for an error message, cut short: input is never echoed unbounded."""
    return repr(raw) if len(raw) <= limit else f"{raw[:limit]!r}… ({len(raw)} characters)"


def check_reason(reason: str) -> str:
    """``reason`` stripped; blank or longer than ``MAX_REASON`` is refused, naming the field."""
    why = reason.strip()
    if not why:
        raise InvalidInput([("--reason", "required: say why, for the audit log")])
    if len(why) > MAX_REASON:
        raise InvalidInput([("--reason", f"at most {MAX_REASON} characters (got {len(why)})")])
    return why


def _describe(override: Override | None, now: datetime) -> str | None:
    if override is None:
        return None
    state = "" if override.active(now) else " (expired)"
    return f"{override.tier} until {override.expires_at:%Y-%m-%dT%H:%M:%SZ}{state}"
