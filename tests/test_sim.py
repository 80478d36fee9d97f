"""The simulator: a deterministic organization, its true bill, and its Admin API over HTTP."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest

from guard.sim import Fault, SimClock, SimOrg, SimServer, SimUsage, prices
from guard.sim.usage import split_evenly

ADMIN_KEY = "sk-ant-admin01-test-key"
FAST_BETA: dict[str, str | None] = {"anthropic-beta": "fast-mode-2026-02-01"}
NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
MONTH = datetime(2026, 3, 1, tzinfo=UTC)
USAGE = "/v1/organizations/usage_report/messages"
COST = "/v1/organizations/cost_report"
KEYS = "/v1/organizations/api_keys"
Json = dict[str, Any]


@pytest.fixture(scope="module")
def org() -> SimOrg:
    """The small default organization, shared by the module (its data is immutable)."""
    return SimOrg.generate(7)


@pytest.fixture(scope="module")
def module_server(org: SimOrg) -> Iterator[SimServer]:
    """One server for the module; ``server`` resets its clock, log and faults per test."""
    with SimServer(org, SimClock(NOW), admin_key=ADMIN_KEY) as server:
        yield server


@pytest.fixture
def server(module_server: SimServer) -> SimServer:
    """The shared server at ``NOW`` with no recorded requests and no pending faults."""
    module_server.clock.set(NOW)
    module_server.clear_requests()
    module_server.clear_faults()
    return module_server


def call(server: SimServer, path: str, query: list[tuple[str, str]] | None = None, *,
         headers: dict[str, str | None] | None = None, body: Json | None = None,
         ) -> tuple[int, dict[str, str], Any]:
    """One request over real HTTP; returns status, lower-cased headers and parsed JSON.

    The admin key and ``anthropic-version`` are sent unless ``headers`` maps them to ``None``.
    """
    chosen: dict[str, str | None] = {"x-api-key": ADMIN_KEY, "anthropic-version": "2023-06-01"}
    chosen.update(headers or {})
    sent = {name: value for name, value in chosen.items() if value is not None}
    url = server.base_url + path + ("?" + urlencode(query) if query else "")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=sent,
                                     method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, got, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, got, raw = error.code, error.headers, error.read()
    lowered = {name.lower(): value for name, value in got.items()}
    try:
        return status, lowered, json.loads(raw)
    except json.JSONDecodeError:
        return status, lowered, raw.decode()


def ok(server: SimServer, path: str, query: list[tuple[str, str]] | None = None) -> Any:
    """A request that must succeed; returns its JSON."""
    status, _, payload = call(server, path, query)
    assert status == 200, payload
    return payload


def day_start(day: date) -> datetime:
    """Midnight UTC of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def sum_counts(rows: Any) -> tuple[int, ...]:
    """Field-wise sums of usage rows."""
    return tuple(sum(column) for column in zip(*(row.counts for row in rows), strict=False))


# --- the price table ---------------------------------------------------------------------------


PRICE_CASES = [
    pytest.param((1_200_000, "claude-sonnet-4-6", prices.UNCACHED_INPUT, "standard", "0-200k",
                  "global"), "360", id="sonnet-input"),
    pytest.param((400_000, "claude-sonnet-4-6", prices.CACHE_WRITE_5M, "standard", "0-200k",
                  "global"), "150", id="5m-write"),
    pytest.param((100_000, "claude-sonnet-4-6", prices.CACHE_WRITE_1H, "standard", "0-200k",
                  "global"), "60", id="1h-write"),
    pytest.param((8_000_000, "claude-sonnet-4-6", prices.CACHE_READ, "standard", "0-200k",
                  "global"), "240", id="cache-read"),
    pytest.param((2_000_000, "claude-haiku-4-5-20251001", prices.UNCACHED_INPUT, "batch",
                  "0-200k", "not_available"), "100", id="haiku-batch"),
    pytest.param((1_000_000, "claude-opus-4-7", prices.OUTPUT, "standard", "0-200k", "us"),
                 "2750", id="us-geo-4.7"),
    pytest.param((1_000_000, "claude-sonnet-4-5-20250929", prices.OUTPUT, "standard", "0-200k",
                  "us"), "1500", id="no-geo-before-4.6"),
    pytest.param((1_000_000, "claude-sonnet-4-5-20250929", prices.UNCACHED_INPUT, "batch",
                  "200k-1M", "not_available"), "300", id="long-context-batch-input"),
    pytest.param((1_000_000, "claude-sonnet-4-5-20250929", prices.OUTPUT, "standard", "200k-1M",
                  "not_available"), "2250", id="long-context-output"),
    pytest.param((1_000_000, "claude-sonnet-4-6", prices.OUTPUT, "standard", "200k-1M",
                  "global"), "1500", id="no-long-context-premium-for-4.6"),
    pytest.param((1_000_000, "claude-nova-1", prices.OUTPUT, "standard", "0-200k",
                  "not_available"), "2000", id="nova"),
    pytest.param((7, "claude-opus-4-7", prices.CACHE_WRITE_5M, "batch", "0-200k", "us"),
                 "0.00240625", id="stacked-multipliers-exact"),
    pytest.param((1_000_000, "claude-opus-5-5", prices.CACHE_READ, "standard", "0-200k",
                  "global"), "20", id="opus-5.5-read-is-0.05x"),
    pytest.param((1_000_000, "claude-haiku-5-5", prices.CACHE_WRITE_5M, "standard", "0-200k",
                  "global"), "12.5", id="haiku-5.5-low-band"),
    pytest.param((1_000_000, "claude-fable-5-2", prices.CACHE_READ, "standard", "0-200k",
                  "global"), "20", id="fable-5.2-read-is-0.025x"),
    pytest.param((1_000_000, "claude-fable-5", prices.CACHE_READ, "standard", "0-200k",
                  "us"), "110", id="fable-5-read-us"),
    pytest.param((1_000_000, "claude-opus-4-1-20250805", prices.CACHE_WRITE_1H, "standard",
                  "0-200k", "not_available"), "3000", id="opus-4.1-1h-write"),
    pytest.param((1_000_000, "claude-3-haiku-20240307", prices.CACHE_WRITE_5M, "standard",
                  "0-200k", "not_available"), "30", id="haiku-3-write-is-listed-not-derived"),
]


