"""Anthropic's spend limits (reference §7): read, remembered, and warned about before they bite.

The client is tested on ``httpx.MockTransport``; the month runs against the simulated Console
organization over real HTTP (``guard.sim.spend_limits``), through the daemon's own wiring.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import RecordingTransport
from typer.testing import CliRunner

from guard.adapters.admin import parse
from guard.adapters.admin.client import SPEND_LIMITS_BETA, AdminClient, RetryPolicy
from guard.config import load_settings
from guard.core.limits import ProviderLimit, cap_near, covering
from guard.core.model import Budget, Scope
from guard.entry import wiring
from guard.entry.cli import app
from guard.errors import MalformedResponse, SpendLimitsUnavailable, UpstreamUnavailable
from guard.shell.tick import run_tick
from guard.sim import SimClock, SimOrg, SimServer
from guard.sim.spend_limits import NO_ACCESS, SpendLimitBook

KEY = "sk-ant-admin-limits-test"
ORG = SimOrg.generate(7)
RESEARCH = ORG.workspaces[2]
MARCH = datetime(2026, 3, 1, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)
LIST_PATH = "/v1/organizations/spend_limits"


def row(**changes: Any) -> dict[str, Any]:
    """A workspace ``spend_limit`` as the API lists it (reference §7.4)."""
    return {"type": "spend_limit", "id": "spl_01Wq7Ls2XcVb9NmK4tRy6Hd3", "amount": "50000",
            "currency": "USD", "period": "monthly",
            "scope": {"type": "workspace", "workspace_id": "wrkspc_01Km4Tz8YbQwE2rN6pVdLs3H"},
            "is_enabled": True, "created_at": "2026-11-02T09:14:07Z",
            "updated_at": "2026-11-20T16:40:12Z"} | changes


# --- parsing --------------------------------------------------------------------------------


def test_a_workspace_limit_is_parsed_in_dollars() -> None:
    """``"50000"`` cents is $500.00 on that workspace, monthly, enabled."""
    limit = parse.spend_limit(row(), parse.Where("spend_limits"))
    assert limit == ProviderLimit("spl_01Wq7Ls2XcVb9NmK4tRy6Hd3", "workspace",
                                  "wrkspc_01Km4Tz8YbQwE2rN6pVdLs3H", Decimal("500"), "monthly")


def test_an_organization_limit_without_an_amount_is_no_cap() -> None:
    """``amount: null`` parses as no cap, and such a limit never counts."""
    limit = parse.spend_limit(row(amount=None, scope={"type": "organization"}),
                              parse.Where("spend_limits"))
    assert (limit.scope, limit.workspace_id, limit.amount_usd) == ("organization", None, None)
    assert not limit.counts


@pytest.mark.parametrize("change", [
    pytest.param({"amount": "12.5"}, id="fractional-cents"),
    pytest.param({"amount": "-100"}, id="negative"),
    pytest.param({"amount": 50000}, id="number-not-string"),
    pytest.param({"period": "yearly"}, id="unknown-period"),
    pytest.param({"scope": {"type": "workspace"}}, id="workspace-without-id"),
    pytest.param({"is_enabled": "yes"}, id="enabled-not-bool"),
])
def test_a_malformed_limit_is_an_error_not_a_zero(change: dict[str, Any]) -> None:
    """Anything off the documented shape fails the read, naming where."""
    with pytest.raises(MalformedResponse, match="spend_limits"):
        parse.spend_limit(row(**change), parse.Where("spend_limits"))


# --- the client -----------------------------------------------------------------------------


def client_for(handler: Any) -> AdminClient:
    http = httpx.Client(base_url="https://api.anthropic.test",
                        transport=httpx.MockTransport(handler))
    return AdminClient(http, retry=RetryPolicy(attempts=2), sleep=lambda _: None)


def test_the_client_sends_the_beta_and_follows_next_page() -> None:
    """Every page asks with ``anthropic-beta: spend-limit-reads-2026-09-26`` and the cursor;
    a page with a ``next_page`` and no ``has_more`` is followed."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if "page" not in request.url.params:
            return httpx.Response(200, json={"data": [row()], "next_page": "c2"})
        return httpx.Response(200, json={"data": [row(id="spl_2", scope={"type": "usage_tier"},
                                                      amount="20000000")], "next_page": None})

    limits = client_for(handler).spend_limits()
    assert [limit.id for limit in limits] == ["spl_01Wq7Ls2XcVb9NmK4tRy6Hd3", "spl_2"]
    assert all(r.headers["anthropic-beta"] == SPEND_LIMITS_BETA for r in seen)
    assert [r.url.params.get("page") for r in seen] == [None, "c2"]
    assert seen[0].url.path == LIST_PATH


