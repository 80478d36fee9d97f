"""The HTTP endpoint over real HTTP: probes, metrics, status, and audited on-call writes."""

from __future__ import annotations

import json
import logging
import math
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from guard.config import Settings, load_settings
from guard.core.assess import assess
from guard.core.fallback import FallbackState, state_document
from guard.core.model import Budget, CostDay, PricedUsage, Scope, Snapshot
from guard.core.period import HOUR
from guard.core.policy import PolicyConfig
from guard.core.summary import TickReport
from guard.core.usage import days_of, periods_of
from guard.entry import wiring
from guard.entry.http import MAX_BODY, WRITES_DISABLED, HttpState, build_app
from guard.entry.metrics import Metrics
from guard.entry.server import HttpServer
from guard.errors import StoreError, UpstreamUnavailable
from guard.shell.ops import Ops

AT = datetime(2026, 3, 12, 14, 5, tzinfo=UTC)
TOKEN = "s3cret-admin-token-for-tests"
POLICY = PolicyConfig()
MODELS = {"opus": "claude-opus-4-7", "sonnet": "claude-sonnet-4-6", "haiku": "claude-haiku-4-5"}
BUDGETS = (Budget("org-monthly", Scope.ORGANIZATION, None, Decimal(300), Decimal(400)),)
FAMILIES = (
    "budget_guard_spend_usd", "budget_guard_spend_authoritative_usd", "budget_guard_limit_usd",
    "budget_guard_forecast_usd", "budget_guard_burn_rate", "budget_guard_condition_firing",
    "budget_guard_fallback_level", "budget_guard_fallback_info", "budget_guard_data_age_seconds",
    "budget_guard_admin_api_requests_total", "budget_guard_admin_api_errors_total",
    "budget_guard_ticks_total", "budget_guard_tick_duration_seconds",
    "budget_guard_notifications_owed", "budget_guard_last_tick_success_timestamp_seconds",
)


def make_report(*, stale: bool = False, upstream_error: str | None = None,
                standby: bool = False, **snapshot_fields: Any) -> TickReport:
    """A real report from the pure core: $30 a day for 10 weeks, $1.50 an hour today."""
    first = date(2026, 1, 1)
    settled = {first + timedelta(days=i): CostDay(first + timedelta(days=i), {None: Decimal(30)},
                                                  {"claude-sonnet-4-6": Decimal(30)})
               for i in range((AT.date() - first).days)}
    usage = [PricedUsage(AT.replace(minute=0) - timedelta(hours=h), None, None,
                         "claude-sonnet-4-6", Decimal("1.5"), Decimal(0)) for h in range(1, 15)]
    through = AT - (timedelta(hours=2) if stale else timedelta(minutes=5))
    snapshot = Snapshot(AT, settled, days_of(usage), through, api_requests=3,
                        usage_from=date(2026, 2, 26), recent=periods_of(usage, HOUR),
                        hourly={u.start: u.usd for u in usage}, today=usage,
                        **snapshot_fields)
    a = assess(BUDGETS, snapshot, policy=POLICY, lag=timedelta(minutes=5))
    fallback = FallbackState.build(POLICY.chain, MODELS, a.outcome.ceiling.level,
                                   source=a.outcome.ceiling.source, updated_at=AT,
                                   reason="; ".join(a.outcome.ceiling.because))
    return TickReport(a, fallback, True, None, (), (), upstream_error, standby, owed=2)


def write_settings(tmp_path: Path, token: str | None) -> Settings:
    """A real ``Settings`` from a small TOML file, the state store in ``tmp_path``."""
    http = f'[http]\nlisten = "127.0.0.1:0"\nadmin_token = "{token}"\n' if token else ""
    path = tmp_path / "guard.toml"
    path.write_text(f'[state]\nurl = "sqlite:///{tmp_path / "state.db"}"\n{http}')
    return load_settings(path)


