"""The Admin API client against httpx.MockTransport: parameters, pages, retries, errors."""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from guard.adapters.admin.client import AdminClient, RetryPolicy
from guard.errors import (
    AdminKeyRejected,
    DeadlineExceeded,
    MalformedResponse,
    RateLimited,
    RequestRejected,
    UpstreamUnavailable,
)

SECRET = "sk-ant-admin01-test-secret-value"
T0 = datetime(2026, 3, 10, tzinfo=UTC)
T3 = datetime(2026, 3, 10, 3, tzinfo=UTC)


def usage_item(**overrides: Any) -> dict[str, Any]:
    item = {
        "uncached_input_tokens": 100, "cache_read_input_tokens": 10, "output_tokens": 5,
        "cache_creation": {"ephemeral_5m_input_tokens": 1, "ephemeral_1h_input_tokens": 2},
        "server_tool_use": {"web_search_requests": 3}, "model": "claude-sonnet-4-6",
        "workspace_id": None, "api_key_id": None, "service_tier": "standard",
        "context_window": "0-200k", "inference_geo": "global", "account_id": None,
        "service_account_id": None,
    }
    item.update(overrides)
    return item


def bucket(start: str, end: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"starting_at": start, "ending_at": end, "results": results}


class Recorder:
    """A transport handler that answers from a queue and records every request."""

    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], httpx.Response]):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        return answer(request) if callable(answer) else answer


def make_client(recorder: Recorder, **retry: Any) -> tuple[AdminClient, list[float]]:
    sleeps: list[float] = []
    http = httpx.Client(base_url="https://admin.test", transport=httpx.MockTransport(recorder),
                        headers={"x-api-key": SECRET})
    client = AdminClient(http, retry=RetryPolicy(**retry), sleep=sleeps.append,
                         rng=random.Random(1))
    return client, sleeps


def ok(payload: object, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=payload, headers=headers)


def error(status: int, kind: str, message: str = "nope", **headers: str) -> httpx.Response:
    body = {"type": "error", "error": {"type": kind, "message": message},
            "request_id": "req_1"}
    return httpx.Response(status, json=body, headers={"request-id": "req_1", **headers})


def test_usage_follows_every_page_and_sends_bracketed_arrays() -> None:
    """Pages are followed via next_page, and group_by goes out as group_by[] with a limit."""
    page1 = {"data": [bucket("2026-03-10T00:00:00Z", "2026-03-10T01:00:00Z", [usage_item()]),
                      bucket("2026-03-10T01:00:00Z", "2026-03-10T02:00:00Z", [])],
             "has_more": True, "next_page": "page_abc"}
    page2 = {"data": [bucket("2026-03-10T02:00:00Z", "2026-03-10T03:00:00Z", [usage_item()])],
             "has_more": False, "next_page": None}
    rec = Recorder(ok(page1), ok(page2))
    client, _ = make_client(rec)
    pages = list(client.usage_pages(T0, T3, "1h", group_by=("model", "workspace_id")))
    assert [len(p) for p in pages] == [2, 1]
    first = rec.requests[0].url.params
    assert first.get_list("group_by[]") == ["model", "workspace_id"]
    assert first["bucket_width"] == "1h" and first["limit"] == "3"
    assert first["starting_at"] == "2026-03-10T00:00:00Z"
    assert first["ending_at"] == "2026-03-10T03:00:00Z"
    assert rec.requests[1].url.params["page"] == "page_abc"
    assert client.requests == 2
    row = pages[0][0].results[0]
    assert (row.cache_write_5m_tokens, row.cache_write_1h_tokens, row.web_search_requests) == (
        1, 2, 3)


@pytest.mark.parametrize(("width", "end", "limit"), [
    pytest.param("1m", datetime(2026, 3, 12, tzinfo=UTC), "1440", id="1m-capped-at-1440"),
    pytest.param("1h", datetime(2026, 3, 30, tzinfo=UTC), "168", id="1h-capped-at-168"),
    pytest.param("1d", datetime(2026, 6, 1, tzinfo=UTC), "31", id="1d-capped-at-31"),
    pytest.param("1h", datetime(2026, 3, 10, 5, tzinfo=UTC), "5", id="1h-window-smaller"),
])
def test_limit_is_chosen_per_bucket_width(width: str, end: datetime, limit: str) -> None:
    """The page limit is the window's bucket count, capped at the API's maximum per width."""
    rec = Recorder(ok({"data": [], "has_more": False, "next_page": None}))
    client, _ = make_client(rec)
    list(client.usage_pages(T0, end, width))
    assert rec.requests[0].url.params["limit"] == limit


