"""What the store caches so that nothing settled is fetched twice.

- ``usage_hours``: priced usage per (hour, workspace, API key, model), tokens and dollars;
  ``usage_fetches`` records when each hour was last read, which says whether it is settled.
- ``cost_days``: the cost report per closed UTC day, per workspace and per model;
  ``cost_fetches`` records when each day was last read.
- ``billed_hours``: the analytics source's billed cost per (hour, workspace, API key, model),
  tokens and other costs apart, and the list price; replaced a range at a time.
- ``meta``: small named values (watermarks).

Every write that changes usage, billed hours or cost days also rebuilds the running sums of
the days it touched and raises their versions (``guard.adapters.store.sums``), in the same
transaction: the sums never disagree with the rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from guard.adapters.store import sums
from guard.adapters.store.engine import (
    DAY_S,
    Store,
    at_epoch,
    day_epoch,
    epoch,
    from_units,
    insert_many,
    to_units,
)
from guard.adapters.store.schema import (
    billed_hours,
    cost_days,
    cost_fetches,
    meta,
    provider_limits,
    usage_fetches,
    usage_hour_totals,
    usage_hours,
)
from guard.core.billed import BilledHour
from guard.core.limits import ProviderLimit
from guard.core.model import CostDay, PricedUsage
from guard.core.usage import PeriodIndex

OTHER_WORKSPACES = "(other workspaces)"
"""Where ``billed_by_day`` folds workspaces no budget names (no workspace id looks like it)."""
SUMS = "running_sums"
SUMS_VERSION = "1"
"""The running sums' named value: equal when they were built for every stored row."""


