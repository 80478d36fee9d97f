"""Benchmark: an idle daemon's memory and CPU per steady-state tick.

The simulated organization (the demo's, seed 7) is served by ``python -m guard.sim`` in its own
process. This process runs the real tick as ``guard run`` would (store, fallback files, the
log as the notifier, every budget scope), a first tick and then ``--ticks`` more, one simulated
minute apart, and prints the CPU time of each steady tick and the process's peak RSS.

Goals (issue 6): peak RSS ≤ 80 MB, ≤ 0.2 s CPU per steady-state tick.

    python bench/daemon.py [--ticks 30] [--day 20]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx

from guard.admin.client import API_VERSION, AdminClient
from guard.fallback.sinks import FileSinks
from guard.fetch import Fetcher
from guard.model import Budget, Scope
from guard.notify.delivery import LogTransport
from guard.policy import PolicyConfig
from guard.pricing import PriceTable
from guard.records import Records
from guard.sim import SimOrg
from guard.store import Store
from guard.tick import Tick, TickConfig, run_tick

KEY = "sk-ant-admin-bench-daemon"
GOAL_RSS_MB = 80.0
GOAL_CPU_S = 0.2
MODELS = {"opus": "claude-opus-4-7", "sonnet": "claude-sonnet-4-6", "haiku": "claude-haiku-4-5"}


def budgets() -> tuple[Budget, ...]:
    org = SimOrg.generate(7)
    d = Decimal
    return (Budget("org", Scope.ORGANIZATION, None, d(30000), d(60000)),
            Budget("default", Scope.WORKSPACE, "default", d(3000), d(6000)),
            Budget("first-ws", Scope.WORKSPACE, org.workspaces[0].id, d(2000), d(4000)),
            Budget("first-key", Scope.API_KEY, org.api_keys[0].id, d(1000), d(2000)),
            Budget("opus", Scope.MODEL, "claude-opus", d(2000), d(4000)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--day", type=int, default=20)
    args = parser.parse_args()
    start = datetime(2026, 3, args.day, 14, 3, tzinfo=UTC)
    sim = subprocess.Popen([sys.executable, "-m", "guard.sim", "--seed", "7", "--now",
                            (start + timedelta(minutes=args.ticks + 1)).isoformat(),
                            "--admin-key", KEY], stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        url = sim.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            run(url, Path(tmp), start, args.ticks)
    finally:
        sim.terminate()
        sim.wait()


def run(url: str, tmp: Path, start: datetime, ticks: int) -> None:
    store = Store.connect(f"sqlite:///{tmp / 'state.db'}")
    with httpx.Client(base_url=url, timeout=60,
                      headers={"x-api-key": KEY, "anthropic-version": API_VERSION}) as http:
        tick = Tick(Fetcher(AdminClient(http), store, PriceTable.load()), Records(store),
                    FileSinks(tmp / "model.env", tmp / "fallback.json"), LogTransport(),
                    TickConfig(budgets(), PolicyConfig(), timedelta(minutes=5), MODELS))
        cpu, wall = time.process_time(), time.perf_counter()
        run_tick(tick, start)
        first = (time.process_time() - cpu, time.perf_counter() - wall)
        steady = []
        for i in range(1, ticks + 1):
            cpu = time.process_time()
            report = run_tick(tick, start + timedelta(minutes=i))
            steady.append(time.process_time() - cpu)
    store.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"simulated organization seed 7 (4 workspaces + default, 16 keys), 5 budgets, "
          f"day {start.day}")
    print(f"first tick (backfill):  {first[0]:.3f} s CPU, {first[1]:.3f} s wall")
    print(f"steady ticks ({ticks}):      median {statistics.median(steady):.3f} s CPU, "
          f"max {max(steady):.3f} s, {report.assessment.api_requests} Admin API requests "
          f"in the last")
    print(f"peak RSS:               {rss:.1f} MB")
    cpu_ok = "ok" if statistics.median(steady) <= GOAL_CPU_S else "MISSED"
    rss_ok = "ok" if rss <= GOAL_RSS_MB else "MISSED"
    print(f"goals: ≤ {GOAL_CPU_S} s CPU per steady tick: {cpu_ok}; "
          f"peak RSS ≤ {GOAL_RSS_MB:.0f} MB: {rss_ok}")


if __name__ == "__main__":
    main()