def test_429_with_retry_after_is_waited_out() -> None:
    """A 429 carrying retry-after sleeps exactly that long, then succeeds."""
    rec = Recorder(error(429, "rate_limit_error", **{"retry-after": "7"}),
                   ok({"data": [], "has_more": False, "next_page": None}))
    client, sleeps = make_client(rec)
    assert list(client.cost_pages(T0, T3)) == [[]]
    assert sleeps == [7.0]
    assert client.requests == 2


@pytest.mark.parametrize(("headers", "slept"), [
    pytest.param({"retry-after": "Tue, 10 Mar 2026 00:00:12 GMT",
                  "date": "Tue, 10 Mar 2026 00:00:00 GMT"}, 12.0, id="http-date-from-date"),
    pytest.param({"retry-after": "Tue, 10 Mar 2026 00:00:12 GMT"}, None, id="http-date-no-date"),
])
def test_an_http_date_retry_after_is_measured_from_the_servers_date(
        headers: dict[str, str], slept: float | None) -> None:
    """An HTTP-date retry-after is counted from the answer's Date header, never the local
    clock; without a Date it cannot be read, and the usual backoff applies."""
    rec = Recorder(error(429, "rate_limit_error", **headers),
                   ok({"data": [], "has_more": False, "next_page": None}))
    client, sleeps = make_client(rec, backoff_base_s=0.5)
    assert list(client.cost_pages(T0, T3)) == [[]]
    assert len(sleeps) == 1
    if slept is not None:
        assert sleeps == [slept]
    else:
        assert 0.25 <= sleeps[0] <= 0.5


def test_retry_after_beyond_the_budget_fails_at_once() -> None:
    """A retry-after longer than max_wait_s is not slept through: RateLimited is raised."""
    rec = Recorder(error(429, "rate_limit_error", **{"retry-after": "3600"}))
    client, sleeps = make_client(rec, max_wait_s=60)
    with pytest.raises(RateLimited, match="retry-after 3600s"):
        list(client.cost_pages(T0, T3))
    assert sleeps == []


@pytest.mark.parametrize("status", [500, 502, 503, 504, 529])
def test_server_errors_back_off_then_give_up(status: int) -> None:
    """Persistent 5xx/529 retries with bounded, growing, jittered backoff, then fails."""
    rec = Recorder(*[error(status, "api_error")] * 4)
    client, sleeps = make_client(rec, attempts=4, backoff_base_s=1, backoff_max_s=3)
    with pytest.raises(UpstreamUnavailable, match=f"after 4 attempts .*HTTP {status}") as info:
        list(client.usage_pages(T0, T3, "1h"))
    assert info.value.recoverable
    assert len(sleeps) == 3
    assert 0.5 <= sleeps[0] <= 1 and 1 <= sleeps[1] <= 2 and 1.5 <= sleeps[2] <= 3


def test_overload_then_success_returns_data() -> None:
    """A 529 followed by a good page yields the page."""
    page = {"data": [bucket("2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z",
                            [{"amount": "12.5", "currency": "USD"}])],
            "has_more": False, "next_page": None}
    rec = Recorder(error(529, "overloaded_error"), ok(page))
    client, sleeps = make_client(rec)
    [[day]] = list(client.cost_pages(T0, datetime(2026, 3, 11, tzinfo=UTC)))
    assert day.results[0].amount_cents == Decimal("12.5")
    assert len(sleeps) == 1


def test_timeouts_are_retried() -> None:
    """A transport timeout is retried like a server error."""
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    rec = Recorder(timeout, ok({"data": [], "has_more": False, "next_page": None}))
    client, sleeps = make_client(rec)
    list(client.usage_pages(T0, T3, "1h"))
    assert len(sleeps) == 1 and client.requests == 2


@pytest.mark.parametrize(("status", "kind"), [(401, "authentication_error"),
                                              (403, "permission_error")])
def test_rejected_key_is_a_clear_unrecoverable_error(status: int, kind: str) -> None:
    """401/403 say 'admin key rejected', are not retried, and never echo the key."""
    rec = Recorder(error(status, kind, "invalid x-api-key"))
    client, sleeps = make_client(rec)
    with pytest.raises(AdminKeyRejected, match="admin key rejected") as info:
        list(client.usage_pages(T0, T3, "1h"))
    assert not info.value.recoverable and sleeps == []
    assert SECRET not in str(info.value)
    assert "req_1" in str(info.value)


