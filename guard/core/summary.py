"""DESIGN §3's JSON: the report of ``guard report`` and the tick report of ``guard check``. Pure.

Money leaves ``Decimal`` here, rounded to a hundredth of a cent; no field is ever renamed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from guard.core.assess import Assessment
from guard.core.decide import TargetPlan, TickPlan
from guard.core.directory import Directory
from guard.core.fallback import FallbackState
from guard.core.forecast import Forecast
from guard.core.keys import KeyDecision
from guard.core.limits import ProviderLimit
from guard.core.model import DEFAULT_WORKSPACE, Budget, BudgetSpend, Ledger, Scope
from guard.core.notices import Planned
from guard.core.outlook import describe_burn
from guard.core.policy import AlertState, BudgetInput, Condition, ceiling
from guard.core.reconcile import Drift
from guard.core.records import Notification, NotificationKind, Owed, ReloadResult

_HUNDREDTH_CENT = Decimal("0.0001")


def usd_number(amount: Decimal) -> float:
    """Dollars for JSON: rounded to a hundredth of a cent, the float repr shows those digits."""
    return float(amount.quantize(_HUNDREDTH_CENT, ROUND_HALF_EVEN))


def timestamp(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def budget_json(spend: BudgetSpend, item: BudgetInput | None = None,
                firing: Sequence[Condition] = (), tier: str | None = None) -> dict[str, Any]:
    """One budget of the report JSON."""
    b = spend.budget
    out: dict[str, Any] = {
        "name": b.name, "scope": str(b.scope), "match": b.match,
        "spend_usd": usd_number(spend.spend_usd),
        "authoritative_usd": usd_number(spend.authoritative_usd),
        "estimated_usd": usd_number(spend.estimated_usd),
        "soft_limit_usd": usd_number(b.soft_limit_usd),
        "hard_limit_usd": usd_number(b.hard_limit_usd),
    }
    if item is not None and item.forecast is not None:
        out["forecast"] = forecast_json(item.forecast)
    if item is not None and item.burn is not None:
        out["burn"] = describe_burn(item.burn)
    out["firing"] = [str(c) for c in firing]
    out["ceiling"] = tier
    if item is not None and item.provider_limit is not None:
        out["provider_limit"] = provider_limit_json(item.provider_limit) | {
            "warn_at_usd": usd_number(item.provider_cap_usd)
            if item.provider_cap_usd is not None else None}
    return out


def provider_limit_json(limit: ProviderLimit) -> dict[str, Any]:
    """One Anthropic spend limit for JSON (the amount in dollars, ``null``: no cap)."""
    return {"id": limit.id, "scope": limit.scope, "workspace_id": limit.workspace_id,
            "amount_usd": usd_number(limit.amount_usd) if limit.amount_usd is not None
            else None, "period": limit.period, "enabled": limit.enabled}


def provider_lines(a: Assessment) -> list[str]:
    """Each Anthropic spend limit next to the budgets it covers, for ``guard report``."""
    lines = []
    for item in a.inputs:
        limit = item.provider_limit
        if limit is None or limit.amount_usd is None:
            continue
        spend = item.spend.spend_usd
        pct = (spend / limit.amount_usd * 100) if limit.amount_usd else Decimal(0)
        lines.append(f"Anthropic limit {limit.describe()} covers {item.spend.budget.name}: "
                     f"${spend:,.2f} spent ({pct:.1f} %), warning at "
                     f"${item.provider_cap_usd or 0:,.2f}")
    return lines


def forecast_json(f: Forecast) -> dict[str, Any]:
    """The forecast of one budget for JSON."""
    return {"p10_usd": usd_number(f.p10_usd), "p50_usd": usd_number(f.p50_usd),
            "p90_usd": usd_number(f.p90_usd), "gated_in": f.gated_in,
            "exhaustion_day": f.exhaustion_day.isoformat() if f.exhaustion_day else None,
            "level_usd_per_day": usd_number(f.level_usd_per_day),
            "history_days": f.history_days}


def ledger_json(ledger: Ledger, api_requests: int) -> dict[str, Any]:
    """The ledger alone as report JSON (no forecast, no conditions)."""
    through = ledger.authoritative_through
    return {
        "at": timestamp(ledger.at),
        "data_through": timestamp(ledger.data_through),
        "authoritative_through": through.isoformat() if through else None,
        "budgets": [budget_json(s) for s in ledger.budgets],
        "api_requests": api_requests,
    }


def report_json(a: Assessment) -> dict[str, Any]:
    """The ``guard report --json`` object: DESIGN §3 fields plus billed/estimated splits."""
    out = ledger_json(a.ledger, a.api_requests)
    firing = a.outcome.firing
    out["budgets"] = [
        budget_json(spend, item, firing.get(spend.budget.name, ()),
                    budget_ceiling(spend, firing, a))
        for spend, item in zip(a.ledger.budgets, a.inputs, strict=True)]
    out["data_stale"] = a.stale
    out["source"] = a.source
    out["billed_through"] = timestamp(a.billed_through)
    out["unpriced_models"] = list(a.unpriced_models)
    out["price_drift"] = [drift_json(d) for d in a.price_drift]
    out["provider_limits"] = [provider_limit_json(limit) for limit in a.provider_limits]
    out["warnings"] = warnings(a)
    return out


def warnings(a: Assessment) -> list[str]:
    """What people should know about the figures: the billing source if ``auto`` fell back,
    unpriced models, then price drift."""
    source = [f"billing source: {a.source_note}"] if a.source_note else []
    return (source + [unpriced_warning(m) for m in a.unpriced_models]
            + [d.describe() for d in a.price_drift] + unmatched_warnings(a))


UNMATCHED_AFTER = timedelta(days=1)
"""A budget still at $0 this long into the month probably matches nothing."""


def unmatched_warnings(a: Assessment) -> list[str]:
    """Budgets at $0 whose ``match`` names nothing that exists: a mistyped ``match`` would
    stay silent forever (DESIGN §3 ``warnings``)."""
    found = (unmatched(s.budget, a) for s in a.ledger.budgets if s.spend_usd == 0)
    return [w for w in found if w]


def unmatched(budget: Budget, a: Assessment) -> str | None:
    """The warning for a budget that matched no usage this month, if its match is not known
    to exist: not in the organization's lists (workspaces, keys) or the price table (models).
    Unconfirmed (lists unread), it is the usage alone, once a day of the month has passed."""
    scope, match = budget.scope, budget.match or ""
    if scope is Scope.ORGANIZATION or (scope is Scope.WORKSPACE and match == DEFAULT_WORKSPACE):
        return None
    head = f"budget {budget.name} ({scope} {match}) matched no usage this month"
    exists = (_model_exists(match, a.priced_models) if scope is Scope.MODEL
              else _id_exists(match, a.directory))
    if exists is True:
        return None
    if exists is False and scope is Scope.MODEL:
        return (f"{head}, and no model in the price table starts with {match!r}: if the "
                "prefix is mistyped it can never alert")
    if exists is False and a.directory is not None:
        noun, listed = (("workspace", a.directory.workspaces_listed)
                        if scope is Scope.WORKSPACE else ("API key", a.directory.api_keys_listed))
        return (f"{head}, and the organization has no {noun} {match} ({listed} {noun}s "
                "listed): it can never alert; check the id")
    if a.ledger.at - a.ledger.period_start < UNMATCHED_AFTER:
        return None
    return (f"{head}: if its match is mistyped it can never alert (`guard doctor` checks "
            "it against the organization)")


def _model_exists(prefix: str, priced: Sequence[str]) -> bool | None:
    """Whether a priced model starts with ``prefix`` (``None``: no table to tell)."""
    return any(m.startswith(prefix) for m in priced) if priced else None


def _id_exists(match: str, directory: Directory | None) -> bool | None:
    """Whether the organization lists ``match`` (``None``: it was not looked up)."""
    if directory is None or match not in directory.workspaces | directory.api_keys:
        return None
    return match in directory.found


def drift_json(d: Drift) -> dict[str, Any]:
    """One entry of ``price_drift``."""
    return {"model": d.model, "day": d.day.isoformat(),
            "estimated_usd": usd_number(d.estimated_usd), "billed_usd": usd_number(d.billed_usd),
            "ratio": round(float(d.ratio), 4) if d.ratio is not None else None}


def unpriced_warning(model: str) -> str:
    """The warning for a model the price table does not know."""
    return (f"model {model} is not in the price table: its usage is estimated at the dearest "
            "card until billed; name it under [pricing]")


def budget_ceiling(spend: BudgetSpend, firing: Mapping[str, Sequence[Condition]],
                   a: Assessment) -> str | None:
    """The tier this budget alone would cap the fallback at (None: no cap)."""
    pairs = [(spend.budget, c) for c in firing.get(spend.budget.name, ())]
    chosen = ceiling(pairs, a.policy)
    return chosen.tier if chosen.level > 0 else None


@dataclass(frozen=True, slots=True)
class Sent:
    """One notification this tick decided, and whether Slack accepted it this tick."""

    notification: Notification
    delivered: bool
    muted: str | None = None


@dataclass(frozen=True, slots=True)
class TargetOutcome:
    """What acting did to one target's outputs: its reload hook and why its files could not
    be written (``None``: they were, or needed nothing)."""

    name: str
    reload: ReloadResult | None = None
    sink_error: str | None = None


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one tick saw and did; ``as_json`` is DESIGN §3's object."""

    assessment: Assessment
    fallback: FallbackState
    changed: bool
    reload: ReloadResult | None
    sent: tuple[Sent, ...]
    keys: tuple[KeyDecision, ...]
    upstream_error: str | None = None
    standby: bool = False
    owed: int = 0
    notification_errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    what_if: bool = False
    late: tuple[Owed, ...] = ()
    """Notifications owed by earlier ticks (a Slack outage) that this tick delivered."""
    store_error: str | None = None
    """Why the state store could not be used: the tick only tightened (DESIGN §6)."""
    sink_error: str | None = None
    """Why the fallback files could not be written (the old ones stay)."""
    organization: str | None = None
    """The organization of ``[[organizations]]`` this tick was for (``None``: the one)."""
    targets: tuple[TargetPlan, ...] = ()
    """Every target's fallback (the first is ``fallback``)."""
    outcomes: tuple[TargetOutcome, ...] = ()
    """What acting did to each target's outputs."""

    def as_json(self) -> dict[str, Any]:
        """The ``guard check --json`` object; ``organization`` first when it names one."""
        out = ({"organization": self.organization} if self.organization else {}) | \
            report_json(self.assessment)
        out["fallback"] = {"tier": self.fallback.tier, "model": self.fallback.model,
                           "chain": list(self.fallback.chain), "source": self.fallback.source,
                           "changed": self.changed, "reason": self.fallback.reason}
        if self.reload is not None and self.reload.ran:
            out["fallback"]["reload"] = {"ok": self.reload.ok, "detail": self.reload.detail}
        out["notifications"] = [
            {"budget": s.notification.budget, "condition": s.notification.condition,
             "kind": s.notification.kind, "delivered": s.delivered}
            | ({"muted": s.muted} if s.muted else {}) for s in self.sent]
        out["notifications"] += [late_json(o) for o in self.late]
        out["notifications_owed"] = self.owed
        out["notification_errors"] = list(self.notification_errors)
        out["standby"] = self.standby
        out["keys"] = [{"budget": k.budget, "key_id": k.key_id, "action": k.action,
                        "dry_run": k.dry_run, "done": k.done, "error": k.error}
                       for k in self.keys]
        out["upstream_error"] = self.upstream_error
        out["store_error"] = self.store_error
        out["fallback"]["error"] = self.sink_error
        out["targets"] = self.targets_json()
        out["what_if"] = self.what_if
        out["warnings"] = out["warnings"] + list(self.warnings)
        return out

    def targets_json(self) -> list[dict[str, Any]]:
        """Each target's fallback, as ``fallback`` shows the first's, with its name."""
        done = {o.name: o for o in self.outcomes}
        rows = []
        for target in self.targets:
            state, outcome = target.fallback, done.get(target.name, TargetOutcome(target.name))
            row: dict[str, Any] = {
                "name": target.name, "tier": state.tier, "model": state.model,
                "chain": list(state.chain), "source": state.source,
                "changed": target.changed and not self.standby, "reason": state.reason,
                "firing": list(state.firing)}
            if outcome.reload is not None and outcome.reload.ran:
                row["reload"] = {"ok": outcome.reload.ok, "detail": outcome.reload.detail}
            row["error"] = outcome.sink_error
            rows.append(row)
        return rows


