"""A deterministic synthetic organization, and the ground truth of what it was billed.

``SimOrg.generate(seed)`` builds the directory (workspaces, keys) once; every hour of usage is
generated on demand from the seed and that hour alone, then kept in an LRU cache. The same
seed gives the same data in any process.

Ground truth follows the guard's budget semantics (``truth_cents``):

* ``organization``: every cost: tokens, web searches, code execution;
* ``workspace``: every cost of that workspace (``"default"`` is the default workspace);
* ``api_key``: tokens and web searches of the key's usage (code execution has no key);
* ``model``: token costs only, of models whose id starts with ``match``.

Tokens are priced at the list prices of their own UTC day (``prices``), fast mode included: the
legacy cost report's view. ``price_errors`` scales a model's token costs, for a bill that is not
what the public table says (see ``SimServer``).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from guard.sim import timegrid
from guard.sim.hourly import Hour, HourGenerator, SimCodeExecution
from guard.sim.population import MODEL_POPULARITY, NOVA, SimApiKey, SimWorkspace, populate
from guard.sim.usage import SimUsage, merge, split_hour

DEFAULT_WORKSPACE = "default"
"""What budgets call the default workspace, which the API reports as ``null``."""

SCOPES = ("organization", "workspace", "api_key", "model")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which costs a budget of ``scope``/``match`` counts."""

    scope: str
    match: str | None

    @classmethod
    def of(cls, scope: str, match: str | None) -> Selection:
        """Validate the scope and normalise the match (``"default"`` means ``None``)."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; expected one of {SCOPES}")
        if scope != "organization" and not match:
            raise ValueError(f"a {scope} selection needs a match")
        if scope == "workspace" and match == DEFAULT_WORKSPACE:
            return cls(str(scope), None)
        return cls(str(scope), match)

    @property
    def counts_web_search(self) -> bool:
        """Model budgets count tokens only; every other scope counts web searches too."""
        return self.scope != "model"

    def takes_usage(self, row: SimUsage) -> bool:
        """Whether the row's costs belong to the selection."""
        if self.scope == "workspace":
            return row.workspace_id == self.match
        if self.scope == "api_key":
            return row.api_key_id == self.match
        if self.scope == "model":
            return row.model.startswith(self.match or "")
        return True

    def takes_code_execution(self, session: SimCodeExecution) -> bool:
        """Code execution counts for the organization and for its workspace only."""
        if self.scope == "workspace":
            return session.workspace_id == self.match
        return self.scope == "organization"

    def row_cents(self, row: SimUsage, day: date | None = None,
                  price_errors: Mapping[str, Decimal] | None = None) -> Decimal:
        """What the row, used on ``day``, contributes to the selection at list price."""
        if not self.takes_usage(row):
            return Decimal(0)
        web = row.web_search_cents() if self.counts_web_search else Decimal(0)
        return row.token_cents(day) * token_factor(price_errors, row.model) + web


def token_factor(price_errors: Mapping[str, Decimal] | None, model: str) -> Decimal:
    """How far the bill for ``model``'s tokens is off the price table (1 when it is not)."""
    return (price_errors or {}).get(model, Decimal(1))


SIZES: dict[str, tuple[int, int]] = {"small": (4, 16), "large": (200, 2000)}
"""Named organization sizes: (named workspaces, API keys)."""


def size_of(size: str) -> tuple[int, int]:
    """(named workspaces, API keys) of a size: a name in ``SIZES`` or ``WxK``."""
    if size in SIZES:
        return SIZES[size]
    workspaces, sep, keys = size.partition("x")
    if sep and workspaces.isdigit() and keys.isdigit() and int(keys) >= 1:
        return int(workspaces), int(keys)
    raise ValueError(f"unknown size {size!r}; expected small, large or WORKSPACESxKEYS "
                     "(e.g. 1000x20000)")