def test_bad_request_is_not_retried() -> None:
    """A 400 is the guard's own bug: reported with the API's message, not retried."""
    rec = Recorder(error(400, "invalid_request_error", "limit too large"))
    client, sleeps = make_client(rec)
    with pytest.raises(RequestRejected, match="limit too large"):
        list(client.usage_pages(T0, T3, "1h"))
    assert sleeps == []


@pytest.mark.parametrize(("mutate", "where"), [
    pytest.param(lambda p: p["data"][1]["results"][0].update(amount="abc"),
                 "cost_report bucket 1, result 0: `amount` is not a decimal", id="amount"),
    pytest.param(lambda p: p["data"][0]["results"][0].pop("amount"),
                 "cost_report bucket 0, result 0: `amount` is missing", id="missing"),
    pytest.param(lambda p: p["data"][0].update(results=None),
                 "cost_report bucket 0: `results` is not a list", id="results"),
    pytest.param(lambda p: p["data"][1].update(starting_at="yesterday"),
                 "cost_report bucket 1, `starting_at`: not an RFC 3339", id="timestamp"),
    pytest.param(lambda p: p.pop("has_more"), "cost_report page 1: `has_more` is missing",
                 id="envelope"),
    pytest.param(lambda p: p["data"][0]["results"][0].update(amount="NaN"),
                 "`amount` is not a finite decimal", id="nan"),
])
def test_malformed_cost_page_names_its_location(mutate: Callable[[dict[str, Any]], None],
                                                 where: str) -> None:
    """A malformed payload raises MalformedResponse saying where, never a silent zero."""
    payload = {"data": [bucket("2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z",
                               [{"amount": "1", "currency": "USD"}]),
                        bucket("2026-03-11T00:00:00Z", "2026-03-12T00:00:00Z",
                               [{"amount": "2", "currency": "USD"}])],
               "has_more": False, "next_page": None}
    mutate(payload)
    client, _ = make_client(Recorder(ok(payload)))
    with pytest.raises(MalformedResponse) as info:
        list(client.cost_pages(T0, datetime(2026, 3, 12, tzinfo=UTC)))
    assert where in str(info.value)


def test_negative_token_count_is_malformed() -> None:
    """A negative token count is reported with its bucket, result and field."""
    payload = {"data": [bucket("2026-03-10T00:00:00Z", "2026-03-10T01:00:00Z",
                               [usage_item(), usage_item(output_tokens=-5)])],
               "has_more": False, "next_page": None}
    client, _ = make_client(Recorder(ok(payload)))
    with pytest.raises(MalformedResponse,
                       match=r"usage_report bucket 0, result 1: `output_tokens` is negative"):
        list(client.usage_pages(T0, T3, "1h"))


@pytest.mark.parametrize(("amount", "why"), [
    ("-5", "`amount` is negative"),
    ("-0.000001", "`amount` is negative"),
    ("1000000000000", "over $100,000,000 for one row"),
    ("1e30", "over $100,000,000 for one row"),
], ids=["negative", "tiny-negative", "ten-billion-dollars", "1e30"])
def test_a_negative_or_absurd_cost_amount_is_malformed(amount: str, why: str) -> None:
    """No documented cost amount is negative (it would lower spend and relax the fallback)
    or past $100 million for one row (it would overflow the store)."""
    payload = {"data": [bucket("2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z",
                               [{"amount": "1", "currency": "USD"},
                                {"amount": amount, "currency": "USD"}])],
               "has_more": False, "next_page": None}
    client, _ = make_client(Recorder(ok(payload)))
    with pytest.raises(MalformedResponse, match=rf"bucket 0, result 1: .*{re.escape(why)}"):
        list(client.cost_pages(T0, datetime(2026, 3, 11, tzinfo=UTC)))


def test_an_absurd_token_count_is_malformed() -> None:
    """10**15 output tokens in one row is not a real count."""
    payload = {"data": [bucket("2026-03-10T00:00:00Z", "2026-03-10T01:00:00Z",
                               [usage_item(output_tokens=10**15)])],
               "has_more": False, "next_page": None}
    client, _ = make_client(Recorder(ok(payload)))
    with pytest.raises(MalformedResponse, match=r"`output_tokens` is 1e\+15, over 1e\+12"):
        list(client.usage_pages(T0, T3, "1h"))


