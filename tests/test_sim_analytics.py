"""The simulator's Usage and Cost Analytics API over real HTTP (reference §1), and its bill."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from guard.sim import Fault, SimClock, SimOrg, SimServer, prices
from guard.sim.billing import late_groups

ADMIN_KEY = "sk-ant-admin01-test-key"
NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
COST = "/v1/organizations/analytics/cost"
USAGE = "/v1/organizations/analytics/usage"
LEGACY_COST = "/v1/organizations/cost_report"
BETA = "analytics-usage-cost-2026-08-24"
MICRO = Decimal("0.000001")
Json = dict[str, Any]
Params = list[tuple[str, str]]
COST_GROUP_KEYS = {
    "actor", "actor_type", "agent_id", "api_key_id", "claude_tag_category",
    "claude_tag_user_id", "context_window", "cost_type", "deployment_id", "environment_id",
    "inference_geo", "model", "organization_id", "product", "rbac_group_id", "service_tier",
    "session_id", "slack_channel_id", "speed", "token_type", "user_profile_id", "workspace_id"}


@pytest.fixture(scope="module")
def org() -> SimOrg:
    """The small default organization, shared by the module (its data is immutable)."""
    return SimOrg.generate(7)


@pytest.fixture(scope="module")
def module_server(org: SimOrg) -> Iterator[SimServer]:
    """One server for the module; ``server`` resets it per test."""
    with SimServer(org, SimClock(NOW), admin_key=ADMIN_KEY) as server:
        yield server


@pytest.fixture
def server(module_server: SimServer) -> SimServer:
    """The shared server at ``NOW`` with default knobs, no faults and no recorded requests."""
    module_server.clock.set(NOW)
    module_server.clear_faults()
    module_server.clear_requests()
    module_server.discount = Decimal(0)
    module_server.price_errors = {}
    module_server.revision_hours = 0
    module_server.analytics_lag = timedelta(hours=4)
    module_server.analytics = True
    module_server.hipaa = False
    return module_server


@pytest.fixture
def client(server: SimServer) -> Iterator[httpx.Client]:
    """An httpx client for the server, sending the admin key, version and analytics beta."""
    headers = {"x-api-key": ADMIN_KEY, "anthropic-version": "2023-06-01",
               "anthropic-beta": BETA}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as http:
        yield http


def get(client: httpx.Client, path: str, params: Params,
        headers: dict[str, str] | None = None) -> httpx.Response:
    """One GET with the given query parameters (arrays as repeated ``name[]``)."""
    return client.get(path, params=tuple(params), headers=headers)


def ok(client: httpx.Client, path: str, params: Params) -> Json:
    """A GET that must succeed; its JSON."""
    response = get(client, path, params)
    assert response.status_code == 200, response.text
    payload: Json = response.json()
    return payload


def every_page(client: httpx.Client, path: str, params: Params) -> list[Json]:
    """Every page of a query, following ``next_page``."""
    pages = [ok(client, path, params)]
    while pages[-1]["has_more"]:
        pages.append(ok(client, path, [*params, ("page", pages[-1]["next_page"])]))
    return pages


def rows_of(client: httpx.Client, path: str, params: Params) -> list[Json]:
    """Every row of a query across pages."""
    return [row for page in every_page(client, path, params) for row in page["data"]]


def window(start: str, end: str, width: str | None = None, *groups: str,
           limit: int = 1000) -> Params:
    """``starting_at``/``ending_at``, an optional width, ``group_by[]`` and ``limit``."""
    params = [("starting_at", start), ("ending_at", end), ("limit", str(limit))]
    if width is not None:
        params.append(("time_bucket_width", width))
    return params + [("group_by[]", g) for g in groups]


def amounts(rows: list[Json], field: str = "amount") -> Decimal:
    """The sum of a cost field over rows."""
    return sum((Decimal(row["cost"][field]) for row in rows), Decimal(0))


def close(got: Decimal, exact: Decimal, rows: int) -> bool:
    """Whether six-decimal rows add up to the exact value within their rounding."""
    return abs(got - exact) <= MICRO * max(rows, 1)


def at(text: str) -> datetime:
    """An RFC 3339 moment."""
    return datetime.fromisoformat(text)


def unit_of(row: Json) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """A row's bucket and group without its fan-out keys."""
    group = tuple(sorted((k, v) for k, v in row["group"].items()
                         if k not in ("cost_type", "token_type")))
    return row["starting_at"], group


