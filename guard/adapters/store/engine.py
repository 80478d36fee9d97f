"""The state store: SQLAlchemy Core over SQLite (embedded default) or PostgreSQL (HA).

What it caches so nothing settled is fetched twice:

- ``usage_hours``: priced usage per (hour, workspace, API key, model), tokens and dollars;
  ``usage_fetches`` records when each hour was last read, which says whether it is settled.
- ``cost_days``: the cost report per closed UTC day, per workspace and per model;
  ``cost_fetches`` records when each day was last read.
- ``meta``: small named values (watermarks).

Money is stored as integers of ``1 / UNITS_PER_USD`` dollars (0.000001 cent), so SQL sums are
exact on both backends and convert back to ``Decimal`` without loss. Times are integer epoch
seconds in UTC.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from guard.adapters.store.schema import (
    cost_days,
    cost_fetches,
    meta,
    metadata,
    usage_fetches,
    usage_hours,
)
from guard.core.model import CostDay, PricedUsage
from guard.errors import StoreError

UNITS_PER_USD = 10**10
_UNIT = Decimal(1) / UNITS_PER_USD
DAY_S = 86_400

def to_units(usd: Decimal) -> int:
    """Dollars → integer store units (rounded half-even at 0.000001 cent)."""
    return int((usd * UNITS_PER_USD).to_integral_value(ROUND_HALF_EVEN))


def from_units(units: int | Decimal) -> Decimal:
    """Integer store units → dollars, exactly."""
    return Decimal(units) * _UNIT


def epoch(moment: datetime) -> int:
    """UTC epoch seconds of an aware datetime."""
    return int(moment.timestamp())


def at_epoch(seconds: int) -> datetime:
    """The aware UTC datetime of epoch seconds."""
    return datetime.fromtimestamp(seconds, UTC)


def day_epoch(day: date) -> int:
    """Epoch seconds of the start of a UTC day."""
    return epoch(datetime(day.year, day.month, day.day, tzinfo=UTC))


class Store:
    """Typed reads and writes over the schema above."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def connect(cls, url: str) -> Store:
        """Open ``url`` and create the schema if it is missing."""
        try:
            engine = sa.create_engine(url, future=True)
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            metadata.create_all(engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"state store {_safe_url(url)} unavailable: "
                             f"{type(exc).__name__}") from None
        return cls(engine)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # --- usage -------------------------------------------------------------------------------

    def usage_fetched(self, start: datetime, end: datetime) -> dict[datetime, datetime]:
        """When each hour in ``[start, end)`` was last read: hour → fetched_at."""
        query = sa.select(usage_fetches).where(usage_fetches.c.hour >= epoch(start),
                                               usage_fetches.c.hour < epoch(end))
        with self.reading() as conn:
            return {at_epoch(h): at_epoch(f) for h, f in conn.execute(query)}

    def replace_usage_hours(self, hours: Iterable[datetime], rows: Sequence[PricedUsage],
                            fetched_at: datetime) -> None:
        """Make ``rows`` the whole content of ``hours``, read at ``fetched_at``."""
        keys = sorted({epoch(h) for h in hours})
        if not keys:
            return
        with self.writing() as conn:
            conn.execute(usage_hours.delete().where(usage_hours.c.hour.in_(keys)))
            conn.execute(usage_fetches.delete().where(usage_fetches.c.hour.in_(keys)))
            if rows:
                conn.execute(usage_hours.insert(), [_usage_record(r) for r in rows])
            conn.execute(usage_fetches.insert(),
                         [{"hour": h, "fetched_at": epoch(fetched_at)} for h in keys])

    def usage_by_day(self, start: datetime, end: datetime,
                     api_keys: Collection[str] | None = None) -> list[PricedUsage]:
        """Stored usage in ``[start, end)`` summed per (UTC day, workspace, API key, model).

        With ``api_keys``, other keys are summed together under ``api_key_id = None``: every
        total but those of other keys stays exact, in far fewer rows for a large organization.
        """
        return self._usage(start, end, DAY_S, api_keys)

    def usage_by_hour(self, start: datetime, end: datetime,
                      api_keys: Collection[str] | None = None) -> list[PricedUsage]:
        """Like ``usage_by_day``, per hour: for burn rates over recent windows."""
        return self._usage(start, end, 3600, api_keys)

    def hourly_totals(self, start: datetime, end: datetime) -> dict[datetime, Decimal]:
        """Organization-wide spend per stored hour in ``[start, end)``: the daily profile."""
        c = usage_hours.c
        query = (sa.select(c.hour, sa.func.sum(c.token_units + c.web_search_units))
                 .where(c.hour >= epoch(start), c.hour < epoch(end)).group_by(c.hour))
        with self.reading() as conn:
            return {at_epoch(int(h)): from_units(units) for h, units in conn.execute(query)}

    def _usage(self, start: datetime, end: datetime, seconds: int,
               api_keys: Collection[str] | None) -> list[PricedUsage]:
        c = usage_hours.c
        period = (c.hour - c.hour % seconds).label("period")
        key: Any = c.api_key_id
        if api_keys is not None:
            key = sa.case((c.api_key_id.in_(sorted(api_keys)), c.api_key_id), else_=None)
        key = key.label("api_key_id")
        sums = [sa.func.sum(col) for col in (
            c.token_units, c.web_search_units, c.input_tokens, c.cache_write_tokens,
            c.cache_read_tokens, c.output_tokens, c.web_search_requests)]
        query = (sa.select(period, c.workspace_id, key, c.model, *sums)
                 .where(c.hour >= epoch(start), c.hour < epoch(end))
                 .group_by(period, c.workspace_id, key, c.model))
        with self.reading() as conn:
            rows = conn.execute(query).all()
        starts: dict[int, datetime] = {}
        return [_priced(row, starts) for row in rows]

    # --- cost --------------------------------------------------------------------------------

    def cost_fetched(self, first: date, last: date) -> dict[date, datetime]:
        """When each day in ``[first, last]`` was last read: day → fetched_at."""
        query = sa.select(cost_fetches).where(cost_fetches.c.day >= day_epoch(first),
                                              cost_fetches.c.day <= day_epoch(last))
        with self.reading() as conn:
            return {at_epoch(d).date(): at_epoch(f) for d, f in conn.execute(query)}

    def replace_cost_days(self, days: Sequence[CostDay], fetched_at: datetime) -> None:
        """Make ``days`` the stored cost of those days, read at ``fetched_at``."""
        keys = [day_epoch(d.day) for d in days]
        if not keys:
            return
        records = [record for d in days for record in _cost_records(d)]
        with self.writing() as conn:
            conn.execute(cost_days.delete().where(cost_days.c.day.in_(keys)))
            conn.execute(cost_fetches.delete().where(cost_fetches.c.day.in_(keys)))
            if records:
                conn.execute(cost_days.insert(), records)
            conn.execute(cost_fetches.insert(),
                         [{"day": k, "fetched_at": epoch(fetched_at)} for k in keys])

    def cost_days(self, days: Iterable[date]) -> dict[date, CostDay]:
        """The stored cost of each of ``days`` that has been read."""
        keys = sorted({day_epoch(d) for d in days})
        c = cost_days.c
        with self.reading() as conn:
            fetched = set(conn.scalars(sa.select(cost_fetches.c.day)
                                       .where(cost_fetches.c.day.in_(keys))))
            rows = conn.execute(sa.select(c.day, c.grouping, c.name, c.amount_units)
                                .where(c.day.in_(keys)))
            result = {at_epoch(k).date(): CostDay(at_epoch(k).date()) for k in fetched}
            for day, grouping, name, units in rows:
                entry = result[at_epoch(day).date()]
                target: dict[Any, Decimal] = (entry.by_workspace if grouping == "workspace"
                                              else entry.by_model)
                target[name] = from_units(units)
        return result

    # --- meta --------------------------------------------------------------------------------

    def get_meta(self, name: str) -> str | None:
        """A named value, or ``None``."""
        with self.reading() as conn:
            return conn.scalar(sa.select(meta.c.value).where(meta.c.name == name))

    def set_meta(self, name: str, value: str) -> None:
        """Set a named value."""
        with self.writing() as conn:
            conn.execute(meta.delete().where(meta.c.name == name))
            conn.execute(meta.insert().values(name=name, value=value))

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads; SQLAlchemy errors become StoreError."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"state store read failed: {type(exc).__name__}: "
                             f"{_reason(exc)}") from None

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A transaction; SQLAlchemy errors become StoreError."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"state store write failed: {type(exc).__name__}: "
                             f"{_reason(exc)}") from None


