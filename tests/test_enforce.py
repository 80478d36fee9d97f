"""The opt-in hard stop against the simulated Admin API: scope, dry-run, restore."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from guard.adapters.admin.client import AdminClient
from guard.adapters.store.state import Records
from guard.core.keys import (
    EnforcementConfig,
    KeyDecision,
    keys_in_scope,
    over_threshold,
    plan_keys,
)
from guard.core.model import ApiKey, Budget, BudgetSpend, Scope
from guard.entry import wiring
from guard.shell.enforce import Enforcer
from guard.sim import SimClock, SimOrg, SimServer

KEY = "sk-ant-admin-enforce-test"
ORG = SimOrg.generate(7)
AT = datetime(2026, 3, 20, tzinfo=UTC)
D = Decimal


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(ORG, SimClock(AT), admin_key=KEY) as server:
        yield server


@pytest.fixture
def parts(sim: SimServer, tmp_path: Path) -> Iterator[tuple[AdminClient, Records]]:
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        client = wiring.admin_at(sim.base_url, KEY)
        yield client, Records(store)
        client.http.close()


def enforce(enforcer: Enforcer, spends: list[BudgetSpend], dry_run: bool) -> list[KeyDecision]:
    """What a tick does: the plan, the decisions it comes to, and their effects unless dry."""
    plan = plan_keys(spends, enforcer.state.key_actions(), enforcer.config, AT)
    decisions = enforcer.preview(plan)
    return [d.rehearsed() for d in decisions] if dry_run else enforcer.apply(decisions, AT)


def spend(budget: Budget, usd: str) -> BudgetSpend:
    return BudgetSpend(budget, D(0), D(usd))


WS = ORG.workspaces[0].id
WS_BUDGET = Budget("team", Scope.WORKSPACE, WS, D(50), D(100))


def in_workspace(workspace: str | None) -> list[str]:
    return sorted(k.id for k in ORG.api_keys if k.workspace_id == workspace)


def statuses(sim: SimServer) -> dict[str, str]:
    return {k.id: sim.key_status(k.id) for k in ORG.api_keys}


def test_only_budgets_past_the_threshold_enforce() -> None:
    """Key and workspace budgets at or past the share of their hard limit are targets."""
    config = EnforcementConfig(enabled=True, threshold_pct=D(90))
    org = Budget("org", Scope.ORGANIZATION, None, D(1), D(100))
    assert over_threshold([spend(WS_BUDGET, "90"), spend(org, "500"),
                           spend(Budget("k", Scope.API_KEY, "apikey_x", D(1), D(100)), "89")],
                          config) == [WS_BUDGET]


def test_default_workspace_scope_is_keys_outside_named_workspaces() -> None:
    """The default workspace's keys are those with no named workspace."""
    keys = [ApiKey("a", "a", "active", "wrkspc_1"), ApiKey("b", "b", "active", None),
            ApiKey("c", "c", "active", "wrkspc_hidden_default")]
    default = Budget("d", Scope.WORKSPACE, "default", D(1), D(2))
    assert [k.id for k in keys_in_scope(default, keys, {"wrkspc_1"})] == ["b", "c"]


def test_deactivates_exactly_the_in_scope_keys(sim: SimServer,
                                               parts: tuple[AdminClient, Records]) -> None:
    """Past the threshold, the workspace's keys go inactive; every other key is untouched."""
    client, records = parts
    assert len(in_workspace(WS)) >= 3
    never = in_workspace(WS)[0]
    enforcer = Enforcer(client, records, EnforcementConfig(True, False, D(100),
                                                           frozenset({never})))
    before = statuses(sim)
    decisions = enforce(enforcer, [spend(WS_BUDGET, "120")], dry_run=False)
    assert sorted(d.key_id for d in decisions if d.done) == in_workspace(WS)[1:]
    after = statuses(sim)
    changed = {k for k in after if after[k] != before[k]}
    assert changed == set(in_workspace(WS)[1:])
    assert after[never] == "active"
    assert {a.key_id for a in records.key_actions()} == changed
    assert enforce(enforcer, [spend(WS_BUDGET, "130")], dry_run=False) == []


@pytest.mark.parametrize("how", ["config", "flag"])
def test_dry_run_touches_nothing(sim: SimServer, parts: tuple[AdminClient, Records],
                                 how: str) -> None:
    """In dry-run (configured or asked for) nothing is deactivated or recorded."""
    client, records = parts
    enforcer = Enforcer(client, records, EnforcementConfig(True, how == "config", D(100)))
    before = statuses(sim)
    decisions = enforce(enforcer, [spend(WS_BUDGET, "120")], dry_run=how == "flag")
    assert decisions and all(d.dry_run and not d.done for d in decisions)
    assert statuses(sim) == before and records.key_actions() == []


def test_disabled_enforcement_does_nothing(sim: SimServer,
                                           parts: tuple[AdminClient, Records]) -> None:
    """With enforcement off (the default), even a breach deactivates nothing."""
    client, records = parts
    before = len(sim.requests)
    assert enforce(Enforcer(client, records, EnforcementConfig()),
                   [spend(WS_BUDGET, "500")], dry_run=False) == []
    assert len(sim.requests) == before


def test_restore_returns_each_key_to_its_prior_status(sim: SimServer,
                                                      parts: tuple[AdminClient, Records]) -> None:
    """Restore reactivates what enforcement deactivated, audits it, and forgets it."""
    client, records = parts
    enforcer = Enforcer(client, records, EnforcementConfig(True, False, D(100)))
    before = statuses(sim)
    enforce(enforcer, [spend(WS_BUDGET, "120")], dry_run=False)
    restored = enforcer.restore_all(AT, "guard keys restore", who="carol")
    assert restored and all(d.done for d in restored)
    assert statuses(sim) == before and records.key_actions() == []
    actions = [(e.action, e.who) for e in records.audit_entries()]
    assert actions.count(("key_restored", "carol")) == len(restored)
    assert actions.count(("key_deactivated", "budget-guard enforcement")) == len(restored)