@pytest.mark.parametrize(("line", "cents"), PRICE_CASES)
def test_price_table(line: tuple[int, str, str, str, str, str], cents: str) -> None:
    """Token costs follow reference §5 exactly, every multiplier stacked, in cents."""
    tokens, model, token_type, tier, window, geo = line
    assert prices.token_cents(tokens, model, token_type, service_tier=tier,
                              context_window=window, inference_geo=geo) == Decimal(cents)


DATED_CASES = [
    pytest.param("claude-sonnet-5-5", prices.CACHE_READ, "standard", date(2026, 10, 6), "20",
                 id="sonnet-5.5-read-before-the-cut"),
    pytest.param("claude-sonnet-5-5", prices.CACHE_READ, "standard", date(2026, 10, 7), "10",
                 id="sonnet-5.5-read-from-the-cut"),
    pytest.param("claude-sonnet-5-5", prices.CACHE_READ, "standard", date(2026, 3, 1), "20",
                 id="sonnet-5.5-first-rates-before-release"),
    pytest.param("claude-sonnet-5-5", prices.OUTPUT, "standard", date(2026, 10, 7), "1000",
                 id="sonnet-5.5-output-unchanged"),
    pytest.param("claude-opus-5-5", prices.OUTPUT, "fast", None, "4000", id="opus-5.5-fast-2x"),
    pytest.param("claude-opus-5-5", prices.CACHE_READ, "fast", None, "40",
                 id="opus-5.5-fast-read"),
    pytest.param("claude-opus-5", prices.UNCACHED_INPUT, "fast", None, "1000",
                 id="opus-5-fast-2x"),
    pytest.param("claude-opus-4-8", prices.OUTPUT, "fast", None, "5000", id="opus-4.8-fast-2x"),
    pytest.param("claude-opus-4-7", prices.OUTPUT, "fast", None, "15000", id="opus-4.7-fast-6x"),
    pytest.param("claude-fable-5-2", prices.OUTPUT, "fast", None, "8000", id="fable-5.2-fast"),
]


@pytest.mark.parametrize(("model", "token_type", "speed", "day", "cents"), DATED_CASES)
def test_prices_by_day_and_speed(model: str, token_type: str, speed: str, day: date | None,
                                 cents: str) -> None:
    """Prices follow the usage day (Sonnet 5.5's read cut) and fast mode's multipliers."""
    got = prices.token_cents(1_000_000, model, token_type, service_tier="standard",
                             context_window="0-200k", inference_geo="global", speed=speed,
                             day=day)
    assert got == Decimal(cents)


def test_fast_mode_stacks_with_cache_batch_and_geo() -> None:
    """Fast × 1h cache write × batch × US geo all multiply (reference §8.3–§8.4)."""
    got = prices.token_cents(1_000_000, "claude-opus-5-5", prices.CACHE_WRITE_1H,
                             service_tier="batch", context_window="0-200k", inference_geo="us",
                             speed="fast")
    assert got == Decimal(8) * 2 * Decimal("0.5") * Decimal("1.1") * 100


def test_opus_4_6_fast_past_200k_is_12x() -> None:
    """Opus 4.6 fast mode costs 6× up to 200K and 12× beyond."""
    def output(window: str) -> Decimal:
        return prices.token_cents(1_000_000, "claude-opus-4-6", prices.OUTPUT,
                                  service_tier="standard", context_window=window,
                                  inference_geo="global", speed="fast")

    assert (output("0-200k"), output("200k-1M")) == (Decimal(15_000), Decimal(30_000))