def endless(cursor: Callable[[int], str], **extra: Any) -> Callable[[httpx.Request],
                                                                    httpx.Response]:
    """Pages that always say there is more, the n-th handing on ``cursor(n)``."""
    served = [0]

    def answer(_: httpx.Request) -> httpx.Response:
        served[0] += 1
        return ok({"data": [], "has_more": True, "next_page": cursor(served[0]),
                   "last_id": cursor(served[0]), **extra})
    return answer


def test_a_repeating_next_page_is_malformed_at_once() -> None:
    """The same cursor twice (the fault campaign's 3,665 requests): stopped at page 2."""
    pages = endless(lambda _: "page_same")
    recorder = Recorder(*[pages] * 10)
    client, _ = make_client(recorder)
    with pytest.raises(MalformedResponse, match="usage_report page 2 repeats an earlier cursor"):
        list(client.usage_pages(T0, T3, "1h"))
    assert len(recorder.requests) == 2


def test_more_pages_than_the_range_can_need_is_malformed() -> None:
    """Three hourly buckets can never need more than four pages, however new the cursors."""
    recorder = Recorder(*[endless(lambda n: f"page_{n}")] * 50)
    client, _ = make_client(recorder)
    with pytest.raises(MalformedResponse, match="usage_report wants more than 4 pages"):
        list(client.usage_pages(T0, T3, "1h"))
    assert len(recorder.requests) == 4


def test_analytics_and_lists_stop_a_repeating_cursor_too() -> None:
    """analytics/cost and the workspace list end on a repeated cursor the same way."""
    recorder = Recorder(*[endless(lambda _: "same", data_refreshed_at=None)] * 10)
    client, _ = make_client(recorder)
    with pytest.raises(MalformedResponse, match="analytics/cost page 2 repeats"):
        client.analytics_cost(T0, T3, "1h")
    recorder = Recorder(*[endless(lambda _: "wrkspc_same")] * 10)
    client, _ = make_client(recorder)
    with pytest.raises(MalformedResponse, match="workspaces page 2 repeats"):
        client.workspaces()


def test_a_watermark_from_the_future_is_malformed() -> None:
    """`data_refreshed_at` an hour and more past the wall clock is refused, named; one within
    the skew is taken (clocks differ a little)."""
    wall = datetime(2026, 3, 3, 12, tzinfo=UTC)
    for refreshed, refused in (("2099-01-01T00:00:00Z", True),
                               ("2026-03-03T13:30:00Z", True),
                               ("2026-03-03T12:40:00Z", False)):
        page = {"data": [], "has_more": False, "next_page": None,
                "data_refreshed_at": refreshed}
        client, _ = make_client(Recorder(ok(page)))
        client.wall = lambda: wall
        if refused:
            with pytest.raises(MalformedResponse, match=r"analytics/cost page 1: "
                                                        r"`data_refreshed_at` .* is after now"):
                client.analytics_cost(T0, T3, "1h")
        else:
            assert client.analytics_cost(T0, T3, "1h").refreshed_at == datetime(
                2026, 3, 3, 12, 40, tzinfo=UTC)


def test_non_json_body_is_malformed() -> None:
    """An HTML error page with status 200 is a malformed response, not data."""
    client, _ = make_client(Recorder(httpx.Response(200, text="<html>oops</html>")))
    with pytest.raises(MalformedResponse, match="is not JSON"):
        list(client.usage_pages(T0, T3, "1h"))


def test_workspaces_and_keys_follow_after_id() -> None:
    """List endpoints page with after_id=last_id until has_more is false."""
    ws1 = {"data": [{"id": "wrkspc_a", "name": "A", "type": "workspace"}], "has_more": True,
           "first_id": "wrkspc_a", "last_id": "wrkspc_a"}
    ws2 = {"data": [{"id": "wrkspc_b", "name": "B", "type": "workspace",
                     "archived_at": "2026-01-01T00:00:00Z"}],
           "has_more": False, "first_id": "wrkspc_b", "last_id": "wrkspc_b"}
    keys = {"data": [{"id": "apikey_1", "name": "k", "status": "active",
                      "scope": {"type": "workspace", "workspace_id": "wrkspc_a"},
                      "workspace_id": None}],
            "has_more": False, "first_id": "apikey_1", "last_id": "apikey_1"}
    rec = Recorder(ok(ws1), ok(ws2), ok(keys))
    client, _ = make_client(rec)
    assert [w.id for w in client.workspaces()] == ["wrkspc_a", "wrkspc_b"]
    assert rec.requests[1].url.params["after_id"] == "wrkspc_a"
    [key] = client.api_keys(status="active")
    assert key.workspace_id == "wrkspc_a"
    assert rec.requests[2].url.params["status"] == "active"


