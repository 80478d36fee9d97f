"""The fallback in force and the files it is rendered into (DESIGN §5). Pure.

``FallbackState`` is a tier of the chain, its model and the models below it. ``render_env``
and ``render_state`` turn it into the env file and the JSON state file applications read;
values keep to ``[A-Za-z0-9_.,:/@+-]``, and rendering anything else raises ``ValueError``
before a byte is written. Writing the files is ``guard.adapters.sinks``'s job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SOURCES: tuple[str, ...] = ("auto", "override")
_VALUE = re.compile(r"[A-Za-z0-9_.,:/@+-]+")
_CHAIN_ITEM = re.compile(r"[A-Za-z0-9_.:/@+-]+")  # the chain is comma-joined
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GUARD_VARS = ("GUARD_MODEL_CHAIN", "GUARD_TIER", "GUARD_LEVEL", "GUARD_SOURCE",
               "GUARD_UPDATED_AT")


@dataclass(frozen=True, slots=True)
class FallbackState:
    """The fallback in force: a tier of the chain, its model and the models below it.

    The same value is what the tick wants, what the files say and what the store remembers;
    ``reload_pending`` says that the reload hook still owes a run for it.
    """

    tier: str
    level: int
    model: str
    chain: tuple[str, ...]
    source: str
    updated_at: datetime
    reason: str
    firing: tuple[str, ...]
    override_expires_at: datetime | None = None
    override_by: str | None = None
    override_reason: str | None = None
    reload_pending: bool = False

    def __post_init__(self) -> None:
        if not self.chain or self.chain[0] != self.model:
            raise ValueError(f"chain {self.chain!r} must start with the model {self.model!r}")
        if self.level < 0:
            raise ValueError(f"level {self.level} is negative")
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r} is not one of {', '.join(SOURCES)}")
        for name in ("updated_at", "override_expires_at"):
            moment = getattr(self, name)
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"{name} {moment.isoformat()} has no time zone")

    @classmethod
    def build(cls, chain_tiers: Sequence[str], models_by_tier: Mapping[str, str], level: int,
              *, source: str, updated_at: datetime, reason: str, firing: Sequence[str] = (),
              override_expires_at: datetime | None = None, override_by: str | None = None,
              override_reason: str | None = None) -> FallbackState:
        """The state at ``level`` of ``chain_tiers``, its models looked up in ``models_by_tier``."""
        if not 0 <= level < len(chain_tiers):
            raise ValueError(f"level {level} is outside the chain {list(chain_tiers)}")
        missing = [tier for tier in chain_tiers[level:] if tier not in models_by_tier]
        if missing:
            raise ValueError(f"no model for tier {', '.join(missing)}")
        models = tuple(models_by_tier[tier] for tier in chain_tiers[level:])
        return cls(chain_tiers[level], level, models[0], models, source, updated_at, reason,
                   tuple(firing), override_expires_at, override_by, override_reason)

    def same_target(self, other: FallbackState) -> bool:
        """Whether ``other`` sends applications to the same place (tier, model, chain, source)."""
        return (self.tier, self.model, self.chain, self.source) == (
            other.tier, other.model, other.chain, other.source)

    def same_tier(self, other: FallbackState) -> bool:
        """Whether ``other`` is the same tier, model and source: no change to announce."""
        return (self.tier, self.model, self.source) == (other.tier, other.model, other.source)


def utc_text(moment: datetime) -> str:
    """An aware time as RFC 3339 UTC to the second: ``2026-03-12T14:05:00Z``."""
    if moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


CLAUDE_CODE_ALIASES = ("opus", "sonnet", "haiku")
"""Claude Code's model aliases, each resolved through ``ANTHROPIC_DEFAULT_<ALIAS>_MODEL``."""
SUBAGENT_VAR = "CLAUDE_CODE_SUBAGENT_MODEL"


def alias_var(alias: str) -> str:
    """The variable Claude Code resolves an alias through: ``ANTHROPIC_DEFAULT_OPUS_MODEL``."""
    return f"ANTHROPIC_DEFAULT_{alias.upper()}_MODEL"


def alias_models(chain: Sequence[str]) -> dict[str, str]:
    """What each Claude Code alias resolves to with ``chain`` (the models from the tier in
    force down) in force: the first model of the chain of that family (``claude-opus-…`` for
    ``opus``), else the tier in force's model, so no alias reaches above it (reference §10).

    Only the chain in force is read, so a sidecar holding ``GET /v1/fallback`` alone
    computes the same variables.
    """
    return {alias: next((model for model in chain if _of_family(alias, model)), chain[0])
            for alias in CLAUDE_CODE_ALIASES}


def _of_family(alias: str, model: str) -> bool:
    """Whether ``model`` names ``alias`` as a word: ``vendor/claude-haiku-5-5@v1`` is haiku."""
    return re.search(rf"(^|[-_./:@]){re.escape(alias)}([-_./:@]|$)", model) is not None


def allowed_models(state: FallbackState) -> list[str]:
    """The model ids at or below the tier in force (the chain from it down): what Claude
    Code's ``availableModels`` may offer without a ``/model`` switch escaping the tier."""
    return list(state.chain)


