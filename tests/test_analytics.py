"""The analytics (billed) source: the client over httpx.MockTransport, and the pure rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from guard.adapters.admin import parse
from guard.adapters.admin.client import ANALYTICS_BETA, AdminClient
from guard.core import billed
from guard.core.billed import BilledPolicy, BilledRead
from guard.core.ledger import includes_unpriced, ledger_of
from guard.core.model import BilledCost, Budget, PricedUsage, Scope, Snapshot
from guard.core.period import floor_hour
from guard.core.usage import days_of
from guard.errors import MalformedResponse, RequestRejected
from tests.test_admin_client import Recorder, make_client

T0 = datetime(2026, 11, 24, tzinfo=UTC)
T3 = T0 + timedelta(hours=3)


def cost_row(start: datetime, amount: str, *, list_amount: str | None = None,
             **group: Any) -> dict[str, Any]:
    keys = {"api_key_id": None, "workspace_id": None, "model": None, "cost_type": "tokens",
            "speed": None, "token_type": None}
    keys.update(group)
    return {"starting_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ending_at": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "group": keys,
            "cost": {"amount": amount, "list_amount": list_amount or amount, "currency": "USD",
                     "requests": None}}


def page(rows: list[dict[str, Any]], next_page: str | None = None,
         refreshed: str | None = "2026-11-24T08:00:00Z") -> httpx.Response:
    return httpx.Response(200, json={"data": rows, "has_more": next_page is not None,
                                     "next_page": next_page, "data_refreshed_at": refreshed})


def client_of(*answers: httpx.Response) -> tuple[AdminClient, Recorder]:
    recorder = Recorder(*answers)
    client, _ = make_client(recorder)
    return client, recorder


# --- the client --------------------------------------------------------------------------------


def test_analytics_cost_sends_the_beta_header_bucket_width_and_brackets() -> None:
    client, recorder = client_of(page([cost_row(T0, "530.000000", model="claude-opus-5-5")]))
    result = client.analytics_cost(T0, T3, "1h")
    [request] = recorder.requests
    assert request.url.path == "/v1/organizations/analytics/cost"
    assert request.headers["anthropic-beta"] == ANALYTICS_BETA
    query = request.url.params
    assert query["time_bucket_width"] == "1h"
    assert query["ending_at"] == "2026-11-24T03:00:00Z"
    assert query.get_list("group_by[]") == ["api_key_id", "workspace_id", "model", "cost_type"]
    assert query["limit"] == "1000" and query["order_by"] == "time"
    assert result.rows[0].amount_cents == Decimal("530.000000")
    assert result.refreshed_at == datetime(2026, 11, 24, 8, tzinfo=UTC)


def test_analytics_cost_follows_next_page_until_has_more_is_false() -> None:
    client, recorder = client_of(page([cost_row(T0, "1")], next_page="rpt_a"),
                                 page([cost_row(T0, "2")], next_page="rpt_b"),
                                 page([cost_row(T0, "3")]))
    result = client.analytics_cost(T0, T3, "1h")
    assert [r.amount_cents for r in result.rows] == [1, 2, 3]
    assert [r.url.params.get("page") for r in recorder.requests] == [None, "rpt_a", "rpt_b"]


def test_an_expired_cursor_restarts_paging_without_counting_a_row_twice() -> None:
    expired = httpx.Response(410, json={"type": "error", "error": {
        "type": "invalid_request_error", "message": "cursor expired"}})
    client, recorder = client_of(page([cost_row(T0, "1")], next_page="rpt_a"), expired,
                                 page([cost_row(T0, "5")], next_page="rpt_c"),
                                 page([cost_row(T0, "6")]))
    result = client.analytics_cost(T0, T3, "1h")
    assert [r.amount_cents for r in result.rows] == [5, 6]
    assert [r.url.params.get("page") for r in recorder.requests] == [None, "rpt_a", None,
                                                                     "rpt_c"]


def test_a_cursor_that_keeps_expiring_is_an_error_not_a_partial_answer() -> None:
    expired = httpx.Response(410, json={"type": "error", "error": {"type": "x", "message": "y"}})
    answers = [a for _ in range(4) for a in (page([cost_row(T0, "1")], "rpt"), expired)]
    client, _ = client_of(*answers)
    with pytest.raises(RequestRejected):
        client.analytics_cost(T0, T3, "1h")


def test_null_data_refreshed_at_means_nothing_is_billed_yet() -> None:
    client, _ = client_of(page([], refreshed=None))
    result = client.analytics_cost(T0, T3, "1h")
    assert result.rows == () and result.refreshed_at is None


@pytest.mark.parametrize("bad", [
    {"amount": "abc"}, {"amount": "-5"}, {"amount": "NaN"}, {"currency": "EUR"},
    {"list_amount": None}])
def test_a_malformed_amount_is_an_error_never_zero(bad: dict[str, Any]) -> None:
    row = cost_row(T0, "100")
    row["cost"].update(bad)
    client, _ = client_of(page([row]))
    with pytest.raises(MalformedResponse, match="analytics/cost page 1 row 0"):
        client.analytics_cost(T0, T3, "1h")


@pytest.mark.parametrize("bad", [
    {"starting_at": "2026-11-24T00:00:00"}, {"starting_at": ["2026-11-24T00:00:00Z"]},
    {"ending_at": "2026-11-23T23:00:00Z"}, {"group": None}, {"cost": "100"},
    {"group": {"workspace_id": 7}}, {"cost": {"amount": "1e30", "list_amount": "1",
                                              "currency": "USD"}}],
    ids=["no-zone", "unhashable-time", "ends-first", "no-group", "cost-not-object",
         "numeric-id", "absurd"])
def test_a_malformed_row_after_good_ones_is_named_with_its_page_and_row(
        bad: dict[str, Any]) -> None:
    """The fast path vouches only for well-formed rows: any other row, wherever it is on the
    page (after rows whose timestamps it already parsed), fails by its row number."""
    row = cost_row(T0, "100")
    row.update(bad)
    client, _ = client_of(page([cost_row(T0, "1"), cost_row(T0, "2")], next_page="rpt_2"),
                          page([cost_row(T0, "3"), row]))
    with pytest.raises(MalformedResponse, match="analytics/cost page 2 row 3"):
        client.analytics_cost(T0, T3, "1h")


def test_well_formed_rows_parse_the_same_on_the_fast_and_the_checked_path() -> None:
    rows = [cost_row(T0, "530.125", list_amount="600", model="claude-opus-5-5",
                     workspace_id="wrkspc_a", api_key_id="apikey_b"),
            cost_row(T0 + timedelta(hours=1), "0", cost_type="web_search")]
    where = parse.Where("analytics/cost page 1")
    fast = parse.billed_rows(rows, where)
    assert fast == [parse.billed_row(r, where / f"row {i}") for i, r in enumerate(rows)]
    assert fast[0] == BilledCost(T0, T0 + timedelta(hours=1), Decimal("530.125"),
                                 Decimal("600"), "tokens", "claude-opus-5-5", "wrkspc_a",
                                 "apikey_b")


def test_has_more_null_goes_by_next_page_like_the_sdk() -> None:
    first = httpx.Response(200, json={"data": [cost_row(T0, "1")], "has_more": None,
                                      "next_page": "rpt_x", "data_refreshed_at": None})
    client, recorder = client_of(first, page([cost_row(T0, "2")]))
    assert len(client.analytics_cost(T0, T3, "1h").rows) == 2
    assert len(recorder.requests) == 2


# --- what to read --------------------------------------------------------------------------------

POLICY = BilledPolicy()
AT = datetime(2026, 11, 14, 12, 30, tzinfo=UTC)


def test_the_first_read_is_whole_from_the_day_before_the_month() -> None:
    plan = billed.plan_read(AT, None, None, None, POLICY)
    assert plan == BilledRead(datetime(2026, 10, 31, tzinfo=UTC),
                              datetime(2026, 11, 14, 12, tzinfo=UTC), full=True)
    assert all(b - a <= billed.CHUNK for a, b in plan.chunks())
    assert plan.chunks()[0][0] == plan.start and plan.chunks()[-1][1] == plan.end


def test_a_read_one_minute_later_costs_nothing_and_a_poll_later_reads_recent_hours() -> None:
    mark = datetime(2026, 11, 14, 8, tzinfo=UTC)
    assert billed.plan_read(AT + timedelta(minutes=1), mark, AT, AT, POLICY) is None
    later = AT + POLICY.poll
    plan = billed.plan_read(later, mark, AT, AT, POLICY)
    assert plan == BilledRead(mark - POLICY.recent, datetime(2026, 11, 14, 12, tzinfo=UTC),
                              full=False)


def test_the_whole_range_is_read_at_a_new_month_and_swept_again_daily() -> None:
    mark = datetime(2026, 11, 14, 8, tzinfo=UTC)
    poll = billed.plan_read(AT + POLICY.full_every, mark, AT, AT, POLICY)
    assert poll is not None and not poll.full  # a day later still a poll: the sweep re-reads
    december = datetime(2026, 12, 1, 0, 5, tzinfo=UTC)
    last_full = datetime(2026, 11, 29, 23, tzinfo=UTC)  # before the new range starts
    plan = billed.plan_read(december, mark, december - timedelta(minutes=1), last_full, POLICY)
    assert plan is not None and plan.full and plan.start == datetime(2026, 11, 30, tzinfo=UTC)
    covered = datetime(2026, 11, 30, 23, tzinfo=UTC)  # already reads the new range whole
    assert billed.plan_read(december, mark, december - timedelta(minutes=1), covered,
                            POLICY) is None


def test_a_poll_reads_no_more_hours_than_fit_one_page() -> None:
    """At 300 rows an hour a page holds two hours (600 rows: room for busier hours): the poll
    reads from one hour behind the watermark; a small organization's poll still reads the
    day behind it."""
    mark = datetime(2026, 11, 14, 8, tzinfo=UTC)
    later = AT + POLICY.poll
    assert billed.page_hours(Decimal(300), POLICY) == 2
    big = billed.plan_read(later, mark, AT, AT, POLICY, rows_per_hour=Decimal(300))
    assert big == BilledRead(mark - timedelta(hours=1), floor_hour(later), full=False)
    small = billed.plan_read(later, mark, AT, AT, POLICY, rows_per_hour=Decimal(3))
    assert small is not None and small.start == mark - POLICY.recent
    assert billed.page_hours(Decimal(5000), POLICY) == 1
    huge = billed.plan_read(later, mark, AT, AT, POLICY, rows_per_hour=Decimal(5000))
    assert huge is not None and huge.start == mark  # only hours not exported yet


def test_a_sweep_walks_back_a_page_at_a_time_and_starts_again_a_day_later() -> None:
    """Below where the poll starts, one page every two minutes down to the start of the
    range; then nothing until a day after the sweep began."""
    below = datetime(2026, 11, 3, 0, tzinfo=UTC)
    start = billed.billed_from(below)  # October 31
    density = Decimal(300)  # three hours a page
    began = below
    state = billed.Sweep(None, None, None)
    pages, now = [], below
    while True:
        plan = billed.plan_sweep(now, below, state, POLICY, density)
        if plan is None:
            break
        pages.append(plan)
        began = now if state.cursor is None else began
        state = billed.Sweep(began, None if plan.start <= start else plan.start, now)
        now += POLICY.sweep_every
    assert pages[0].end == below and pages[-1].start == start
    assert all(p.end - p.start <= timedelta(hours=3) for p in pages)
    assert [p.end for p in pages[1:]] == [p.start for p in pages[:-1]]
    assert billed.plan_sweep(now, below, state, POLICY, density) is None
    again = billed.plan_sweep(began + POLICY.full_every, below, state, POLICY, density)
    assert again is not None and again.end == below
    paused = billed.Sweep(began, pages[0].start, below)  # a page read at `below`
    assert billed.plan_sweep(below + timedelta(minutes=1), below, paused, POLICY,
                             density) is None


def test_billed_hours_never_start_before_the_apis_epoch() -> None:
    assert billed.billed_from(datetime(2026, 1, 1, 5, tzinfo=UTC)) == billed.EPOCH


def test_the_watermark_is_on_the_hour_within_the_range() -> None:
    start, end = T0, T0 + timedelta(hours=24)
    assert billed.watermark_of(None, start, end) == start
    assert billed.watermark_of(datetime(2026, 11, 24, 8, 17, tzinfo=UTC), start, end) == (
        datetime(2026, 11, 24, 8, tzinfo=UTC))
    assert billed.watermark_of(end + timedelta(days=2), start, end) == end


def test_rows_sum_per_hour_tokens_apart_and_an_unlisted_workspace_is_the_default() -> None:
    rows = [BilledCost(T0, T0 + timedelta(hours=1), Decimal("530"), Decimal("570"), "tokens",
                       "claude-opus-5-5", "wrkspc_default", "apikey_a"),
            BilledCost(T0, T0 + timedelta(hours=1), Decimal("14"), Decimal("14"), "web_search",
                       "claude-opus-5-5", "wrkspc_default", "apikey_a"),
            BilledCost(T0 + timedelta(hours=9), T0 + timedelta(hours=10), Decimal(7), Decimal(7),
                       "tokens", "claude-opus-5-5", "wrkspc_prod", "apikey_b")]
    [hour] = billed.hours_of(rows, {"wrkspc_prod"}, before=T0 + timedelta(hours=8))
    assert hour.workspace_id is None and hour.api_key_id == "apikey_a"
    assert (hour.token_usd, hour.other_usd, hour.list_usd) == (
        Decimal("5.30"), Decimal("0.14"), Decimal("5.84"))
    assert billed.unlisted_workspaces(rows, {"wrkspc_prod"}) == {"wrkspc_default"}


def test_only_complete_days_become_cost_days() -> None:
    day = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [BilledCost(day + timedelta(days=i), day + timedelta(days=i + 1), Decimal(930),
                       Decimal(1000), "tokens", "claude-haiku-5-5", None, None) for i in range(3)]
    days = billed.cost_days(rows, (), through=day + timedelta(days=2, hours=5))
    assert [d.day.day for d in days] == [1, 2]
    assert days[0].total_usd == Decimal("9.30") and days[0].calibration == Decimal("0.93")
    assert days[0].by_model == {"claude-haiku-5-5": Decimal("9.30")}


def test_cost_days_from_marginals_take_workspaces_from_one_read_and_models_from_the_other(
        ) -> None:
    day = datetime(2026, 11, 1, tzinfo=UTC)
    one = timedelta(days=1)
    spaces = [BilledCost(day + one * i, day + one * (i + 1), Decimal(900), Decimal(1000), None,
                         None, ws, None)
              for i in range(3) for ws in ("wrkspc_prod", "wrkspc_default")]
    models = [BilledCost(day + one * i, day + one * (i + 1), Decimal(1500), Decimal(1600), kind,
                         "claude-opus-5-5", None, None)
              for i in range(3) for kind in ("tokens", "web_search")]
    days = billed.marginal_cost_days(spaces, models, {"wrkspc_prod"},
                                     through=day + timedelta(days=2, hours=5))
    assert [d.day.day for d in days] == [1, 2]
    assert days[0].by_workspace == {"wrkspc_prod": Decimal(9), None: Decimal(9)}
    assert days[0].by_model == {"claude-opus-5-5": Decimal(15)}  # tokens only
    assert days[0].total_usd == Decimal(18) and days[0].list_usd == Decimal(20)


def test_history_days_are_re_read_daily_until_the_eighth_of_the_next_month() -> None:
    day = datetime(2026, 10, 20, tzinfo=UTC).date()
    at = datetime(2026, 11, 3, tzinfo=UTC)
    assert billed.history_due(day, None, at, POLICY)
    assert not billed.history_due(day, at - timedelta(hours=2), at, POLICY)
    assert billed.history_due(day, at - timedelta(days=1), at, POLICY)
    final = datetime(2026, 11, 9, tzinfo=UTC)
    assert not billed.history_due(day, final, final + timedelta(days=5), POLICY)


def test_calibration_is_billed_over_list_and_one_when_nothing_was_billed() -> None:
    assert billed.calibration(Decimal(93), Decimal(100)) == Decimal("0.93")
    assert billed.calibration(Decimal(0), Decimal(0)) == 1


def test_auto_probes_again_a_day_after_falling_back() -> None:
    decided = datetime(2026, 11, 14, tzinfo=UTC)
    assert not billed.probe_due(decided, decided + timedelta(hours=23), POLICY)
    assert billed.probe_due(decided, decided + timedelta(hours=24), POLICY)
    assert billed.probe_due(None, decided, POLICY)


# --- the ledger on the analytics source ---------------------------------------------------


NOV = datetime(2026, 11, 1, tzinfo=UTC)


def row(start: datetime, usd: str, *, key: str | None = "apikey_a", model: str = "claude-opus-5-5",
        workspace: str | None = None, other: str = "0") -> PricedUsage:
    return PricedUsage(start, workspace, key, model, Decimal(usd), Decimal(other))


def budget(scope: Scope, match: str | None = None) -> Budget:
    return Budget(f"{scope}", scope, match, Decimal(100), Decimal(200))


def analytics_snapshot(**changes: Any) -> Snapshot:
    at = NOV + timedelta(days=2, hours=12)
    fields: dict[str, Any] = {
        "at": at, "settled": {}, "usage": [], "data_through": at, "api_requests": 0,
        "source": "analytics", "billed_through": NOV + timedelta(days=2, hours=8),
        "billed": [row(NOV, "10", other="1"), row(NOV + timedelta(days=2), "4", key=None)],
        "tail": [row(NOV + timedelta(days=2, hours=9), "2")],  # the fetcher's: watermark → at
        "calibration": Decimal("0.9")}
    fields.update(changes)
    fields["billed"], fields["tail"] = days_of(fields["billed"]), days_of(fields["tail"])
    return Snapshot(**fields)


def test_api_key_budgets_are_billed_through_the_watermark_and_the_tail_is_calibrated() -> None:
    [org, key, model] = ledger_of([budget(Scope.ORGANIZATION), budget(Scope.API_KEY, "apikey_a"),
                                   budget(Scope.MODEL, "claude-opus")],
                                  analytics_snapshot()).budgets
    assert (org.authoritative_usd, org.estimated_usd) == (Decimal(15), Decimal("1.8"))
    assert (key.authoritative_usd, key.estimated_usd) == (Decimal(11), Decimal("1.8"))
    assert model.authoritative_usd == Decimal(14)  # tokens only: the $1 web search is not a model's


def test_the_last_whole_billed_day_is_authoritative_through() -> None:
    ledger = ledger_of([budget(Scope.ORGANIZATION)], analytics_snapshot())
    assert ledger.authoritative_through == (NOV + timedelta(days=1)).date()
    early = analytics_snapshot(billed_through=NOV - timedelta(hours=3), billed=[])
    assert ledger_of([budget(Scope.ORGANIZATION)], early).authoritative_through is None


def test_an_unpriced_model_counts_only_in_the_estimated_tail() -> None:
    nova = analytics_snapshot(unpriced_models=("claude-nova-1",), billed=[
        row(NOV + timedelta(days=2, hours=7), "5", model="claude-nova-1")])
    assert not includes_unpriced(budget(Scope.API_KEY, "apikey_a"), nova)
    late = analytics_snapshot(unpriced_models=("claude-nova-1",), tail=[
        row(NOV + timedelta(days=2, hours=10), "5", model="claude-nova-1")])
    late = replace(late, tail=days_of(
        [row(NOV + timedelta(days=2, hours=10), "5", model="claude-nova-1")], {"claude-nova-1"}))
    assert includes_unpriced(budget(Scope.API_KEY, "apikey_a"), late)
    assert not includes_unpriced(budget(Scope.API_KEY, "apikey_other"), late)


def test_an_export_is_not_complete_through_an_hour_it_has_not_written() -> None:
    """`data_refreshed_at` says 13:00, the rows stop at 09:00 while usage priced 09:00-12:00:
    billed only through 09:00 (the rest stays estimated). A priced hour more than six hours
    behind the claim, or one usage priced under ten cents, is believed empty."""
    day = datetime(2026, 3, 21, tzinfo=UTC)
    hour = timedelta(hours=1)
    claimed = day + 13 * hour
    rows = [billed.BilledHour(day + h * hour, None, "k", "m", Decimal(1), Decimal(0),
                              Decimal(1)) for h in range(9)]
    usage = {day + h * hour: Decimal("0.80") for h in range(13)}
    assert billed.written_through(claimed, day, rows, usage) == day + 9 * hour
    assert billed.written_through(claimed, day, [*rows, *(
        billed.BilledHour(day + h * hour, None, "k", "m", Decimal(1), Decimal(0), Decimal(1))
        for h in range(9, 13))], usage) == claimed
    quiet = {**usage, **{day + h * hour: Decimal("0.05") for h in range(9, 13)}}
    assert billed.written_through(claimed, day, rows, quiet) == claimed
    old_gap = [r for r in rows if r.start != day + 2 * hour]
    assert billed.written_through(claimed, day, old_gap, quiet) == claimed  # 11 h behind


def test_a_poll_of_an_hour_busier_than_a_page_takes_two() -> None:
    from guard.core.billed import BilledRead, poll_pages  # noqa: PLC0415

    hour = datetime(2026, 10, 28, 21, tzinfo=UTC)
    one = BilledRead(hour, hour + timedelta(hours=1), full=False)
    four = BilledRead(hour - timedelta(hours=3), hour + timedelta(hours=1), full=False)
    assert poll_pages(one, Decimal(700), 1000) == 2  # an evening hour at 1.5× the average
    assert poll_pages(one, Decimal(600), 1000) == 1
    assert poll_pages(four, Decimal(150), 1000) == 1
    assert poll_pages(four, Decimal(200), 1000) == 2
    assert poll_pages(one, None, 1000) == 1