def tick_report(plan: TickPlan, *, reload: ReloadResult | None = None,
                delivered: frozenset[str] = frozenset(), keys: tuple[KeyDecision, ...] = (),
                owed: int = 0, rejected: tuple[str, ...] = (), upstream_error: str | None = None,
                standby: bool = False, what_if: bool = False,
                announced: Sequence[Planned] = (), late: Sequence[Owed] = (),
                store_error: str | None = None, sink_error: str | None = None,
                extra_warnings: Sequence[str] = (),
                targets: Sequence[TargetOutcome] = ()) -> TickReport:
    """The report of a tick that decided ``plan`` and did what the other arguments say.

    A standby tick did nothing: it reports the assessment, and the fallback as unchanged.
    """
    if standby:
        return TickReport(plan.assessment, plan.fallback, False, None, (), (), upstream_error,
                          standby=True, store_error=store_error,
                          targets=plan.every_target())
    return TickReport(plan.assessment, plan.fallback, plan.changed, reload,
                      sent(plan, delivered, announced), keys, upstream_error, owed=owed,
                      notification_errors=rejected,
                      warnings=(*(why for _, why in plan.keys.held), *extra_warnings),
                      what_if=what_if, late=tuple(late), store_error=store_error,
                      sink_error=sink_error, targets=plan.every_target(),
                      outcomes=tuple(targets))


