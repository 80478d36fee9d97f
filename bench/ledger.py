"""Benchmark: first and steady-state ledger refresh for a large simulated organization.

The simulated Admin API (200 workspaces, 2,000 API keys, 6 models, hourly usage all month)
runs in its own process on loopback, so its memory and CPU are not counted. Each measured
phase runs in a fresh child process, so its peak RSS is its own:

- ``first``:   an empty store, a full refresh of the month as of day N;
- ``steady``:  the store the first refresh left, one minute later;
- ``daemon``:  both in one process, as the daemon would do them.

Each day is measured for both billing sources: ``legacy`` (usage report + daily cost
report) and ``analytics`` (billed hours from ``/analytics/cost`` through a 4-hour watermark,
the tail from the usage report).

Goals (issue 2): steady-state refresh ≤ 1 s of CPU, peak RSS ≤ 150 MB; (issue 10) a steady
refresh ≤ 3 Admin API requests.

    python bench/ledger.py [--day 28] [--source analytics] [--json bench/ledger.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

KEY = "sk-ant-admin-bench-fake"
GOAL_CPU_S = 1.0
GOAL_RSS_MB = 150.0
GOAL_REQUESTS = 3
SEED = 11
SOURCES = ("legacy", "analytics")


def measured_refresh(url: str, db: str, at: datetime, keys: list[str],
                     source: str) -> dict[str, Any]:
    """One refresh plus the ledger, with its CPU, wall time and Admin API requests."""
    # imported here so the parent stays light
    from guard.adapters.admin.client import AdminClient  # noqa: PLC0415
    from guard.adapters.store.caches import Caches  # noqa: PLC0415
    from guard.core.ledger import (  # noqa: PLC0415
        budget_api_keys,
        budget_workspaces,
        ledger_of,
    )
    from guard.core.model import Budget, Scope  # noqa: PLC0415
    from guard.core.pricing import PriceTable  # noqa: PLC0415
    from guard.entry import wiring  # noqa: PLC0415
    from guard.shell.sync import Fetcher  # noqa: PLC0415

    budgets = [Budget("org", Scope.ORGANIZATION, None, Decimal(1), Decimal(2)),
               Budget("default", Scope.WORKSPACE, "default", Decimal(1), Decimal(2)),
               Budget("opus", Scope.MODEL, "claude-opus", Decimal(1), Decimal(2))]
    budgets += [Budget(f"key-{k}", Scope.API_KEY, k, Decimal(1), Decimal(2)) for k in keys]
    with wiring.admin_http(url, KEY, timeout_s=120) as http, \
            wiring.opened_store(f"sqlite:///{db}") as store:
        fetcher = Fetcher(AdminClient(http), Caches(store), PriceTable.load(), source=source,
                          workspaces=budget_workspaces(budgets))
        cpu, wall = time.process_time(), time.perf_counter()
        snapshot = fetcher.refresh(at, budget_api_keys(budgets))
        ledger = ledger_of(budgets, snapshot)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    org = ledger.budgets[0]
    return {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "source": snapshot.source,
            "requests": snapshot.api_requests,
            "usage_rows": len(snapshot.usage) + len(snapshot.billed) + len(snapshot.tail),
            "org_usd": str(org.spend_usd.quantize(Decimal("0.01"))),
            "org_billed_usd": str(org.authoritative_usd.quantize(Decimal("0.01")))}


def child(phase: str, url: str, db: str, at: datetime, source: str) -> None:
    """Run one phase and print its figures as JSON (budgets on 20 of the keys)."""
    from guard.sim import SimOrg  # noqa: PLC0415  (ids only; the sim serves from its process)

    keys = [k.id for k in SimOrg.large(SEED).api_keys[:20]]
    runs = []
    if phase in ("first", "daemon"):
        runs.append(("first", measured_refresh(url, db, at, keys, source)))
    if phase in ("steady", "daemon"):
        runs.append(("steady", measured_refresh(url, db, at + timedelta(minutes=1), keys,
                                                source)))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"phase": phase, "runs": dict(runs), "peak_rss_mb": round(rss_mb, 1)}))


def run_phase(phase: str, url: str, db: str, at: datetime, source: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", phase, "--url", url, "--db", db,
                          "--at", at.isoformat(), "--source", source],
                         capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench_day(day: int, source: str) -> dict[str, Any]:
    at = datetime(2026, 11, day, 14, 3, tzinfo=UTC)
    sim = subprocess.Popen(
        [sys.executable, "-m", "guard.sim", "--seed", str(SEED), "--size", "large",
         "--now", (at + timedelta(minutes=1)).isoformat(), "--admin-key", KEY,
         "--discount", "0.07"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        url = sim.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            db = str(Path(tmp) / "state.db")
            first = run_phase("first", url, db, at, source)
            steady = run_phase("steady", url, db, at, source)
            db2 = str(Path(tmp) / "daemon.db")
            daemon = run_phase("daemon", url, db2, at, source)
    finally:
        sim.terminate()
        sim.wait()
    return {"day": day, "source": source, "first": first["runs"]["first"],
            "steady": steady["runs"]["steady"], "first_rss_mb": first["peak_rss_mb"],
            "steady_rss_mb": steady["peak_rss_mb"], "daemon_rss_mb": daemon["peak_rss_mb"]}


def report_lines(r: dict[str, Any]) -> list[str]:
    f, s, day, source = r["first"], r["steady"], r["day"], r["source"]
    cpu_ok = "ok" if s["cpu_s"] <= GOAL_CPU_S else "MISSED"
    peak = max(r["first_rss_mb"], r["steady_rss_mb"], r["daemon_rss_mb"])
    rss_ok = "ok" if peak <= GOAL_RSS_MB else "MISSED"
    requests_ok = "ok" if s["requests"] <= GOAL_REQUESTS else "MISSED"
    tag = f"day {day:2d} {source:<9}"
    return [
        f"{tag} first refresh : {f['cpu_s']:7.3f} s CPU  {f['wall_s']:7.3f} s wall  "
        f"{f['requests']:3d} requests  {f['usage_rows']:6d} rows  "
        f"peak RSS {r['first_rss_mb']:6.1f} MB  org ${f['org_usd']} "
        f"(billed ${f['org_billed_usd']})",
        f"{tag} steady refresh: {s['cpu_s']:7.3f} s CPU  {s['wall_s']:7.3f} s wall  "
        f"{s['requests']:3d} requests  {s['usage_rows']:6d} rows  "
        f"peak RSS {r['steady_rss_mb']:6.1f} MB  org ${s['org_usd']} "
        f"(billed ${s['org_billed_usd']})",
        f"{tag} daemon (both in one process): peak RSS {r['daemon_rss_mb']:6.1f} MB",
        f"{tag} goals: steady CPU ≤ {GOAL_CPU_S} s: {cpu_ok};  "
        f"peak RSS ≤ {GOAL_RSS_MB:.0f} MB: {rss_ok};  steady ≤ {GOAL_REQUESTS} requests: "
        f"{requests_ok}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", type=int, action="append", help="day(s) of November 2026")
    parser.add_argument("--source", action="append", choices=SOURCES,
                        help="billing source(s) to measure (default: both)")
    parser.add_argument("--json", type=Path, default=Path("bench/ledger.json"),
                        help="where to write the figures")
    parser.add_argument("--child")
    parser.add_argument("--url")
    parser.add_argument("--db")
    parser.add_argument("--at")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.db, datetime.fromisoformat(args.at),
              (args.source or ["legacy"])[0])
        return
    print(f"large simulated organization (seed {SEED}): 200 workspaces, 2,000 API keys; "
          "budgets on the organization, a workspace, a model and 20 keys")
    results = []
    for day in args.day or [2, 28]:
        for source in args.source or SOURCES:
            result = bench_day(day, source)
            results.append(result)
            for line in report_lines(result):
                print(line, flush=True)
    args.json.write_text(json.dumps({"goals": {"steady_cpu_s": GOAL_CPU_S,
                                               "peak_rss_mb": GOAL_RSS_MB,
                                               "steady_requests": GOAL_REQUESTS},
                                     "results": results}, indent=2) + "\n")
    print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