def test_models_without_fast_mode_refuse_fast_prices() -> None:
    """Sonnet and Haiku have no fast mode: the simulator refuses to price it."""
    assert not prices.has_fast_mode("claude-sonnet-5-5")
    with pytest.raises(ValueError, match="no fast mode"):
        prices.token_cents(1, "claude-sonnet-5-5", prices.OUTPUT, service_tier="standard",
                           context_window="0-200k", inference_geo="global", speed="fast")


def test_the_examples_of_reference_1_5_price_like_1_4() -> None:
    """§1.5 rows 1 and 3 (Opus 5.5, standard and fast) cost $3.78 + $1.52 = $5.30 (§1.4)."""
    standard = SimUsage(None, "k", "claude-opus-5-5", "standard", "0-200k", "global",
                        "standard", 120_000, 40_000, 200_000, 3_000_000, 45_000)
    fast = SimUsage(None, "k", "claude-opus-5-5", "standard", "0-200k", "global", "fast",
                    10_000, 0, 50_000, 400_000, 12_000)
    day = date(2026, 11, 24)
    assert (standard.token_cents(day), fast.token_cents(day)) == (Decimal(378), Decimal(152))


def test_unknown_model_has_no_price() -> None:
    """The simulator refuses to invent a price for a model it does not know."""
    with pytest.raises(ValueError, match="no price"):
        prices.card("claude-imaginary-9")


# --- the organization --------------------------------------------------------------------------


def test_same_seed_same_organization() -> None:
    """Two generations from one seed give identical directories, hours and minutes."""
    first, second = SimOrg.generate(11), SimOrg.generate(11)
    hour = datetime(2026, 3, 3, 15, tzinfo=UTC)
    assert first.workspaces == second.workspaces
    assert first.api_keys == second.api_keys
    assert second.usage_hour(hour + timedelta(hours=5)) == first.usage_hour(hour + timedelta(
        hours=5))
    assert first.usage_minute_rows(hour) == second.usage_minute_rows(hour)
    assert SimOrg.generate(12).usage_hour(hour) != first.usage_hour(hour)


def test_same_seed_same_hour_in_another_process(org: SimOrg) -> None:
    """An hour computed in a fresh interpreter (new hash seed) equals this process's."""
    hour = datetime(2026, 3, 10, 14, tzinfo=UTC)
    script = ("from datetime import datetime, UTC; from guard.sim import SimOrg; "
              "print(repr(SimOrg.generate(7).usage_hour(datetime(2026, 3, 10, 14, tzinfo=UTC))))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123"}, timeout=30).stdout
    assert out.strip() == repr(org.usage_hour(hour))


def test_ids_look_like_the_apis(org: SimOrg) -> None:
    """Workspace and key ids are the API's prefix plus 24 alphanumerics."""
    assert len(org.workspaces) == 4
    assert len(org.api_keys) == 16
    assert all(re.fullmatch(r"wrkspc_[A-Za-z0-9]{24}", w.id) for w in org.workspaces)
    assert all(re.fullmatch(r"apikey_[A-Za-z0-9]{24}", k.id) for k in org.api_keys)


def test_default_workspace_and_console_usage_exist(org: SimOrg) -> None:
    """The default workspace has keys and spend, and some usage has no API key."""
    rows = org.usage_day(date(2026, 3, 10))
    assert any(key.workspace_id is None for key in org.api_keys)
    assert any(row.workspace_id is None for row in rows)
    assert any(row.api_key_id is None for row in rows)


def test_minute_rows_add_up_exactly_to_the_hour(org: SimOrg) -> None:
    """Each group's 60 minutes sum exactly to its hourly counts, some groups idle some minutes."""
    for hour in (datetime(2026, 3, 2, 16, tzinfo=UTC), datetime(2026, 3, 7, 3, tzinfo=UTC)):
        minutes = org.usage_minute_rows(hour)
        assert len(minutes) == 60
        for row in org.usage_hour(hour):
            mine = [r for rows in minutes for r in rows if r.dims == row.dims]
            assert sum_counts(mine) == row.counts
        assert any(len(rows) < len(org.usage_hour(hour)) for rows in minutes)


def test_split_evenly_keeps_every_unit() -> None:
    """Integer splitting loses nothing, whatever the weights."""
    assert split_evenly(10, [3, 4, 9]) == [3, 1, 6]
    assert sum(split_evenly(1_000_003, [1, 5, 6, 106, 107])) == 1_000_003