class Guard:
    """A running endpoint with its state, metrics and an HTTP client pointed at it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = wiring.connect_store(settings.state.url)
        self.ops = wiring.ops(settings, self.store)
        self.state = HttpState()
        self.metrics = Metrics()
        app = build_app(self.state, self.metrics, lambda: self.settings, lambda: self.ops,
                        now=lambda: AT)
        self.server = HttpServer(app).start("127.0.0.1", 0)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.server.port}",
                                   trust_env=False, timeout=5)

    def tick(self, report: TickReport | None, error: Exception | None = None) -> None:
        self.state.update(report, AT, error)
        self.metrics.observe(report, 0.2, AT, error)

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        self.store.close()


@pytest.fixture
def make_guard(tmp_path: Path) -> Iterator[Callable[..., Guard]]:
    started: list[Guard] = []

    def make(token: str | None = TOKEN) -> Guard:
        started.append(Guard(write_settings(tmp_path, token)))
        return started[-1]

    yield make
    for guard in started:
        guard.close()


@pytest.fixture
def guard(make_guard: Callable[..., Guard]) -> Guard:
    return make_guard()


def samples(text: str) -> dict[str, list[Sample]]:
    """Parsed samples by sample name (counters keep their ``_total``)."""
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault(family.name, [])
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(found: dict[str, list[Sample]], name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels``."""
    [match] = [s for s in found[name] if labels.items() <= s.labels.items()]
    return match.value


# --- probes ------------------------------------------------------------------------------------


def test_healthz_answers_ok_while_the_process_lives(guard: Guard) -> None:
    """/healthz is 200 "ok" even before the first tick."""
    response = guard.client.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok")


def test_readyz_is_503_before_any_tick_then_200_after_one(guard: Guard) -> None:
    """Not ready until a tick succeeded; then ready, saying so."""
    before = guard.client.get("/readyz")
    assert (before.status_code, before.text) == (503, "no tick has succeeded yet")
    guard.tick(make_report())
    after = guard.client.get("/readyz")
    assert after.status_code == 200
    assert after.text.startswith("ok")


def test_readyz_says_standby_on_a_standby_replica(guard: Guard) -> None:
    """A standby replica is ready (it serves reads and takes pins) and says it is standby."""
    guard.tick(make_report(standby=True))
    answer = guard.client.get("/readyz")
    assert answer.status_code == 200
    assert answer.text.startswith("ok: standby, another replica holds the leader lease")


@pytest.mark.parametrize(("report", "reason"), [
    (make_report(stale=True), "data is stale: complete through 2026-03-12T12:05:00Z"),
    (make_report(upstream_error="Admin API unavailable: 529 overloaded"),
     "the Admin API failed on the last tick: Admin API unavailable: 529 overloaded"),
], ids=["stale", "upstream-error"])
def test_readyz_is_503_when_the_last_report_is_degraded(guard: Guard, report: TickReport,
                                                        reason: str) -> None:
    """A report on stale data, or one made while the Admin API failed, is not ready."""
    guard.tick(report)
    response = guard.client.get("/readyz")
    assert (response.status_code, response.text) == (503, reason)


def test_readyz_fails_after_three_failed_ticks_and_recovers_on_success(guard: Guard) -> None:
    """Two failures are tolerated, the third turns ready off, one success turns it back on."""
    guard.tick(make_report())
    codes = []
    for _ in range(3):
        guard.tick(None, StoreError("state store unavailable: OperationalError"))
        codes.append(guard.client.get("/readyz").status_code)
    assert codes == [200, 200, 503]
    assert guard.client.get("/readyz").text == (
        "the last 3 ticks failed (last error: StoreError: state store unavailable: "
        "OperationalError)")
    guard.tick(make_report())
    assert guard.client.get("/readyz").status_code == 200


def test_readiness_names_only_the_class_of_a_foreign_error() -> None:
    """Messages of errors outside the guard's tree may carry secrets: only the class shows."""
    state = HttpState(ready_failures=1)
    state.update(None, AT, RuntimeError(f"boom with {TOKEN}"))
    assert state.readiness(AT) == (False, "no tick has succeeded yet (last error: RuntimeError)")


