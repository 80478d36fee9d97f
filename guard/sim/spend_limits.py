"""The Spend Limits API of the simulated Console organization (reference §7).

``SpendLimitBook`` holds the organization's limits in server memory: the read-only
``usage_tier`` cap, the ``organization`` limit and any ``workspace`` limits, each monthly in
cents. ``GET /v1/organizations/spend_limits`` (it needs the ``spend-limit-reads-2026-09-26``
beta) lists them newest first with a ``next_page`` cursor and no ``has_more``; ``POST``
upserts one keyed on scope and period; ``GET …/effective`` is Enterprise-only, so a Console
organization gets 400 ``organization_type_not_supported``. Without early access
(``access=False``) every call is 403 ``spend_limits_admin_api_writes_not_enabled``.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from guard.sim import params
from guard.sim.params import ApiError, Query, bad_request

Json = dict[str, Any]
READS_BETA = "spend-limit-reads-2026-09-26"
NO_ACCESS = "spend_limits_admin_api_writes_not_enabled"
WRITABLE = ("organization", "workspace")


@dataclass(frozen=True, slots=True)
class SimLimit:
    """One configured limit: its scope, its amount in cents (``None``: no cap)."""

    id: str
    scope: str
    workspace_id: str | None
    cents: int | None
    created_at: datetime
    updated_at: datetime

    def json(self) -> Json:
        scope: Json = {"type": self.scope}
        if self.workspace_id is not None:
            scope["workspace_id"] = self.workspace_id
        return {"type": "spend_limit", "id": self.id,
                "amount": None if self.cents is None else str(self.cents), "currency": "USD",
                "period": "monthly", "scope": scope, "is_enabled": True,
                "created_at": params.iso(self.created_at),
                "updated_at": params.iso(self.updated_at)}


class SpendLimitBook:
    """The organization's spend limits, changed by ``POST`` (thread-safe)."""

    def __init__(self, created: datetime, usage_tier_usd: Decimal | None = Decimal(200_000),
                 organization_usd: Decimal | None = None,
                 workspaces_usd: dict[str, Decimal] | None = None, *,
                 access: bool = True) -> None:
        self.access = access
        self._lock = threading.Lock()
        self._ids = (f"spl_01Sim{n:019d}" for n in itertools.count(1))
        self._limits: list[SimLimit] = []
        self.writes: list[Json] = []
        """Every accepted ``POST`` body, in order."""
        if usage_tier_usd is not None:
            self._add("usage_tier", None, usage_tier_usd, created)
        if organization_usd is not None:
            self._add("organization", None, organization_usd, created)
        for workspace_id, usd in (workspaces_usd or {}).items():
            self._add("workspace", workspace_id, usd, created)

    def _add(self, scope: str, workspace_id: str | None, usd: Decimal, at: datetime) -> None:
        self._limits.append(SimLimit(next(self._ids), scope, workspace_id, int(usd * 100), at,
                                     at))

    def cents(self, scope: str, workspace_id: str | None = None) -> int | None:
        """The amount of the limit on ``scope`` now (``None``: none, or no cap)."""
        with self._lock:
            found = self._find(scope, workspace_id)
        return found.cents if found is not None else None

    def listing(self, query: Query, betas: frozenset[str]) -> Json:
        """``GET /v1/organizations/spend_limits``: newest first, ``next_page`` cursors."""
        self._check_access()
        if READS_BETA not in betas:
            raise bad_request(f"spend_limits: requires the 'anthropic-beta: {READS_BETA}' "
                              "header")
        count = params.limit(query, 20, 1000)
        start = _cursor(query)
        with self._lock:
            rows = sorted(self._limits, key=lambda limit: limit.updated_at, reverse=True)
        page = rows[start:start + count]
        more = start + count < len(rows)
        return {"data": [limit.json() for limit in page],
                "next_page": f"sim-{start + count}" if more else None}

    def effective(self) -> Json:
        """``GET …/spend_limits/effective``: Enterprise only."""
        self._check_access()
        raise ApiError(400, "The effective spend limits report is supported for Claude "
                            "Enterprise organizations only", "organization_type_not_supported")

    def upsert(self, body: bytes, now: datetime) -> Json:
        """``POST /v1/organizations/spend_limits``: set the limit on a scope, in place."""
        self._check_access()
        request = _body(body)
        scope = request.get("scope")
        if not isinstance(scope, dict) or scope.get("type") not in WRITABLE:
            raise bad_request("scope: must be {\"type\": \"organization\"} or "
                              "{\"type\": \"workspace\", \"workspace_id\": …}")
        workspace_id = scope.get("workspace_id") if scope["type"] == "workspace" else None
        if scope["type"] == "workspace" and not isinstance(workspace_id, str):
            raise bad_request("scope.workspace_id: required for a workspace limit")
        if request.get("period", "monthly") != "monthly":
            raise bad_request("period: Console limits are monthly")
        amount = request.get("amount")
        if not (isinstance(amount, str) and amount.isdigit()):
            raise bad_request("amount: Console limits always carry an amount (cents, as a "
                              "string)")
        with self._lock:
            found = self._find(scope["type"], workspace_id)
            if found is None:
                found = SimLimit(next(self._ids), scope["type"], workspace_id, int(amount),
                                 now, now)
                self._limits.append(found)
            else:
                self._limits.remove(found)
                found = replace(found, cents=int(amount), updated_at=now)
                self._limits.append(found)
            self.writes.append(request)
        return found.json()

    def delete(self, limit_id: str) -> Json:
        """``DELETE /v1/organizations/spend_limits/{id}``; the usage-tier cap cannot go."""
        self._check_access()
        with self._lock:
            found = next((limit for limit in self._limits if limit.id == limit_id), None)
            if found is None:
                raise ApiError(404, f"spend limit {limit_id} not found")
            if found.scope == "usage_tier":
                raise bad_request("the usage tier's limit cannot be deleted")
            self._limits.remove(found)
            self.writes.append({"delete": limit_id})
        return {"id": limit_id, "type": "spend_limit_deleted"}

    def _find(self, scope: str, workspace_id: str | None) -> SimLimit | None:
        return next((limit for limit in self._limits
                     if limit.scope == scope and limit.workspace_id == workspace_id), None)

    def _check_access(self) -> None:
        if not self.access:
            raise ApiError(403, "The Spend Limits Admin API is not enabled for this "
                                "organization; ask your account team for early access",
                           NO_ACCESS)


def _cursor(query: Query) -> int:
    raw = params.single(query, "page")
    if raw is None:
        return 0
    if not raw.startswith("sim-") or not raw[4:].isdigit():
        raise bad_request("page: not a cursor of this listing")
    return int(raw[4:])


def _body(body: bytes) -> Json:
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        raise bad_request("the body is not JSON") from None
    if not isinstance(request, dict):
        raise bad_request("the body is not a JSON object")
    return request
