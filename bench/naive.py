"""A naive poller, the guard's side-by-side comparison (issue 13).

What a competent person's cron script does to get the answer the guard gives (month-to-date
spend of the organization, of each workspace, each API key and each model), keeping nothing
between runs: each tick it re-reads the month so far from the usage report
(``GET /v1/organizations/usage_report/messages``, 1-hour buckets, 168 buckets a page,
following ``next_page``), grouped by the workspace, the key and every dimension that changes
the price (the guard's own ``USAGE_GROUP_BY``, so the fast-mode beta header goes with it), and
prices each row with the guard's own ``PriceTable`` on its day (the cards are effective-dated).
The last bucket is the current hour so far, as the report serves it.

Its figures are the list-price estimate of usage, which is what the guard's estimate is before
the bill (analytics or cost report) replaces it; they are not billed amounts.

The function another bench imports (``bench/scale.py`` prints the guard/naive CPU ratios)::

    naive_tick(base_url: str, key: str, at: datetime) -> dict
        # one tick as of ``at`` (aware UTC), run in a child process of its own:
        {"requests": int,       # Admin API requests the tick made
         "cpu_s": float,        # the child's CPU for the tick (fetch, parse, price, sum),
                                #   its start-up and imports not counted
         "process_cpu_s": float,  # the child's whole CPU, start-up and imports included
         "wall_s": float,       # wall time of the tick in the child
         "total_cents": int,    # the organization's month-to-date spend, in cents
         "workspaces": int, "api_keys": int, "models": int,  # scopes it summed
         "rows": int}           # usage rows it priced

``main`` starts a simulator (``bench/scale.py``'s ``Sim``, its clock pinned to each instant)
and prints ``naive_tick`` on day 2 and day 28 of October 2026, at 14:04 UTC::

    python bench/naive.py [--size 100x2000] [--day 2 --day 28]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

USAGE_PATH = "/v1/organizations/usage_report/messages"
HOURS_PER_PAGE = 168  # the report's maximum for 1-hour buckets
CENT = Decimal("0.01")


def naive_tick(base_url: str, key: str, at: datetime) -> dict[str, Any]:
    """One naive tick as of ``at``, in a child process; its figures (see the module)."""
    done = subprocess.run([sys.executable, __file__, "--child", base_url, key, at.isoformat()],
                          capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"naive tick failed:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


# --- the child: what the cron script does ------------------------------------------------------

def month_to_date(base_url: str, key: str, at: datetime) -> dict[str, Any]:
    """Read the month up to ``at`` and sum it per scope (USD as Decimal)."""
    import httpx  # noqa: PLC0415  (the child's own imports, outside the measured tick)

    from guard.adapters.admin.client import FAST_MODE_BETA, USAGE_GROUP_BY  # noqa: PLC0415
    from guard.core.model import UsageRow  # noqa: PLC0415
    from guard.core.pricing import PriceTable  # noqa: PLC0415

    prices = PriceTable.load()
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    params: list[tuple[str, str]] = [
        ("starting_at", start.isoformat().replace("+00:00", "Z")),
        ("ending_at", end.isoformat().replace("+00:00", "Z")),
        ("bucket_width", "1h"), ("limit", str(HOURS_PER_PAGE)),
        *[("group_by[]", g) for g in USAGE_GROUP_BY]]
    org = Decimal(0)
    scopes: dict[str, dict[str | None, Decimal]] = {
        "workspace": defaultdict(Decimal), "api_key": defaultdict(Decimal),
        "model": defaultdict(Decimal)}
    requests = rows = 0
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01",
               "anthropic-beta": FAST_MODE_BETA}
    with httpx.Client(base_url=base_url, headers=headers, timeout=300) as http:
        page: str | None = None
        while True:
            response = http.get(USAGE_PATH, params=params + ([("page", page)] if page else []))
            response.raise_for_status()
            requests += 1
            body = response.json()
            for bucket in body["data"]:
                day = datetime.fromisoformat(bucket["starting_at"]).date()
                for r in bucket["results"]:
                    row = UsageRow(
                        r["uncached_input_tokens"],
                        r["cache_creation"]["ephemeral_5m_input_tokens"],
                        r["cache_creation"]["ephemeral_1h_input_tokens"],
                        r["cache_read_input_tokens"], r["output_tokens"],
                        r["server_tool_use"]["web_search_requests"], r.get("model"),
                        r.get("workspace_id"), r.get("api_key_id"), r.get("service_tier"),
                        r.get("context_window"), r.get("inference_geo"), r.get("speed"))
                    tokens, search = prices.price(row, day)
                    rows += 1
                    org += tokens + search
                    scopes["workspace"][row.workspace_id or "default"] += tokens + search
                    scopes["api_key"][row.api_key_id] += tokens + search
                    scopes["model"][row.model] += tokens  # model budgets count tokens only
            page = body.get("next_page")
            if not body.get("has_more") or not page:
                break
    return {"requests": requests, "rows": rows, "org_usd": org, "scopes": scopes}


def child(base_url: str, key: str, at: datetime) -> None:
    """Import what the script needs, then time one tick of it; print its figures as JSON."""
    import httpx  # noqa: F401, PLC0415  (imports are start-up, not the tick)

    import guard.core.pricing  # noqa: F401, PLC0415

    cpu, wall = time.process_time(), time.perf_counter()
    found = month_to_date(base_url, key, at)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    usage = resource.getrusage(resource.RUSAGE_SELF)
    scopes = found["scopes"]
    print(json.dumps({
        "requests": found["requests"], "cpu_s": round(cpu, 4),
        "process_cpu_s": round(usage.ru_utime + usage.ru_stime, 4), "wall_s": round(wall, 4),
        "total_cents": int((found["org_usd"] * 100).quantize(Decimal(1), ROUND_HALF_EVEN)),
        "workspaces": len(scopes["workspace"]), "api_keys": len(scopes["api_key"]),
        "models": len(scopes["model"]), "rows": found["rows"]}))


# --- main: the figures on days 2 and 28 ---------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="100x2000")
    parser.add_argument("--day", type=int, action="append")
    parser.add_argument("--child", nargs=3, metavar=("URL", "KEY", "AT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], datetime.fromisoformat(args.child[2]))
        return
    from scale import KEY, MONTH, Sim  # noqa: PLC0415  (bench/scale.py, beside this file)

    print(f"naive poller: the month re-read and re-priced each tick, size {args.size}")
    for day in args.day or [2, 28]:
        at = datetime(*MONTH, day, 14, 4, tzinfo=UTC)
        sim = Sim(args.size, at)
        try:
            f = naive_tick(sim.url, KEY, at)
        finally:
            sim.close()
        print(f"day {day:2d} ({at:%Y-%m-%d %H:%M}Z): {f['requests']} requests, "
              f"{f['rows']} rows, {f['cpu_s']:.3f} s CPU ({f['process_cpu_s']:.3f} s with "
              f"start-up), {f['wall_s']:.3f} s wall; organization ${f['total_cents'] / 100:,.2f}"
              f" over {f['workspaces']} workspaces, {f['api_keys']} keys, {f['models']} models",
              flush=True)


if __name__ == "__main__":
    main()
