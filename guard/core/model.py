"""Frozen dataclasses shared by the core and the adapters: budgets, usage, cost, the ledger.

Everything past the Admin API adapter is one of these: JSON never travels further than
``guard.adapters.admin``. Money is ``Decimal`` in US dollars unless a field name says otherwise
(``amount_cents``: the cost report's unit).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from guard.core.directory import Directory
from guard.core.kept import Kept

if TYPE_CHECKING:
    from guard.core.limits import ProviderLimit
    from guard.core.usage import Period, PeriodIndex

DEFAULT_WORKSPACE = "default"
"""The name budgets use for the default workspace, which the API reports as ``null``."""


class Scope(enum.StrEnum):
    """What a budget's ``match`` is compared with."""

    ORGANIZATION = "organization"
    WORKSPACE = "workspace"
    API_KEY = "api_key"
    MODEL = "model"


@dataclass(frozen=True, slots=True)
class Budget:
    """A monthly budget over one scope; ``match`` is empty for the organization."""

    name: str
    scope: Scope
    match: str | None
    soft_limit_usd: Decimal
    hard_limit_usd: Decimal
    ceilings: tuple[tuple[str, str], ...] = ()


# --- Admin API payloads (typed at the boundary) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One result of ``usage_report/messages``: token counts for one group in one bucket."""

    uncached_input_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cache_read_input_tokens: int
    output_tokens: int
    web_search_requests: int
    model: str | None = None
    workspace_id: str | None = None
    api_key_id: str | None = None
    service_tier: str | None = None
    context_window: str | None = None
    inference_geo: str | None = None
    speed: str | None = None


@dataclass(frozen=True, slots=True)
class UsageBucket:
    """One time bucket of the usage report, ``[starting_at, ending_at)``."""

    starting_at: datetime
    ending_at: datetime
    results: tuple[UsageRow, ...]


@dataclass(frozen=True, slots=True)
class CostRow:
    """One result of ``cost_report``; the amount is in cents, as the API sends it."""

    amount_cents: Decimal
    currency: str = "USD"
    cost_type: str | None = None
    description: str | None = None
    model: str | None = None
    token_type: str | None = None
    service_tier: str | None = None
    context_window: str | None = None
    inference_geo: str | None = None
    workspace_id: str | None = None


@dataclass(frozen=True, slots=True)
class CostBucket:
    """One day of the cost report, ``[starting_at, ending_at)``."""

    starting_at: datetime
    ending_at: datetime
    results: tuple[CostRow, ...]


@dataclass(frozen=True, slots=True)
class BilledCost:
    """One row of ``/analytics/cost``: billed cost of one group in one bucket, in cents.

    ``amount_cents`` is post-discount (what the invoice charges before credits);
    ``list_cents`` is the same usage at list price. ``workspace_id`` is the API's, where the
    default workspace has its real id (``guard.shell.sync`` maps it to ``None``).
    """

    starting_at: datetime
    ending_at: datetime
    amount_cents: Decimal
    list_cents: Decimal
    cost_type: str | None = None
    model: str | None = None
    workspace_id: str | None = None
    api_key_id: str | None = None


