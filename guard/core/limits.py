"""Anthropic's own spend limits (reference §7, §9) and the budgets they cover. Pure.

The Spend Limits API lists an organization's configured limits: the ``organization`` limit,
each ``workspace`` limit and the read-only ``usage_tier`` cap, each monthly, in cents. When
one of them is reached Anthropic stops the traffic it covers, whatever the guard's fallback
says, so a budget whose own scope has such a limit is warned (``provider_cap_near``) before
spend reaches it.

A budget is covered by a limit on its own scope: an ``organization`` budget by the
organization limit and the usage-tier cap (the lower one counts), a ``workspace`` budget by
its workspace's limit. API-key and model budgets have no Anthropic limit of their own. Only
monthly, enabled limits in US dollars with an amount count; one without an amount is no cap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from guard.core.model import Budget, Scope

ORGANIZATION_SCOPES = ("organization", "usage_tier")
DEFAULT_CAP_PCT = Decimal(90)


@dataclass(frozen=True, slots=True)
class ProviderLimit:
    """One configured Anthropic spend limit."""

    id: str
    scope: str
    """``organization``, ``workspace``, ``usage_tier`` (or an Enterprise scope, unused)."""
    workspace_id: str | None
    amount_usd: Decimal | None
    """The cap in dollars (the API's cents / 100); ``None``: no numeric cap."""
    period: str
    enabled: bool = True
    currency: str = "USD"

    @property
    def counts(self) -> bool:
        """Whether this limit caps monthly USD spend at an amount."""
        return (self.enabled and self.amount_usd is not None and self.period == "monthly"
                and self.currency.upper() == "USD")

    def describe(self) -> str:
        """``workspace wrkspc_… $500.00/month`` for reports."""
        where = (f"workspace {self.workspace_id}" if self.scope == "workspace"
                 else self.scope.replace("_", " "))
        amount = "no cap" if self.amount_usd is None else f"${self.amount_usd:,.2f}"
        per = {"daily": "day", "weekly": "week", "monthly": "month"}.get(self.period,
                                                                         self.period)
        return f"{where} {amount}/{per}"


def covering(budget: Budget, limits: Iterable[ProviderLimit]) -> ProviderLimit | None:
    """The lowest counting limit on ``budget``'s own scope, or ``None``."""
    mine = [limit for limit in limits if limit.counts and _covers(limit, budget)]
    return min(mine, key=lambda limit: (limit.amount_usd, limit.id), default=None)


def _covers(limit: ProviderLimit, budget: Budget) -> bool:
    if budget.scope is Scope.ORGANIZATION:
        return limit.scope in ORGANIZATION_SCOPES
    if budget.scope is Scope.WORKSPACE:
        return limit.scope == "workspace" and limit.workspace_id == budget.match
    return False


def cap_near(spend_usd: Decimal, limit: ProviderLimit | None,
             pct: Decimal = DEFAULT_CAP_PCT) -> bool:
    """Whether ``spend_usd`` has reached ``pct`` % of ``limit``."""
    if limit is None or limit.amount_usd is None:
        return False
    return spend_usd >= limit.amount_usd * pct / 100
