"""Several organizations in one config: each one seen as a single-organization ``Settings``.

``[[organizations]]`` lists them; the shared sections (``[anthropic]``'s polling and retries,
``[state]``, ``[fallback]``'s chain and models, ``[slack]``, ``[http]``, ``[policy]``,
``[enforcement]``, ``[pricing]``) apply to all. Without ``[[organizations]]``, ``[anthropic]``
and ``[[budgets]]`` are the one organization ``default``, and nothing differs from a config
that never heard of organizations.

Each organization keeps its data apart in the state store: in a file of its own next to a
SQLite store (``state.db`` → ``state.acme.db``), in a schema of its own on PostgreSQL
(``org_acme``). An organization named ``default`` uses the store's own tables, so a config
that moves its one organization into ``[[organizations]]`` keeps its state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from guard.config.sections import OrganizationSettings
    from guard.config.settings import Settings

DEFAULT_ORGANIZATION = "default"
SCHEMA_PREFIX = "org_"


@dataclass(frozen=True, slots=True)
class Organization:
    """One organization the config guards: its name, its single-organization settings, and
    the PostgreSQL schema its data lives in (``None``: the store's own tables, or a SQLite
    file of its own, which ``settings.state.url`` already names)."""

    name: str
    settings: Settings
    schema: str | None = None
    shared_url: str = ""
    """The state store every organization's leader lease is kept in (``[state] url``)."""
    several: bool = False
    """Whether it is one of ``[[organizations]]`` (its reports and messages name it)."""

    @property
    def default(self) -> bool:
        """Whether this is the organization of the store's own tables."""
        return self.name == DEFAULT_ORGANIZATION


def organizations_of(settings: Settings) -> tuple[Organization, ...]:
    """The organizations of ``settings`` (``default`` alone without ``[[organizations]]``)."""
    if not settings.organizations:
        return (Organization(DEFAULT_ORGANIZATION, settings, shared_url=settings.state.url),)
    return tuple(_view(settings, org) for org in settings.organizations)


def _view(settings: Settings, org: OrganizationSettings) -> Organization:
    """``settings`` as if ``org`` were its only organization."""
    anthropic = settings.anthropic.model_copy(update={
        "admin_api_key": org.admin_api_key, "admin_api_key_file": org.admin_api_key_file,
        "base_url": org.base_url or settings.anthropic.base_url,
        "source": org.source or settings.anthropic.source})
    fallback = settings.fallback
    outputs = fallback.model_copy(update={
        "env_file": org.env_file or tagged(fallback.env_file, org.name),
        "state_file": org.state_file or tagged(fallback.state_file, org.name),
        "reload_command": (fallback.reload_command if org.reload_command is None
                           else org.reload_command),
        "targets": [t.model_copy(update={
            key: tagged(getattr(t, key), org.name) for key in ("env_file", "state_file")
            if getattr(t, key) is not None}) for t in fallback.targets]})
    state, schema = settings.state, None
    if org.name != DEFAULT_ORGANIZATION:
        postgres = sa.engine.make_url(state.url).get_backend_name() == "postgresql"
        schema = f"{SCHEMA_PREFIX}{org.name}" if postgres else None
        journal = state.journal_file
        state = state.model_copy(update={
            "url": state.url if postgres else sqlite_url(state.url, org.name),
            "journal_file": tagged(journal, org.name) if journal is not None else None})
    view = settings.model_copy(update={"anthropic": anthropic, "fallback": outputs,
                                       "state": state, "budgets": list(org.budgets),
                                       "organizations": []})
    return Organization(org.name, view, schema, settings.state.url, several=True)


def tagged(path: Path, name: str) -> Path:
    """``path`` with ``name`` before its suffix: ``model.env`` → ``model.acme.env``."""
    return path.with_name(f"{path.stem}.{name}{path.suffix}")


def sqlite_url(url: str, name: str) -> str:
    """The SQLite URL of organization ``name``'s own file next to ``url``'s; an in-memory
    or ``file:`` URI database is left as it is."""
    parsed = sa.engine.make_url(url)
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return url
    return parsed.set(database=str(tagged(Path(database), name))).render_as_string(False)


def organizations_problem(settings: Settings) -> tuple[str, *tuple[str | int, ...]] | None:
    """Why ``[[organizations]]`` cannot stand as configured (reason, field path), or None."""
    orgs = settings.organizations
    if not orgs:
        return None
    if settings.budgets:
        return ("with [[organizations]], budgets belong to each organization "
                "([[organizations.budgets]])", "budgets")
    for key in ("admin_api_key_file", "admin_api_key"):
        if getattr(settings.anthropic, key) is not None:
            return ("with [[organizations]], each organization has its own admin key "
                    "(organizations[].admin_api_key or admin_api_key_file)", "anthropic", key)
    seen: dict[str, int] = {}
    for i, org in enumerate(orgs):
        if org.name in seen:
            return f"organization name '{org.name}' is used twice", "organizations", i, "name"
        seen[org.name] = i
    return _shared_output(settings)


def _shared_output(settings: Settings) -> tuple[str, *tuple[str | int, ...]] | None:
    """The first fallback file two organizations would both write, as a problem."""
    from guard.config.sections import target_path  # noqa: PLC0415

    owners: dict[Path, str] = {}
    for i, org in enumerate(organizations_of(settings)):
        fallback = org.settings.fallback
        paths: list[tuple[str, Path | None]] = [
            (key, getattr(fallback, key)) for key in ("env_file", "state_file")] \
            if not fallback.targets else [
                (key, target_path(fallback, t, key)) for t in fallback.targets
                for key in ("env_file", "state_file")]
        for key, path in paths:
            if path is None:
                continue
            if path in owners:
                return (f"{path} is also {owners[path]}; each organization needs its own",
                        "organizations", i, key)
            owners[path] = f"organization {org.name}'s {key}"
    return None