@dataclass(frozen=True, slots=True)
class BilledPage:
    """One page of ``/analytics/cost`` and its ``data_refreshed_at`` watermark."""

    rows: tuple[BilledCost, ...]
    refreshed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Workspace:
    """A workspace of the organization."""

    id: str
    name: str
    archived_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key of the organization; ``workspace_id`` is ``None`` for the default workspace."""

    id: str
    name: str
    status: str
    workspace_id: str | None = None


# --- What the store keeps and the ledger reads --------------------------------------------------


@dataclass(frozen=True, slots=True)
class PricedUsage:
    """Estimated cost of usage in one period for one (workspace, API key, model).

    ``token_usd`` is the cost of tokens; ``web_search_usd`` the server-tool surcharge. Model
    budgets count tokens only (the cost report does not attribute web searches to models);
    every other scope counts both.
    """

    start: datetime
    workspace_id: str | None
    api_key_id: str | None
    model: str | None
    token_usd: Decimal
    web_search_usd: Decimal
    input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    web_search_requests: int = 0

    @property
    def usd(self) -> Decimal:
        """Tokens and web searches together."""
        return self.token_usd + self.web_search_usd


@dataclass(frozen=True, slots=True)
class CostDay:
    """The authoritative cost of one closed UTC day, from the cost report, in dollars.

    ``by_workspace`` covers every cost (tokens, web search, code execution...);
    ``by_model`` covers token costs only, the part the cost report attributes to a model.
    """

    day: date
    by_workspace: dict[str | None, Decimal] = field(default_factory=dict)
    by_model: dict[str, Decimal] = field(default_factory=dict)
    list_usd: Decimal | None = None
    """The day at list price, where the source says (the analytics API); else ``None``."""

    @property
    def calibration(self) -> Decimal:
        """Billed / list: what a negotiated discount leaves of list prices (1 if unknown)."""
        if self.list_usd is None or self.list_usd <= 0:
            return Decimal(1)
        return self.total_usd / self.list_usd

    @property
    def total_usd(self) -> Decimal:
        """Everything the organization was billed that day."""
        return sum(self.by_workspace.values(), Decimal(0))


@dataclass(frozen=True, slots=True)
class BudgetSpend:
    """Month-to-date spend of one budget, split by how much of it is billed fact."""

    budget: Budget
    authoritative_usd: Decimal
    estimated_usd: Decimal
    daily_usd: tuple[Decimal, ...] = ()

    @property
    def spend_usd(self) -> Decimal:
        """Authoritative plus estimated."""
        return self.authoritative_usd + self.estimated_usd


@dataclass(frozen=True, slots=True)
class Ledger:
    """Month-to-date spend of every budget, as of ``at``, with data complete to ``data_through``."""

    at: datetime
    period_start: datetime
    data_through: datetime | None
    budgets: tuple[BudgetSpend, ...]
    authoritative_through: date | None = None
    source: str = "legacy"
    billed_through: datetime | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the ledger and the forecast need, as of ``at``.

    ``settled``: the cost report of settled days, this month and ≥ 8 weeks back.
    ``usage``: priced usage per UTC day (``guard.core.usage``) from ``usage_from`` (two weeks
    before the month) through ``at``'s day, the fresh window included; ``today``: ``at``'s day
    as rows per (workspace, API key, model), for the biggest movers behind an alert.
    ``recent`` covers the last hours for burn rates: stored hours, then the fresh window per
    minute. ``hourly``: organization spend per hour over two weeks, for the profile.
    """

    at: datetime
    settled: dict[date, CostDay]
    usage: Mapping[date, PeriodIndex]
    data_through: datetime | None
    api_requests: int
    usage_from: date | None = None
    recent: Sequence[Period] = ()
    hourly: dict[datetime, Decimal] = field(default_factory=dict)
    today: Sequence[PricedUsage] = ()
    unpriced_models: tuple[str, ...] = ()
    """Models seen this month that the price table does not know (estimated at its dearest
    card)."""
    unknown_models: tuple[str, ...] = ()
    """Every model of the snapshot's usage, any day, that the price table does not know: the
    reconciliation cannot check them (their estimate is the fallback card by design)."""
    source: str = "legacy"
    """Where billed figures come from: ``analytics`` (hourly, per key) or ``legacy`` (daily)."""
    billed: Mapping[date, PeriodIndex] = field(default_factory=dict)
    """Analytics source: billed cost per day of the month before ``billed_through``
    (``token_usd`` = tokens, ``web_search_usd`` = every other cost)."""
    billed_through: datetime | None = None
    """Analytics source: the hour the bill is complete to (``data_refreshed_at``)."""
    tail: Mapping[date, PeriodIndex] = field(default_factory=dict)
    """Analytics source: priced usage per day from ``billed_through`` (or the month start) to
    ``at``, the estimated part."""
    calibration: Decimal = Decimal(1)
    """Billed / list over the last billed day: scales the estimated tail."""
    source_note: str | None = None
    """Why the source is what it is, when ``auto`` fell back (for logs and ``doctor``)."""
    directory: Directory | None = None
    """Which workspaces and keys budgets name exist in the organization (``None``: unknown)."""
    priced_models: tuple[str, ...] = ()
    """Every model id the price table knows: a ``model`` budget matching none is mistyped."""
    provider_limits: tuple[ProviderLimit, ...] = ()
    """Anthropic's spend limits as last read (``guard.core.limits``; none: unknown)."""
    kept: Kept | None = field(default=None, compare=False, repr=False)
    """Where the outlook keeps each budget's parts of complete days between ticks (the
    fetcher's; ``None``: computed each time)."""
