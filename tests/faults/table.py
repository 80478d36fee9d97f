"""Rows of the fault suite's summary table: fault → invariant → result, with counts.

Each scenario records its rows with ``record``; they land as JSON in ``GUARD_FAULTS_OUT``
(default ``.faults/`` at the repository root), one file per suite, and ``report.py`` renders
them. Recording is a side output: the assertions are in the tests themselves.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table."""

    suite: str
    fault: str
    invariant: str
    ok: bool
    points: int = 0
    """SIGKILL points (or fault injections) this row covers."""
    repetitions: int = 1
    detail: str = ""


def out_dir() -> Path:
    """Where rows are written."""
    return Path(os.environ.get("GUARD_FAULTS_OUT") or ROOT / ".faults")


def record(*rows: Row) -> None:
    """Append ``rows`` to their suites' files."""
    with _LOCK:
        directory = out_dir()
        directory.mkdir(parents=True, exist_ok=True)
        for row in rows:
            path = directory / f"{row.suite}.jsonl"
            with path.open("a", encoding="utf-8") as file:
                file.write(json.dumps(asdict(row)) + "\n")


def load(directory: Path | None = None) -> list[Row]:
    """Every row recorded so far."""
    rows: list[Row] = []
    for path in sorted((directory or out_dir()).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(Row(**json.loads(line)))
    return rows


def reset(directory: Path | None = None) -> None:
    """Forget earlier runs' rows (``make faults`` starts clean)."""
    for path in (directory or out_dir()).glob("*.jsonl"):
        path.unlink()
