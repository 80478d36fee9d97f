"""From one evaluation to the notifications it owes. Pure.

Each policy decision that notifies becomes one ``Planned`` item with a deduplication key
derived from the decision itself (the incident, the kind, and for repeats the moment), so
deciding it twice (a restart, a second replica) never owes it twice. Incidents are one
occurrence of a (month, budget, condition): they start when the condition started holding.

- **silences** mute an incident: its state still advances and it still drives the fallback,
  but nothing is sent;
- **inhibition**: a firing ``hard_reached`` mutes ``soft_reached``, ``hard_at_risk`` and
  ``hard_likely`` of the same budget ("likely to be exceeded" after "reached" is noise);
- **updates**: a firing incident's message is refreshed with current numbers at most every
  ``UPDATE_EVERY``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from guard.core.assess import Assessment
from guard.core.fallback import FallbackState
from guard.core.keys import SPEND_LIMIT, KeyDecision
from guard.core.ledger import attributable
from guard.core.model import Budget, PricedUsage
from guard.core.period import epoch, month_start
from guard.core.policy import AlertState, Condition, Decision, Reason, Status
from guard.core.records import THREADED, NotificationKind, Payload, Silence
from guard.core.render import (
    DigestLine,
    DigestView,
    IncidentView,
    Mover,
    render_digest,
    render_incident,
    render_key_notice,
    render_limit_notice,
    render_price_notice,
    render_reset,
    render_thread_reply,
)
from guard.core.usage import Days, PeriodIndex

UPDATE_EVERY = timedelta(minutes=5)
Kind = NotificationKind
KINDS = {Reason.FIRST: Kind.FIRING, Reason.REPEAT: Kind.REPEAT, Reason.ESCALATED: Kind.ESCALATED,
         Reason.RESOLVED: Kind.RESOLVED, Reason.RESET: Kind.RESOLVED}
"""A condition still firing at month rollover is resolved ("the budget period reset"): its
message loses its buttons and its thread says why, besides the one reset notice."""
INHIBITED_BY_HARD = frozenset({Condition.SOFT_REACHED, Condition.HARD_AT_RISK,
                               Condition.HARD_LIKELY})


@dataclass(frozen=True, slots=True)
class Planned:
    """One notification to owe (or, muted, to record as sent without sending)."""

    dedup: str
    incident: str
    budget: str | None
    condition: str | None
    kind: NotificationKind
    payload: Payload
    muted: str | None = None


def incident_id(period: date, budget: str, condition: Condition, since: datetime) -> str:
    """``2026-03:org-monthly:hard_likely:1773446400``: one occurrence of a condition."""
    return f"{period:%Y-%m}:{budget}:{condition.value}:{epoch(since)}"


@dataclass(frozen=True, slots=True)
class _Context:
    a: Assessment
    fallback: FallbackState
    today: Sequence[PricedUsage]
    silences: Sequence[Silence]
    at: datetime


def plan(a: Assessment, fallback: FallbackState, today: Sequence[PricedUsage],
         silences: Sequence[Silence], at: datetime) -> list[Planned]:
    """Every notification this evaluation owes, in decision order (the digest apart)."""
    ctx = _Context(a, fallback, today, silences, at)
    items: list[Planned] = []
    decided: set[tuple[str, Condition]] = set()
    budgets = {i.spend.budget.name for i in a.inputs}
    for decision in a.outcome.decisions:
        kind = KINDS.get(decision.reason)
        state = decision.after or decision.before
        if kind is None or state is None or decision.budget not in budgets:
            continue
        decided.add((decision.budget, decision.condition))
        items.append(_planned(ctx, decision.budget, decision.condition, state, kind=kind,
                              decision=decision))
    items += _updates(ctx, decided)
    items += price_notices(a, at)
    if a.outcome.reset:
        message = render_reset(month_start(at).date(), fallback.tier, fallback.model)
        items.append(Planned(f"reset:{at:%Y-%m}", f"reset:{at:%Y-%m}", None, None, Kind.RESET,
                             Payload(message.text, message.blocks)))
    return items


def price_notices(a: Assessment, at: datetime) -> list[Planned]:
    """One notice per model per month that the price table lacks or has wrong (the outbox's
    deduplication key makes it once)."""
    problems = {m: f"{m} is not in the price table: its usage is estimated at the dearest card "
                   "until billed, and the key hard stop waits for billed data"
                for m in a.unpriced_models}
    problems.update({d.model: d.describe() for d in a.price_drift if d.model not in problems})
    items = []
    for model, problem in sorted(problems.items()):
        key = f"price:{at:%Y-%m}:{model}"
        message = render_price_notice(month_start(at).date(), model, problem)
        items.append(Planned(key, key, None, None, Kind.PRICE,
                             Payload(message.text, message.blocks)))
    return items


def key_notices(decisions: Sequence[KeyDecision], at: datetime) -> list[Planned]:
    """One notice per budget and action for the keys the hard stop changed this tick."""
    groups: dict[tuple[str, str], list[KeyDecision]] = defaultdict(list)
    for d in decisions:
        if not d.dry_run and (d.done or d.error):
            groups[d.budget, d.action].append(d)
    items = []
    for (budget, action), group in sorted(groups.items()):
        done = sorted(d.key_id for d in group if d.done)
        if not done:
            continue
        failed = sorted(d.key_id for d in group if d.error)
        key = f"keys:{at:%Y-%m}:{budget}:{action}:{','.join(done)}"[:250]
        capped = [d for d in group if d.done and d.key_id.startswith(SPEND_LIMIT)]
        message = (render_limit_notice(budget, action, capped[0].key_id.removeprefix(
            SPEND_LIMIT), capped[0].amount_cents) if capped and len(done) == 1
                   else render_key_notice(budget, action, done, failed))
        items.append(Planned(key, key, budget, None, Kind.KEYS,
                             Payload(message.text, message.blocks)))
    return items


def _updates(ctx: _Context, decided: set[tuple[str, Condition]]) -> list[Planned]:
    bucket = epoch(ctx.at) // int(UPDATE_EVERY.total_seconds())
    out = []
    for (budget, condition), state in ctx.a.outcome.states.items():
        if state.status is not Status.FIRING or (budget, condition) in decided:
            continue
        item = _planned(ctx, budget, condition, state, kind=Kind.UPDATE, decision=None)
        out.append(Planned(f"{item.incident}:update:{bucket}", item.incident, budget,
                           condition.value, Kind.UPDATE, item.payload, item.muted))
    return out


def _planned(ctx: _Context, budget: str, condition: Condition, state: AlertState, *,
             kind: NotificationKind, decision: Decision | None) -> Planned:
    view = _view(ctx, budget, condition, state, kind=kind, decision=decision)
    incident = incident_id(state.period, budget, condition, state.since)
    parent = render_incident(view)
    reply = render_thread_reply(view) if kind in THREADED else None
    payload = Payload(parent.text, parent.blocks, reply.text if reply else None,
                      reply.blocks if reply else ())
    suffix = {Kind.REPEAT: f":{epoch(ctx.at)}",
              Kind.ESCALATED: f":{state.severity.value}"}.get(kind, "")
    return Planned(f"{incident}:{kind}{suffix}", incident, budget, condition.value, kind,
                   payload, _muted(ctx, budget, condition))


def _muted(ctx: _Context, budget: str, condition: Condition) -> str | None:
    for silence in ctx.silences:
        if silence.covers(budget, condition.value, ctx.at):
            return f"silenced by {silence.who}: {silence.reason}"
    if condition in INHIBITED_BY_HARD and Condition.HARD_REACHED in ctx.a.outcome.firing.get(
            budget, ()):
        return "inhibited by hard_reached"
    return None


def _view(ctx: _Context, budget_name: str, condition: Condition, state: AlertState, *,
          kind: NotificationKind, decision: Decision | None) -> IncidentView:
    a, fallback = ctx.a, ctx.fallback
    index = {i.spend.budget.name: i for i in a.inputs}
    item = index[budget_name]
    b, f, burn = item.spend.budget, item.forecast, item.burn
    return IncidentView(
        budget=b.name, scope=str(b.scope), match=b.match, condition=condition.value,
        severity=state.severity.value, kind=kind, period=state.period,
        mtd_usd=item.spend.spend_usd, soft_usd=b.soft_limit_usd, hard_usd=b.hard_limit_usd,
        p10_usd=f.p10_usd if f else None, p50_usd=f.p50_usd if f else None,
        p90_usd=f.p90_usd if f else None, exhaustion_day=f.exhaustion_day if f else None,
        burn=burn.rates if burn else (), tte_hours=burn.tte_hours if burn else None,
        tier=fallback.tier, model=fallback.model, tier_reason=fallback.reason,
        data_through=a.ledger.data_through, at=ctx.at, movers=movers(b, ctx.today),
        reason=decision.reason.value if decision else "numbers updated",
        since=state.since,
        provider_limit_usd=item.provider_limit.amount_usd if item.provider_limit else None,
        provider_limit=item.provider_limit.describe() if item.provider_limit else None)


def movers(budget: Budget, rows: Iterable[PricedUsage],
           top: int = 3) -> tuple[tuple[str, tuple[Mover, ...]], ...]:
    """Today's biggest workspaces, models and keys behind a budget's spend."""
    sums: Mapping[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    total = Decimal(0)
    for row in rows:
        usd = attributable(budget, row)
        if not usd:
            continue
        total += usd
        sums["workspaces"][row.workspace_id or "default"] += usd
        sums["models"][row.model or "unknown"] += usd
        if row.api_key_id:
            sums["keys"][row.api_key_id] += usd
    if total <= 0:
        return ()
    return tuple((dimension, tuple(Mover(name, usd, usd / total) for name, usd in sorted(
        sums[dimension].items(), key=lambda kv: kv[1], reverse=True)[:top]))
        for dimension in ("workspaces", "models", "keys") if sums[dimension])


def digest(a: Assessment, fallback: FallbackState, usage: Days,
           at: datetime) -> Planned:
    """The daily digest of ``at``'s day: spend against each budget, forecast, week over week,
    cache-hit ratio and firing conditions, and the fallback tier in force."""
    lines = []
    for item in a.inputs:
        b, f = item.spend.budget, item.forecast
        lines.append(DigestLine(
            name=b.name, mtd_usd=item.spend.spend_usd, soft_usd=b.soft_limit_usd,
            hard_usd=b.hard_limit_usd, p50_usd=f.p50_usd if f else None,
            p90_usd=f.p90_usd if f else None, week_over_week=_week_over_week(b, usage, at),
            cache_hit_ratio=_cache_hits(b, usage, at),
            firing=tuple(c.value for c in a.outcome.firing.get(b.name, ()))))
    day = at.date()
    message = render_digest(DigestView(day, tuple(lines), fallback.tier, fallback.model))
    key = f"digest:{day.isoformat()}"
    return Planned(key, key, None, None, Kind.DIGEST, Payload(message.text, message.blocks))


def _week(usage: Days, at: datetime, back: int) -> list[PeriodIndex]:
    end = at.date() - timedelta(days=back)
    return [index for day, index in usage.items() if end - timedelta(days=7) <= day < end]


def _week_over_week(budget: Budget, usage: Days, at: datetime) -> Decimal | None:
    this = sum((index.spend(budget) for index in _week(usage, at, 0)), Decimal(0))
    last = sum((index.spend(budget) for index in _week(usage, at, 7)), Decimal(0))
    return this / last - 1 if last > 0 else None


def _cache_hits(budget: Budget, usage: Days, at: datetime) -> Decimal | None:
    read = total = 0
    for index in _week(usage, at, 0):
        if index.spend(budget):
            sums = index.sums(budget)
            read += sums.cache_read_tokens
            total += sums.input_tokens + sums.cache_write_tokens + sums.cache_read_tokens
    return Decimal(read) / Decimal(total) if total else None
