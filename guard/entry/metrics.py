"""Prometheus metrics of the daemon, served by ``GET /metrics``.

``Metrics`` owns its own ``CollectorRegistry`` (never the global one, so two daemons in one
test process do not collide) and is updated once per tick by ``observe``. Money stays
``Decimal`` everywhere else; it becomes a float here, at rendering, and nowhere before.

Gauges labelled by budget are rebuilt on every report, so a budget removed from the
configuration disappears from the output instead of reporting its last value forever. A failed
tick leaves them as they were (the last known truth) and moves only the tick counters, the
duration histogram and the data age, which keeps growing while no data arrives.

With several organizations (``[[organizations]]``) every family has an ``organization`` label
as well, and one organization's report rebuilds only its own series; a single organization's
families have no such label, as before.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from guard.core.assess import Assessment
from guard.core.fallback import FallbackState
from guard.core.policy import BudgetInput, Condition
from guard.core.summary import TickReport
from guard.errors import StoreError, UpstreamError

CONTENT_TYPE = CONTENT_TYPE_LATEST
TICK_RESULTS = ("ok", "failed", "standby")
QUANTILES = (("0.1", "p10_usd"), ("0.5", "p50_usd"), ("0.9", "p90_usd"))
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """Every ``budget_guard_*`` family, in a registry of its own."""

    def __init__(self, organizations: Sequence[str] = ()) -> None:
        self.registry = CollectorRegistry()
        self.organizations = tuple(organizations)
        """With names, every family has an ``organization`` label (``[[organizations]]``)."""
        self._lock = threading.Lock()
        self._data_through: dict[str, datetime | None] = {}
        self._reported: set[str] = set()
        self._names: dict[int, tuple[str, ...]] = {}
        self._series: dict[tuple[int, str], set[tuple[str, ...]]] = {}
        self._declare_budgets()
        self._declare_process()
        for org in self.organizations or ("",):
            for result in TICK_RESULTS:
                self._child(self.ticks, org, result=result)
            for family in (self.data_age, self.billed_through):
                self._child(family, org).set(math.nan)

    def _family(self, kind: type[Any], name: str, doc: str, labels: Sequence[str] = (),
                **options: Any) -> Any:
        """A family of ``kind`` in this registry, with the ``organization`` label if any."""
        names = (*labels, "organization") if self.organizations else tuple(labels)
        family = kind(name, doc, names, registry=self.registry, **options)
        self._names[id(family)] = names
        return family

    def _declare_budgets(self) -> None:
        g = self._family
        self.spend = g(Gauge, "budget_guard_spend_usd",
                       "Month-to-date spend (billed + estimated)", ["budget"])
        self.spend_authoritative = g(Gauge, "budget_guard_spend_authoritative_usd",
                                     "Month-to-date spend billed by the cost report", ["budget"])
        self.limit = g(Gauge, "budget_guard_limit_usd", "Budget limits", ["budget", "kind"])
        self.forecast = g(Gauge, "budget_guard_forecast_usd", "Month-end spend forecast",
                          ["budget", "quantile"])
        self.burn_rate = g(Gauge, "budget_guard_burn_rate",
                           "Spend over a window as a multiple of the seasonal expectation",
                           ["budget", "tier", "window"])
        self.firing = g(Gauge, "budget_guard_condition_firing",
                        "1 while a budget condition fires, else 0", ["budget", "condition"])

    def _declare_process(self) -> None:
        g = self._family
        self.fallback_level = g(Gauge, "budget_guard_fallback_level",
                                "Position of the fallback in force in the chain (0 = first)")
        self.fallback_info = g(Gauge, "budget_guard_fallback_info",
                               "The fallback in force (= 1)", ["tier", "model", "source"])
        self.target_level = g(Gauge, "budget_guard_target_fallback_level",
                              "Position of each fallback target's tier in its chain "
                              "(0 = first)", ["target", "tier"])
        self.data_age = g(Gauge, "budget_guard_data_age_seconds",
                          "Age of the newest complete data (NaN before the first tick)")
        self.api_requests = g(Counter, "budget_guard_admin_api_requests",
                              "Admin API HTTP requests made by ticks")
        self.api_errors = g(Counter, "budget_guard_admin_api_errors",
                            "Ticks on which the Admin API gave no usable answer")
        self.store_errors = g(Counter, "budget_guard_store_errors",
                              "Ticks on which the state store could not be used")
        self.sink_errors = g(Counter, "budget_guard_fallback_write_errors",
                             "Ticks on which a fallback file could not be written")
        self.ticks = g(Counter, "budget_guard_ticks", "Ticks by result", ["result"])
        self.tick_duration = g(Histogram, "budget_guard_tick_duration_seconds",
                               "Wall time of a tick", buckets=DURATION_BUCKETS)
        self.unpriced = g(Gauge, "budget_guard_unpriced_model",
                          "A model this month's usage has that the price table lacks (= 1)",
                          ["model"])
        self.price_drift = g(Gauge, "budget_guard_price_drift_ratio",
                             "Estimated / billed token cost of a model off by more than 2 % "
                             "on the newest reconciled day", ["model"])
        self.billing_source = g(Gauge, "budget_guard_billing_source_info",
                                "Where billed figures come from (= 1)", ["source"])
        self.billed_through = g(Gauge, "budget_guard_billed_through_timestamp_seconds",
                                "How far the bill is known (Unix time; NaN if not at all)")
        self.owed = g(Gauge, "budget_guard_notifications_owed",
                      "Notifications decided but not yet accepted by Slack")
        self.last_success = g(Gauge, "budget_guard_last_tick_success_timestamp_seconds",
                              "When the last tick completed (Unix time)")

    def _child(self, family: Any, org: str, **labels: str) -> Any:
        """The series of ``family`` with ``labels`` (and ``org``, with organizations)."""
        if self.organizations:
            labels["organization"] = org
            values = tuple(labels[name] for name in self._names[id(family)])
            self._series.setdefault((id(family), org), set()).add(values)
        return family.labels(**labels) if labels else family

    def _clear(self, family: Any, org: str) -> None:
        """Drop ``org``'s series of ``family`` (all of them without organizations)."""
        if not self.organizations:
            family.clear()
            return
        for values in self._series.pop((id(family), org), set()):
            family.remove(*values)

    def observe(self, report: TickReport | None, duration_s: float, now: datetime,
                error: Exception | None = None, organization: str = "") -> None:
        """Record one tick of ``organization``: its report, or ``None`` and the ``error`` it
        failed with."""
        org = organization
        with self._lock:
            self._child(self.tick_duration, org).observe(duration_s)
            if report is None or error is not None:
                self._child(self.ticks, org, result="failed").inc()
                if isinstance(error, UpstreamError):
                    self._child(self.api_errors, org).inc()
                if isinstance(error, StoreError):
                    self._child(self.store_errors, org).inc()
            else:
                self._observe_report(report, now, org)
            self._set_data_age(now, org)

    def render(self) -> bytes:
        """The registry in the Prometheus text format (``CONTENT_TYPE``)."""
        with self._lock:
            return generate_latest(self.registry)

    def _observe_report(self, report: TickReport, now: datetime, org: str) -> None:
        c = self._child
        c(self.ticks, org, result="standby" if report.standby else "ok").inc()
        c(self.api_requests, org).inc(report.assessment.api_requests)
        for family, error in ((self.api_errors, report.upstream_error),
                              (self.store_errors, report.store_error),
                              (self.sink_errors, report.sink_error)):
            if error is not None:
                c(family, org).inc()
        if not report.standby:  # a standby does not read the outbox: its ``owed`` is no fact
            c(self.owed, org).set(report.owed)
        c(self.last_success, org).set(now.timestamp())
        self._reported.add(org)
        self._data_through[org] = report.assessment.ledger.data_through
        self._set_budgets(report.assessment, org)
        self._set_fallback(report.fallback, org)
        self._clear(self.target_level, org)
        for target in report.targets:
            self._child(self.target_level, org, target=target.name,
                        tier=target.fallback.tier).set(target.fallback.level)
        self._set_prices(report.assessment, org)

    def _set_prices(self, a: Assessment, org: str) -> None:
        for family in (self.unpriced, self.price_drift, self.billing_source):
            self._clear(family, org)
        for model in a.unpriced_models:
            self._child(self.unpriced, org, model=model).set(1)
        for drift in a.price_drift:
            ratio = float(drift.ratio) if drift.ratio is not None else math.inf
            self._child(self.price_drift, org, model=drift.model).set(ratio)
        self._child(self.billing_source, org, source=a.source).set(1)
        through = a.billed_through
        self._child(self.billed_through, org).set(through.timestamp() if through else math.nan)

    def _set_budgets(self, assessment: Assessment, org: str) -> None:
        for family in (self.spend, self.spend_authoritative, self.limit, self.forecast,
                       self.burn_rate, self.firing):
            self._clear(family, org)
        for item in assessment.inputs:
            self._set_budget(item, assessment.outcome.firing.get(item.spend.budget.name, ()),
                             org)

    def _set_budget(self, item: BudgetInput, firing: tuple[Condition, ...], org: str) -> None:
        name, c = item.spend.budget.name, self._child
        c(self.spend, org, budget=name).set(float(item.spend.spend_usd))
        c(self.spend_authoritative, org, budget=name).set(float(item.spend.authoritative_usd))
        c(self.limit, org, budget=name, kind="soft").set(float(item.spend.budget.soft_limit_usd))
        c(self.limit, org, budget=name, kind="hard").set(float(item.spend.budget.hard_limit_usd))
        if item.forecast is not None:
            for quantile, field in QUANTILES:
                c(self.forecast, org, budget=name, quantile=quantile).set(
                    float(getattr(item.forecast, field)))
        if item.burn is not None:
            for tier, long_rate, short_rate in item.burn.rates:
                c(self.burn_rate, org, budget=name, tier=tier, window="long").set(
                    float(long_rate))
                c(self.burn_rate, org, budget=name, tier=tier, window="short").set(
                    float(short_rate))
        for condition in Condition:
            c(self.firing, org, budget=name, condition=condition.value).set(
                1 if condition in firing else 0)

    def _set_fallback(self, state: FallbackState, org: str) -> None:
        self._child(self.fallback_level, org).set(state.level)
        self._clear(self.fallback_info, org)
        self._child(self.fallback_info, org, tier=state.tier, model=state.model,
                    source=state.source).set(1)

    def _set_data_age(self, now: datetime, org: str) -> None:
        """Seconds since the data's watermark; +Inf once a tick found no data at all."""
        through = self._data_through.get(org)
        if through is not None:
            self._child(self.data_age, org).set(max(0.0, (now - through).total_seconds()))
        elif org in self._reported:
            self._child(self.data_age, org).set(math.inf)