def test_the_org_uses_every_price_dimension(org: SimOrg) -> None:
    """A month has both cache TTLs, reads, searches, batch, long context, both geos, both
    speeds (fast only where the model has it), and nova."""
    rows = [row for d in range(31) for row in org.usage_day(date(2026, 3, 1) + timedelta(d))]
    assert all(sum(getattr(r, f) for r in rows) > 0 for f in (
        "cache_write_5m", "cache_write_1h", "cache_read", "web_search_requests", "requests"))
    assert {r.service_tier for r in rows} == {"standard", "batch"}
    assert {r.context_window for r in rows} == {"0-200k", "200k-1M"}
    assert {r.speed for r in rows} == {"standard", "fast"}
    assert all(prices.has_fast_mode(r.model) and r.service_tier == "standard"
               for r in rows if r.speed == "fast")
    assert "claude-opus-5-5" in {r.model for r in rows if r.speed == "fast"}
    geo_priced = {r.inference_geo for r in rows if prices.card(r.model).geo_priced}
    assert geo_priced == {"us", "global"}
    assert {r.inference_geo for r in rows if not prices.card(r.model).geo_priced} == {
        "not_available"}
    assert set(org.models) == {r.model for r in rows}
    month_end = MONTH + timedelta(days=31)
    nova = org.truth_cents(MONTH, month_end, "model", "claude-nova-1")
    assert 0 < nova < org.truth_cents(MONTH, month_end, "organization") / 10_000


def test_the_5_5_family_carries_most_of_the_spend(org: SimOrg) -> None:
    """Opus, Sonnet and Haiku 5.5 carry most of a month's spend; older models still some."""
    month_end = MONTH + timedelta(days=31)
    total = org.truth_cents(MONTH, month_end, "model", "claude")
    family = sum(org.truth_cents(MONTH, month_end, "model", m)
                 for m in ("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"))
    assert family > total * Decimal("0.6")
    assert org.truth_cents(MONTH, month_end, "model", "claude-sonnet-4-6") > 0


def test_weekdays_and_business_hours_are_busier(org: SimOrg) -> None:
    """Tuesday out-spends Sunday and 16:00 UTC out-spends 03:00 UTC on average."""
    tuesday, sunday = date(2026, 3, 10), date(2026, 3, 8)
    assert org.truth_day_cents(tuesday, "organization") > 2 * org.truth_day_cents(
        sunday, "organization")
    days = [MONTH + timedelta(days=d) for d in range(28)]
    afternoon = sum(org.truth_cents(d + timedelta(hours=16), d + timedelta(hours=17),
                                    "organization") for d in days)
    night = sum(org.truth_cents(d + timedelta(hours=3), d + timedelta(hours=4),
                                "organization") for d in days)
    assert afternoon > 3 * night


def test_truth_equals_a_brute_force_sum_over_minutes(org: SimOrg) -> None:
    """``truth_cents`` over an odd interval equals pricing every minute row by hand."""
    start = datetime(2026, 3, 9, 22, 17, tzinfo=UTC)
    end = datetime(2026, 3, 11, 1, 42, 30, tzinfo=UTC)  # minute 01:42 is not whole: excluded
    expected = Decimal(0)
    hour = datetime(2026, 3, 9, 22, tzinfo=UTC)
    while hour < end:
        for minute, rows in enumerate(org.usage_minute_rows(hour)):
            if start <= hour + timedelta(minutes=minute) < datetime(2026, 3, 11, 1, 42,
                                                                    tzinfo=UTC):
                day = (hour + timedelta(minutes=minute)).date()
                expected += sum((r.token_cents(day) + r.web_search_cents() for r in rows),
                                Decimal(0))
        expected += sum((s.cents for s in org.code_executions_hour(hour)
                         if start <= s.ended_at and s.ended_at + timedelta(minutes=1) <= end),
                        Decimal(0))
        hour += timedelta(hours=1)
    assert org.truth_cents(start, end, "organization") == expected


def test_truth_scopes_partition_the_organization(org: SimOrg) -> None:
    """Workspaces (default included) sum to the organization; keys plus the rest do too."""
    day = date(2026, 3, 12)
    total = org.truth_day_cents(day, "organization")
    spaces = [w.id for w in org.workspaces] + ["default"]
    assert sum(org.truth_day_cents(day, "workspace", w) for w in spaces) == total
    rows = org.usage_day(day)
    keyless = sum((r.token_cents(day) + r.web_search_cents() for r in rows
                   if r.api_key_id is None), Decimal(0))
    code = sum((s.cents for s in org.code_executions(day_start(day), day_start(day) +
                                                     timedelta(days=1))), Decimal(0))
    by_key = sum(org.truth_day_cents(day, "api_key", k.id) for k in org.api_keys)
    assert by_key + keyless + code == total


def test_model_scope_counts_tokens_only(org: SimOrg) -> None:
    """A model budget excludes web searches and matches models by prefix."""
    day = date(2026, 3, 12)
    rows = [r for r in org.usage_day(day) if r.model.startswith("claude-sonnet")]
    assert any(r.web_search_requests for r in rows)
    expected = sum((r.token_cents(day) for r in rows), Decimal(0))
    assert org.truth_day_cents(day, "model", "claude-sonnet") == expected


