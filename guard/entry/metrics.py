"""Prometheus metrics of the daemon, served by ``GET /metrics``.

``Metrics`` owns its own ``CollectorRegistry`` (never the global one, so two daemons in one
test process do not collide) and is updated once per tick by ``observe``. Money stays
``Decimal`` everywhere else; it becomes a float here, at rendering, and nowhere before.

Gauges labelled by budget are rebuilt on every report, so a budget removed from the
configuration disappears from the output instead of reporting its last value forever. A failed
tick leaves them as they were (the last known truth) and moves only the tick counters, the
duration histogram and the data age, which keeps growing while no data arrives.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime

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

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._data_through: datetime | None = None
        self._reported = False
        self._declare_budgets()
        self._declare_process()

    def _declare_budgets(self) -> None:
        r = self.registry
        self.spend = Gauge("budget_guard_spend_usd", "Month-to-date spend (billed + estimated)",
                           ["budget"], registry=r)
        self.spend_authoritative = Gauge(
            "budget_guard_spend_authoritative_usd",
            "Month-to-date spend billed by the cost report", ["budget"], registry=r)
        self.limit = Gauge("budget_guard_limit_usd", "Budget limits", ["budget", "kind"],
                           registry=r)
        self.forecast = Gauge("budget_guard_forecast_usd", "Month-end spend forecast",
                              ["budget", "quantile"], registry=r)
        self.burn_rate = Gauge("budget_guard_burn_rate",
                               "Spend over a window as a multiple of the seasonal expectation",
                               ["budget", "tier", "window"], registry=r)
        self.firing = Gauge("budget_guard_condition_firing",
                            "1 while a budget condition fires, else 0",
                            ["budget", "condition"], registry=r)

    def _declare_process(self) -> None:
        r = self.registry
        self.fallback_level = Gauge("budget_guard_fallback_level",
                                    "Position of the fallback in force in the chain (0 = first)",
                                    registry=r)
        self.fallback_info = Gauge("budget_guard_fallback_info", "The fallback in force (= 1)",
                                   ["tier", "model", "source"], registry=r)
        self.data_age = Gauge("budget_guard_data_age_seconds",
                              "Age of the newest complete data (NaN before the first tick)",
                              registry=r)
        self.data_age.set(math.nan)
        self.api_requests = Counter("budget_guard_admin_api_requests",
                                    "Admin API HTTP requests made by ticks", registry=r)
        self.api_errors = Counter("budget_guard_admin_api_errors",
                                  "Ticks on which the Admin API gave no usable answer",
                                  registry=r)
        self.store_errors = Counter("budget_guard_store_errors",
                                    "Ticks on which the state store could not be used",
                                    registry=r)
        self.sink_errors = Counter("budget_guard_fallback_write_errors",
                                   "Ticks on which a fallback file could not be written",
                                   registry=r)
        self.ticks = Counter("budget_guard_ticks", "Ticks by result", ["result"], registry=r)
        for result in TICK_RESULTS:
            self.ticks.labels(result=result)
        self.tick_duration = Histogram("budget_guard_tick_duration_seconds",
                                       "Wall time of a tick", buckets=DURATION_BUCKETS,
                                       registry=r)
        self.unpriced = Gauge("budget_guard_unpriced_model",
                              "A model this month's usage has that the price table lacks (= 1)",
                              ["model"], registry=r)
        self.price_drift = Gauge("budget_guard_price_drift_ratio",
                                 "Estimated / billed token cost of a model off by more than 2 %"
                                 " on the newest reconciled day", ["model"], registry=r)
        self.billing_source = Gauge("budget_guard_billing_source_info",
                                    "Where billed figures come from (= 1)", ["source"],
                                    registry=r)
        self.billed_through = Gauge("budget_guard_billed_through_timestamp_seconds",
                                    "How far the bill is known (Unix time; NaN if not at all)",
                                    registry=r)
        self.billed_through.set(math.nan)
        self.owed = Gauge("budget_guard_notifications_owed",
                          "Notifications decided but not yet accepted by Slack", registry=r)
        self.last_success = Gauge("budget_guard_last_tick_success_timestamp_seconds",
                                  "When the last tick completed (Unix time)", registry=r)

    def observe(self, report: TickReport | None, duration_s: float, now: datetime,
                error: Exception | None = None) -> None:
        """Record one tick: its report, or ``None`` and the ``error`` it failed with."""
        with self._lock:
            self.tick_duration.observe(duration_s)
            if report is None or error is not None:
                self.ticks.labels(result="failed").inc()
                if isinstance(error, UpstreamError):
                    self.api_errors.inc()
                if isinstance(error, StoreError):
                    self.store_errors.inc()
            else:
                self._observe_report(report, now)
            self._set_data_age(now)

    def render(self) -> bytes:
        """The registry in the Prometheus text format (``CONTENT_TYPE``)."""
        with self._lock:
            return generate_latest(self.registry)

    def _observe_report(self, report: TickReport, now: datetime) -> None:
        self.ticks.labels(result="standby" if report.standby else "ok").inc()
        self.api_requests.inc(report.assessment.api_requests)
        if report.upstream_error is not None:
            self.api_errors.inc()
        if report.store_error is not None:
            self.store_errors.inc()
        if report.sink_error is not None:
            self.sink_errors.inc()
        if not report.standby:  # a standby does not read the outbox: its ``owed`` is no fact
            self.owed.set(report.owed)
        self.last_success.set(now.timestamp())
        self._reported = True
        self._data_through = report.assessment.ledger.data_through
        self._set_budgets(report.assessment)
        self._set_fallback(report.fallback)
        self._set_prices(report.assessment)

    def _set_prices(self, a: Assessment) -> None:
        for family in (self.unpriced, self.price_drift, self.billing_source):
            family.clear()
        for model in a.unpriced_models:
            self.unpriced.labels(model=model).set(1)
        for drift in a.price_drift:
            ratio = float(drift.ratio) if drift.ratio is not None else math.inf
            self.price_drift.labels(model=drift.model).set(ratio)
        self.billing_source.labels(source=a.source).set(1)
        through = a.billed_through
        self.billed_through.set(through.timestamp() if through else math.nan)

    def _set_budgets(self, assessment: Assessment) -> None:
        for family in (self.spend, self.spend_authoritative, self.limit, self.forecast,
                       self.burn_rate, self.firing):
            family.clear()
        for item in assessment.inputs:
            self._set_budget(item, assessment.outcome.firing.get(item.spend.budget.name, ()))

    def _set_budget(self, item: BudgetInput, firing: tuple[Condition, ...]) -> None:
        name = item.spend.budget.name
        self.spend.labels(budget=name).set(float(item.spend.spend_usd))
        self.spend_authoritative.labels(budget=name).set(float(item.spend.authoritative_usd))
        self.limit.labels(budget=name, kind="soft").set(float(item.spend.budget.soft_limit_usd))
        self.limit.labels(budget=name, kind="hard").set(float(item.spend.budget.hard_limit_usd))
        if item.forecast is not None:
            for quantile, field in QUANTILES:
                self.forecast.labels(budget=name, quantile=quantile).set(
                    float(getattr(item.forecast, field)))
        if item.burn is not None:
            for tier, long_rate, short_rate in item.burn.rates:
                self.burn_rate.labels(budget=name, tier=tier, window="long").set(float(long_rate))
                self.burn_rate.labels(budget=name, tier=tier, window="short").set(
                    float(short_rate))
        for condition in Condition:
            self.firing.labels(budget=name, condition=condition.value).set(
                1 if condition in firing else 0)

    def _set_fallback(self, state: FallbackState) -> None:
        self.fallback_level.set(state.level)
        self.fallback_info.clear()
        self.fallback_info.labels(tier=state.tier, model=state.model, source=state.source).set(1)

    def _set_data_age(self, now: datetime) -> None:
        """Seconds since the data's watermark; +Inf once a tick found no data at all."""
        if self._data_through is not None:
            self.data_age.set(max(0.0, (now - self._data_through).total_seconds()))
        elif self._reported:
            self.data_age.set(math.inf)