# --- metrics -----------------------------------------------------------------------------------


def test_metrics_expose_every_family_after_a_tick(guard: Guard) -> None:
    """/metrics parses as Prometheus text and holds every budget_guard family."""
    guard.tick(make_report())
    response = guard.client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert set(FAMILIES) <= set(found)
    assert value(found, "budget_guard_spend_usd", budget="org-monthly") == pytest.approx(351)
    assert value(found, "budget_guard_limit_usd", budget="org-monthly", kind="hard") == 400
    assert value(found, "budget_guard_condition_firing", budget="org-monthly",
                 condition="soft_reached") == 1
    assert value(found, "budget_guard_condition_firing", budget="org-monthly",
                 condition="hard_reached") == 0
    assert len(found["budget_guard_condition_firing"]) == 7  # one per condition of DESIGN §2
    assert {s.labels["quantile"] for s in found["budget_guard_forecast_usd"]} == {
        "0.1", "0.5", "0.9"}
    assert {(s.labels["tier"], s.labels["window"]) for s in found["budget_guard_burn_rate"]} == {
        ("fast", "long"), ("fast", "short"), ("slow", "long"), ("slow", "short")}
    assert value(found, "budget_guard_fallback_info", tier="sonnet",
                 model="claude-sonnet-4-6", source="auto") == 1
    assert value(found, "budget_guard_fallback_level") == 1
    assert value(found, "budget_guard_ticks_total", result="ok") == 1
    assert value(found, "budget_guard_admin_api_requests_total") == 3
    assert value(found, "budget_guard_notifications_owed") == 2
    assert value(found, "budget_guard_data_age_seconds") == 300
    assert value(found, "budget_guard_last_tick_success_timestamp_seconds") == AT.timestamp()


def test_metrics_parse_before_the_first_tick(guard: Guard) -> None:
    """Before any tick every tick result reads 0 and the data age is unknown (NaN)."""
    found = samples(guard.client.get("/metrics").text)
    assert {s.labels["result"]: s.value for s in found["budget_guard_ticks_total"]} == {
        "ok": 0, "failed": 0, "standby": 0}
    assert math.isnan(value(found, "budget_guard_data_age_seconds"))


def test_a_failed_tick_counts_and_ages_the_data_but_keeps_the_last_spend() -> None:
    """Failures move counters and the data age; budget gauges keep the last known truth."""
    metrics = Metrics()
    metrics.observe(make_report(), 0.3, AT)
    later = AT + timedelta(minutes=10)
    metrics.observe(None, 1.5, later, UpstreamUnavailable("Admin API unavailable"))
    found = samples(metrics.render().decode())
    assert value(found, "budget_guard_ticks_total", result="failed") == 1
    assert value(found, "budget_guard_admin_api_errors_total") == 1
    assert value(found, "budget_guard_data_age_seconds") == 900
    assert value(found, "budget_guard_spend_usd", budget="org-monthly") == pytest.approx(351)
    assert value(found, "budget_guard_tick_duration_seconds_count") == 2


def test_unpriced_models_drift_and_the_billing_source_are_metrics() -> None:
    """An unknown model and a drifting card are gauges per model; the source is an info."""
    metrics = Metrics()
    billed = datetime(2026, 3, 12, 8, tzinfo=UTC)
    drifting = make_report(unpriced_models=("claude-nova-1",), source="analytics",
                           billed_through=billed)
    metrics.observe(drifting, 0.3, AT)
    found = samples(metrics.render().decode())
    assert value(found, "budget_guard_unpriced_model", model="claude-nova-1") == 1
    assert value(found, "budget_guard_billing_source_info", source="analytics") == 1
    assert value(found, "budget_guard_billed_through_timestamp_seconds") == billed.timestamp()
    drift = [s for s in found["budget_guard_price_drift_ratio"]]
    assert drifting.assessment.price_drift, "the fixture's billed day drifts from its usage"
    assert [(s.labels["model"], s.value) for s in drift] == [
        (d.model, pytest.approx(float(d.ratio or 0))) for d in drifting.assessment.price_drift]
    metrics.observe(make_report(), 0.3, AT)  # the next tick knows the model: the gauge goes
    found = samples(metrics.render().decode())
    assert "budget_guard_unpriced_model" not in found or not found[
        "budget_guard_unpriced_model"]
    assert value(found, "budget_guard_billing_source_info", source="legacy") == 1