@pytest.mark.parametrize("status", [400, 403, 404])
def test_no_access_is_its_own_error(status: int) -> None:
    """403 (no early access), 404 and 400 (another organization type) say the API is not
    there for this organization: ``SpendLimitsUnavailable``, after one request."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, json={"type": "error", "error": {
            "type": "permission_error", "message": "not enabled",
            "details": {"error_code": NO_ACCESS}}})

    with pytest.raises(SpendLimitsUnavailable) as raised:
        client_for(handler).spend_limits()
    assert raised.value.status == status and calls == [1]


def test_a_server_error_is_an_outage_not_no_access() -> None:
    """A 500 is retried and then an outage: the limits read before stay in force."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"type": "error", "error": {"type": "api_error",
                                                                      "message": "boom"}})

    with pytest.raises(UpstreamUnavailable):
        client_for(handler).spend_limits()


# --- which budget a limit covers (pure) -----------------------------------------------------


def limit(scope: str, usd: str | None, workspace: str | None = None, **changes: Any
          ) -> ProviderLimit:
    fields: dict[str, Any] = {"period": "monthly", "enabled": True, "currency": "USD"} | changes
    return ProviderLimit(f"spl_{scope}_{workspace}", scope, workspace,
                         Decimal(usd) if usd is not None else None, **fields)


LIMITS = (limit("usage_tier", "200000"), limit("organization", "2000"),
          limit("workspace", "500", "wrkspc_r"), limit("workspace", "50", "wrkspc_other"))


@pytest.mark.parametrize(("budget", "expected"), [
    pytest.param(Budget("org", Scope.ORGANIZATION, None, Decimal(1), Decimal(2)),
                 "2000", id="org-the-lower-of-org-and-tier"),
    pytest.param(Budget("ws", Scope.WORKSPACE, "wrkspc_r", Decimal(1), Decimal(2)),
                 "500", id="its-own-workspace"),
    pytest.param(Budget("ws", Scope.WORKSPACE, "wrkspc_none", Decimal(1), Decimal(2)),
                 None, id="a-workspace-without-a-limit"),
    pytest.param(Budget("key", Scope.API_KEY, "apikey_1", Decimal(1), Decimal(2)),
                 None, id="keys-have-none"),
    pytest.param(Budget("m", Scope.MODEL, "claude-opus", Decimal(1), Decimal(2)),
                 None, id="models-have-none"),
])
def test_a_budget_is_covered_by_the_limit_on_its_own_scope(budget: Budget,
                                                           expected: str | None) -> None:
    found = covering(budget, LIMITS)
    assert (found.amount_usd if found else None) == (Decimal(expected) if expected else None)


@pytest.mark.parametrize("ignored", [
    pytest.param(limit("organization", "10", enabled=False), id="disabled"),
    pytest.param(limit("organization", "10", period="daily"), id="daily"),
    pytest.param(limit("organization", "10", currency="EUR"), id="not-usd"),
    pytest.param(limit("organization", None), id="no-amount"),
])
def test_only_monthly_enabled_usd_limits_with_an_amount_count(ignored: ProviderLimit) -> None:
    budget = Budget("org", Scope.ORGANIZATION, None, Decimal(1), Decimal(2))
    assert covering(budget, [ignored]) is None


def test_cap_near_is_ninety_percent_by_default() -> None:
    cap = limit("workspace", "500", "w")
    assert not cap_near(Decimal("449.99"), cap) and cap_near(Decimal("450"), cap)
    assert cap_near(Decimal("400"), cap, Decimal(80))


# --- a month on the simulator ---------------------------------------------------------------


def research_month_usd() -> Decimal:
    return ORG.truth_cents(MARCH, APRIL, "workspace", RESEARCH.id) / 100