# --- shapes ------------------------------------------------------------------------------------


def test_cost_rows_have_the_shape_of_reference_1_4(client: httpx.Client) -> None:
    """Hourly cost by key, workspace, model and cost type: flat rows, every group key, six
    decimals, ``requests`` null with ``cost_type``, the page-level watermark."""
    params = [*window("2026-03-24T00:00:00Z", "2026-03-24T03:00:00Z", "1h", "api_key_id",
                      "workspace_id", "model", "cost_type", limit=100),
              ("order_by", "time"), ("order", "asc")]
    page = ok(client, COST, params)
    assert set(page) == {"data", "has_more", "next_page", "data_refreshed_at"}
    assert (page["has_more"], page["next_page"]) == (False, None)
    assert page["data_refreshed_at"] == "2026-03-28T08:00:00Z"
    rows = page["data"]
    assert rows
    for row in rows:
        assert set(row) == {"starting_at", "ending_at", "group", "cost"}
        assert set(row["group"]) == COST_GROUP_KEYS
        assert {k for k, v in row["group"].items() if v is not None} <= {
            "api_key_id", "workspace_id", "model", "cost_type"}
        assert row["group"]["cost_type"] in ("tokens", "web_search")
        assert set(row["cost"]) == {"amount", "currency", "list_amount", "requests"}
        assert re.fullmatch(r"\d+\.\d{6}", row["cost"]["amount"])
        assert row["cost"]["amount"] == row["cost"]["list_amount"]
        assert (row["cost"]["currency"], row["cost"]["requests"]) == ("USD", None)
        assert at(row["ending_at"]) - at(row["starting_at"]) == timedelta(hours=1)
    starts = [row["starting_at"] for row in rows]
    assert starts == sorted(starts)
    assert any(row["group"]["cost_type"] == "web_search" and row["group"]["model"]
               for row in rows)


def test_usage_rows_have_the_shape_of_reference_1_5(client: httpx.Client,
                                                    org: SimOrg) -> None:
    """Hourly usage by key, model and speed, one row a page: no fan-out keys in ``group``,
    token counts with ``total_tokens`` and ``requests``, and the same totals as the org."""
    params = [*window("2026-03-24T10:00:00Z", "2026-03-24T12:00:00Z", "1h", "api_key_id",
                      "model", "speed", limit=1), ("order_by", "time"), ("order", "asc")]
    pages = every_page(client, USAGE, params)
    assert len(pages) > 2 and all(len(page["data"]) == 1 for page in pages)
    assert pages[-1]["next_page"] is None and pages[0]["next_page"].startswith("rpt_")
    rows = [page["data"][0] for page in pages]
    for row in rows:
        assert set(row["group"]) == COST_GROUP_KEYS - {"cost_type", "token_type"}
        usage = row["usage"]
        assert usage["total_tokens"] == (
            usage["uncached_input_tokens"] + usage["cache_read_input_tokens"]
            + usage["output_tokens"] + sum(usage["cache_creation"].values()))
        assert isinstance(usage["requests"], int)
        assert row["group"]["speed"] in ("standard", "fast")
    hours = [org.usage_hour(datetime(2026, 3, 24, h, tzinfo=UTC)) for h in (10, 11)]
    assert sum(r["usage"]["output_tokens"] for r in rows) == sum(
        u.output_tokens for hour in hours for u in hour)
    assert sum(r["usage"]["requests"] for r in rows) == sum(
        u.requests for hour in hours for u in hour)


