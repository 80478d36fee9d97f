"""The state store's connection: SQLAlchemy Core over SQLite (embedded default) or PostgreSQL.

``Store`` wraps an engine that ``guard.entry.wiring`` builds; every read and write goes through
``reading``/``writing``, which turn SQLAlchemy errors into ``StoreError`` (the URL's password
never appears). The parts that live in the store each have their own module: ``caches``
(usage and cost already read), ``state`` (what the tick remembers), ``outbox``, ``silences``
and ``lease``.

Money is stored as integers of ``1 / UNITS_PER_USD`` dollars (0.000001 cent), so SQL sums are
exact on both backends and convert back to ``Decimal`` without loss. Times are integer epoch
seconds in UTC.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from guard.adapters.store.schema import ADDED_COLUMNS, metadata
from guard.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

UNITS_PER_USD = 10**10
_UNIT = Decimal(1) / UNITS_PER_USD
DAY_S = 86_400
SCHEMA_LOCK = 0x6275_6467_6574  # "budget": the advisory lock of schema creation


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
    """An engine with the guard's schema, and error translation for every use of it.

    With a ``schema``, its engine is another store's seen through a PostgreSQL schema of its
    own (SQLAlchemy's ``schema_translate_map``, on the same connection pool): one
    organization's tables among several (``guard.config.organizations``); ``create_schema``
    creates that schema, and ``close`` leaves the pool to its owner.
    """

    def __init__(self, engine: Engine, schema: str | None = None,
                 owns_engine: bool = True) -> None:
        self.engine = engine
        self.schema = schema
        self.owns_engine = owns_engine
        self._open = threading.local()
        """This thread's open transaction, which nested reads and writes join."""

    def create_schema(self) -> None:
        """Create missing tables, and add columns that later versions added to old tables.

        On PostgreSQL this holds an advisory lock, so replicas starting together on a new
        database do not race to create the same tables."""
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                 {"key": SCHEMA_LOCK})
                    if self.schema is not None:
                        quoted = conn.dialect.identifier_preparer.quote_schema(self.schema)
                        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
                metadata.create_all(conn)
                _add_missing_columns(conn, self.schema)
        except SQLAlchemyError as exc:
            raise unavailable(self.engine.url.render_as_string(hide_password=True),
                              exc) from None

    def close(self) -> None:
        """Release the connection pool (unless it is another store's, see ``within``)."""
        if self.owns_engine:
            self.engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads (this thread's open transaction, if any); SQLAlchemy
        errors become StoreError."""
        joined: Connection | None = getattr(self._open, "conn", None)
        if joined is not None:
            yield joined
            return
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"state store read failed: {type(exc).__name__}: "
                             f"{_reason(exc)}") from None

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A transaction; SQLAlchemy errors become StoreError.

        Inside another ``writing()`` of the same thread it joins that transaction, so several
        adapters' writes (a decision's alert states and its outbox rows) commit together or
        not at all.
        """
        joined: Connection | None = getattr(self._open, "conn", None)
        if joined is not None:
            yield joined
            return
        try:
            with self.engine.begin() as conn:
                self._open.conn = conn
                try:
                    yield conn
                finally:
                    self._open.conn = None
        except SQLAlchemyError as exc:
            raise StoreError(f"state store write failed: {type(exc).__name__}: "
                             f"{_reason(exc)}") from None


def unavailable(safe_url: str, exc: SQLAlchemyError) -> StoreError:
    """The error for a store that cannot be opened; ``safe_url`` has its password hidden."""
    return StoreError(f"state store {safe_url} unavailable: {type(exc).__name__}")


def safe_url(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return "(unparseable url)"


def insert_new(conn: Connection, table: sa.Table, row: dict[str, Any], key: str) -> bool:
    """INSERT unless a row with the same ``key`` exists; True if this call inserted it.

    Told by ``RETURNING``, not by the row count: SQLAlchemy 2.1 on psycopg reports -1 for
    every INSERT, which made a fresh PostgreSQL store's first lease and outbox rows look
    taken by someone else."""
    statement = (dialect_insert(conn)(table).values(**row)
                 .on_conflict_do_nothing(index_elements=[key]).returning(table.c[key]))
    return conn.execute(statement).first() is not None


def insert_many(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT ``rows`` (all with the same keys, plain ints, strings and ``None``) in one
    driver ``executemany``.

    The statement is compiled once for ``conn``'s dialect and schema, and the parameters go
    to the driver as it takes them (tuples for SQLite's ``?``, the dicts for psycopg's named
    style): SQLAlchemy's per-row parameter processing, a third of a first start's CPU at
    a million rows, is skipped. The columns here need no conversion on either driver."""
    if not rows:
        return
    columns = list(rows[0])
    translate = conn.get_execution_options().get("schema_translate_map")
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=columns,
                                      schema_translate_map=translate,
                                      render_schema_translate=translate is not None)
    params: Sequence[Any] = rows
    if compiled.positional:
        order = compiled.positiontup or []
        params = [tuple(row[name] for name in order) for row in rows]
    conn.exec_driver_sql(str(compiled), params)


def dialect_insert(conn: Connection) -> Callable[[sa.Table], PostgresInsert | SqliteInsert]:
    """The ``insert`` of ``conn``'s dialect, the one with ``ON CONFLICT``, imported when first
    asked for: a store on SQLite never loads the PostgreSQL dialect (2 MB resident)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert  # noqa: PLC0415

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert  # noqa: PLC0415

    return sqlite_insert


def postgres_session(dbapi_connection: Any, _record: Any) -> None:
    """A PostgreSQL session ends a transaction left idle for 10 s: a replica paused (SIGSTOP)
    between a write and its commit would otherwise hold its row locks, the leader lease's
    among them, and keep the standby from taking over."""
    cursor = dbapi_connection.cursor()
    cursor.execute("SET idle_in_transaction_session_timeout = '10s'")
    cursor.close()
    dbapi_connection.commit()


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL, a busy timeout and a small page cache on every new SQLite connection."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA cache_size=-256")  # 256 KiB a connection: the data is small
    cursor.close()


def _add_missing_columns(conn: Connection, schema: str | None = None) -> None:
    """``ALTER TABLE … ADD COLUMN`` for nullable columns a store made by an older version lacks."""
    present: dict[str, set[str]] = {}
    inspector = sa.inspect(conn)
    prefix = f"{conn.dialect.identifier_preparer.quote_schema(schema)}." if schema else ""
    for table, column in ADDED_COLUMNS:
        if table.name not in present:
            present[table.name] = {c["name"] for c in inspector.get_columns(table.name,
                                                                            schema=schema)}
        if column.name in present[table.name]:
            continue
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f'ALTER TABLE {prefix}{table.name} ADD COLUMN "{column.name}" '
                             f"{kind}"))


def _reason(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