def test_set_api_key_status_posts_the_status() -> None:
    """Deactivating a key POSTs {"status": "inactive"} to the key's path."""
    answer = {"id": "apikey_1", "name": "k", "status": "inactive", "scope": None,
              "workspace_id": None}
    rec = Recorder(ok(answer))
    client, _ = make_client(rec)
    assert client.set_api_key_status("apikey_1", "inactive").status == "inactive"
    sent = rec.requests[0]
    assert sent.method == "POST" and sent.url.path == "/v1/organizations/api_keys/apikey_1"
    assert json.loads(sent.content) == {"status": "inactive"}


@pytest.mark.parametrize(("given", "speed"), [
    pytest.param({"speed": "fast"}, "fast", id="fast"),
    pytest.param({"speed": "standard"}, "standard", id="standard"),
    pytest.param({}, None, id="not-grouped-by-speed"),
])
def test_a_usage_rows_speed_is_read_when_present(given: dict[str, Any],
                                                  speed: str | None) -> None:
    """The ``speed`` dimension (fast mode) reaches the estimator; without it, it is None."""
    page = {"data": [bucket("2026-03-10T00:00:00Z", "2026-03-10T01:00:00Z",
                            [usage_item(**given)])], "has_more": False, "next_page": None}
    client, _ = make_client(Recorder(ok(page)))
    [[parsed]] = list(client.usage_pages(T0, T3, "1h"))
    assert parsed.results[0].speed == speed


def test_usage_is_grouped_by_speed_with_the_fast_mode_beta_header() -> None:
    """By default usage is grouped by every priced dimension, speed included, and every page
    carries the fast-mode beta header that grouping by speed needs; cost requests do not."""
    empty = {"data": [], "has_more": False, "next_page": None}
    rec = Recorder(ok(empty), ok(empty), ok(empty))
    client, _ = make_client(rec)
    list(client.usage_pages(T0, T3, "1h"))
    list(client.usage_pages(T0, T3, "1h", group_by=("model",)))
    list(client.cost_pages(T0, T3))
    speed, plain, cost = rec.requests
    assert "speed" in speed.url.params.get_list("group_by[]")
    assert speed.headers["anthropic-beta"] == "fast-mode-2026-02-01"
    assert "anthropic-beta" not in plain.headers and "anthropic-beta" not in cost.headers


def test_the_deadline_bounds_every_request_of_a_block() -> None:
    """Inside within(10): each request costs 4 s of a fake clock, so the third is refused
    with DeadlineExceeded naming the setting; outside the block nothing is bounded."""
    now = [0.0]

    def slow(_: httpx.Request) -> httpx.Response:
        now[0] += 4
        return ok({"data": [], "has_more": True, "next_page": f"page_{now[0]}"})

    recorder = Recorder(*[slow] * 20)
    client, _ = make_client(recorder)
    client.clock = lambda: now[0]
    with client.within(10), pytest.raises(DeadlineExceeded, match="tick_deadline_s"):
        list(client.usage_pages(T0, T0 + timedelta(days=2), "1h"))
    assert len(recorder.requests) == 3
    assert client._until is None


def test_a_retry_wait_past_the_deadline_is_not_slept() -> None:
    """A 429 asking for 50 s with 20 s left ends the block instead of sleeping."""
    recorder = Recorder(error(429, "rate_limit_error", **{"retry-after": "50"}))
    client, sleeps = make_client(recorder)
    client.clock = lambda: 0.0
    with client.within(20), pytest.raises(DeadlineExceeded, match="would wait 50 s"):
        list(client.usage_pages(T0, T3, "1h"))
    assert sleeps == []