def test_whole_range_rows_are_rounded_down_to_the_hour(client: httpx.Client,
                                                       server: SimServer) -> None:
    """Without a width there is one row per combination, bounds rounded down to the hour."""
    rows = rows_of(client, COST, window("2026-03-27T10:30:00Z", "2026-03-27T15:45:00Z", None,
                                        "model"))
    assert {(r["starting_at"], r["ending_at"]) for r in rows} == {
        ("2026-03-27T10:00:00Z", "2026-03-27T15:00:00Z")}
    assert len({r["group"]["model"] for r in rows}) == len(rows) > 1
    exact = server.billed_truth_cents(at("2026-03-27T10:00:00Z"), at("2026-03-27T15:00:00Z"),
                                      "organization")
    assert close(amounts(rows), exact, len(rows))


# --- validation --------------------------------------------------------------------------------


BAD_QUERIES = [
    pytest.param(window("2026-02-01T00:00:00Z", "2026-03-05T00:00:00Z", "1d"), "31 days",
                 id="range-over-31-days"),
    pytest.param(window("2026-03-01T00:00:00Z", "2026-03-02T00:01:00Z", "1m"), "24 hours",
                 id="minutes-over-24h"),
    pytest.param(window("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", "1d", "api_key_id",
                        "workspace_id", "model", "speed", "service_tier", "inference_geo"),
                 "at most 5", id="six-group-by"),
    pytest.param(window("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", limit=0), "limit",
                 id="limit-0"),
    pytest.param(window("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", limit=1001), "limit",
                 id="limit-1001"),
    pytest.param([("starting_at", "2026-03-01T00:00:00Z"), ("time_bucket_width", "1h")],
                 "ending_at", id="width-without-ending-at"),
    pytest.param([("ending_at", "2026-03-02T00:00:00Z")], "starting_at", id="no-starting-at"),
    pytest.param(window("2025-12-31T00:00:00Z", "2026-01-02T00:00:00Z"), "2026-01-01",
                 id="before-2026"),
    pytest.param(window("2026-03-01T00:00:00", "2026-03-02T00:00:00Z"), "time zone",
                 id="naive-starting-at"),
    pytest.param(window("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", "5m"),
                 "time_bucket_width", id="bad-width"),
    pytest.param(window("2026-03-01T00:00:00Z", "2026-03-01T00:00:00Z"), "after",
                 id="empty-range"),
    pytest.param(window("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", None, "colour"),
                 "group_by", id="unknown-group"),
    pytest.param([*window("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"),
                  ("order_by", "total_tokens")], "order_by", id="usage-metric-on-cost"),
    pytest.param([*window("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"),
                  ("speeds[]", "turbo")], "speeds", id="bad-speed"),
    pytest.param([*window("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"),
                  ("page", "page_bm90IGEgY3Vyc29y")], "page", id="foreign-page-token"),
]


