"""On-call operations: the fallback's status, pin and release, and silences, each audited.

A pin holds one target's fallback at a tier, above or below what policy wants, until it
expires or is released; the next tick applies it to that target's env and state files, and no
other target's. ``Ops`` works over the state store's parts; the CLI, the HTTP endpoint and
Slack all call it, each saying who acts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from guard.core.fallback import FallbackState
from guard.core.policy import Condition, Override
from guard.core.records import AuditEntry, Silence
from guard.core.targets import DEFAULT_TARGET, Target, fallback_subject
from guard.errors import InvalidInput
from guard.shell.ports import SilencePort, StatePort

log = logging.getLogger(__name__)

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
    """On-call operations over the state store, for a chain, its models and the budgets,
    and the fallback targets (none: the one target ``default``)."""

    records: StatePort
    silences: SilencePort
    chain: tuple[str, ...]
    models: Mapping[str, str]
    budgets: tuple[str, ...]
    env_file: str = ""
    targets: tuple[Target, ...] = ()
    env_files: Mapping[str, str] = field(default_factory=dict)
    """Each target's env file (shown by ``fallback_status``)."""

    def every_target(self) -> tuple[Target, ...]:
        """The targets, the first one first."""
        return self.targets or (Target(DEFAULT_TARGET, self.chain, self.models),)

    def target(self, name: str | None) -> Target:
        """The target called ``name`` (``None``: the first); refused, naming the field, if
        there is no such target."""
        targets = self.every_target()
        if name is None:
            return targets[0]
        found = next((t for t in targets if t.name == name), None)
        if found is None:
            raise InvalidInput([("--target", f"{_echo(name)} is not a fallback target "
                                             f"{[t.name for t in targets]}")])
        return found

    def pin(self, tier: str, duration: str, *, reason: str, who: str, now: datetime,
            dry_run: bool = False, target: str | None = None) -> Override:
        """Pin ``target``'s fallback (the first's by default) at ``tier`` for ``duration``;
        audited. Every other target is left as it is."""
        chosen = self.target(target)
        if tier not in chosen.chain:
            where = "fallback.chain" if not self.targets else f"target {chosen.name}'s chain"
            raise InvalidInput([("TIER", f"{tier!r} is not in {where} {list(chosen.chain)}")])
        why = check_reason(reason)
        override = Override(tier, now + parse_duration(duration), why, who)
        if not dry_run:
            self.migrate(now)
            before = self.records.override(chosen.name)
            self.records.save_override(override, now, chosen.name)
            self.records.audit(AuditEntry(
                now, who, "pin", fallback_subject(chosen.name), _describe(before, now),
                f"{tier} until {override.expires_at:%Y-%m-%dT%H:%M:%SZ}", override.reason))
        return override

    def release(self, *, reason: str, who: str, now: datetime,
                dry_run: bool = False, target: str | None = None) -> Override | None:
        """Remove the pin on ``target`` (the first's by default), if any; audited. Returns
        the pin that was released."""
        chosen = self.target(target)
        why = check_reason(reason)
        current = self._pin(chosen.name)
        if current is None or dry_run:
            return current
        self.migrate(now)
        self.records.clear_override(chosen.name)
        self.records.audit(AuditEntry(now, who, "release", fallback_subject(chosen.name),
                                      _describe(current, now), None, why))
        return current

    def migrate(self, now: datetime) -> bool:
        """Carry a one-target store's fallback and pin to the configured targets."""
        return migrate_targets(self.records, [t.name for t in self.every_target()], now)

    def tier_in_force(self, target: str | None = None) -> str:
        """The tier the last tick put in force on ``target`` (the chain's first before any
        tick)."""
        chosen = self.target(target)
        state = self._state(chosen.name)
        return state.tier if state else chosen.chain[0]

    def _state(self, name: str) -> FallbackState | None:
        """``name``'s fallback; a one-target store's (``default``) until a tick moves it."""
        state = self.records.fallback(name)
        if state is None and self._unmigrated():
            return self.records.fallback(DEFAULT_TARGET)
        return state

    def _pin(self, name: str) -> Override | None:
        pin = self.records.override(name)
        if pin is None and self._unmigrated():
            return self.records.override(DEFAULT_TARGET)
        return pin

    def _unmigrated(self) -> bool:
        return DEFAULT_TARGET not in {t.name for t in self.every_target()}

    def fallback_status(self, now: datetime) -> dict[str, Any]:
        """The first target's fallback in force, its reason and firing conditions, and the
        pin if any; ``targets`` has the same for every target, with its name."""
        targets = [self.target_status(t, now) for t in self.every_target()]
        recent = self.records.audit_entries(limit=5)
        head = {k: v for k, v in targets[0].items() if k not in ("name", "budgets")}
        return {**head, "recent_changes": [
            {"at": f"{e.at:%Y-%m-%dT%H:%M:%SZ}", "who": e.who, "action": e.action,
             "before": e.before, "after": e.after, "reason": e.reason} for e in recent],
            "targets": targets}

    def target_status(self, target: Target, now: datetime) -> dict[str, Any]:
        """One target's fallback in force, why, and its pin."""
        state, override = self._state(target.name), self._pin(target.name)
        chain = target.chain
        return {
            "name": target.name,
            "tier": state.tier if state else chain[0],
            "model": state.model if state else target.models.get(chain[0]),
            "source": state.source if state else "auto",
            "updated_at": f"{state.updated_at:%Y-%m-%dT%H:%M:%SZ}" if state else None,
            "reason": state.reason if state else "no tick has run yet",
            "firing": list(state.firing) if state else [],
            "reload_pending": state.reload_pending if state else False,
            "override": None if override is None else {
                "tier": override.tier, "by": override.who, "reason": override.reason,
                "expires_at": f"{override.expires_at:%Y-%m-%dT%H:%M:%SZ}",
                "active": override.active(now)},
            "env_file": self.env_files.get(target.name, self.env_file),
            "budgets": None if target.budgets is None else list(target.budgets),
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
    """``Ops.fallback_status`` in lines for a terminal: every target when there are
    several, each with its name."""
    targets = status.get("targets") or [status]
    lines = []
    for target in targets:
        lines += _describe_target(target, named=len(targets) > 1)
    for e in status["recent_changes"]:
        lines.append(f"  {e['at']} {e['who']}: {e['action']} {e['before'] or '—'} → "
                     f"{e['after'] or '—'} ({e['reason']})")
    return "\n".join(lines)


def _describe_target(status: dict[str, Any], named: bool) -> list[str]:
    head = f"target {status['name']}: " if named else ""
    covers = status.get("budgets")
    lines = [f"{head}tier {status['tier']} ({status['model']}), source {status['source']}, "
             f"since {status['updated_at'] or '—'}", f"why: {status['reason']}"]
    if named:
        lines.append("budgets: " + ("every budget" if covers is None else
                                    ", ".join(covers) or "none"))
    if status["firing"]:
        lines.append("firing: " + ", ".join(status["firing"]))
    pin_ = status["override"]
    if pin_:
        state = "active" if pin_["active"] else "expired"
        lines.append(f"pin ({state}): {pin_['tier']} by {pin_['by']} until "
                     f"{pin_['expires_at']}: {pin_['reason']}")
    return lines


def migrate_targets(records: StatePort, names: Sequence[str], now: datetime) -> bool:
    """Carry a one-target store's fallback and pin (kept as ``default``) to configured
    targets that have none of their own, then forget ``default`` (one transaction), so a
    config that gains ``[[fallback.targets]]`` loses neither its tier nor its pin."""
    if DEFAULT_TARGET in names:
        return False
    old, pin = records.fallback(DEFAULT_TARGET), records.override(DEFAULT_TARGET)
    if old is None and pin is None:
        return False
    with records.together():
        for name in names:
            if old is not None and records.fallback(name) is None:
                records.save_fallback(old, name)
            if pin is not None and records.override(name) is None:
                records.save_override(pin, now, name)
        records.clear_fallback(DEFAULT_TARGET)
        records.clear_override(DEFAULT_TARGET)
    log.info("moved the stored fallback and pin of target default to %s", ", ".join(names))
    return True


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