class Caches:
    """Typed reads and writes of the usage and cost caches and the named values."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- usage -------------------------------------------------------------------------------

    def usage_fetched(self, start: datetime, end: datetime) -> dict[datetime, datetime]:
        """When each hour in ``[start, end)`` was last read: hour → fetched_at."""
        query = sa.select(usage_fetches.c.hour, usage_fetches.c.fetched_at).where(
            usage_fetches.c.hour >= epoch(start),
            usage_fetches.c.hour < epoch(end))
        with self.store.reading() as conn:
            return {at_epoch(h): at_epoch(f) for h, f in conn.execute(query)}

    def replace_usage_hours(self, hours: Iterable[datetime], rows: Sequence[PricedUsage],
                            fetched_at: datetime,
                            known: Callable[[str], bool] | None = None) -> dict[datetime, str]:
        """Make ``rows`` the whole content of ``hours``, read at ``fetched_at``; the digest
        each hour is stored with (``touch_usage_hours`` takes them back).

        An hour read again with the same rows only has its read time moved; an hour that
        changed has its rows replaced, and its day's sums rebuilt and version raised, in the
        same transaction. ``known`` tells which models the price table has a card for.
        """
        keys = sorted({epoch(h) for h in hours})
        if not keys:
            return {}
        records: dict[int, list[dict[str, Any]]] = {h: [] for h in keys}
        for row in rows:
            records[epoch(row.start)].append(_usage_record(row))
        digests = {h: _digest(records[h]) for h in keys}
        c = usage_fetches.c
        with self.store.writing() as conn:
            stored = {int(h): d for h, d in
                      conn.execute(sa.select(c.hour, c.digest).where(c.hour.in_(keys)))}
            changed = [h for h in keys if h not in stored or stored[h] != digests[h]]
            conn.execute(usage_fetches.delete().where(c.hour.in_(keys)))
            conn.execute(usage_fetches.insert(),
                         [{"hour": h, "fetched_at": epoch(fetched_at), "digest": digests[h]}
                          for h in keys])
            if changed:
                self._rewrite_hours(conn, changed, records, known)
        return {at_epoch(h): d for h, d in digests.items()}

    def touch_usage_hours(self, digests: Mapping[datetime, str],
                          fetched_at: datetime) -> list[datetime]:
        """Move the read time of hours read again unchanged, each only if it is still stored
        with the digest given (as ``replace_usage_hours`` returned it): the hours that are
        not, which need their rows written again."""
        c = usage_fetches.c
        missed = []
        with self.store.writing() as conn:
            for hour, digest in sorted(digests.items()):
                result = conn.execute(usage_fetches.update()
                                      .where(c.hour == epoch(hour), c.digest == digest)
                                      .values(fetched_at=epoch(fetched_at)))
                if result.rowcount != 1:
                    missed.append(hour)
        return missed

    @staticmethod
    def _rewrite_hours(conn: sa.Connection, changed: list[int],
                       records: Mapping[int, list[dict[str, Any]]],
                       known: Callable[[str], bool] | None) -> None:
        """The rows of ``changed`` hours replaced, their days' sums rebuilt, versions raised."""
        conn.execute(usage_hours.delete().where(usage_hours.c.hour.in_(changed)))
        fresh = [record for h in changed for record in records[h]]
        if fresh:
            insert_many(conn, usage_hours, fresh)
        days = {h - h % DAY_S for h in changed}
        sums.rebuild_hour_totals(conn, changed)
        sums.rebuild_usage_days(conn, days, known)
        sums.bump(conn, sums.USAGE, days)

    def ensure_sums(self, known: Callable[[str], bool] | None) -> None:
        """Build the running sums of a store whose rows were written before they existed
        (once: a named value says they are current)."""
        if self.get_meta(SUMS) == SUMS_VERSION:
            return
        with self.store.writing() as conn:
            hours = [int(h) for h in conn.scalars(sa.select(usage_hours.c.hour).distinct())]
            days = {h - h % DAY_S for h in hours}
            sums.rebuild_hour_totals(conn, hours)
            sums.rebuild_usage_days(conn, days, known)
            sums.bump(conn, sums.USAGE, days)
            billed = {int(h) - int(h) % DAY_S
                      for h in conn.scalars(sa.select(billed_hours.c.hour).distinct())}
            sums.rebuild_billed_days(conn, billed)
            sums.bump(conn, sums.BILLED, billed)
            self.set_meta(SUMS, SUMS_VERSION)

    def versions(self, kind: str, first: date, last: date) -> dict[date, int]:
        """The version of each day in ``[first, last]`` whose ``kind`` of data was written."""
        with self.store.reading() as conn:
            found = sums.versions(conn, kind, day_epoch(first), day_epoch(last))
        return {at_epoch(day).date(): version for day, version in found.items()}

    def usage_days(self, days: Collection[date], workspaces: Collection[str] | None = None,
                   api_keys: Collection[str] | None = None) -> dict[date, PeriodIndex]:
        """The stored usage of ``days`` per budget dimension: the organization, every model,
        and the workspaces and keys asked for (``None``: all)."""
        with self.store.reading() as conn:
            return sums.usage_days(conn, {day_epoch(d) for d in days}, workspaces, api_keys)

    def billed_sums(self, days: Collection[date], workspaces: Collection[str] | None = None,
                    api_keys: Collection[str] | None = None) -> dict[date, PeriodIndex]:
        """The stored billed cost of ``days`` per budget dimension, like ``usage_days``
        (``token_usd`` = tokens, ``web_search_usd`` = every other cost)."""
        with self.store.reading() as conn:
            return sums.billed_days(conn, {day_epoch(d) for d in days}, workspaces, api_keys)

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

    def usage_rows(self, start: datetime, end: datetime, seconds: int,
                   api_keys: Collection[str] | None = None,
                   workspaces: Collection[str] | None = None) -> list[PricedUsage]:
        """Stored usage in ``[start, end)`` summed per period of ``seconds`` (3600 or a
        day), workspace, API key and model; keys other than ``api_keys`` under no key, and
        with ``workspaces``, named workspaces other than those under ``OTHER_WORKSPACES``."""
        return self._usage(start, end, seconds, api_keys, workspaces)

    def hourly_totals(self, start: datetime, end: datetime) -> dict[datetime, Decimal]:
        """Organization-wide spend per stored hour in ``[start, end)``: the daily profile."""
        c = usage_hour_totals.c
        query = sa.select(c.hour, c.units).where(c.hour >= epoch(start), c.hour < epoch(end))
        with self.store.reading() as conn:
            return {at_epoch(int(h)): from_units(units) for h, units in conn.execute(query)}

    def _usage(self, start: datetime, end: datetime, seconds: int,
               api_keys: Collection[str] | None,
               workspaces: Collection[str] | None = None) -> list[PricedUsage]:
        c = usage_hours.c
        period = (c.hour - c.hour % seconds).label("period")
        key = _folded_keys(c.api_key_id, api_keys)
        ws = _folded_workspaces(c.workspace_id, workspaces)
        totals = [sa.func.sum(col) for col in (
            c.token_units, c.web_search_units, c.input_tokens, c.cache_write_tokens,
            c.cache_read_tokens, c.output_tokens, c.web_search_requests)]
        query = (sa.select(period, ws, key, c.model, *totals)
                 .where(c.hour >= epoch(start), c.hour < epoch(end))
                 .group_by(period, ws, key, c.model))
        with self.store.reading() as conn:
            rows = conn.execute(query).all()
        starts: dict[int, datetime] = {}
        return [_priced(row, starts) for row in rows]

    # --- cost --------------------------------------------------------------------------------

    def cost_fetched(self, first: date, last: date) -> dict[date, datetime]:
        """When each day in ``[first, last]`` was last read: day → fetched_at."""
        query = sa.select(cost_fetches).where(cost_fetches.c.day >= day_epoch(first),
                                              cost_fetches.c.day <= day_epoch(last))
        with self.store.reading() as conn:
            return {at_epoch(d).date(): at_epoch(f) for d, f in conn.execute(query)}

    def replace_cost_days(self, days: Sequence[CostDay], fetched_at: datetime) -> None:
        """Make ``days`` the stored cost of those days, read at ``fetched_at``."""
        keys = [day_epoch(d.day) for d in days]
        if not keys:
            return
        records = [record for d in days for record in _cost_records(d)]
        with self.store.writing() as conn:
            conn.execute(cost_days.delete().where(cost_days.c.day.in_(keys)))
            conn.execute(cost_fetches.delete().where(cost_fetches.c.day.in_(keys)))
            if records:
                conn.execute(cost_days.insert(), records)
            conn.execute(cost_fetches.insert(),
                         [{"day": k, "fetched_at": epoch(fetched_at)} for k in keys])
            sums.bump(conn, sums.COST, keys)

    def cost_days(self, days: Iterable[date]) -> dict[date, CostDay]:
        """The stored cost of each of ``days`` that has been read."""
        keys = sorted({day_epoch(d) for d in days})
        c = cost_days.c
        with self.store.reading() as conn:
            fetched = set(conn.scalars(sa.select(cost_fetches.c.day)
                                       .where(cost_fetches.c.day.in_(keys))))
            rows = conn.execute(sa.select(c.day, c.grouping, c.name, c.amount_units)
                                .where(c.day.in_(keys)))
            result = {at_epoch(k).date(): CostDay(at_epoch(k).date()) for k in fetched}
            listed: dict[date, Decimal] = {}
            for day, grouping, name, units in rows:
                when = at_epoch(day).date()
                if grouping == "list":
                    listed[when] = from_units(units)
                    continue
                entry = result[when]
                target: dict[Any, Decimal] = (entry.by_workspace if grouping == "workspace"
                                              else entry.by_model)
                target[name] = from_units(units)
        for when, usd in listed.items():
            day = result[when]
            result[when] = CostDay(when, day.by_workspace, day.by_model, usd)
        return result

    # --- billed hours (analytics source) ----------------------------------------------------

    def replace_billed_hours(self, start: datetime, end: datetime,
                             hours: Sequence[BilledHour]) -> None:
        """Make ``hours`` the whole billed content of ``[start, end)``."""
        c = billed_hours.c
        first, stop = epoch(start), epoch(end)
        days = set(range(first - first % DAY_S, stop, DAY_S)) if stop > first else set()
        with self.store.writing() as conn:
            conn.execute(billed_hours.delete().where(c.hour >= first, c.hour < stop))
            if hours:
                insert_many(conn, billed_hours, [_billed_record(h) for h in hours])
            sums.rebuild_billed_days(conn, days)
            sums.bump(conn, sums.BILLED, days)

    def billed_by_day(self, start: datetime, end: datetime,
                      api_keys: Collection[str] | None = None,
                      workspaces: Collection[str] | None = None) -> list[PricedUsage]:
        """Billed hours in ``[start, end)`` per (day, workspace, API key, model), as priced rows
        (``token_usd`` = tokens, ``web_search_usd`` = every other cost).

        Keys other than ``api_keys`` are summed under no key; with ``workspaces``, named
        workspaces other than those are summed under ``OTHER_WORKSPACES`` (the default
        workspace stays ``None``): every budget's total stays exact in far fewer rows.
        """
        c = billed_hours.c
        period = (c.hour - c.hour % DAY_S).label("period")
        key = _folded_keys(c.api_key_id, api_keys)
        ws = _folded_workspaces(c.workspace_id, workspaces)
        query = (sa.select(period, ws, key, c.model, sa.func.sum(c.token_units),
                           sa.func.sum(c.other_units))
                 .where(c.hour >= epoch(start), c.hour < epoch(end))
                 .group_by(period, ws, key, c.model))
        with self.store.reading() as conn:
            rows = conn.execute(query).all()
        starts: dict[int, datetime] = {}
        return [PricedUsage(start=starts.get(day) or starts.setdefault(day, at_epoch(int(day))),
                            workspace_id=w, api_key_id=k, model=model,
                            token_usd=from_units(tok), web_search_usd=from_units(other))
                for day, w, k, model, tok, other in rows]

    def billed_days(self, start: datetime, end: datetime) -> dict[date, CostDay]:
        """Billed hours of ``[start, end)`` summed into ``CostDay``\\ s (whole days only are
        meaningful: the caller passes day bounds)."""
        c = billed_hours.c
        period = (c.hour - c.hour % DAY_S).label("period")
        query = (sa.select(period, c.workspace_id, c.model, sa.func.sum(c.token_units),
                           sa.func.sum(c.other_units), sa.func.sum(c.list_units))
                 .where(c.hour >= epoch(start), c.hour < epoch(end))
                 .group_by(period, c.workspace_id, c.model))
        days: dict[date, CostDay] = {}
        listed: dict[date, Decimal] = {}
        with self.store.reading() as conn:
            for day, ws, model, tok, other, lst in conn.execute(query):
                when = at_epoch(int(day)).date()
                entry = days.setdefault(when, CostDay(when))
                entry.by_workspace[ws] = (entry.by_workspace.get(ws, Decimal(0))
                                          + from_units(tok) + from_units(other))
                if model is not None:
                    entry.by_model[model] = (entry.by_model.get(model, Decimal(0))
                                             + from_units(tok))
                listed[when] = listed.get(when, Decimal(0)) + from_units(lst)
        return {when: CostDay(when, d.by_workspace, d.by_model, listed[when])
                for when, d in days.items()}

    def billed_totals(self, start: datetime, end: datetime) -> tuple[Decimal, Decimal]:
        """Billed and list totals of the billed hours in ``[start, end)``."""
        c = billed_hours.c
        query = (sa.select(sa.func.sum(c.token_units + c.other_units), sa.func.sum(c.list_units))
                 .where(c.hour >= epoch(start), c.hour < epoch(end)))
        with self.store.reading() as conn:
            billed, listed = conn.execute(query).one()
        return from_units(billed or 0), from_units(listed or 0)

    # --- Anthropic's spend limits ------------------------------------------------------------

    def provider_limits(self) -> list[ProviderLimit]:
        """The spend limits as last read, by id."""
        with self.store.reading() as conn:
            rows = conn.execute(sa.select(provider_limits)
                                .order_by(provider_limits.c.id)).all()
        return [ProviderLimit(r.id, r.scope, r.workspace_id,
                              Decimal(r.amount_cents) / 100 if r.amount_cents is not None
                              else None, r.period, bool(r.enabled), r.currency) for r in rows]

    def provider_limits_read(self) -> str | None:
        """How the last read of the spend limits went (``replace_provider_limits``'s
        ``read``), or ``None`` before the first."""
        return self.get_meta(PROVIDER_LIMITS)

    def replace_provider_limits(self, limits: Sequence[ProviderLimit], read: str) -> None:
        """Keep ``limits`` in place of those read before, and ``read`` (when, and how it
        went) as the named value ``provider_limits``, in one transaction."""
        with self.store.writing() as conn:
            conn.execute(provider_limits.delete())
            if limits:
                conn.execute(provider_limits.insert(), [
                    {"id": limit.id, "scope": limit.scope, "workspace_id": limit.workspace_id,
                     "amount_cents": int(limit.amount_usd * 100)
                     if limit.amount_usd is not None else None,
                     "period": limit.period, "enabled": limit.enabled,
                     "currency": limit.currency} for limit in limits])
            conn.execute(meta.delete().where(meta.c.name == PROVIDER_LIMITS))
            conn.execute(meta.insert().values(name=PROVIDER_LIMITS, value=read[:256]))

    # --- meta --------------------------------------------------------------------------------

    def get_meta(self, name: str) -> str | None:
        """A named value, or ``None``."""
        with self.store.reading() as conn:
            return conn.scalar(sa.select(meta.c.value).where(meta.c.name == name))

    def set_meta(self, name: str, value: str) -> None:
        """Set a named value."""
        with self.store.writing() as conn:
            conn.execute(meta.delete().where(meta.c.name == name))
            conn.execute(meta.insert().values(name=name, value=value))