@pytest.mark.parametrize(("params", "needle"), BAD_QUERIES)
def test_bad_queries_are_400(client: httpx.Client, params: Params, needle: str) -> None:
    """Each rule of §1.1 is a 400 ``invalid_request_error`` naming what is wrong."""
    response = get(client, COST, params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert needle in body["error"]["message"]
    assert body["request_id"] == response.headers["request-id"]


def test_the_analytics_beta_header_is_required(client: httpx.Client) -> None:
    """Without ``anthropic-beta: analytics-usage-cost-2026-08-24`` both endpoints are a 400."""
    params = window("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z")
    for path in (COST, USAGE):
        response = get(client, path, params, {"anthropic-beta": "other-beta"})
        assert response.status_code == 400
        assert BETA in response.json()["error"]["message"]
    listed = get(client, COST, params, {"anthropic-beta": f"x-1, {BETA}"})
    assert listed.status_code == 200


def test_limits_and_group_counts_at_the_edges_are_accepted(client: httpx.Client) -> None:
    """``limit`` 1 and 1000, 31 days, 24 h of minutes, and 5 groups plus both fan-outs pass."""
    for params in (window("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", limit=1),
                   window("2026-02-25T00:00:00Z", "2026-03-28T00:00:00Z", "1d"),
                   window("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", "1m", limit=5),
                   window("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", "1d", "api_key_id",
                          "workspace_id", "model", "speed", "service_tier", "cost_type",
                          "token_type")):
        assert get(client, COST, params).status_code == 200, params


def test_fan_out_keys_do_not_exist_on_the_usage_endpoint(client: httpx.Client) -> None:
    """``cost_type``/``token_type`` are cost-only dimensions."""
    params = window("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", None, "token_type")
    assert get(client, USAGE, params).status_code == 400


def test_starting_at_must_be_within_a_year(client: httpx.Client, server: SimServer) -> None:
    """A ``starting_at`` more than 365 days before now is refused."""
    server.clock.set(datetime(2027, 3, 1, tzinfo=UTC))
    params = window("2026-02-01T00:00:00Z", "2026-02-02T00:00:00Z")
    response = get(client, COST, params)
    assert response.status_code == 400 and "365 days" in response.json()["error"]["message"]


# --- paging ------------------------------------------------------------------------------------


def test_paging_covers_every_row_exactly_once(client: httpx.Client) -> None:
    """Small pages hold ``limit`` units with their fan-out rows, and add up to one big page."""
    params = window("2026-03-24T00:00:00Z", "2026-03-25T00:00:00Z", "1h", "api_key_id",
                    "model", "cost_type", limit=7)
    pages = every_page(client, COST, params)
    assert len(pages) > 3
    units_per_page = [{unit_of(row) for row in page["data"]} for page in pages]
    assert all(len(units) == 7 for units in units_per_page[:-1])
    assert 0 < len(units_per_page[-1]) <= 7
    assert sum(len(units) for units in units_per_page) == len(set().union(*units_per_page))
    paged = [row for page in pages for row in page["data"]]
    assert any(len(page["data"]) > 7 for page in pages)  # fan-out rows do not count
    whole = ok(client, COST, [*params[:2], ("limit", "1000"), *params[3:]])["data"]
    assert not ok(client, COST, [*params[:2], ("limit", "1000"), *params[3:]])["has_more"]
    assert paged == whole


def test_no_empty_buckets(client: httpx.Client, org: SimOrg) -> None:
    """Only hours with cost come back: the rare model has rows exactly in its busy hours."""
    params = [*window("2026-03-01T00:00:00Z", "2026-03-08T00:00:00Z", "1h"),
              ("models[]", "claude-nova-1")]
    rows = rows_of(client, COST, params)
    hours = [datetime(2026, 3, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(7 * 24)]
    busy = {hour for hour in hours
            if any(r.model == "claude-nova-1" for r in org.usage_hour(hour))}
    assert 0 < len(rows) < 7 * 24
    assert {at(row["starting_at"]) for row in rows} == busy
    assert all(Decimal(row["cost"]["amount"]) > 0 for row in rows)


def test_ordering_by_amount_and_by_time(client: httpx.Client) -> None:
    """Default: amount descending; ``order=asc`` reverses; ``order_by=time`` newest first."""
    params = window("2026-03-24T00:00:00Z", "2026-03-25T00:00:00Z", "1h", "model")
    ranked = [Decimal(r["cost"]["amount"]) for r in rows_of(client, COST, params)]
    assert ranked == sorted(ranked, reverse=True)
    rising = [Decimal(r["cost"]["amount"])
              for r in rows_of(client, COST, [*params, ("order", "asc")])]
    assert rising == sorted(rising)
    by_time = rows_of(client, COST, [*params, ("order_by", "time")])
    starts = [row["starting_at"] for row in by_time]
    assert starts == sorted(starts, reverse=True) and len(set(starts)) == 24
    first_hour = [Decimal(r["cost"]["amount"]) for r in by_time if r["starting_at"] == starts[0]]
    assert first_hour == sorted(first_hour, reverse=True)


def test_an_expired_cursor_is_410(client: httpx.Client, server: SimServer) -> None:
    """A cursor minted before the data refreshed is a 410; paging restarts from page one."""
    params = window("2026-03-24T00:00:00Z", "2026-03-25T00:00:00Z", "1h", "api_key_id",
                    limit=3)
    first = ok(client, COST, params)
    server.clock.advance(timedelta(hours=1))
    expired = get(client, COST, [*params, ("page", first["next_page"])])
    assert expired.status_code == 410
    body = expired.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "restart" in body["error"]["message"]
    assert ok(client, COST, params)["data"] == first["data"]


def test_an_injected_410_has_the_error_envelope(client: httpx.Client, server: SimServer) -> None:
    """``Fault(410)`` on the analytics path answers once with the API's error envelope."""
    server.inject(Fault(410, path="/analytics/cost"))
    params = window("2026-03-24T00:00:00Z", "2026-03-25T00:00:00Z")
    response = get(client, COST, params)
    assert response.status_code == 410
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "cursor" in body["error"]["message"]
    assert get(client, COST, params).status_code == 200


# --- dimensions --------------------------------------------------------------------------------


def test_the_default_workspace_shows_its_real_id(client: httpx.Client, server: SimServer,
                                                 org: SimOrg) -> None:
    """Grouped by workspace, the default workspace is ``org.default_workspace_id``, not null,
    and filtering by that id gives the default workspace's bill."""
    rows = rows_of(client, COST, window("2026-03-24T00:00:00Z", "2026-03-26T00:00:00Z", None,
                                        "workspace_id"))
    assert {r["group"]["workspace_id"] for r in rows} == {
        org.default_workspace_id, *(w.id for w in org.workspaces)}
    only = rows_of(client, COST, [*window("2026-03-24T00:00:00Z", "2026-03-26T00:00:00Z"),
                                  ("workspace_ids[]", org.default_workspace_id)])
    exact = server.billed_truth_cents(at("2026-03-24T00:00:00Z"), at("2026-03-26T00:00:00Z"),
                                      "workspace", "default")
    assert close(amounts(only), exact, len(only)) and exact > 0


def test_keyless_usage_and_code_execution(client: httpx.Client, org: SimOrg) -> None:
    """Keyless usage has a null key; code execution has no key and no model; an empty
    ``api_key_ids[]`` entry selects exactly those rows."""
    params = window("2026-03-16T00:00:00Z", "2026-03-23T00:00:00Z", "1d", "api_key_id",
                    "model", "cost_type")
    rows = rows_of(client, COST, params)
    code = [r for r in rows if r["group"]["cost_type"] == "code_execution"]
    assert code and all(r["group"]["model"] is None and r["group"]["api_key_id"] is None
                        for r in code)
    sessions = list(org.code_executions(at("2026-03-16T00:00:00Z"), at("2026-03-23T00:00:00Z")))
    assert amounts(code) == sum((s.cents for s in sessions), Decimal(0))
    assert any(r["group"]["api_key_id"] is None and r["group"]["cost_type"] == "tokens"
               for r in rows)
    keyless = rows_of(client, COST, [*params, ("api_key_ids[]", "")])
    assert keyless == [r for r in rows if r["group"]["api_key_id"] is None]


def test_code_execution_counts_sessions_as_requests(client: httpx.Client, org: SimOrg) -> None:
    """Without fan-out, ``requests`` is an integer; code execution counts its sessions."""
    start, end = "2026-03-16T00:00:00Z", "2026-03-23T00:00:00Z"
    rows = rows_of(client, COST, [*window(start, end, None, "api_key_id"),
                                  ("api_key_ids[]", "")])
    (row,) = rows
    usage = [u for u in org.usage(at(start), at(end)) if u.api_key_id is None]
    sessions = list(org.code_executions(at(start), at(end)))
    assert row["cost"]["requests"] == sum(u.requests for u in usage) + len(sessions)


def test_speed_is_a_dimension_without_a_beta_for_speed(client: httpx.Client,
                                                       org: SimOrg) -> None:
    """Analytics groups and filters by speed with only the analytics beta header."""
    params = window("2026-03-24T00:00:00Z", "2026-03-26T00:00:00Z", None, "speed", "model")
    rows = rows_of(client, USAGE, params)
    assert {r["group"]["speed"] for r in rows} == {"standard", "fast"}
    fast = rows_of(client, USAGE, [*params, ("speeds[]", "fast")])
    assert fast == [r for r in rows if r["group"]["speed"] == "fast"]
    assert all(prices.has_fast_mode(r["group"]["model"]) for r in fast)
    days = [org.usage_day(date(2026, 3, 24)), org.usage_day(date(2026, 3, 25))]
    assert sum(r["usage"]["output_tokens"] for r in fast) == sum(
        u.output_tokens for day in days for u in day if u.speed == "fast")


# --- the bill ----------------------------------------------------------------------------------


SCOPES = [
    pytest.param("organization", None, (), id="organization"),
    pytest.param("workspace", "default", ("workspace_id",), id="default-workspace"),
    pytest.param("api_key", "first-key", ("api_key_id",), id="api-key"),
    pytest.param("model", "claude-sonnet", ("model", "cost_type"), id="model-prefix"),
]


def scope_rows(rows: list[Json], scope: str, match: str | None, org: SimOrg) -> list[Json]:
    """The rows a budget of ``scope``/``match`` counts, from rows grouped as in ``SCOPES``."""
    if scope == "workspace":
        return [r for r in rows if r["group"]["workspace_id"] == org.default_workspace_id]
    if scope == "api_key":
        return [r for r in rows if r["group"]["api_key_id"] == match]
    if scope == "model":
        return [r for r in rows if r["group"]["cost_type"] == "tokens"
                and (r["group"]["model"] or "").startswith(match or "")]
    return rows


@pytest.mark.parametrize(("scope", "match", "groups"), SCOPES)
def test_discounted_amounts_add_up_to_the_billed_truth(client: httpx.Client, server: SimServer,
                                                       scope: str, match: str | None,
                                                       groups: tuple[str, ...]) -> None:
    """With a 15 % discount, each scope's amounts add up to ``billed_truth_cents`` within
    rounding, and every row's amount is its list amount × 0.85."""
    server.discount = Decimal("0.15")
    org = server.org
    match = org.api_keys[0].id if match == "first-key" else match
    start, end = "2026-03-20T00:00:00Z", "2026-03-27T00:00:00Z"
    rows = scope_rows(rows_of(client, COST, window(start, end, "1d", *groups)), scope, match,
                      org)
    exact = server.billed_truth_cents(at(start), at(end), scope, match)
    assert exact > 0 and close(amounts(rows), exact, len(rows))
    assert close(amounts(rows, "list_amount"),
                 server.list_truth_cents(at(start), at(end), scope, match), len(rows))
    for row in rows:
        listed, billed = Decimal(row["cost"]["list_amount"]), Decimal(row["cost"]["amount"])
        assert abs(billed - listed * Decimal("0.85")) <= MICRO


def test_the_legacy_cost_report_has_no_discount(client: httpx.Client, server: SimServer,
                                                org: SimOrg) -> None:
    """A discount changes analytics ``amount`` only: the legacy cost report stays at list."""
    server.discount = Decimal("0.2")
    day = ok(client, LEGACY_COST, [("starting_at", "2026-03-20T00:00:00Z"),
                                   ("ending_at", "2026-03-21T00:00:00Z")])["data"][0]
    assert Decimal(day["results"][0]["amount"]) == org.truth_day_cents(date(2026, 3, 20),
                                                                       "organization")


def test_price_errors_move_both_analytics_and_the_legacy_report(client: httpx.Client,
                                                                server: SimServer,
                                                                org: SimOrg) -> None:
    """A model billed 10 % above the table moves its tokens in analytics and the legacy cost
    report alike; other models are untouched."""
    server.price_errors = {"claude-sonnet-5-5": Decimal("1.10")}
    start, end = at("2026-03-20T00:00:00Z"), at("2026-03-21T00:00:00Z")
    rows = rows_of(client, COST, window("2026-03-20T00:00:00Z", "2026-03-21T00:00:00Z", None,
                                        "model", "cost_type"))

    def tokens(model: str) -> Decimal:
        return amounts([r for r in rows if r["group"]["model"] == model
                        and r["group"]["cost_type"] == "tokens"], "list_amount")

    table = org.truth_cents(start, end, "model", "claude-sonnet-5-5")
    assert close(tokens("claude-sonnet-5-5"), table * Decimal("1.10"), 1)
    assert close(tokens("claude-opus-5-5"), org.truth_cents(start, end, "model",
                                                            "claude-opus-5-5"), 1)
    legacy = ok(client, LEGACY_COST, [("starting_at", "2026-03-20T00:00:00Z"),
                                      ("ending_at", "2026-03-21T00:00:00Z")])["data"][0]
    billed = Decimal(legacy["results"][0]["amount"])
    assert billed == server.list_truth_cents(start, end, "organization")
    assert billed == org.truth_cents(start, end, "organization") + table * Decimal("0.10")


def test_sonnet_5_5_cache_reads_are_priced_by_date(org: SimOrg) -> None:
    """Around 2026-10-07 the same cache reads cost half as much from the cut on, in analytics
    and in the legacy cost report, each day at its own price."""
    with SimServer(org, SimClock(datetime(2026, 10, 9, 12, tzinfo=UTC)),
                   admin_key=ADMIN_KEY) as server, httpx.Client(
            base_url=server.base_url, headers={"x-api-key": ADMIN_KEY, "anthropic-beta": BETA,
                                               "anthropic-version": "2023-06-01"}) as http:
        params = [*window("2026-10-06T00:00:00Z", "2026-10-08T00:00:00Z", "1d", "model",
                          "token_type"), ("models[]", "claude-sonnet-5-5")]
        rows = [r for r in rows_of(http, COST, params)
                if r["group"]["token_type"] == prices.CACHE_READ]
        legacy = ok(http, LEGACY_COST, [("starting_at", "2026-10-06T00:00:00Z"),
                                        ("ending_at", "2026-10-08T00:00:00Z"),
                                        ("group_by[]", "description")])["data"]
    for day in (date(2026, 10, 6), date(2026, 10, 7)):
        reads = [u for u in org.usage_day(day) if u.model == "claude-sonnet-5-5"]
        priced = sum((u.type_cents(prices.CACHE_READ, u.cache_read, day) for u in reads),
                     Decimal(0))
        before = sum((u.type_cents(prices.CACHE_READ, u.cache_read, date(2026, 10, 6))
                      for u in reads), Decimal(0))
        assert priced == (before if day.day == 6 else before / 2) and priced > 0
        (row,) = [r for r in rows if r["starting_at"].startswith(day.isoformat())]
        assert close(Decimal(row["cost"]["amount"]), priced, 1)
        (bucket,) = [b for b in legacy if b["starting_at"].startswith(day.isoformat())]
        assert sum(Decimal(r["amount"]) for r in bucket["results"]
                   if r["model"] == "claude-sonnet-5-5"
                   and r["token_type"] == prices.CACHE_READ) == priced


# --- watermark and revisions -------------------------------------------------------------------


def test_the_watermark_bounds_the_data(client: httpx.Client, server: SimServer) -> None:
    """At 12:00 with a 4 h lag the export ends at 08:00: no rows after it, every hour before it
    complete; an hour later one more hour is in."""
    params = window("2026-03-28T00:00:00Z", "2026-03-28T12:00:00Z", "1h")
    page = ok(client, COST, [*params, ("order_by", "time"), ("order", "asc")])
    assert page["data_refreshed_at"] == "2026-03-28T08:00:00Z"
    assert [row["starting_at"][11:13] for row in page["data"]] == [f"{h:02d}" for h in range(8)]
    exact = server.billed_truth_cents(at("2026-03-28T00:00:00Z"), at("2026-03-28T08:00:00Z"),
                                      "organization")
    assert close(amounts(page["data"]), exact, 8)
    server.clock.advance(timedelta(hours=1))
    later = ok(client, COST, params)
    assert later["data_refreshed_at"] == "2026-03-28T09:00:00Z" and len(later["data"]) == 9


def test_a_daily_bucket_holds_the_day_up_to_the_watermark(client: httpx.Client,
                                                          server: SimServer) -> None:
    """Today's daily bucket carries the day's bounds and the spend up to the watermark."""
    (row,) = ok(client, COST, window("2026-03-28T00:00:00Z", "2026-03-29T00:00:00Z",
                                     "1d"))["data"]
    assert (row["starting_at"], row["ending_at"]) == ("2026-03-28T00:00:00Z",
                                                      "2026-03-29T00:00:00Z")
    exact = server.billed_truth_cents(at("2026-03-28T00:00:00Z"), server.watermark(),
                                      "organization")
    assert close(Decimal(row["cost"]["amount"]), exact, 1)


def test_nothing_exported_yet_means_a_null_watermark(client: httpx.Client,
                                                     server: SimServer) -> None:
    """A range that starts at or after the watermark has no rows and ``data_refreshed_at``
    null; a shorter lag moves the watermark."""
    params = window("2026-03-28T08:00:00Z", "2026-03-28T12:00:00Z", "1h")
    assert ok(client, COST, params) == {"data": [], "has_more": False, "next_page": None,
                                        "data_refreshed_at": None}
    server.analytics_lag = timedelta(minutes=30)
    page = ok(client, COST, params)
    assert page["data_refreshed_at"] == "2026-03-28T11:00:00Z" and len(page["data"]) == 3


def test_late_billing_data_revises_an_hour(client: httpx.Client, server: SimServer,
                                           org: SimOrg) -> None:
    """With 3 revision hours, the 05:00 hour lacks its late groups while the watermark is
    08:00, and reaches its final bill once the watermark is 09:00."""
    server.revision_hours = 3
    hour = at("2026-03-28T05:00:00Z")
    params = window("2026-03-28T05:00:00Z", "2026-03-28T06:00:00Z", "1h", "api_key_id",
                    "model")
    final = server.billed_truth_cents(hour, hour + timedelta(hours=1), "organization")
    late = late_groups(org, hour)
    assert 0 < len(late) < len(org.usage_hour(hour))
    early = rows_of(client, COST, params)
    missing = sum((u.token_cents(hour.date()) + u.web_search_cents()
                   for u in org.usage_hour(hour) if u.dims in late), Decimal(0))
    assert close(amounts(early), final - missing, len(early)) and missing > 0
    server.clock.advance(timedelta(hours=1))
    revised = rows_of(client, COST, params)
    assert close(amounts(revised), final, len(revised))
    assert len(revised) > len(early) or amounts(revised) > amounts(early)


def test_minute_buckets_add_up_to_their_hour(client: httpx.Client) -> None:
    """An hour of 1m buckets holds the same tokens as its 1h bucket, minute by minute."""
    minutes = rows_of(client, USAGE, window("2026-03-27T16:00:00Z", "2026-03-27T17:00:00Z",
                                            "1m", "model"))
    hourly = rows_of(client, USAGE, window("2026-03-27T16:00:00Z", "2026-03-27T17:00:00Z",
                                           "1h", "model"))
    assert len({r["starting_at"] for r in minutes}) > 30
    for row in hourly:
        mine = [m for m in minutes if m["group"]["model"] == row["group"]["model"]]
        assert sum(m["usage"]["total_tokens"] for m in mine) == row["usage"]["total_tokens"]


# --- availability ------------------------------------------------------------------------------


def test_hipaa_organizations_get_a_400(client: httpx.Client, server: SimServer) -> None:
    """An organization with HIPAA readiness cannot use the analytics API."""
    server.hipaa = True
    params = window("2026-03-24T00:00:00Z", "2026-03-25T00:00:00Z")
    for path in (COST, USAGE):
        response = get(client, path, params)
        assert response.status_code == 400
        assert "HIPAA readiness" in response.json()["error"]["message"]
    server.hipaa = False
    assert get(client, COST, params).status_code == 200


def test_without_the_analytics_api_the_paths_are_404(client: httpx.Client,
                                                     server: SimServer) -> None:
    """``analytics=False`` models an API that does not exist yet: 404 ``not_found_error``."""
    server.analytics = False
    params = window("2026-03-24T00:00:00Z", "2026-03-25T00:00:00Z")
    for path in (COST, USAGE):
        response = get(client, path, params)
        assert (response.status_code, response.json()["error"]["type"]) == (
            404, "not_found_error")
    assert client.get("/v1/organizations/api_keys").status_code == 200


def test_bad_knobs_are_refused(org: SimOrg) -> None:
    """A discount outside [0, 1), negative revision hours or a non-positive price factor fail
    at construction."""
    for knobs in ({"discount": Decimal(1)}, {"revision_hours": -1},
                  {"price_errors": {"claude-opus-5-5": Decimal(0)}}):
        with pytest.raises(ValueError):
            SimServer(org, SimClock(NOW), admin_key=ADMIN_KEY, **knobs)