def write_config(tmp_path: Path, base_url: str, *, hard_share: Decimal = Decimal(5),
                 extra: str = "") -> Path:
    """A Research workspace budget with its hard limit at ``hard_share`` of its March (by
    default well above Anthropic's limit) and its soft limit at 80 % of that; ``extra`` is more
    TOML (an ``[enforcement]`` section)."""
    hard = research_month_usd() * hard_share
    path = tmp_path / "guard.toml"
    path.write_text(
        f'[anthropic]\nadmin_api_key = "{KEY}"\nbase_url = "{base_url}"\nmax_retries = 0\n'
        f'[state]\nurl = "sqlite:///{tmp_path / "state.db"}"\n'
        f'[fallback]\nenv_file = "{tmp_path / "model.env"}"\n'
        f'state_file = "{tmp_path / "fallback.json"}"\n{extra}'
        f'[[budgets]]\nname = "research-ws"\nscope = "workspace"\nmatch = "{RESEARCH.id}"\n'
        f'soft_limit_usd = {int(hard * Decimal("0.8"))}\nhard_limit_usd = {int(hard)}\n')
    return path


@pytest.fixture
def book() -> SpendLimitBook:
    """Anthropic caps Research at half of what it spends in March."""
    cap = (research_month_usd() / 2).quantize(Decimal(1))
    return SpendLimitBook(MARCH - timedelta(days=30), organization_usd=Decimal(100_000),
                          workspaces_usd={RESEARCH.id: cap})


@pytest.fixture
def sim(book: SpendLimitBook) -> Iterator[SimServer]:
    with SimServer(ORG, SimClock(MARCH), admin_key=KEY, spend_limits=book) as server:
        yield server


def limit_reads(sim: SimServer) -> list[datetime]:
    return [r.received_at for r in sim.requests if r.path == LIST_PATH]


def crossing_day(usd: Decimal) -> int:
    """The first day of March by whose end Research has spent ``usd``."""
    return next(d for d in range(1, 32)
                if ORG.truth_cents(MARCH, MARCH + timedelta(days=d), "workspace",
                                   RESEARCH.id) / 100 >= usd)


def test_provider_cap_near_fires_at_ninety_percent_and_resolves_at_rollover(
        sim: SimServer, book: SpendLimitBook, tmp_path: Path) -> None:
    """Every 6 h around the crossing (and on the 1st, the 25th and April 1st):
    ``provider_cap_near`` first fires on the first tick whose Research spend is at 90 % of
    Anthropic's workspace limit, stays firing, and resolves in April; the limits are read on
    the first tick and then at most hourly."""
    cap = Decimal(book.cents("workspace", RESEARCH.id) or 0) / 100
    day = crossing_day(cap * Decimal("0.9"))
    around = [MARCH + timedelta(days=day - 2, hours=6 * i) for i in range(13)]
    moments = [MARCH + timedelta(hours=6), *around, MARCH + timedelta(days=24),
               APRIL + timedelta(hours=6)]
    guard = wiring.build(load_settings(write_config(tmp_path, sim.base_url)),
                         transport=RecordingTransport())
    firing: list[tuple[datetime, bool, Decimal]] = []
    try:
        for at in moments:
            sim.clock.set(at)
            body = run_tick(guard.tick, at).as_json()
            budget = body["budgets"][0]
            firing.append((at, "provider_cap_near" in budget["firing"],
                           Decimal(str(budget["spend_usd"]))))
            if at < APRIL:
                assert budget["provider_limit"]["amount_usd"] == float(cap)
                assert budget["provider_limit"]["workspace_id"] == RESEARCH.id
    finally:
        guard.close()
    first = next(i for i, (_, on, _) in enumerate(firing) if on)
    assert 1 < first < len(around)  # inside the 6-hourly stretch
    assert firing[first][2] >= cap * Decimal("0.9") > firing[first - 1][2]
    assert all(on for at, on, _ in firing[first:] if at < APRIL)
    assert not firing[-1][1]  # April: the period reset
    reads = limit_reads(sim)
    assert reads[0] == MARCH + timedelta(hours=6)
    assert all(b - a >= timedelta(hours=1) for a, b in itertools.pairwise(reads))