def test_a_trickled_body_cannot_hold_the_tick_past_its_deadline() -> None:
    """Over a real socket, a body sent a byte every 0.2 s (each read well inside httpx's
    read timeout) is cut off by the deadline long before it is complete."""
    body = json.dumps({"data": [], "has_more": False, "next_page": None}).encode() * 20
    sent = [0]
    listener = socket.create_server(("127.0.0.1", 0))

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
            try:
                for byte in body:
                    conn.sendall(bytes([byte]))
                    sent[0] += 1
                    time.sleep(0.2)
            except OSError:
                return

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    port = listener.getsockname()[1]
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5, trust_env=False)
    client = AdminClient(http, retry=RetryPolicy(attempts=1), sleep=lambda _: None)
    with client.within(1.0), pytest.raises(DeadlineExceeded):
        list(client.usage_pages(T0, T3, "1h"))
    http.close()
    listener.close()
    server.join(timeout=30)
    assert sent[0] < len(body)


def test_a_read_stalled_inside_httpx_timeout_is_cut_at_the_deadline() -> None:
    """Headers, then silence: the body's first read would block for httpx's whole 30 s read
    timeout; the deadline (5 s: time enough on a loaded machine for the request to reach the
    read) ends the request from outside the read instead, named."""
    listener = socket.create_server(("127.0.0.1", 0))
    release = threading.Event()

    def stall() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{")
            release.wait(60)

    server = threading.Thread(target=stall, daemon=True)
    server.start()
    port = listener.getsockname()[1]
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False)
    client = AdminClient(http, retry=RetryPolicy(attempts=1), sleep=lambda _: None)
    try:
        with client.within(5.0), pytest.raises(DeadlineExceeded, match="inside a read"):
            list(client.usage_pages(T0, T3, "1h"))
    finally:
        release.set()
        server.join(timeout=30)
        http.close()
        listener.close()


def minute_page(*buckets: dict[str, Any]) -> dict[str, Any]:
    return {"data": list(buckets), "has_more": False, "next_page": None}


def test_a_minute_sent_again_unchanged_is_the_same_bucket_not_parsed_twice() -> None:
    """A steady tick reads the late minutes again: a bucket sent exactly as last time is the
    bucket parsed then; one whose results changed is parsed afresh."""
    m0, m1, m2 = ("2026-03-10T00:00:00Z", "2026-03-10T00:01:00Z", "2026-03-10T00:02:00Z")
    first = minute_page(bucket(m0, m1, [usage_item()]), bucket(m1, m2, [usage_item()]))
    again = minute_page(bucket(m0, m1, [usage_item()]),
                        bucket(m1, m2, [usage_item(output_tokens=9)]))
    client, _ = make_client(Recorder(ok(first), ok(again)))
    end = T0 + timedelta(minutes=2)
    [before] = list(client.usage_pages(T0, end, "1m"))
    [after] = list(client.usage_pages(T0, end, "1m"))
    assert after[0] is before[0]
    assert after[1] is not before[1]
    assert after[1].results[0].output_tokens == 9
    assert after[0] == before[0]


def test_a_malformed_minute_is_refused_even_after_a_well_formed_one() -> None:
    """What was parsed before never vouches for a bucket sent differently."""
    m0, m1 = "2026-03-10T00:00:00Z", "2026-03-10T00:01:00Z"
    good = minute_page(bucket(m0, m1, [usage_item()]))
    bad = minute_page(bucket(m0, m1, [usage_item(output_tokens=-1)]))
    client, _ = make_client(Recorder(ok(good), ok(bad)))
    end = T0 + timedelta(minutes=1)
    list(client.usage_pages(T0, end, "1m"))
    with pytest.raises(MalformedResponse, match="`output_tokens` is negative"):
        list(client.usage_pages(T0, end, "1m"))


def test_only_minutes_that_will_be_read_again_are_remembered() -> None:
    """Minutes before ``again_from`` are final once read: the client keeps nothing of them,
    so a later read of them is parsed afresh."""
    m0, m1, m2 = ("2026-03-10T00:00:00Z", "2026-03-10T00:01:00Z", "2026-03-10T00:02:00Z")
    page = minute_page(bucket(m0, m1, [usage_item()]), bucket(m1, m2, [usage_item()]))
    client, _ = make_client(Recorder(ok(page), ok(page)))
    end, again = T0 + timedelta(minutes=2), T0 + timedelta(minutes=1)
    [before] = list(client.usage_pages(T0, end, "1m", again_from=again))
    [after] = list(client.usage_pages(T0, end, "1m", again_from=again))
    assert after[0] is not before[0] and after[0] == before[0]
    assert after[1] is before[1]