def test_a_standby_tick_counts_as_standby_and_leaves_owed_alone() -> None:
    """A standby replica's report counts as standby; it does not claim the outbox is empty."""
    metrics = Metrics()
    metrics.observe(make_report(), 0.3, AT)
    metrics.observe(make_report(standby=True), 0.3, AT)
    found = samples(metrics.render().decode())
    assert value(found, "budget_guard_ticks_total", result="standby") == 1
    assert value(found, "budget_guard_notifications_owed") == 2


# --- status and fallback -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/status", "/v1/fallback"])
def test_reads_are_503_before_the_first_tick(guard: Guard, path: str) -> None:
    """Nothing to show yet is a 503 with a JSON error, not an empty 200."""
    response = guard.client.get(path)
    assert response.status_code == 503
    assert response.json() == {"error": "no tick has completed yet"}


def test_status_is_the_last_reports_json(guard: Guard) -> None:
    """/v1/status serves exactly what ``guard check --json`` would print for the last tick."""
    report = make_report()
    guard.tick(report)
    response = guard.client.get("/v1/status")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == report.as_json()


def test_fallback_is_the_state_file_document(guard: Guard) -> None:
    """/v1/fallback serves the state file's JSON of the fallback in force."""
    report = make_report()
    guard.tick(report)
    assert guard.client.get("/v1/fallback").json() == state_document(report.fallback)


# --- writes ------------------------------------------------------------------------------------