def test_large_org_is_sparse_and_fast() -> None:
    """The 2,000-key org makes an hour in milliseconds with a few hundred rows at most."""
    big = SimOrg.large(3)
    assert len(big.api_keys) == 2000
    assert len(big.workspaces) == 200
    assert len(big.models) >= 6
    hour = datetime(2026, 3, 10, 17, tzinfo=UTC)
    rows = big.usage_hour(hour)
    assert 20 < len(rows) < 1000
    minutes = big.usage_minute_rows(hour)
    assert sum_counts(r for rows_ in minutes for r in rows_) == sum_counts(rows)


# --- cost report over HTTP ---------------------------------------------------------------------


def cost_days(server: SimServer, start: str, end: str, *groups: str) -> list[Json]:
    """Every bucket of the cost report over ``[start, end)``, following pages."""
    query = [("starting_at", start), ("ending_at", end), ("limit", "2")]
    query += [("group_by[]", g) for g in groups]
    buckets: list[Json] = []
    while True:
        page = ok(server, COST, query)
        buckets += page["data"]
        if not page["has_more"]:
            return buckets
        query = [*query, ("page", page["next_page"])]


def test_cost_report_equals_truth_per_workspace_and_model(server: SimServer,
                                                          org: SimOrg) -> None:
    """Grouped by workspace and description, each closed day matches the truth exactly."""
    buckets = cost_days(server, "2026-03-09T00:00:00Z", "2026-03-12T00:00:00Z",
                        "workspace_id", "description")
    assert [b["starting_at"] for b in buckets] == [
        "2026-03-09T00:00:00Z", "2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z"]
    for bucket in buckets:
        day = datetime.fromisoformat(bucket["starting_at"]).date()
        results = bucket["results"]
        assert sum(Decimal(r["amount"]) for r in results) == org.truth_day_cents(
            day, "organization")
        for space in [*(w.id for w in org.workspaces), None]:
            amount = sum(Decimal(r["amount"]) for r in results if r["workspace_id"] == space)
            assert amount == org.truth_day_cents(day, "workspace", space or "default")
        for model in org.models:
            amount = sum(Decimal(r["amount"]) for r in results if r["model"] == model)
            assert amount == org.truth_day_cents(day, "model", model)


def test_cost_report_lines_are_described(server: SimServer) -> None:
    """Description rows carry cost type, token type and dimensions; other rows have no model."""
    results = cost_days(server, "2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z",
                        "description")[0]["results"]
    kinds = {r["cost_type"] for r in results}
    assert kinds == {"tokens", "web_search", "code_execution"}
    assert {r["token_type"] for r in results if r["cost_type"] == "tokens"} == set(
        prices.TOKEN_TYPES)
    sonnet_input = [r for r in results if r["model"] == "claude-sonnet-4-6"
                    and r["token_type"] == "uncached_input_tokens"]
    assert sonnet_input[0]["description"] == "Claude Sonnet 4.6 Usage - Input Tokens"
    assert all(r["workspace_id"] is None for r in results)
    assert all(r["model"] is None and r["token_type"] is None
               for r in results if r["cost_type"] != "tokens")


def test_cost_report_without_grouping_is_one_amount_per_day(server: SimServer,
                                                            org: SimOrg) -> None:
    """No group_by gives one row per day with only amount and currency filled."""
    buckets = cost_days(server, "2026-03-10T00:00:00Z", "2026-03-12T00:00:00Z")
    for bucket in buckets:
        (row,) = bucket["results"]
        assert {k for k, v in row.items() if v is not None} == {"amount", "currency"}
        assert row["currency"] == "USD"
        day = datetime.fromisoformat(bucket["starting_at"]).date()
        assert Decimal(row["amount"]) == org.truth_day_cents(day, "organization")


def test_cost_amounts_are_plain_decimal_strings_in_varied_formats(server: SimServer) -> None:
    """Amounts never use exponents, and their formatting varies (stripped, exact, padded)."""
    results = cost_days(server, "2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z",
                        "workspace_id", "description")[0]["results"]
    amounts = [r["amount"] for r in results]
    assert all(re.fullmatch(r"\d+(\.\d+)?", a) for a in amounts)
    assert any(a.endswith("000") and "." in a for a in amounts)
    assert any("." in a and not a.endswith("0") for a in amounts)


def test_cost_report_serves_the_partial_current_day(server: SimServer, org: SimOrg) -> None:
    """Today's bucket holds exactly what is visible: spend up to now minus the lag."""
    (today,) = cost_days(server, "2026-03-28T00:00:00Z", "2026-03-29T00:00:00Z")
    visible = org.truth_cents(day_start(NOW.date()), NOW - timedelta(minutes=3), "organization")
    assert Decimal(today["results"][0]["amount"]) == visible
    assert visible < org.truth_day_cents(NOW.date(), "organization")


