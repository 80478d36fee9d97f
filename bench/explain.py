"""The query plans of the steady tick's hot queries, on SQLite and on PostgreSQL (issue 13).

Captures the SQL the store really runs for the reads a steady tick makes (the running sums of
the budgets' days, the day versions, the hours read, the hourly totals) and for the rebuild a
changed hour triggers, then asks each backend how it runs them (``EXPLAIN QUERY PLAN`` /
``EXPLAIN``, with sequential scans off: at a week of 200 keys a table is small enough
that PostgreSQL would rightly read it whole, and the point is which index serves a query).

    python bench/explain.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from guard.adapters.store.caches import Caches
from guard.adapters.store.engine import Store
from guard.core.model import PricedUsage
from guard.entry import wiring

DAY = datetime(2026, 11, 28, tzinfo=UTC)


def rows(day: datetime = DAY) -> list[PricedUsage]:
    """A day of 50 workspaces × 4 keys, every hour."""
    return [PricedUsage(day + timedelta(hours=h), f"wrkspc_{w}", f"apikey_{w}_{k}",
                        "claude-sonnet-5-5", Decimal("0.25"), Decimal(0), 100, 0, 0, 10, 0)
            for h in range(24) for w in range(50) for k in range(4)]


def captured(store: Store) -> list[tuple[str, str, Any]]:
    """(what, SQL, parameters) of the hot statements, run once on ``store``."""
    caches = Caches(store)
    seen: list[tuple[str, str, Any]] = []
    label = ["write"]

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "INSERT INTO USAGE_SCOPE_DAYS")):
            seen.append((label[0], statement, parameters))

    for back in range(6, 0, -1):  # a week of history before the day the plans are of
        day = DAY - timedelta(days=back)
        caches.replace_usage_hours([r.start for r in rows(day)], rows(day), DAY)
    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        label[0] = "rebuild of a changed day (write)"
        caches.replace_usage_hours([r.start for r in rows()], rows(), DAY + timedelta(days=1))
        with store.engine.begin() as conn:  # statistics, so the planner sees the real shapes
            conn.execute(sa.text("ANALYZE"))
        label[0] = "day versions (every tick)"
        caches.versions("usage", DAY.date() - timedelta(days=42), DAY.date())
        label[0] = "running sums of changed days (steady tick)"
        caches.usage_days([DAY.date()], workspaces={"wrkspc_1"}, api_keys={"apikey_1_1"})
        label[0] = "hours read (plan)"
        caches.usage_fetched(DAY, DAY + timedelta(hours=2))
        label[0] = "hourly totals (profile)"
        caches.hourly_totals(DAY - timedelta(days=14), DAY)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)
    return seen


def explain(store: Store, statements: list[tuple[str, str, Any]]) -> None:
    sqlite = store.engine.dialect.name == "sqlite"
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
    done: set[str] = set()
    for what, statement, parameters in statements:
        if statement in done:
            continue
        done.add(statement)
        print(f"-- {what}\n{' '.join(statement.split())[:300]}")
        raw = store.engine.raw_connection()
        try:
            cursor = raw.cursor()
            if not sqlite:  # a bench-sized table is one a sequential scan reads at once
                cursor.execute("SET enable_seqscan = off")
            cursor.execute(prefix + statement, parameters)
            for row in cursor.fetchall():
                print("   ", " | ".join(str(v) for v in row))
        finally:
            raw.close()


@contextmanager
def postgres(url: str) -> Iterator[Store]:
    name = f"guard_explain_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    store = wiring.connect_store(str(sa.engine.make_url(url).set(database=name)))
    try:
        yield store
    finally:
        store.close()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = wiring.connect_store(f"sqlite:///{Path(tmp) / 'state.db'}")
        print("=== SQLite")
        explain(store, captured(store))
        store.close()
    print("=== PostgreSQL")
    with postgres(args.postgres) as pg:
        explain(pg, captured(pg))


if __name__ == "__main__":
    main()
