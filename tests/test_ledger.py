"""The pure ledger: one source per day, scopes, the default workspace, exact roll-ups."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from guard.core.ledger import month_to_date
from guard.core.model import Budget, CostDay, PricedUsage, Scope

D = Decimal
AT = datetime(2026, 3, 3, 12, 30, tzinfo=UTC)
WS = "wrkspc_prod"


def budget(scope: Scope, match: str | None = None, name: str = "b") -> Budget:
    return Budget(name=name, scope=scope, match=match, soft_limit_usd=D(80),
                  hard_limit_usd=D(100))


def usage(day: int, hour: int, usd: str, *, ws: str | None = WS, key: str | None = "apikey_1",
          model: str = "claude-opus-4-7", search: str = "0") -> PricedUsage:
    return PricedUsage(start=datetime(2026, 3, day, hour, tzinfo=UTC), workspace_id=ws,
                       api_key_id=key, model=model, token_usd=D(usd), web_search_usd=D(search))


def billed(day: int, by_ws: dict[str | None, str], by_model: dict[str, str]) -> CostDay:
    return CostDay(date(2026, 3, day), {k: D(v) for k, v in by_ws.items()},
                   {k: D(v) for k, v in by_model.items()})


def spend_of(b: Budget, settled: dict[date, CostDay], rows: list[PricedUsage],
             at: datetime = AT) -> tuple[Decimal, Decimal]:
    [s] = month_to_date([b], at=at, settled=settled, usage=rows, data_through=at).budgets
    return s.authoritative_usd, s.estimated_usd


ROWS = [usage(1, 10, "5"), usage(2, 10, "7", search="1"), usage(3, 9, "2"),
        usage(3, 10, "1", ws=None, key=None, model="claude-haiku-4-5")]
SETTLED = {date(2026, 3, 1): billed(1, {WS: "5.5", None: "0.25"}, {"claude-opus-4-7": "5.2"})}


def test_a_settled_day_comes_from_the_cost_report_and_the_rest_from_usage() -> None:
    """Day 1 is billed (cost report); days 2 and 3 are estimated; no day is counted twice."""
    assert spend_of(budget(Scope.ORGANIZATION), SETTLED, ROWS) == (D("5.75"), D(11))


def test_workspace_budget_sees_only_its_workspace() -> None:
    """A workspace budget counts that workspace's billed and estimated spend."""
    assert spend_of(budget(Scope.WORKSPACE, WS), SETTLED, ROWS) == (D("5.5"), D(10))


def test_default_workspace_is_the_null_workspace() -> None:
    """match = "default" is the workspace the API reports as null."""
    assert spend_of(budget(Scope.WORKSPACE, "default"), SETTLED, ROWS) == (D("0.25"), D(1))


def test_api_key_budgets_are_always_estimated() -> None:
    """The cost report has no key dimension, so a key budget uses usage on every day."""
    assert spend_of(budget(Scope.API_KEY, "apikey_1"), SETTLED, ROWS) == (D(0), D(15))


def test_model_budgets_count_tokens_by_prefix_without_web_search() -> None:
    """A model prefix matches dated ids; web searches are not attributed to models."""
    assert spend_of(budget(Scope.MODEL, "claude-opus"), SETTLED, ROWS) == (D("5.2"), D(9))
    assert spend_of(budget(Scope.MODEL, "claude-haiku-4-5"), SETTLED, ROWS) == (D(0), D(1))


def test_usage_after_at_or_before_the_month_is_ignored() -> None:
    """Rows outside [month start, at) never count: --at sees nothing after it."""
    rows = [*ROWS, usage(3, 13, "100"),
            PricedUsage(datetime(2026, 2, 28, 23, tzinfo=UTC), WS, "apikey_1", "m", D(50), D(0))]
    assert spend_of(budget(Scope.ORGANIZATION), SETTLED, rows) == (D("5.75"), D(11))


def test_a_settled_day_of_another_month_is_ignored() -> None:
    """Cost days outside the month of ``at`` do not leak into it."""
    settled = {**SETTLED, date(2026, 2, 27): billed(27, {WS: "999"}, {})}
    assert spend_of(budget(Scope.ORGANIZATION), settled, ROWS) == (D("5.75"), D(11))


def test_daily_series_matches_each_day() -> None:
    """daily_usd holds one figure per day from the 1st to the day of ``at``."""
    [s] = month_to_date([budget(Scope.ORGANIZATION)], at=AT, settled=SETTLED, usage=ROWS,
                        data_through=AT).budgets
    assert s.daily_usd == (D("5.75"), D(8), D(3))


def test_ledger_reports_authoritative_through() -> None:
    """The ledger says up to which day the figures are billed fact."""
    ledger = month_to_date([], at=AT, settled=SETTLED, usage=ROWS, data_through=AT)
    assert ledger.authoritative_through == date(2026, 3, 1)
    assert ledger.period_start == datetime(2026, 3, 1, tzinfo=UTC)


money = st.decimals(min_value=0, max_value=10_000, places=6, allow_nan=False,
                    allow_infinity=False)
usage_rows = st.lists(st.builds(
    lambda day, hour, ws, key, model, tok, web: PricedUsage(
        datetime(2026, 3, day, hour, tzinfo=UTC), ws, key, model, tok, web),
    st.integers(1, 3), st.integers(0, 23), st.sampled_from([None, "wrkspc_a", "wrkspc_b"]),
    st.sampled_from([None, "apikey_1", "apikey_2"]),
    st.sampled_from(["claude-opus-4-7", "claude-haiku-4-5", "claude-sonnet-4-6"]),
    money, money), max_size=40)


@given(usage_rows)
def test_scopes_roll_up_exactly(rows: list[PricedUsage]) -> None:
    """Workspaces (with default) sum to the organization; models sum to its token spend."""
    at = datetime(2026, 3, 3, 23, 59, tzinfo=UTC)
    budgets = [budget(Scope.ORGANIZATION, name="org")]
    budgets += [budget(Scope.WORKSPACE, ws, name=ws) for ws in ("default", "wrkspc_a",
                                                                "wrkspc_b")]
    budgets += [budget(Scope.MODEL, m, name=m) for m in ("claude-opus", "claude-haiku",
                                                         "claude-sonnet")]
    ledger = month_to_date(budgets, at=at, settled={}, usage=rows, data_through=at)
    spend = {s.budget.name: s.spend_usd for s in ledger.budgets}
    assert spend["org"] == sum(spend[w] for w in ("default", "wrkspc_a", "wrkspc_b"))
    tokens = sum((r.token_usd for r in rows), D(0))
    assert sum(spend[m] for m in ("claude-opus", "claude-haiku", "claude-sonnet")) == tokens
    assert spend["org"] == tokens + sum((r.web_search_usd for r in rows), D(0))


@given(st.integers(1, 27), money)
def test_month_to_date_never_decreases_as_time_passes(day: int, amount: Decimal) -> None:
    """With the same data, a later ``at`` never shows less spend."""
    rows = [PricedUsage(datetime(2026, 3, d, 12, tzinfo=UTC), WS, None, "m", amount, D(0))
            for d in range(1, 29)]
    early = datetime(2026, 3, day, 13, tzinfo=UTC)
    later = early + timedelta(days=1)
    b = budget(Scope.ORGANIZATION)
    assert sum(spend_of(b, {}, rows, early)) <= sum(spend_of(b, {}, rows, later))