def test_cost_report_rejects_other_widths_and_groups(server: SimServer) -> None:
    """Only daily buckets and workspace/description grouping exist."""
    for extra in (("bucket_width", "1h"), ("group_by[]", "model"), ("limit", "32")):
        status, _, body = call(server, COST, [("starting_at", "2026-03-01T00:00:00Z"), extra])
        assert (status, body["error"]["type"]) == (400, "invalid_request_error")


# --- usage report over HTTP --------------------------------------------------------------------


def test_usage_report_pages_by_buckets(server: SimServer) -> None:
    """Pages hold at most ``limit`` buckets and ``next_page`` encodes the next bucket start."""
    query = [("starting_at", "2026-03-28T00:00:00Z"), ("ending_at", "2026-03-28T12:00:00Z"),
             ("bucket_width", "1h"), ("limit", "5")]
    first = ok(server, USAGE, query)
    assert len(first["data"]) == 5
    assert first["has_more"] is True
    assert base64.b64decode(first["next_page"].removeprefix("page_")) == b"2026-03-28T05:00:00Z"
    second = ok(server, USAGE, [*query, ("page", first["next_page"])])
    third = ok(server, USAGE, [*query, ("page", second["next_page"])])
    starts = [b["starting_at"] for page in (first, second, third) for b in page["data"]]
    assert starts == [f"2026-03-28T{h:02d}:00:00Z" for h in range(12)]
    assert (third["has_more"], third["next_page"]) == (False, None)


def test_usage_report_totals_match_the_org(server: SimServer, org: SimOrg) -> None:
    """An hourly bucket grouped by every dimension holds exactly the org's rows for that hour."""
    dims = ("model", "workspace_id", "api_key_id", "service_tier", "context_window",
            "inference_geo", "speed")
    status, _, page = call(server, USAGE, [("starting_at", "2026-03-27T10:00:00Z"),
                                           ("ending_at", "2026-03-27T11:00:00Z"),
                                           ("bucket_width", "1h"),
                                           *(("group_by[]", d) for d in dims)],
                           headers=FAST_BETA)
    assert status == 200, page
    got = {tuple(r[d] for d in dims): (
        r["uncached_input_tokens"], r["cache_creation"]["ephemeral_5m_input_tokens"],
        r["cache_creation"]["ephemeral_1h_input_tokens"], r["cache_read_input_tokens"],
        r["output_tokens"], r["server_tool_use"]["web_search_requests"])
        for r in page["data"][0]["results"]}
    rows = org.usage_hour(datetime(2026, 3, 27, 10, tzinfo=UTC))
    assert got == {(r.model, r.workspace_id, r.api_key_id, r.service_tier, r.context_window,
                    r.inference_geo, r.speed): r.counts[:6] for r in rows}


@pytest.mark.parametrize("query", [
    [("group_by[]", "speed")], [("speeds[]", "fast")],
], ids=["group-by-speed", "filter-by-speed"])
def test_speed_needs_the_fast_mode_beta(server: SimServer, query: list[tuple[str, str]]) -> None:
    """Grouping or filtering the usage report by speed is a 400 without the beta header."""
    base = [("starting_at", "2026-03-27T00:00:00Z"), ("ending_at", "2026-03-28T00:00:00Z"),
            *query]
    status, _, body = call(server, USAGE, base)
    assert (status, body["error"]["type"]) == (400, "invalid_request_error")
    assert "fast-mode-2026-02-01" in body["error"]["message"]
    status, _, body = call(server, USAGE, base,
                           headers={"anthropic-beta": "other-beta, fast-mode-2026-02-01"})
    assert status == 200, body


def test_fast_rows_are_grouped_and_filtered_by_speed(server: SimServer, org: SimOrg) -> None:
    """``speeds[]=fast`` returns exactly the fast-mode tokens of the day, rows say ``fast``."""
    status, _, page = call(server, USAGE, [("starting_at", "2026-03-27T00:00:00Z"),
                                           ("ending_at", "2026-03-28T00:00:00Z"),
                                           ("group_by[]", "speed"), ("group_by[]", "model"),
                                           ("speeds[]", "fast")], headers=FAST_BETA)
    assert status == 200, page
    results = page["data"][0]["results"]
    assert results and {r["speed"] for r in results} == {"fast"}
    fast = [r for r in org.usage_day(date(2026, 3, 27)) if r.speed == "fast"]
    assert sum(r["output_tokens"] for r in results) == sum(r.output_tokens for r in fast)