def test_guard_report_shows_the_limit_next_to_its_budget(sim: SimServer, tmp_path: Path) -> None:
    """The text report names the limit, the budget it covers and the share spent; the JSON
    has ``provider_limit`` on the budget and every limit under ``provider_limits``."""
    at = MARCH + timedelta(days=10)
    sim.clock.set(at)
    config = write_config(tmp_path, sim.base_url)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = CliRunner().invoke(app, ["--config", str(config), "report", "--at", stamp])
    assert text.exit_code == 0, text.output
    assert f"Anthropic limit workspace {RESEARCH.id}" in text.stdout
    assert "covers research-ws" in text.stdout
    body = json.loads(CliRunner().invoke(app, ["--config", str(config), "report", "--json",
                                               "--at", stamp]).stdout)
    assert {limit["scope"] for limit in body["provider_limits"]} == {
        "usage_tier", "organization", "workspace"}
    assert body["budgets"][0]["provider_limit"]["scope"] == "workspace"


def test_an_organization_without_access_is_asked_once_a_day(tmp_path: Path) -> None:
    """403 ``spend_limits_admin_api_writes_not_enabled``: asked on the first tick, not again
    for a day of ticks; ``guard doctor`` shows what was remembered; nothing fires."""
    book = SpendLimitBook(MARCH, access=False)
    with SimServer(ORG, SimClock(MARCH), admin_key=KEY, spend_limits=book) as sim:
        config = write_config(tmp_path, sim.base_url)
        guard = wiring.build(load_settings(config), transport=RecordingTransport())
        try:
            at = MARCH + timedelta(days=3)
            for minutes in range(0, 23 * 60, 60):
                sim.clock.set(at + timedelta(minutes=minutes))
                body = run_tick(guard.tick, at + timedelta(minutes=minutes)).as_json()
                assert "provider_cap_near" not in body["budgets"][0]["firing"]
            assert len(limit_reads(sim)) == 1
            later = at + timedelta(days=1, hours=1)
            sim.clock.set(later)
            run_tick(guard.tick, later)
            assert len(limit_reads(sim)) == 2
        finally:
            guard.close()
        doctor = CliRunner().invoke(app, ["--config", str(config), "doctor"])
    assert "spend limits API: not available to this organization (HTTP 403" in doctor.stdout


# --- the hard stop through the workspace's Anthropic limit ----------------------------------


def enforcing_config(tmp_path: Path, base_url: str, *, fallback_to_keys: bool = False) -> Path:
    """Research's own hard limit at a tenth of its month, enforced with ``spend_limit``."""
    return write_config(tmp_path, base_url, hard_share=Decimal("0.1"), extra=(
        '[enforcement]\nenabled = true\ndry_run = false\nmethod = "spend_limit"\n'
        f'fallback_to_keys = {"true" if fallback_to_keys else "false"}\n'))


def research_keys() -> list[str]:
    return [k.id for k in ORG.api_keys if k.workspace_id == RESEARCH.id]


def run_month(config: Path, sim: SimServer) -> list[dict[str, Any]]:
    """Through the daemon's wiring: every 6 h for the first six days of March (the hard limit
    falls in them), then on the 15th, the 25th and April 1st, 06:00."""
    guard = wiring.build(load_settings(config), transport=RecordingTransport())
    moments = [MARCH + timedelta(hours=6 * i) for i in range(1, 25)]
    moments += [MARCH + timedelta(days=14), MARCH + timedelta(days=24),
                APRIL + timedelta(hours=6)]
    bodies = []
    try:
        for at in moments:
            sim.clock.set(at)
            bodies.append(run_tick(guard.tick, at).as_json())
    finally:
        guard.close()
    return bodies


