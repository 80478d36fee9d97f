"""Shared fixtures: every test starts from an environment free of the guard's variables."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

_PREFIXES = ("GUARD_", "SLACK_", "ANTHROPIC_")
PG_ADMIN_URL = os.environ.get("GUARD_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strip GUARD_*, SLACK_* and ANTHROPIC_* so no test depends on the caller's shell."""
    for name in list(os.environ):
        if name.upper().startswith(_PREFIXES):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database on loopback, created for the session and dropped after.

    Tests never write into an existing database: the admin URL is used only to create and
    drop this one.
    """
    name = f"guard_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable on loopback: {type(exc).__name__}")
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
