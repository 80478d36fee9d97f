"""Alert quality of the forecast conditions, replayed through the real policy.

Every replayed (organization, month) gets a hard limit drawn near its realised total
(total × U(0.85, 1.15), seeded per month). The month is then walked in simulated time, a tick
every ``TICK``: month-to-date is the complete days plus the elapsed share of today, the
forecast is the real one, and ``hard_likely`` (P50 ≥ limit) and ``hard_at_risk``
(P90 ≥ limit) go through ``guard.core.policy.step`` with the default hysteresis. Scored:

- **precision / recall at day 10**: a condition firing at 00:00 on day 10 (through the policy,
  hysteresis included) against whether the month really ended at or above the limit; and the
  same for the bare rule at that instant (P50 ≥ limit, P90 ≥ limit), as the reference
  reports it;
- **lead time**: for months that crossed the limit, how long before the crossing the condition
  first fired (crossings are placed within their day by the elapsed share);
- **flaps**: a condition that fires again after it had cleared, per budget-month.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from guard.backtest.harness import MonthReplay, OrgReplay
from guard.core.forecast import Profile, forecast
from guard.core.period import day_start
from guard.core.policy import AlertState, Condition, PolicyConfig, Signal, Status, step

TICK = timedelta(hours=6)
CHECK_DAY = 10
CONDITIONS = (Condition.HARD_LIKELY, Condition.HARD_AT_RISK)
_CONFIG = PolicyConfig()
_UNIFORM = Profile.uniform()


@dataclass(frozen=True, slots=True)
class MonthAlerts:
    """What one condition did over one budget-month."""

    condition: Condition
    breached: bool
    firing_at_check: bool
    rule_at_check: bool
    first_fired: datetime | None
    crossed: datetime | None
    flaps: int


@dataclass(frozen=True, slots=True)
class AlertScore:
    """Precision and recall at day 10, mean lead time and flaps, for one condition."""

    condition: Condition
    months: int
    precision: Decimal
    recall: Decimal
    lead_days: Decimal
    flaps_per_month: Decimal
    rule_precision: Decimal = Decimal(0)
    rule_recall: Decimal = Decimal(0)


def limit_for(month: MonthReplay, seed: int) -> Decimal:
    """A hard limit near the realised total: total × U(0.85, 1.15), fixed per month."""
    rng = random.Random(f"{seed}:{month.org}:{month.month.isoformat()}")
    return (month.total * Decimal(f"{rng.uniform(0.85, 1.15):.4f}")).quantize(Decimal("0.01"))


def replay_alerts(org: OrgReplay, seed: int = 1) -> list[MonthAlerts]:
    """Walk every replayed month of ``org`` through forecast and policy."""
    return [alert for month in org.months for alert in _month(org, month, seed)]


def _month(org: OrgReplay, month: MonthReplay, seed: int) -> list[MonthAlerts]:
    limit = limit_for(month, seed)
    states: dict[Condition, AlertState | None] = dict.fromkeys(CONDITIONS)
    first: dict[Condition, datetime | None] = dict.fromkeys(CONDITIONS)
    at_check: dict[Condition, bool] = dict.fromkeys(CONDITIONS, False)
    rule: dict[Condition, bool] = dict.fromkeys(CONDITIONS, False)
    flaps = dict.fromkeys(CONDITIONS, 0)
    cleared = dict.fromkeys(CONDITIONS, False)
    for now in _ticks(month):
        f = forecast(mtd=_mtd(month, now), history=org.series, profile=_UNIFORM,
                     band=month.band, now=now, hard_limit=limit)
        values = {Condition.HARD_LIKELY: f.p50_usd, Condition.HARD_AT_RISK: f.p90_usd}
        for condition in CONDITIONS:
            signal = Signal(active=values[condition] >= limit,
                            clearable=values[condition] < limit * Decimal("0.95"),
                            known=f.gated_in)
            before, after = states[condition], step(states[condition], signal, condition, now,
                                                    _CONFIG)
            was, now_firing = _firing(before), _firing(after)
            if now_firing and not was:
                flaps[condition] += cleared[condition]
                first[condition] = first[condition] or now
            if was and not now_firing:
                cleared[condition] = True
            states[condition] = after
            if now == day_start(month.month.replace(day=CHECK_DAY)):
                at_check[condition] = now_firing
                rule[condition] = signal.active and signal.known
    crossed = _crossing(month, limit)
    return [MonthAlerts(c, month.total >= limit, at_check[c], rule[c], first[c], crossed,
                        flaps[c]) for c in CONDITIONS]


def _firing(state: AlertState | None) -> bool:
    return state is not None and state.status is Status.FIRING


def _ticks(month: MonthReplay) -> Iterable[datetime]:
    now = day_start(month.month)
    end = now + timedelta(days=len(month.days))
    while now < end:
        yield now
        now += TICK


def _mtd(month: MonthReplay, now: datetime) -> Decimal:
    index = now.day - 1
    share = Decimal((now - day_start(now.date())) / timedelta(days=1))
    return sum(month.days[:index], Decimal(0)) + month.days[index] * share


def _crossing(month: MonthReplay, limit: Decimal) -> datetime | None:
    spent = Decimal(0)
    for index, amount in enumerate(month.days):
        if amount > 0 and spent + amount >= limit:
            share = (limit - spent) / amount
            start = day_start(month.month + timedelta(days=index))
            return start + timedelta(days=float(share))
        spent += amount
    return None


def score_alerts(alerts: Iterable[MonthAlerts]) -> tuple[AlertScore, ...]:
    """One score per condition over every budget-month."""
    items = list(alerts)
    return tuple(_score(c, [a for a in items if a.condition is c]) for c in CONDITIONS)


def _score(condition: Condition, items: Sequence[MonthAlerts]) -> AlertScore:
    fired = [a for a in items if a.firing_at_check]
    breached = [a for a in items if a.breached]
    hits = [a for a in fired if a.breached]
    leads = [(a.crossed - a.first_fired) / timedelta(days=1) for a in breached
             if a.first_fired and a.crossed and a.first_fired <= a.crossed]
    return AlertScore(
        condition=condition, months=len(items),
        precision=_share(len(hits), len(fired)),
        recall=_share(len([a for a in breached if a.firing_at_check]), len(breached)),
        lead_days=Decimal(f"{sum(leads) / len(leads):.2f}") if leads else Decimal(0),
        flaps_per_month=_share(sum(a.flaps for a in items), len(items)),
        rule_precision=_share(len([a for a in items if a.rule_at_check and a.breached]),
                              len([a for a in items if a.rule_at_check])),
        rule_recall=_share(len([a for a in breached if a.rule_at_check]), len(breached)),
    )


def _share(part: int, whole: int) -> Decimal:
    return Decimal(part) / Decimal(whole) if whole else Decimal(0)



def _replay(org: OrgReplay) -> list[MonthAlerts]:
    return replay_alerts(org)


def alert_scores(orgs: Sequence[OrgReplay], workers: int = 1) -> tuple[AlertScore, ...]:
    """Replay every organization's months through policy; ``workers`` > 1 uses processes."""
    if workers > 1 and len(orgs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunk = max(1, len(orgs) // (workers * 8))
            found = [a for part in pool.map(_replay, orgs, chunksize=chunk) for a in part]
    else:
        found = [a for org in orgs for a in replay_alerts(org)]
    return score_alerts(found)