def test_the_hard_stop_sets_the_workspace_limit_once_and_restores_it_at_rollover(
        tmp_path: Path) -> None:
    """``method = "spend_limit"``: when Research passes its hard limit, its Anthropic limit
    is set once to what it spent (so Anthropic stops it); no key is touched and no other
    workspace's limit changes; in April the earlier limit is back; both are audited."""
    other = ORG.workspaces[0].id
    before = Decimal(700)
    book = SpendLimitBook(MARCH - timedelta(days=30), organization_usd=Decimal(100_000),
                          workspaces_usd={RESEARCH.id: before, other: Decimal(900)})
    with SimServer(ORG, SimClock(MARCH), admin_key=KEY, spend_limits=book) as sim:
        config = enforcing_config(tmp_path, sim.base_url)
        bodies = run_month(config, sim)
        statuses = {key: sim.key_status(key) for key in research_keys()}
    sets = [w for w in book.writes if "scope" in w]
    assert [w["scope"]["workspace_id"] for w in sets] == [RESEARCH.id, RESEARCH.id]
    capped = next(b for b in bodies if any(k["action"] == "deactivate" for k in b["keys"]))
    spent = Decimal(str(capped["budgets"][0]["spend_usd"]))
    assert abs(Decimal(sets[0]["amount"]) - spent * 100) <= 1  # what it spent, in cents
    assert Decimal(sets[0]["amount"]) >= spent * 100
    assert sets[1]["amount"] == str(int(before * 100))  # April: the limit it had
    assert book.cents("workspace", RESEARCH.id) == int(before * 100)
    assert book.cents("workspace", other) == 90_000
    assert set(statuses.values()) == {"active"}
    store = wiring.connect_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        audit = [(e.action, e.subject) for e in wiring.Records(store).audit_entries()]
    finally:
        store.close()
    assert ("spend_limit_set", f"spend_limit:{RESEARCH.id}") in audit
    assert ("spend_limit_restored", f"spend_limit:{RESEARCH.id}") in audit


@pytest.mark.parametrize("fallback_to_keys", [False, True], ids=["says-so", "falls-back"])
def test_a_403_on_the_limit_falls_back_to_keys_only_if_configured(
        tmp_path: Path, fallback_to_keys: bool, caplog: pytest.LogCaptureFixture) -> None:
    """Without write access the workspace's keys are deactivated only with
    ``fallback_to_keys``; either way the log says what happened."""
    book = SpendLimitBook(MARCH, access=False)
    with SimServer(ORG, SimClock(MARCH), admin_key=KEY, spend_limits=book) as sim:
        config = enforcing_config(tmp_path, sim.base_url, fallback_to_keys=fallback_to_keys)
        guard = wiring.build(load_settings(config), transport=RecordingTransport())
        try:
            at = MARCH + timedelta(days=20)
            sim.clock.set(at)
            run_tick(guard.tick, at)
            statuses = {sim.key_status(key) for key in research_keys()}
        finally:
            guard.close()
    assert book.writes == []
    if fallback_to_keys:
        assert statuses == {"inactive"}
        assert "deactivating the budgets' keys instead" in caplog.text
    else:
        assert statuses == {"active"}
        assert "no key is touched (enforcement.fallback_to_keys = false)" in caplog.text


def test_the_simulator_command_line_serves_the_limits_it_is_given() -> None:
    """``python -m guard.sim --usage-tier-usd … --org-spend-limit-usd … --workspace-spend-limit
    ID=USD`` serves those limits to the real client; without the flags it serves none (404),
    with ``--no-spend-limits-access`` a 403."""
    from guard.sim.__main__ import parse_args, spend_limits  # noqa: PLC0415

    args = parse_args(["--usage-tier-usd", "1000", "--org-spend-limit-usd", "800",
                       "--workspace-spend-limit", f"{RESEARCH.id}=50"])
    book = spend_limits(args, MARCH)
    with SimServer(ORG, SimClock(MARCH), admin_key=KEY, spend_limits=book) as sim, \
            wiring.admin_http(sim.base_url, KEY) as http:
        found = AdminClient(http, sleep=lambda _: None).spend_limits()
    assert sorted((limit.scope, limit.workspace_id, limit.amount_usd) for limit in found) == [
        ("organization", None, Decimal(800)), ("usage_tier", None, Decimal(1000)),
        ("workspace", RESEARCH.id, Decimal(50))]
    assert spend_limits(parse_args([]), MARCH) is None
    closed = spend_limits(parse_args(["--no-spend-limits-access"]), MARCH)
    with SimServer(ORG, SimClock(MARCH), admin_key=KEY, spend_limits=closed) as sim, \
            wiring.admin_http(sim.base_url, KEY) as http, \
            pytest.raises(SpendLimitsUnavailable) as refused:
        AdminClient(http, sleep=lambda _: None).spend_limits()
    assert refused.value.status == 403
