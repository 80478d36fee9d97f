"""Print the fault suite's summary table (Markdown) from the rows the last run recorded.

    python tests/faults/report.py [--json out.json]

Exits 1 if any row failed, 2 if there are no rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from table import Row, load


def render(rows: list[Row]) -> str:
    """The table, a line per row, then the totals."""
    lines = ["| suite | fault | invariant | result | points | reps | detail |",
             "|---|---|---|---|---:|---:|---|"]
    for r in rows:
        result = "pass" if r.ok else "**FAIL**"
        lines.append(f"| {r.suite} | {r.fault} | {r.invariant} | {result} | {r.points} | "
                     f"{r.repetitions} | {r.detail} |")
    failed = sum(not r.ok for r in rows)
    kills = sum(r.points for r in rows if r.suite == "sigkill")
    lines.append("")
    lines.append(f"{len(rows)} rows, {failed} failed; SIGKILL points: {kills}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, help="also write the rows as one JSON array")
    args = parser.parse_args()
    rows = load()
    if not rows:
        print("no fault rows recorded: run `make faults` first", file=sys.stderr)
        return 2
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 1 if any(not r.ok for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
