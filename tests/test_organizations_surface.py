"""Several organizations on the outside: reports, metrics, status and Slack name the
organization; a single organization's surface is as it always was."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

from fakes import RecordingTransport
from prometheus_client.parser import text_string_to_metric_families
from test_http import AT, make_report

from guard.adapters.chat import Labelled
from guard.core.summary import TickReport
from guard.entry.http import HttpState, OrganizationsState
from guard.entry.metrics import Metrics


def labels_of(metrics: Metrics, family: str) -> list[dict[str, str]]:
    """The label sets of every sample of ``family``."""
    text = metrics.render().decode()
    return [dict(s.labels) for f in text_string_to_metric_families(text) if f.name == family
            for s in f.samples]


def test_a_named_report_carries_its_organization_first() -> None:
    """`organization` leads the JSON of a named organization; the one organization's has none."""
    report = make_report()
    named = replace(report, organization="acme").as_json()
    assert next(iter(named)) == "organization" and named["organization"] == "acme"
    assert "organization" not in report.as_json()
    assert {k: v for k, v in named.items() if k != "organization"} == report.as_json()


def test_metrics_of_several_organizations_are_labelled_and_rebuilt_apart() -> None:
    """Every family has `organization`; a report of one rebuilds only its own series."""
    metrics = Metrics(("acme", "beta"))
    report = make_report()
    metrics.observe(report, 0.2, AT, organization="acme")
    metrics.observe(report, 0.2, AT, organization="beta")
    assert {s["organization"] for s in labels_of(metrics, "budget_guard_spend_usd")} == {
        "acme", "beta"}
    emptied = replace(report, assessment=replace(report.assessment, inputs=()))
    metrics.observe(emptied, 0.2, AT, organization="beta")
    assert {s["organization"] for s in labels_of(metrics, "budget_guard_spend_usd")} == {"acme"}
    ticks = labels_of(metrics, "budget_guard_ticks")
    assert {(s["organization"], s["result"]) for s in ticks} >= {("acme", "ok"), ("beta", "ok"),
                                                                 ("beta", "failed")}


def test_metrics_of_one_organization_have_no_organization_label() -> None:
    """Without [[organizations]] the families are as before."""
    metrics = Metrics()
    metrics.observe(make_report(), 0.2, AT)
    assert all("organization" not in s for s in labels_of(metrics, "budget_guard_spend_usd"))


def test_status_of_several_organizations_is_an_object_by_name() -> None:
    """/v1/status: each organization's report by name (null before its first tick);
    ready while any organization is, a line each."""
    state = OrganizationsState(("acme", "beta"))
    assert state.status_json() is None
    report: TickReport = replace(make_report(), organization="acme")
    state.update(report, AT, organization="acme")
    state.update(None, AT, RuntimeError("x"), organization="beta")
    body = json.loads(state.status_json() or b"")
    assert body["acme"]["organization"] == "acme" and body["beta"] is None
    assert json.loads(state.fallback_json() or b"")["acme"]["tier"] == report.fallback.tier
    ready, why = state.readiness(AT)
    assert ready and why.startswith("acme: ok") and "\nbeta: no tick has succeeded yet" in why
    single = HttpState()
    single.update(make_report(), AT)
    assert "organization" not in json.loads(single.status_json() or b"")


def test_slack_messages_name_their_organization_and_keep_its_dedup_keys_apart() -> None:
    """Text and blocks say the organization; dedup keys (Slack metadata) are prefixed by it,
    so two organizations' same incident in one channel are two messages."""

    class Keeping(RecordingTransport):
        def __init__(self) -> None:
            super().__init__()
            self.sent: list[tuple[str, list[object], str | None]] = []

        def post(self, channel: str, text: str, blocks: object,  # type: ignore[override]
                 thread_ts: str | None = None, *, dedup: str | None = None) -> object:
            self.sent.append((text, list(blocks), dedup))  # type: ignore[call-overload]
            return super().post(channel, text, [], thread_ts, dedup=dedup)

        def find(self, channel: str, dedup: str, oldest: datetime,
                 thread_ts: str | None = None) -> None:
            self.sent.append(("find", [], dedup))

    inner = Keeping()
    acme = Labelled(inner, "acme")
    acme.post("C1", "Soft limit reached", [{"type": "section"}], dedup="2026-03:org:soft:1")
    acme.find("C1", "2026-03:org:soft:1", AT)
    text, blocks, dedup = inner.sent[0]
    assert text == "[acme] Soft limit reached" and dedup == "acme/2026-03:org:soft:1"
    assert "acme" in json.dumps(blocks[0]) and blocks[1] == {"type": "section"}
    assert inner.sent[1][2] == "acme/2026-03:org:soft:1"
