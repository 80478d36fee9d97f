"""An organization's own daily cost history: read from a file, or exported from the Admin API.

Two formats, chosen by the file's suffix; one row per complete UTC day, amounts in US dollars:

CSV (``.csv``), a header then ISO dates and decimal dollars::

    date,amount_usd
    2026-01-01,123.45
    2026-01-02,98.7

JSON (``.json``), amounts as strings or numbers; both are read as exact decimals::

    {"days": [{"date": "2026-01-01", "amount_usd": "123.45"},
              {"date": "2026-01-02", "amount_usd": 98.7}]}

A day may appear once; amounts must be finite and not negative. A day that is absent is
unknown, not zero: months with a missing day are not replayed. Errors raise ``ConfigError``
naming the line (CSV, the header is line 1) or the index (JSON) and the field.

``export_history`` writes the CSV format from the Admin API cost report: daily buckets, no
grouping, every page followed, cents converted to dollars.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from guard.adapters.admin.client import AdminClient
from guard.core.period import day_start
from guard.errors import ConfigError

HEADER = ("date", "amount_usd")
_CENTS = Decimal(100)


class _Bad(Exception):
    """A problem in the file; the caller turns it into a ``ConfigError``."""


def load_history(path: Path, label: str = "history") -> dict[date, Decimal]:
    """Daily spend from a ``.csv`` or ``.json`` file; problems raise ``ConfigError(label)``."""
    try:
        return _parse(path.read_text(encoding="utf-8"), path.suffix.lower())
    except OSError as exc:
        raise ConfigError([(label, f"{path}: cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([(label, f"{path}: not UTF-8 text")]) from None
    except _Bad as exc:
        raise ConfigError([(label, f"{path}: {exc}")]) from None


def _parse(text: str, suffix: str) -> dict[date, Decimal]:
    if suffix == ".csv":
        return _parse_csv(text)
    if suffix == ".json":
        return _parse_json(text)
    raise _Bad("expected a .csv or .json file")


def _parse_csv(text: str) -> dict[date, Decimal]:
    """Daily spend from the CSV format."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(cell.strip() for cell in header) != HEADER:
        raise _Bad(f"line 1: the header must be {','.join(HEADER)}")
    rows = ((reader.line_num, row) for row in reader if row)
    return _collect((f"line {n}", _cells(row, f"line {n}")) for n, row in rows)


def _cells(row: list[str], where: str) -> tuple[object, object]:
    if len(row) != 2:
        raise _Bad(f"{where}: expected 2 fields, found {len(row)}")
    return row[0].strip(), row[1].strip()


def _parse_json(text: str) -> dict[date, Decimal]:
    """Daily spend from the JSON format."""
    try:
        payload = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise _Bad(f"not JSON: {exc}") from None
    days = payload.get("days") if isinstance(payload, dict) else None
    if not isinstance(days, list):
        raise _Bad("`days` must be a list of {date, amount_usd} objects")
    return _collect((f"days[{i}]", _fields(item, f"days[{i}]")) for i, item in enumerate(days))


def _fields(item: object, where: str) -> tuple[object, object]:
    if not isinstance(item, dict):
        raise _Bad(f"{where}: not an object")
    for name in HEADER:
        if name not in item:
            raise _Bad(f"{where}: `{name}` is missing")
    return item["date"], item["amount_usd"]


def _collect(rows: Iterable[tuple[str, tuple[object, object]]]) -> dict[date, Decimal]:
    series: dict[date, Decimal] = {}
    for where, (raw_day, raw_amount) in rows:
        day = _day(raw_day, where)
        if day in series:
            raise _Bad(f"{where}, `date`: {day} appears twice")
        series[day] = _amount(raw_amount, where)
    return series


def _day(raw: object, where: str) -> date:
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    raise _Bad(f"{where}, `date`: not an ISO date (YYYY-MM-DD): {str(raw)[:40]!r}")


def _amount(raw: object, where: str) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal):
        raise _Bad(f"{where}, `amount_usd`: not a decimal: {raw!r}")
    try:
        amount = Decimal(raw)
    except InvalidOperation:
        raise _Bad(f"{where}, `amount_usd`: not a decimal: {str(raw)[:40]!r}") from None
    if not amount.is_finite() or amount < 0:
        raise _Bad(f"{where}, `amount_usd`: must be a finite, non-negative amount: {raw}")
    return amount


def history_csv(series: Mapping[date, Decimal]) -> str:
    """The CSV format, days in order."""
    lines = [",".join(HEADER)] + [f"{day.isoformat()},{series[day]}" for day in sorted(series)]
    return "\n".join(lines) + "\n"


def fetch_history(client: AdminClient, start: date, end: date) -> dict[date, Decimal]:
    """Daily cost in dollars for the days in ``[start, end)``, every report page followed."""
    series: dict[date, Decimal] = {}
    for page in client.cost_pages(day_start(start), day_start(end)):
        for bucket in page:
            cents = sum((row.amount_cents for row in bucket.results), Decimal(0))
            day = bucket.starting_at.date()
            series[day] = series.get(day, Decimal(0)) + cents / _CENTS
    return series


def export_history(client: AdminClient, start: date, end: date, path: Path,
                   label: str = "export") -> int:
    """Write the days in ``[start, end)`` to ``path`` as CSV; returns how many were written."""
    series = fetch_history(client, start, end)
    try:
        path.write_text(history_csv(series), encoding="utf-8")
    except OSError as exc:
        raise ConfigError([(label, f"{path}: cannot write: {exc.strerror or exc}")]) from None
    return len(series)