def test_ungrouped_dimensions_are_null(server: SimServer) -> None:
    """Grouping by model (bare ``group_by`` form) leaves every other dimension ``null``."""
    page = ok(server, USAGE, [("starting_at", "2026-03-27T00:00:00Z"), ("bucket_width", "1d"),
                              ("ending_at", "2026-03-28T00:00:00Z"), ("group_by", "model")])
    (bucket,) = page["data"]
    assert len({r["model"] for r in bucket["results"]}) == len(bucket["results"]) > 1
    for row in bucket["results"]:
        assert set(row) == {"uncached_input_tokens", "cache_creation", "cache_read_input_tokens",
                            "output_tokens", "server_tool_use", "model", "workspace_id",
                            "api_key_id", "service_tier", "context_window", "inference_geo",
                            "speed", "account_id", "service_account_id"}
        assert all(row[d] is None for d in ("workspace_id", "api_key_id", "service_tier",
                                            "context_window", "inference_geo", "speed",
                                            "account_id"))


def test_empty_buckets_are_returned(server: SimServer) -> None:
    """Hours without matching usage still appear, with ``results: []``."""
    page = ok(server, USAGE, [("starting_at", "2026-03-20T00:00:00Z"), ("bucket_width", "1h"),
                              ("ending_at", "2026-03-21T00:00:00Z"), ("limit", "24"),
                              ("models[]", "claude-nova-1")])
    assert len(page["data"]) == 24
    assert any(b["results"] == [] for b in page["data"])


@pytest.mark.parametrize(("width", "maximum"), [("1m", 1440), ("1h", 168), ("1d", 31)])
def test_limit_over_the_maximum_is_rejected(server: SimServer, width: str, maximum: int) -> None:
    """Each bucket width has its own maximum ``limit``; one more is a 400."""
    base = [("starting_at", "2026-03-01T00:00:00Z"), ("bucket_width", width)]
    assert call(server, USAGE, [*base, ("limit", str(maximum))])[0] == 200
    status, _, body = call(server, USAGE, [*base, ("limit", str(maximum + 1))])
    assert (status, body["error"]["type"]) == (400, "invalid_request_error")


def test_lag_hides_the_last_minutes(server: SimServer, org: SimOrg) -> None:
    """With a 3-minute lag the last three minutes come back empty until the clock moves on."""
    query = [("starting_at", "2026-03-28T11:50:00Z"), ("bucket_width", "1m"),
             ("group_by[]", "api_key_id")]
    minutes = org.usage_minute_rows(datetime(2026, 3, 28, 11, tzinfo=UTC))
    page = ok(server, USAGE, query)
    assert [b["starting_at"][11:16] for b in page["data"]] == [f"11:{m}" for m in range(50, 60)]
    assert [len(b["results"]) for b in page["data"]] == [
        len({r.api_key_id for r in minutes[m]}) for m in range(50, 57)] + [0, 0, 0]
    server.clock.advance(timedelta(minutes=3))
    later = ok(server, USAGE, query)["data"]
    assert len(later[9]["results"]) == len({r.api_key_id for r in minutes[59]}) > 0
    assert later[-1]["starting_at"] == "2026-03-28T12:02:00Z"


def test_no_bucket_starts_at_or_after_now(server: SimServer) -> None:
    """The bucket that would start at now is not served."""
    page = ok(server, USAGE, [("starting_at", "2026-03-28T12:00:00Z"), ("bucket_width", "1h")])
    assert page == {"data": [], "has_more": False, "next_page": None}


# --- auth, faults, request log, keys -----------------------------------------------------------


@pytest.mark.parametrize(("headers", "status", "kind"), [
    ({"x-api-key": "sk-ant-admin01-wrong"}, 401, "authentication_error"),
    ({"x-api-key": "sk-ant-api03-normal-key"}, 403, "permission_error"),
    ({"x-api-key": None}, 401, "authentication_error"),
    ({"x-api-key": None, "authorization": f"Bearer {ADMIN_KEY}"}, 200, None),
    ({"anthropic-version": None}, 400, "invalid_request_error"),
], ids=["wrong-key", "non-admin-key", "no-key", "bearer", "no-version"])
def test_authentication(server: SimServer, headers: dict[str, str | None], status: int,
                        kind: str | None) -> None:
    """Only the admin key (header or bearer) gets in; every answer carries a request id."""
    got_status, got_headers, body = call(server, KEYS, headers=headers)
    assert got_status == status
    assert got_headers["request-id"].startswith("req_")
    if kind is not None:
        assert body["error"]["type"] == kind
        assert body["request_id"] == got_headers["request-id"]


def test_injected_429_is_served_once_then_normal(server: SimServer) -> None:
    """A 429 fault answers one matching request with ``retry-after``; the next one succeeds."""
    server.inject(Fault(429, retry_after="7", path="cost_report"))
    query = [("starting_at", "2026-03-27T00:00:00Z")]
    assert call(server, USAGE, query)[0] == 200  # another path: untouched
    status, headers, body = call(server, COST, query)
    assert (status, headers["retry-after"], body["error"]["type"]) == (429, "7",
                                                                      "rate_limit_error")
    assert call(server, COST, query)[0] == 200