PROVIDER_LIMITS = "provider_limits"
"""The named value saying when the spend limits were last read and how it went."""


def _usage_record(row: PricedUsage) -> dict[str, Any]:
    return {
        "hour": epoch(row.start), "workspace_id": row.workspace_id,
        "api_key_id": row.api_key_id, "model": row.model,
        "token_units": to_units(row.token_usd), "web_search_units": to_units(row.web_search_usd),
        "input_tokens": row.input_tokens, "cache_write_tokens": row.cache_write_tokens,
        "cache_read_tokens": row.cache_read_tokens, "output_tokens": row.output_tokens,
        "web_search_requests": row.web_search_requests,
    }


def _folded_keys(column: Any, api_keys: Collection[str] | None) -> Any:
    """``api_key_id``, with keys other than ``api_keys`` folded into ``None`` when given."""
    if api_keys is not None:
        column = sa.case((column.in_(sorted(api_keys)), column), else_=None)
    return column.label("api_key_id")


def _folded_workspaces(column: Any, workspaces: Collection[str] | None) -> Any:
    """``workspace_id``, with named workspaces other than ``workspaces`` folded into
    ``OTHER_WORKSPACES`` when given (the default workspace stays ``None``)."""
    if workspaces is not None:
        column = sa.case((column.is_(None), None),
                         (column.in_(sorted(workspaces)), column), else_=OTHER_WORKSPACES)
    return column.label("workspace_id")


def _digest(records: Sequence[dict[str, Any]]) -> str:
    """A digest of an hour's rows, whatever their order."""
    lines = sorted(repr(tuple(r.values())) for r in records)
    return hashlib.blake2b("\n".join(lines).encode(), digest_size=16).hexdigest()


def _billed_record(hour: BilledHour) -> dict[str, Any]:
    return {"hour": epoch(hour.start), "workspace_id": hour.workspace_id,
            "api_key_id": hour.api_key_id, "model": hour.model,
            "token_units": to_units(hour.token_usd), "other_units": to_units(hour.other_usd),
            "list_units": to_units(hour.list_usd)}


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
    if day.list_usd is not None:
        yield {"day": key, "grouping": "list", "name": None,
               "amount_units": to_units(day.list_usd)}