PIN = {"tier": "haiku", "for": "4h", "reason": "incident 42"}


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-the-token"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer"},
], ids=["no-header", "wrong-token", "wrong-scheme", "empty-token"])
def test_pin_without_the_right_token_is_401(guard: Guard, headers: dict[str, str]) -> None:
    """A missing, wrong or malformed bearer token is refused, and nothing is pinned."""
    response = guard.client.post("/v1/fallback/pin", json=PIN, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text
    assert guard.ops.fallback_status(AT)["override"] is None


def test_writes_are_403_when_no_token_is_configured(make_guard: Callable[..., Guard]) -> None:
    """Without http.admin_token every write is refused, whatever the request carries."""
    guard = make_guard(token=None)
    for path in ("/v1/fallback/pin", "/v1/fallback/release"):
        response = guard.client.post(path, json=PIN,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        assert (response.status_code, response.json()) == (403, {"error": WRITES_DISABLED})


def test_pin_with_the_token_pins_and_audits_the_client(
        guard: Guard, caplog: pytest.LogCaptureFixture) -> None:
    """The pin goes through ops, audited as http:<client>, and the token is never logged."""
    caplog.set_level(logging.DEBUG)
    response = guard.client.post("/v1/fallback/pin", json=PIN,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.json() == {"tier": "haiku", "expires_at": "2026-03-12T18:05:00Z",
                               "by": "http:127.0.0.1", "reason": "incident 42"}
    status = guard.ops.fallback_status(AT)
    assert status["override"] == {"tier": "haiku", "by": "http:127.0.0.1",
                                  "reason": "incident 42", "expires_at": "2026-03-12T18:05:00Z",
                                  "active": True}
    assert status["recent_changes"][0]["action"] == "pin"
    assert TOKEN not in caplog.text


def test_release_removes_the_pin_and_returns_it(guard: Guard) -> None:
    """Release returns the pin it removed, then null when there is none left."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    guard.client.post("/v1/fallback/pin", json=PIN, headers=auth)
    first = guard.client.post("/v1/fallback/release", json={"reason": "over"}, headers=auth)
    assert (first.status_code, first.json()["released"]["tier"]) == (200, "haiku")
    assert guard.ops.fallback_status(AT)["override"] is None
    again = guard.client.post("/v1/fallback/release", headers=auth)
    assert again.json() == {"released": None}


@pytest.mark.parametrize(("body", "field"), [
    (PIN | {"tier": "gpt-9"}, "tier"),
    (PIN | {"for": "forever"}, "for"),
    (PIN | {"for": "40d"}, "for"),
    (PIN | {"reason": "  "}, "reason"),
    ({"tier": "haiku", "for": "4h"}, "reason"),
    (PIN | {"for": 4}, "for"),
    (PIN | {"until": "tomorrow"}, "until"),
    (PIN | {"for": f"{10**30}h"}, "for"),
    (PIN | {"reason": "x" * 501}, "reason"),
], ids=["unknown-tier", "bad-duration", "too-long", "blank-reason", "no-reason", "not-a-string",
        "unknown-field", "absurd-duration", "reason-over-500"])
def test_a_bad_pin_is_400_naming_the_field(guard: Guard, body: dict[str, Any],
                                           field: str) -> None:
    """Validation problems come back as 400 with the field and the reason; nothing is pinned."""
    response = guard.client.post("/v1/fallback/pin", json=body,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400
    assert [p["field"] for p in response.json()["problems"]] == [field]
    assert guard.ops.fallback_status(AT)["override"] is None


def test_a_body_that_is_not_json_is_400(guard: Guard) -> None:
    """Garbage in the body is a 400, not a 500."""
    response = guard.client.post("/v1/fallback/pin", content=b"tier=haiku",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    assert (response.status_code, response.json()) == (400, {"error": "the body is not JSON"})


def test_a_body_over_16_kib_is_413_and_pins_nothing(guard: Guard) -> None:
    """A body past the limit is refused by its Content-Length, and while streaming when it
    has none; nothing is pinned."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    big = json.dumps(PIN | {"reason": "x" * MAX_BODY}).encode()
    declared = guard.client.post("/v1/fallback/pin", content=big, headers=auth)
    assert declared.status_code == 413 and "16384" in declared.json()["error"]

    def chunks() -> Iterator[bytes]:
        yield big[:1000]
        yield big[1000:]

    streamed = guard.client.post("/v1/fallback/pin", content=chunks(), headers=auth)
    assert streamed.status_code == 413
    assert guard.ops.fallback_status(AT)["override"] is None
    exact = PIN | {"reason": "r" * 400}
    assert guard.client.post("/v1/fallback/pin", json=exact, headers=auth).status_code == 200


def test_a_huge_body_over_real_http_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """Over a real socket: 50 MiB announced, a few KiB sent, the 413 comes back at once."""
    settings = write_settings(tmp_path, TOKEN)
    app = build_app(HttpState(), Metrics(), lambda: settings, no_ops, now=lambda: AT)
    with HttpServer(app).start("127.0.0.1", 0) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(b"POST /v1/fallback/pin HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: 52428800\r\n\r\n" + b"{" * 4096)
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


# --- the server --------------------------------------------------------------------------------


def no_ops() -> Ops:
    raise AssertionError("no write is made in this test")


def test_port_zero_picks_a_free_port_and_stop_closes_it() -> None:
    """The server reports the port it got and stops listening on stop()."""
    app = build_app(HttpState(), Metrics(), Settings, no_ops, now=lambda: AT)
    with HttpServer(app).start("127.0.0.1", 0) as server:
        port = server.port
        assert port > 0
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False)


def test_a_busy_port_fails_start() -> None:
    """Binding happens in the caller's thread, so a port in use raises there."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        app = build_app(HttpState(), Metrics(), Settings, no_ops, now=lambda: AT)
        with pytest.raises(OSError):
            HttpServer(app).start("127.0.0.1", taken.getsockname()[1])