def test_faults_are_consumed_in_order_and_can_corrupt(server: SimServer) -> None:
    """Faults apply in injection order; ``corrupt`` mutates a real 200 and ``body`` is raw."""

    def break_amount(payload: Json) -> None:
        payload["data"][0]["results"][0]["amount"] = "abc"

    server.inject(Fault(529, count=2))
    server.inject(Fault(corrupt=break_amount))
    server.inject(Fault(502, body="<html>bad gateway</html>"))
    query = [("starting_at", "2026-03-27T00:00:00Z")]
    got = [call(server, COST, query) for _ in range(5)]
    assert [g[0] for g in got] == [529, 529, 200, 502, 200]
    assert got[0][2]["error"]["type"] == "overloaded_error"
    assert got[2][2]["data"][0]["results"][0]["amount"] == "abc"
    assert got[3][2] == "<html>bad gateway</html>"
    assert got[4][2]["data"][0]["results"][0]["amount"] != "abc"


def test_request_log_counts_requests_without_the_key(server: SimServer) -> None:
    """Every request is recorded with its parsed query, and the admin key never appears."""
    ok(server, USAGE, [("starting_at", "2026-03-27T00:00:00Z"), ("group_by[]", "model"),
                       ("group_by[]", "workspace_id")])
    call(server, "/v1/organizations/nowhere")
    recorded = server.requests
    assert [(r.method, r.path) for r in recorded] == [
        ("GET", USAGE), ("GET", "/v1/organizations/nowhere")]
    assert recorded[0].query["group_by[]"] == ["model", "workspace_id"]
    assert recorded[0].headers["x-api-key"] == "<redacted>"
    assert ADMIN_KEY not in repr(recorded)
    server.clear_requests()
    assert server.requests == []


def test_unknown_path_is_404(server: SimServer) -> None:
    """Paths the API does not have answer ``not_found_error``."""
    status, _, body = call(server, "/v1/organizations/nowhere")
    assert (status, body["error"]["type"]) == (404, "not_found_error")


def test_api_keys_list_pages_and_deactivate(server: SimServer, org: SimOrg) -> None:
    """Keys page with ``after_id``; a POST deactivates one, and the status filter sees it."""
    first = ok(server, KEYS, [("limit", "10")])
    rest = ok(server, KEYS, [("limit", "10"), ("after_id", first["last_id"])])
    assert (first["has_more"], rest["has_more"]) == (True, False)
    assert [k["id"] for k in first["data"] + rest["data"]] == [k.id for k in org.api_keys]
    victim = org.api_keys[3].id
    status, _, updated = call(server, f"{KEYS}/{victim}", body={"status": "inactive"})
    assert (status, updated["status"]) == (200, "inactive")
    inactive = ok(server, KEYS, [("status", "inactive")])["data"]
    assert [k["id"] for k in inactive] == [victim] and server.key_status(victim) == "inactive"
    assert call(server, f"{KEYS}/{victim}", body={"status": "active"})[2]["status"] == "active"
    assert call(server, f"{KEYS}/{victim}", body={"status": "gone"})[0] == 400
    assert call(server, f"{KEYS}/apikey_unknown", body={"status": "inactive"})[0] == 404


def test_workspaces_list(server: SimServer, org: SimOrg) -> None:
    """Workspaces list in the SyncPage envelope, without the default workspace."""
    page = ok(server, "/v1/organizations/workspaces", [("limit", "1000")])
    assert [w["id"] for w in page["data"]] == [w.id for w in org.workspaces]
    assert page["first_id"] == org.workspaces[0].id and page["has_more"] is False


def test_command_line_prints_the_url_then_serves() -> None:
    """``python -m guard.sim`` prints its base URL first and answers on it."""
    command = [sys.executable, "-m", "guard.sim", "--seed", "7", "--now", "2026-03-28T12:00:00Z",
               "--admin-key", ADMIN_KEY]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
            request = urllib.request.Request(url + KEYS, headers={
                "x-api-key": ADMIN_KEY, "anthropic-version": "2023-06-01"})
            with urllib.request.urlopen(request, timeout=10) as response:
                assert len(json.loads(response.read())["data"]) == 16
        finally:
            process.terminate()


def test_sim_usage_is_a_frozen_value() -> None:
    """Usage rows are immutable values that compare by content."""
    row = SimUsage(None, None, "claude-sonnet-4-6", "standard", "0-200k", "global", "standard",
                   1, 2, 3, 4, 5, 0, 6)
    assert row == SimUsage.of(row.dims, row.counts)
    with pytest.raises(AttributeError):
        row.model = "x"  # type: ignore[misc]
