"""Running sums kept beside the rows they sum, so a tick reads a few rows per budget and day.

- ``usage_scope_days``: stored usage per (scope, match, UTC day): the organization (match
  ``''``), each workspace (the default one as ``default``), each API key, each model. Set-based
  SQL rebuilds a day's sums from ``usage_hours`` in the transaction that changed the day's hours.
- ``billed_scope_days``: the same for the analytics source's billed hours.
- ``usage_hour_totals``: the organization's priced spend per stored hour (the daily profile).
- ``day_versions``: per (kind, day) a number raised whenever the day's data changes, so a
  process that keeps what it read (``guard.shell.sync``) re-reads only the days that moved,
  whichever replica moved them.

The queries these serve are indexed: ``(scope, match, day)`` is the primary key (a budget's
days), ``day`` has its own index (a day's rebuild), ``usage_hours.hour`` its index (the rebuild's
scan). ``bench/scale.py --explain`` prints the plans on both backends.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from guard.adapters.store.engine import DAY_S, at_epoch, dialect_insert, from_units
from guard.adapters.store.schema import (
    billed_hours,
    billed_scope_days,
    day_versions,
    usage_hour_totals,
    usage_hours,
    usage_scope_days,
)
from guard.core.model import DEFAULT_WORKSPACE
from guard.core.usage import BILLED, COST, USAGE, PeriodIndex, Sums

__all__ = ["BILLED", "COST", "USAGE"]

ORGANIZATION, WORKSPACE, API_KEY, MODEL = "organization", "workspace", "api_key", "model"

_USAGE_SUMS = ("token_units", "web_search_units", "input_tokens", "cache_write_tokens",
               "cache_read_tokens", "output_tokens", "web_search_requests")


def bump(conn: Connection, kind: str, days: Iterable[int]) -> None:
    """Raise the version of each of ``days`` (epoch seconds of the day's start)."""
    rows = [{"kind": kind, "day": day, "version": 1} for day in sorted(set(days))]
    if not rows:
        return
    statement = dialect_insert(conn)(day_versions).values(rows)
    conn.execute(statement.on_conflict_do_update(
        index_elements=["kind", "day"],
        set_={"version": day_versions.c.version + 1}))


def versions(conn: Connection, kind: str, first: int, last: int) -> dict[int, int]:
    """The version of each day in ``[first, last]`` (epoch seconds) that has one."""
    c = day_versions.c
    query = sa.select(c.day, c.version).where(c.kind == kind, c.day >= first, c.day <= last)
    return {int(day): int(version) for day, version in conn.execute(query)}


# --- usage ----------------------------------------------------------------------------------------

def rebuild_usage_days(conn: Connection, days: Iterable[int],
                       known: Callable[[str], bool] | None) -> None:
    """Make ``usage_scope_days`` of ``days`` the sums of their stored hours. ``known`` tells
    the models the price table has a card for (the others' spend is the unpriced part)."""
    c = usage_hours.c
    for day in sorted(set(days)):
        unpriced = _unpriced_models(conn, day, known)
        costs = c.token_units + c.web_search_units
        unpriced_units = (sa.case((c.model.in_(unpriced), costs), else_=0) if unpriced
                          else sa.literal(0))
        summed: list[Any] = [c[name] for name in _USAGE_SUMS]
        summed.insert(2, unpriced_units)
        _rebuild(conn, usage_scope_days, usage_hours, day, summed,
                 ["token_units", "web_search_units", "unpriced_units", *_USAGE_SUMS[2:]])


def _unpriced_models(conn: Connection, day: int,
                     known: Callable[[str], bool] | None) -> list[str]:
    if known is None:
        return []
    c = usage_hours.c
    models = conn.scalars(sa.select(c.model).distinct()
                          .where(c.hour >= day, c.hour < day + DAY_S, c.model.is_not(None)))
    return sorted(m for m in models if not known(m))


def rebuild_hour_totals(conn: Connection, hours: Collection[int]) -> None:
    """Make ``usage_hour_totals`` of ``hours`` the organization's spend in each."""
    if not hours:
        return
    keys = sorted(hours)
    conn.execute(usage_hour_totals.delete().where(usage_hour_totals.c.hour.in_(keys)))
    c = usage_hours.c
    conn.execute(usage_hour_totals.insert().from_select(
        ["hour", "units"],
        sa.select(c.hour, sa.func.sum(c.token_units + c.web_search_units))
        .where(c.hour.in_(keys)).group_by(c.hour)))


def usage_days(conn: Connection, days: Collection[int], workspaces: Collection[str] | None,
               api_keys: Collection[str] | None) -> dict[date, PeriodIndex]:
    """The stored sums of ``days``: the organization, every model, and the workspaces and
    keys asked for (``None``: all of them; the default workspace always)."""
    c = usage_scope_days.c
    rows = _scope_rows(conn, usage_scope_days, days, workspaces, api_keys,
                       columns=[c.token_units, c.web_search_units, c.unpriced_units,
                                *(c[name] for name in _USAGE_SUMS[2:])])
    return _indexes(rows, _usage_sums)


def _usage_sums(values: tuple[Any, ...]) -> Sums:
    tok, web, unpriced, inp, cw, cr, out, searches = values
    return Sums(from_units(tok), from_units(web), from_units(unpriced), int(inp), int(cw),
                int(cr), int(out), int(searches))


# --- billed ---------------------------------------------------------------------------------------

def rebuild_billed_days(conn: Connection, days: Iterable[int]) -> None:
    """Make ``billed_scope_days`` of ``days`` the sums of their billed hours."""
    c = billed_hours.c
    for day in sorted(set(days)):
        _rebuild(conn, billed_scope_days, billed_hours, day,
                 [c.token_units, c.other_units, c.list_units],
                 ["token_units", "other_units", "list_units"])


def _rebuild(conn: Connection, target: sa.Table, source: sa.Table, day: int,  # noqa: PLR0917
             summed: list[Any], names: list[str]) -> None:
    """Replace ``target``'s sums of ``day`` by ``summed`` over ``source``'s hours of the day,
    per scope: one INSERT … SELECT … GROUP BY, no row through Python."""
    conn.execute(target.delete().where(target.c.day == day))
    c = source.c
    in_day = sa.and_(c.hour >= day, c.hour < day + DAY_S)
    totals = [sa.func.coalesce(sa.func.sum(column), 0) for column in summed]
    match_of = {
        ORGANIZATION: (sa.literal(""), None),
        WORKSPACE: (sa.func.coalesce(c.workspace_id, DEFAULT_WORKSPACE), None),
        API_KEY: (c.api_key_id, c.api_key_id.is_not(None)),
        MODEL: (c.model, c.model.is_not(None)),
    }
    selects = []
    for scope, (match, only) in match_of.items():
        where = in_day if only is None else sa.and_(in_day, only)
        query = sa.select(sa.literal(day).label("day"), sa.literal(scope).label("scope"),
                          match.label("match"), *totals).where(where)
        selects.append(query if scope == ORGANIZATION else query.group_by(match))
    conn.execute(target.insert().from_select(["day", "scope", "match", *names],
                                             sa.union_all(*selects)))
    # the organization's row is there for a day without hours too: no spend, no row
    conn.execute(target.delete().where(target.c.day == day, target.c.scope == ORGANIZATION,
                                       ~sa.exists().where(in_day)))


def billed_days(conn: Connection, days: Collection[int], workspaces: Collection[str] | None,
                api_keys: Collection[str] | None) -> dict[date, PeriodIndex]:
    """The stored billed sums of ``days``, as usage sums (``token_usd`` = tokens,
    ``web_search_usd`` = every other cost)."""
    c = billed_scope_days.c
    rows = _scope_rows(conn, billed_scope_days, days, workspaces, api_keys,
                       columns=[c.token_units, c.other_units])
    return _indexes(rows, lambda v: Sums(from_units(v[0]), from_units(v[1])))


# --- reading ------------------------------------------------------------------------------------

def _scope_rows(conn: Connection, table: sa.Table, days: Collection[int],
                workspaces: Collection[str] | None, api_keys: Collection[str] | None, *,
                columns: list[Any]) -> list[sa.Row[Any]]:
    """(day, scope, match, *columns) of ``days`` for the organization, the models, and the
    workspaces and keys asked for, one indexed query per scope."""
    if not days:
        return []
    c = table.c
    keys = sorted(days)
    in_days = c.day.in_(keys) if len(keys) < 8 else sa.and_(c.day >= keys[0],
                                                             c.day <= keys[-1])
    wanted: list[tuple[str, Any]] = [(ORGANIZATION, c.match == ""), (MODEL, None)]
    wanted.append((WORKSPACE, None if workspaces is None
                   else c.match.in_(sorted({*workspaces, DEFAULT_WORKSPACE}))))
    if api_keys is None or api_keys:
        wanted.append((API_KEY, None if api_keys is None else c.match.in_(sorted(api_keys))))
    rows: list[sa.Row[Any]] = []
    asked = set(keys)
    for scope, match in wanted:
        where = [c.scope == scope, in_days] + ([match] if match is not None else [])
        query = sa.select(c.day, c.scope, c.match, *columns).where(*where)
        rows.extend(row for row in conn.execute(query) if int(row[0]) in asked)
    return rows


def _indexes(rows: Iterable[sa.Row[Any]],
             sums_of: Callable[[tuple[Any, ...]], Sums]) -> dict[date, PeriodIndex]:
    parts: dict[int, tuple[list[Sums], dict[str, dict[str, Sums]]]] = {}
    for row in rows:
        day, scope, match, *values = tuple(row)
        org, named = parts.setdefault(int(day), ([], {WORKSPACE: {}, API_KEY: {}, MODEL: {}}))
        sums = sums_of(tuple(values))
        if scope == ORGANIZATION:
            org.append(sums)
        else:
            named[scope][match] = sums
    return {at_epoch(day).date(): PeriodIndex(org[0] if org else Sums(), named[WORKSPACE],
                                              named[API_KEY], named[MODEL])
            for day, (org, named) in sorted(parts.items())}