def render_env(state: FallbackState, model_var: str = "ANTHROPIC_MODEL",
               claude_code: bool = False) -> str:
    """The env file of DESIGN §5; raises ``ValueError`` naming the variable of a bad value.

    With ``claude_code``, Claude Code's variables follow the model variable: each alias's
    ``ANTHROPIC_DEFAULT_*_MODEL`` (``alias_models``) and ``CLAUDE_CODE_SUBAGENT_MODEL`` (the
    tier in force), so neither an alias nor a subagent resolves above the tier.
    """
    if not ENV_NAME.fullmatch(model_var) or model_var in _GUARD_VARS or (
            claude_code and model_var in _claude_code_vars()):
        raise ValueError(f"{model_var!r} cannot be the model variable")
    aliases = alias_models(state.chain) if claude_code else {}
    claude_code_pairs = (
        (*((alias_var(a), aliases[a]) for a in CLAUDE_CODE_ALIASES), (SUBAGENT_VAR, state.model))
        if claude_code else ())
    pairs = (
        (model_var, state.model),
        *claude_code_pairs,
        ("GUARD_MODEL_CHAIN", ",".join(state.chain)),
        ("GUARD_TIER", state.tier),
        ("GUARD_LEVEL", str(state.level)),
        ("GUARD_SOURCE", state.source),
        ("GUARD_UPDATED_AT", utc_text(state.updated_at)),
    )
    for name, value in pairs:
        if not _VALUE.fullmatch(value):
            raise ValueError(f"{name}: value {value!r} is empty or has characters outside "
                             "[A-Za-z0-9_.,:/@+-]")
    for model in state.chain:
        if not _CHAIN_ITEM.fullmatch(model):
            raise ValueError(f"GUARD_MODEL_CHAIN: model id {model!r} has characters outside "
                             "[A-Za-z0-9_.:/@+-]")
    return "".join(f"{name}={value}\n" for name, value in pairs)


def _claude_code_vars() -> tuple[str, ...]:
    return (*(alias_var(a) for a in CLAUDE_CODE_ALIASES), SUBAGENT_VAR)


def render_claude_settings(state: FallbackState, current: Mapping[str, Any]) -> str:
    """Claude Code's managed settings with ``model`` and ``availableModels`` capped at the tier
    in force; every other key of ``current`` (the file as it stands) kept as it is."""
    document = {**current, "model": state.model, "availableModels": allowed_models(state)}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def state_document(state: FallbackState) -> dict[str, Any]:
    """The state file's JSON object (also served by ``GET /v1/fallback``), keys in order."""
    return {
        "model": state.model,
        "chain": list(state.chain),
        "tier": state.tier,
        "level": state.level,
        "source": state.source,
        "updated_at": utc_text(state.updated_at),
        "reason": state.reason,
        "firing": list(state.firing),
        "override": _override_document(state),
    }


def _override_document(state: FallbackState) -> dict[str, str | None] | None:
    fields = (state.override_expires_at, state.override_by, state.override_reason)
    if state.source != "override" and all(field is None for field in fields):
        return None
    expires = state.override_expires_at
    return {"expires_at": None if expires is None else utc_text(expires),
            "by": state.override_by, "reason": state.override_reason}


def render_state(state: FallbackState) -> str:
    """The state file: ``state_document`` as indented JSON with a trailing newline."""
    return json.dumps(state_document(state), indent=2, ensure_ascii=False) + "\n"


def parse_time(text: str) -> datetime:
    """An RFC 3339 UTC time as ``utc_text`` writes it; ``ValueError`` otherwise."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.utcoffset() is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment.astimezone(UTC)


def from_state_document(document: Mapping[str, Any]) -> FallbackState:
    """The fallback a state file says is in force (``state_document``'s inverse);
    ``ValueError`` (or ``KeyError``/``TypeError``) for anything else."""
    override = document.get("override") or {}
    expires = override.get("expires_at") if isinstance(override, Mapping) else None
    return FallbackState(
        str(document["tier"]), int(document["level"]), str(document["model"]),
        tuple(str(m) for m in document["chain"]), str(document["source"]),
        parse_time(str(document["updated_at"])), str(document.get("reason") or ""),
        tuple(str(f) for f in document.get("firing") or ()),
        override_expires_at=parse_time(str(expires)) if expires else None,
        override_by=override.get("by") if isinstance(override, Mapping) else None,
        override_reason=override.get("reason") if isinstance(override, Mapping) else None)


def from_env(values: Mapping[str, str], model_var: str = "ANTHROPIC_MODEL") -> FallbackState:
    """The fallback an env file says is in force (tier, level, models; no reasons)."""
    return FallbackState(
        values["GUARD_TIER"], int(values["GUARD_LEVEL"]), values[model_var],
        tuple(values["GUARD_MODEL_CHAIN"].split(",")), values["GUARD_SOURCE"],
        parse_time(values["GUARD_UPDATED_AT"]), "read from the env file", ())
