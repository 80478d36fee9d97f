"""Fallback targets: which applications read which files, and which budgets may cap them. Pure.

A target is one set of fallback outputs (env file, state file, reload hook) with its chain of
tiers and their models. A budget's firing conditions cap only the targets that list it
(``budgets``; every budget when it lists none), so a research workspace's runaway never
degrades production. Without ``[[fallback.targets]]`` there is one target, ``default``, for
every budget: the fallback as it always was.

A target's chain is ``[fallback].chain`` or a part of it in the same order; a ceiling naming a
tier the target does not have caps it at its first tier at or below that one (its last tier
when it has none below).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from guard.core.model import Budget
from guard.core.policy import Ceiling, Condition, Override, PolicyConfig, ceiling, effective

DEFAULT_TARGET = "default"


@dataclass(frozen=True, slots=True)
class Target:
    """One set of fallback outputs: its name, its chain of tiers and their models, and the
    budgets that may cap it (``None``: every budget)."""

    name: str
    chain: tuple[str, ...]
    models: Mapping[str, str] = field(default_factory=dict)
    budgets: tuple[str, ...] | None = None

    def covers(self, budget: str) -> bool:
        """Whether ``budget``'s conditions cap this target."""
        return self.budgets is None or budget in self.budgets


def target_ceiling(target: Target, firing: Iterable[tuple[Budget, Condition]],
                   policy: PolicyConfig, *, hold: str | None, pin: Override | None,
                   now: datetime) -> Ceiling:
    """The ceiling of ``target``: the most restrictive of the conditions of the budgets it
    covers, along its own chain; never below ``hold`` (the tier it had while data is stale);
    replaced by its active ``pin``."""
    mine = [(budget, condition) for budget, condition in firing if target.covers(budget.name)]
    auto = ceiling(mine, policy)
    level = _along(target.chain, policy.chain, auto.level)
    because = list(auto.because)
    if hold is not None and hold in target.chain:
        held = target.chain.index(hold)
        if held > level:
            because.append(f"held at {hold} while data is stale")
            level = held
    own = Ceiling(target.chain[level], level, tuple(because))
    return effective(own, pin, now, replace(policy, chain=target.chain))


def _along(chain: tuple[str, ...], full: tuple[str, ...], level: int) -> int:
    """The level of ``chain`` (a part of ``full``) at or below ``full``'s ``level``."""
    for index, tier in enumerate(chain):
        if tier in full and full.index(tier) >= level:
            return index
    return len(chain) - 1


def fallback_subject(target: str) -> str:
    """The audit log's subject for ``target``'s fallback: ``fallback`` for ``default`` (as it
    always was), ``fallback:research`` for the others."""
    return "fallback" if target == DEFAULT_TARGET else f"fallback:{target}"