def late_json(owed: Owed) -> dict[str, Any]:
    """A notification delivered now that an earlier tick decided: ``owed_since`` says when."""
    budget, condition = incident_parts(owed.incident)
    return {"budget": budget, "condition": condition, "kind": owed.kind, "delivered": True,
            "owed_since": timestamp(owed.created_at)}


def incident_parts(incident: str) -> tuple[str | None, str | None]:
    """(budget, condition) of an incident id ``2026-03:budget:condition:epoch``; else Nones."""
    head, _, rest = incident.partition(":")
    parts = rest.rsplit(":", 2)
    if len(head) == 7 and head[4] == "-" and len(parts) == 3 and parts[2].isdigit():
        return parts[0], parts[1]
    return None, None


def sent(plan: TickPlan, delivered: frozenset[str],
         announced: Sequence[Planned] = ()) -> tuple[Sent, ...]:
    """Each notification the plan decided and the effects announced (updates apart), and
    whether it was delivered."""
    return tuple(Sent(Notification(i.budget, i.condition, i.kind, _severity(plan.states, i),
                                   i.payload.text), i.dedup in delivered, i.muted)
                 for i in (*plan.notices, *announced) if i.kind != NotificationKind.UPDATE)


def _severity(states: Mapping[tuple[str, Condition], AlertState], item: Planned) -> str:
    if item.budget is None or item.condition is None:
        return "warning"
    state = states.get((item.budget, Condition(item.condition)))
    return state.severity.value if state else "warning"
