"""The state store's part of the composition root: ``wiring`` re-exports all of it.

It is a module of its own so that what needs only the store (``guard fallback status``)
opens it without importing the Admin API's and Slack's libraries. Nothing outside
``wiring`` and this module builds an engine or a ``Store``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from guard.adapters.store.engine import (
    Store,
    postgres_session,
    safe_url,
    sqlite_pragmas,
    unavailable,
)
from guard.adapters.store.silences import Silences
from guard.adapters.store.state import Records
from guard.errors import ConfigError
from guard.shell.ops import Ops

if TYPE_CHECKING:
    from guard.config import Settings
    from guard.config.organizations import Organization

PG_CONNECT_TIMEOUT_S = 10
"""How long opening a PostgreSQL connection may take (a host that drops packets)."""


def connect_store(url: str) -> Store:
    """Open ``url`` (SQLite in WAL mode, or PostgreSQL) and create the schema if missing."""
    try:
        parsed = sa.engine.make_url(url)
        postgres = parsed.get_backend_name() == "postgresql"
        connect = ({"connect_timeout": PG_CONNECT_TIMEOUT_S}
                   if postgres and "connect_timeout" not in parsed.query else {})
        engine = sa.create_engine(url, future=True, connect_args=connect)
    except SQLAlchemyError as exc:
        raise unavailable(safe_url(url), exc) from None
    if engine.dialect.name == "sqlite":
        private_database(engine.url.database)
        sa.event.listen(engine, "connect", sqlite_pragmas)
    elif postgres:
        sa.event.listen(engine, "connect", postgres_session)
    store = Store(engine)
    store.create_schema()
    return store


def private_database(database: str | None) -> None:
    """Create a missing SQLite file 0600 (whatever the umask) before SQLite opens it; its WAL
    and shared-memory files take the same mode. An existing file is left as it is."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return
    except OSError:
        return  # a missing directory: SQLite says so when it opens, as a store error


def memory_store() -> Store:
    """A private store in memory: the caches of ticks whose own store is unavailable."""
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool,
                              connect_args={"check_same_thread": False})
    store = Store(engine)
    store.create_schema()
    return store


@contextmanager
def opened_store(url: str) -> Iterator[Store]:
    """A store for one command, closed afterwards."""
    store = connect_store(url)
    try:
        yield store
    finally:
        store.close()


def schema_store(store: Store, schema: str) -> Store:
    """``store``'s database with every table in the PostgreSQL ``schema`` (created if
    missing), on ``store``'s connection pool, which stays ``store``'s to close."""
    if store.engine.dialect.name != "postgresql":
        raise ValueError("a schema of its own needs PostgreSQL")
    translated = store.engine.execution_options(schema_translate_map={None: schema})
    within = Store(translated, schema=schema, owns_engine=False)
    within.create_schema()
    return within


class Stores:
    """One open store per state URL, kept across settings generations (the daemon's), and
    each organization's store beside it (``guard.config.organizations``).

    The tick threads and the HTTP endpoint's threads share them; an engine is thread-safe.
    """

    def __init__(self) -> None:
        self.url: str | None = None
        self.store: Store | None = None
        self._organizations: dict[tuple[str, str | None], Store] = {}
        self._lock = threading.RLock()

    def get(self, url: str) -> Store:
        """The store for ``url``, reopened only when the URL changes (a reload)."""
        with self._lock:
            if self.store is None or url != self.url:
                self._close()
                self.store, self.url = connect_store(url), url
            return self.store

    def organization(self, org: Organization) -> Store:
        """The store of ``org``'s own data: a schema of the shared PostgreSQL store, a SQLite
        file of its own, or (``default``) the shared store itself."""
        with self._lock:
            shared = self.get(org.shared_url)
            url = org.settings.state.url
            if org.schema is None and url == org.shared_url:
                return shared
            key = (url, org.schema)
            if key not in self._organizations:
                self._organizations[key] = (schema_store(shared, org.schema) if org.schema
                                            else connect_store(url))
            return self._organizations[key]

    def close(self) -> None:
        """Close the open stores, if any."""
        with self._lock:
            self._close()

    def __enter__(self) -> Stores:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _close(self) -> None:
        for store in self._organizations.values():
            store.close()
        self._organizations.clear()
        if self.store is not None:
            self.store.close()
            self.store = None


def ops(settings: Settings, store: Store) -> Ops:
    """On-call operations over ``store`` for the configured chain and budgets; refused (a
    ``ConfigError``) with several organizations, since none is named yet."""
    if settings.several:
        raise ConfigError([("organizations", "on-call commands (fallback pin/release/status, "
                            "silences, keys restore, HTTP and Slack writes) name no "
                            "organization yet, so they are refused with [[organizations]]")])
    fallback = settings.fallback
    return Ops(Records(store), Silences(store), tuple(fallback.chain), dict(fallback.models),
               tuple(b.name for b in settings.budgets), str(fallback.env_file),
               fallback.core_targets(), fallback.env_files())
