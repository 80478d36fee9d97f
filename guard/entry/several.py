"""Several organizations at once: ``guard check`` ticks each in a thread of its own, and
``guard report`` reads each in a thread of its own.

Each organization has its own parts (its HTTP client and its deadline among them), so a dead
key or a slow Admin API holds only its own tick; ``check_all`` returns when every one is done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypeVar

from guard.config import Settings
from guard.config.organizations import Organization
from guard.core.assess import Assessment, assess
from guard.core.ledger import budget_api_keys
from guard.core.summary import TickReport
from guard.entry import wiring
from guard.errors import GuardError, StoreError
from guard.shell.tick import run_tick

MAX_CONCURRENT = 16
CHECK_LEASE = timedelta(minutes=3)
"""How long ``guard check`` holds an organization's leader lease at most (it frees it at the
end of the tick)."""
T = TypeVar("T")


def each(orgs: Sequence[Organization],
         work: Callable[[Organization], T]) -> dict[str, T | GuardError]:
    """``work`` for every organization at once, each in a thread of its own, by name in
    config order; a ``GuardError`` is that organization's result, not everyone's."""

    def guarded(org: Organization) -> T | GuardError:
        try:
            return work(org)
        except GuardError as exc:
            return exc

    with ThreadPoolExecutor(max(1, min(MAX_CONCURRENT, len(orgs))),
                            thread_name_prefix="organization") as pool:
        results = list(pool.map(guarded, orgs))
    return {org.name: result for org, result in zip(orgs, results, strict=True)}


def check_all(settings: Settings, at: datetime,
              dry_run: bool = False) -> dict[str, TickReport | GuardError]:
    """One ``guard check`` tick of every organization of ``settings``."""
    with wiring.Stores() as stores:
        return each(settings.organizations_in_force(),
                    lambda org: check_one(org, stores, at, dry_run))


def check_one(org: Organization, stores: wiring.Stores, at: datetime,
              dry_run: bool = False) -> TickReport:
    """One tick of ``org`` as ``guard check`` runs it: the lease held for the tick only; a
    store that cannot be opened makes it a tick without the store (tighten only)."""
    name = org.name if org.several else None
    try:
        guard = wiring.build_organization(org, stores)
    except StoreError as exc:
        return _named(wiring.without_store(org.settings, at, exc, dry_run, name), name)
    try:
        guard.tick.config = replace(guard.tick.config, lease_ttl=CHECK_LEASE)
        try:
            return _named(run_tick(guard.tick, at, dry_run=dry_run), name)
        finally:
            guard.tick.release()
    finally:
        guard.close()


def _named(report: TickReport, name: str | None) -> TickReport:
    return replace(report, organization=name) if name else report


def report_all(settings: Settings, at: datetime) -> dict[str, Assessment | GuardError]:
    """``guard report`` of every organization of ``settings``: each one's assessment."""
    with wiring.Stores() as stores:
        return each(settings.organizations_in_force(),
                    lambda org: assess_one(org, stores, at))


def assess_one(org: Organization, stores: wiring.Stores, at: datetime) -> Assessment:
    """Refresh ``org``'s caches as of ``at`` and assess its budgets (no alert state, no
    delay), as ``guard report`` does."""
    settings = org.settings
    budgets = settings.budget_models()
    guard = wiring.build_organization(org, stores)
    try:
        snapshot = guard.tick.fetcher.refresh(at, budget_api_keys(budgets))
    finally:
        guard.close()
    policy = replace(settings.policy_config(), raise_after=timedelta(0))
    return assess(budgets, snapshot, policy=policy,
                  lag=timedelta(minutes=settings.policy.usage_lag_minutes))