class SimOrg:
    """The simulated organization: its directory, its usage at any minute, and its true bill."""

    __slots__ = ("_days", "_generator", "_hours", "_minutes", "seed")

    def __init__(self, seed: int, generator: HourGenerator) -> None:
        self.seed = seed
        self._generator = generator
        self._hours: Callable[[datetime], Hour] = functools.lru_cache(maxsize=2048)(
            generator.hour)
        self._minutes: Callable[[datetime], tuple[tuple[SimUsage, ...], ...]] = (
            functools.lru_cache(maxsize=256)(self._split))
        self._days: Callable[[date], tuple[SimUsage, ...]] = functools.lru_cache(maxsize=128)(
            self._merge_day)

    @classmethod
    def generate(cls, seed: int, *, workspaces: int = 4, keys: int = 16) -> SimOrg:
        """A small organization by default; the default workspace comes on top of ``workspaces``."""
        if workspaces < 0 or keys < 1:
            raise ValueError("an organization needs at least one key and no negative workspaces")
        return cls(seed, HourGenerator.of(seed, populate(seed, workspaces, keys)))

    @classmethod
    def large(cls, seed: int) -> SimOrg:
        """200 workspaces and 2,000 keys: sparse, long-tailed traffic for benchmarks."""
        return cls.generate(seed, workspaces=200, keys=2000)

    @classmethod
    def sized(cls, seed: int, size: str) -> SimOrg:
        """A named size (``SIZES``): ``small`` is the default, ``large`` the 200 × 2,000 one,
        ``WxK`` any other (``1000x20000``: the largest organization the benchmarks run)."""
        workspaces, keys = size_of(size)
        return cls.generate(seed, workspaces=workspaces, keys=keys)

    # --- directory ---------------------------------------------------------------------------

    @property
    def workspaces(self) -> tuple[SimWorkspace, ...]:
        """The named workspaces; the default workspace (id ``None``) is not among them."""
        return self._generator.population.workspaces

    @property
    def api_keys(self) -> tuple[SimApiKey, ...]:
        """Every API key, as generated (all active)."""
        return self._generator.population.api_keys

    @property
    def default_workspace_id(self) -> str:
        """The default workspace's real id, which only appears in API keys' ``scope``."""
        return self._generator.population.default_workspace_id

    @property
    def models(self) -> tuple[str, ...]:
        """Every model the organization uses, the rare unknown one last."""
        used = {stream.dims[2] for stream in self._generator.population.streams}
        return (*(model for model, _ in MODEL_POPULARITY if model in used), NOVA)

    # --- usage ---------------------------------------------------------------------------------

    def usage_hour(self, hour_start: datetime) -> tuple[SimUsage, ...]:
        """The usage rows of one UTC hour, one per active finest-grain group."""
        return self._hours(timegrid.aligned_hour(hour_start)).usage

    def usage_minute_rows(self, hour_start: datetime) -> tuple[tuple[SimUsage, ...], ...]:
        """The hour's rows spread over its 60 minutes (index = minute); sums are exact."""
        return self._minutes(timegrid.aligned_hour(hour_start))

    def code_executions_hour(self, hour_start: datetime) -> tuple[SimCodeExecution, ...]:
        """The code-execution sessions that ended during one UTC hour."""
        return self._hours(timegrid.aligned_hour(hour_start)).code_executions

    def usage_day(self, day: date) -> tuple[SimUsage, ...]:
        """The rows of one UTC day, merged to one per group."""
        return self._days(day)

    def usage(self, start: datetime, end: datetime) -> Iterator[SimUsage]:
        """Rows (not merged) of the minutes that lie wholly inside ``[start, end)``."""
        for _, rows in self.usage_pieces(start, end):
            yield from rows

    def usage_pieces(self, start: datetime,
                     end: datetime) -> Iterator[tuple[datetime, tuple[SimUsage, ...]]]:
        """``(piece start, rows)`` of the whole minutes in ``[start, end)``, cut into whole UTC
        days, whole hours and minute runs inside one hour (so each piece has one UTC day)."""
        start, end = timegrid.ceil(start, timegrid.MINUTE), timegrid.floor(end, timegrid.MINUTE)
        for piece_start, piece_end in timegrid.segments(start, end):
            yield piece_start, self.piece(piece_start, piece_end)

    def piece(self, start: datetime, end: datetime) -> tuple[SimUsage, ...]:
        """The rows of a whole UTC day, a whole hour or a run of minutes inside one hour."""
        if end - start == timegrid.DAY:
            return self.usage_day(start.date())
        if end - start == timegrid.HOUR:
            return self.usage_hour(start)
        hour = timegrid.floor(start, timegrid.HOUR)
        if end > hour + timegrid.HOUR:
            raise ValueError(f"[{start}, {end}) is not a day, an hour or minutes of one hour")
        minutes = self.usage_minute_rows(hour)[start.minute:(end - hour) // timegrid.MINUTE]
        return tuple(row for rows in minutes for row in rows)

    def code_executions(self, start: datetime, end: datetime) -> Iterator[SimCodeExecution]:
        """Sessions whose billing minute lies wholly inside ``[start, end)``."""
        start, end = timegrid.ceil(start, timegrid.MINUTE), timegrid.floor(end, timegrid.MINUTE)
        for hour in timegrid.hours(start, end):
            yield from (s for s in self.code_executions_hour(hour) if start <= s.ended_at < end)

    # --- ground truth --------------------------------------------------------------------------

    def truth_cents(self, start: datetime, end: datetime, scope: str,
                    match: str | None = None, *,
                    price_errors: Mapping[str, Decimal] | None = None) -> Decimal:
        """The exact true cost, in cents, of one budget scope over the minutes in ``[start, end)``.

        A minute counts when it lies wholly inside the interval, the same rule as the server's
        visibility (data of a minute is visible once the minute has ended). Tokens are priced
        at list prices of their own day; ``price_errors`` (model → factor) scales token costs.
        """
        selection = Selection.of(scope, match)
        tokens = sum((selection.row_cents(row, piece.date(), price_errors)
                      for piece, rows in self.usage_pieces(start, end) for row in rows),
                     Decimal(0))
        code = sum((session.cents for session in self.code_executions(start, end)
                    if selection.takes_code_execution(session)), Decimal(0))
        return tokens + code

    def truth_day_cents(self, day: date, scope: str, match: str | None = None) -> Decimal:
        """``truth_cents`` over one whole UTC day."""
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return self.truth_cents(start, start + timedelta(days=1), scope, match)

    # --- internals -----------------------------------------------------------------------------

    def _split(self, hour: datetime) -> tuple[tuple[SimUsage, ...], ...]:
        rng = random.Random(f"{self.seed}:{hour.isoformat()}:minutes")
        return split_hour(self._hours(hour).usage, rng)

    def _merge_day(self, day: date) -> tuple[SimUsage, ...]:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        hours = (self.usage_hour(start + timegrid.HOUR * i) for i in range(24))
        return merge(row for rows in hours for row in rows)