def _reason(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]


def _usage_record(row: PricedUsage) -> dict[str, Any]:
    return {
        "hour": epoch(row.start), "workspace_id": row.workspace_id,
        "api_key_id": row.api_key_id, "model": row.model,
        "token_units": to_units(row.token_usd), "web_search_units": to_units(row.web_search_usd),
        "input_tokens": row.input_tokens, "cache_write_tokens": row.cache_write_tokens,
        "cache_read_tokens": row.cache_read_tokens, "output_tokens": row.output_tokens,
        "web_search_requests": row.web_search_requests,
    }


def _priced(row: sa.Row[Any], days: dict[int, datetime]) -> PricedUsage:
    day, ws, key, model, tok, web, inp, cw, cr, out, searches = tuple(row)
    start = days.get(day) or days.setdefault(day, at_epoch(int(day)))
    return PricedUsage(
        start=start, workspace_id=ws, api_key_id=key, model=model,
        token_usd=from_units(tok), web_search_usd=from_units(web), input_tokens=int(inp),
        cache_write_tokens=int(cw), cache_read_tokens=int(cr), output_tokens=int(out),
        web_search_requests=int(searches),
    )


def _cost_records(day: CostDay) -> Iterator[dict[str, Any]]:
    key = day_epoch(day.day)
    for ws, usd in day.by_workspace.items():
        yield {"day": key, "grouping": "workspace", "name": ws, "amount_units": to_units(usd)}
    for model, usd in day.by_model.items():
        yield {"day": key, "grouping": "model", "name": model, "amount_units": to_units(usd)}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA cache_size=-256")  # 256 KiB a connection: the data is small
    cursor.close()


def _safe_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return "(unparseable url)"

