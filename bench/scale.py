"""Benchmark: the cost of a tick as the organization, the month and the budgets grow (issue 13).

The simulated Admin API (``python -m guard.sim --size WxK``) runs in its own process on
loopback, so its CPU and memory are not counted. Each measured case runs in a fresh child
process that builds the guard the way ``guard run`` does (``wiring.build``) and ticks it with
``run_tick`` (fetch → decide → act → record, notifications to nowhere, fallback files in a
temporary directory), so a steady tick keeps what the previous ticks read, as the daemon does.
CPU is the child's ``getrusage`` time around each tick; peak RSS is its ``ru_maxrss``.

Cases (``--case``, repeatable; default all):

- ``steady``: a first start (an empty store: the month and eight weeks of history
  backfilled) at 14:03, then ticks a minute apart in a new process, on day 2 and day 28
  (three rounds, the days taking turns, each over a copy of its day's store); the
  day-28/day-2 ratio of steady CPU;
- ``midnight``: a first start at 22:00, then 240 one-minute ticks across the midnight in one
  process: the requests of every tick (the most, and the ticks over the goal);
- ``budgets``: steady ticks on day 28 with 1, 100 and 1,000 budgets over one backfilled
  store (three rounds, the counts taking turns): CPU against one budget's.

Each steady case also runs the naive poller (``bench/naive.py``: the month re-read and
re-priced each tick) against the same simulator at the last tick's instant, so the
guard/naive CPU ratio comes from one run. The daemon's memory over 1,000 ticks is
``bench/daemon.py --rss``.

    python bench/scale.py [--size 1000x20000] [--case steady] [--json bench/scale.json]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from naive import naive_tick  # bench/naive.py, beside this script

KEY = "sk-ant-admin-bench-scale"
SEED = 11
MONTH = (2026, 10)
"""October 2026: the 2nd is a Friday and the 28th a Wednesday, two weekdays alike in traffic,
so day 28 against day 2 shows what the month adds, not what a weekend takes away."""
GOALS = {"steady_cpu_s": 0.5, "steady_rss_mb": 150.0, "day28_over_day2": 1.15,
         "steady_requests": 2, "first_start_wall_s": 30.0, "budgets_1000_over_1": 2.0,
         "idle_rss_mb": 80.0, "idle_rss_growth_mb": 1.0, "naive_ratio_day2": 0.5,
         "naive_ratio_day28": 0.1}


# --- the child: one case in its own process ------------------------------------------------------

def config_text(tmp: Path, url: str, budgets: list[str]) -> str:
    return (f'[anthropic]\nadmin_api_key = "{KEY}"\nbase_url = "{url}"\n'
            "tick_deadline_s = 900\ntimeout_s = 300\n"
            f'[state]\nurl = "sqlite:///{tmp / "state.db"}"\n'
            f'[fallback]\nenv_file = "{tmp / "model.env"}"\n'
            f'state_file = "{tmp / "fallback.json"}"\n' + "".join(budgets))


def budget_blocks(size: str, count: int) -> list[str]:
    """``count`` budgets: the organization, the default workspace, a model family, then
    workspaces and keys in turn."""
    from guard.sim import SimOrg  # noqa: PLC0415  (ids only)

    org = SimOrg.sized(SEED, size)
    limits = "soft_limit_usd = 100000000\nhard_limit_usd = 200000000\n"
    blocks = [f'[[budgets]]\nname = "org"\nscope = "organization"\n{limits}',
              f'[[budgets]]\nname = "default"\nscope = "workspace"\nmatch = "default"\n{limits}',
              f'[[budgets]]\nname = "opus"\nscope = "model"\nmatch = "claude-opus"\n{limits}']
    for i in range(max(0, count - len(blocks))):
        if i % 2 == 0 and i // 2 < len(org.workspaces):
            ws = org.workspaces[i // 2].id
            blocks.append(f'[[budgets]]\nname = "ws-{i}"\nscope = "workspace"\n'
                          f'match = "{ws}"\n{limits}')
        else:
            key = org.api_keys[i // 2 % len(org.api_keys)].id
            blocks.append(f'[[budgets]]\nname = "key-{i}"\nscope = "api_key"\n'
                          f'match = "{key}"\n{limits}')
    return blocks[:count]


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ticks(config: Path, moments: list[datetime]) -> list[dict[str, Any]]:
    """Tick a daemon-built guard at each moment; CPU, wall, requests and RSS of each."""
    from guard.config.loading import load_settings  # noqa: PLC0415
    from guard.entry import wiring  # noqa: PLC0415
    from guard.entry.heap import Heap  # noqa: PLC0415
    from guard.shell.tick import run_tick  # noqa: PLC0415

    settings = load_settings(config)
    figures = []
    heap = Heap()
    profile = os.environ.get("BENCH_PROFILE")
    with wiring.opened(settings) as guard:
        # one process and no heartbeat thread: the lease must outlast the first start
        guard.tick.config = replace(guard.tick.config, lease_ttl=timedelta(hours=1))
        asked: list[str] = []
        guard.admin.http.event_hooks["request"].append(
            lambda request: asked.append(_asked(request.url)))
        for i, at in enumerate(moments):
            asked.clear()
            profiler = cProfile.Profile() if profile and i == len(moments) - 1 else None
            if profiler is not None:
                profiler.enable()
            cpu, wall = cpu_now(), time.perf_counter()
            report = run_tick(guard.tick, at)
            heap.settle()  # as the daemon does after each tick, counted in the tick
            cpu, wall = cpu_now() - cpu, time.perf_counter() - wall
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(profile))
            body = report.as_json()
            figures.append({"at": at.isoformat(), "cpu_s": round(cpu, 4),
                            "wall_s": round(wall, 4), "requests": body["api_requests"],
                            "org_usd": body["budgets"][0]["spend_usd"] if body["budgets"]
                            else None,
                            "rss_mb": round(resource.getrusage(
                                resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                            "error": body.get("upstream_error"),
                            "asked": list(asked) if len(asked) > 2 else []})
        guard.tick.release()
    return figures


def _asked(url: Any) -> str:
    """A request in a few words: the endpoint, the bucket width and the range."""
    query = dict(url.params.multi_items())
    return (f"{url.path.rsplit('/', 1)[-1]} {query.get('bucket_width', '')} "
            f"{query.get('starting_at', '')[:16]}..{query.get('ending_at', '')[:16]}"
            f"{' next page' if 'page' in query else ''}")


def child(args: argparse.Namespace) -> None:
    moments = [datetime.fromisoformat(m) for m in args.moments.split(",")]
    result = ticks(Path(args.config), moments)
    print(json.dumps({"ticks": result,
                      "peak_rss_mb": round(resource.getrusage(
                          resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


# --- the parent ---------------------------------------------------------------------------------

class Sim:
    """The simulated Admin API in its own process, its clock at ``now``."""

    def __init__(self, size: str, now: datetime) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "guard.sim", "--seed", str(SEED), "--size", size,
             "--now", now.isoformat(), "--admin-key", KEY, "--discount", "0.07"],
            stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()


def run_child(tmp: Path, url: str, budgets: list[str], moments: list[datetime]) -> dict[str, Any]:
    config = tmp / "guard.toml"
    config.write_text(config_text(tmp, url, budgets))
    out = subprocess.run([sys.executable, __file__, "--child", "--config", str(config),
                          "--moments", ",".join(m.isoformat() for m in moments)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"child failed:\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def first_then_ticks(sim: Sim, size: str, budgets: int, first: datetime,
                     moments: list[datetime]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A first start at ``first`` in a process of its own, then ticks at ``moments`` in
    another (as after a restart), over one store: both children's figures."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        blocks = budget_blocks(size, budgets)
        return (run_child(tmp, sim.url, blocks, [first]),
                run_child(tmp, sim.url, blocks, moments))


def steady_cases(size: str, days: list[int], budgets: int, steady: int,
                 repeat: int) -> list[dict[str, Any]]:
    """For each day, a first start at 14:03 (a simulator of its own, its clock a minute past
    the last tick), then ``repeat`` rounds in which each day in turn gets ``steady`` ticks a
    minute apart in a new process over a copy of its backfilled store (the first tick of
    each reads the store cold and is not counted).

    The days take turns so a slow spell of this shared machine, which inflates every
    process's CPU time for minutes at a time, falls on both days alike, not on one day's
    ticks; each day's steady CPU is the median of all its rounds' ticks."""
    blocks = budget_blocks(size, budgets)
    sims: dict[int, Sim] = {}
    try:
        with tempfile.TemporaryDirectory() as name:
            base = Path(name)
            moments, starts = {}, {}
            for day in days:
                first = datetime(*MONTH, day, 14, 3, tzinfo=UTC)
                moments[day] = [first + timedelta(minutes=i) for i in range(1, steady + 2)]
                sims[day] = Sim(size, moments[day][-1] + timedelta(minutes=1))
                (base / f"day{day}").mkdir()
                starts[day] = run_child(base / f"day{day}", sims[day].url, blocks, [first])
            runs: dict[int, list[dict[str, Any]]] = {day: [] for day in days}
            for round_ in range(repeat):
                for day in days:
                    copy = base / f"day{day}-{round_}"
                    shutil.copytree(base / f"day{day}", copy)
                    runs[day].append(run_child(copy, sims[day].url, blocks, moments[day]))
            return [_steady_result(size, day, budgets, starts[day], runs=runs[day],
                                   url=sims[day].url, moments=moments[day]) for day in days]
    finally:
        for sim in sims.values():
            sim.close()


def _steady_result(size: str, day: int, budgets: int, start: dict[str, Any], *,
                   runs: list[dict[str, Any]], url: str,
                   moments: list[datetime]) -> dict[str, Any]:
    naive = naive_tick(url, KEY, moments[-1])
    fresh = window_rows(url, moments[1] - timedelta(minutes=11), moments[-1])
    warm = [t for run in runs for t in run["ticks"][1:]]
    cpu = statistics.median(t["cpu_s"] for t in warm)
    return {"size": size, "day": day, "budgets": budgets,
            "first": start["ticks"][0], "first_rss_mb": start["peak_rss_mb"],
            "cold": runs[0]["ticks"][0], "rounds": len(runs),
            "round_medians_cpu_s": [statistics.median(t["cpu_s"] for t in run["ticks"][1:])
                                    for run in runs],
            "steady_cpu_s": cpu,
            "steady_wall_s": statistics.median(t["wall_s"] for t in warm),
            "steady_requests_max": max(t["requests"] for t in warm),
            "steady_rss_mb": max(run["peak_rss_mb"] for run in runs), "naive": naive,
            "fresh_rows_per_tick": round(fresh / len(runs[0]["ticks"][1:])),
            "guard_over_naive_cpu": round(cpu / naive["cpu_s"], 4),
            "ticks": warm}


def window_rows(url: str, start: datetime, end: datetime) -> int:
    """Usage rows the simulator holds per minute in ``[start, end)``: the data the measured
    ticks' minute windows were made of (read here, outside the measured process)."""
    from guard.entry import wiring  # noqa: PLC0415

    client = wiring.admin_at(url, KEY)
    try:
        return sum(len(b.results) for page in client.usage_pages(start, end, "1m")
                   for b in page)
    finally:
        client.http.close()


def report_steady(r: dict[str, Any]) -> str:
    f = r["first"]
    return (f"{r['size']:>10} day {r['day']:2d} {r['budgets']:5d} budgets: first start "
            f"{f['wall_s']:6.1f} s wall {f['cpu_s']:6.1f} s CPU {f['requests']:4d} req "
            f"{r['first_rss_mb']:6.1f} MB | cold tick {r['cold']['cpu_s']:6.3f} s | steady "
            f"{r['steady_cpu_s']:6.3f} s CPU {r['steady_wall_s']:6.3f} s wall "
            f"≤{r['steady_requests_max']} req, peak RSS {r['steady_rss_mb']:6.1f} MB\n"
            f"{'':>10} naive poller (the month re-read and re-priced): {r['naive']['cpu_s']:.3f} s "
            f"CPU, {r['naive']['requests']} req, {r['naive']['wall_s']:.1f} s wall → guard/naive "
            f"CPU {r['guard_over_naive_cpu']:.3f}")


def midnight_case(size: str, day: int, budgets: int, count: int = 240) -> dict[str, Any]:
    """A first start at 22:00 on ``day``, then ``count`` ticks a minute apart (in a new
    process, as after a restart) across the midnight: the requests of each."""
    first = datetime(*MONTH, day, 22, 0, tzinfo=UTC)
    moments = [first + timedelta(minutes=i) for i in range(1, count + 1)]
    sim = Sim(size, moments[-1] + timedelta(minutes=1))
    try:
        start, run = first_then_ticks(sim, size, budgets, first, moments)
    finally:
        sim.close()
    ticks_ = run["ticks"]
    over = [t for t in ticks_ if t["requests"] > GOALS["steady_requests"]]
    return {"size": size, "day": day, "budgets": budgets, "first": start["ticks"][0],
            "ticks_count": len(ticks_), "requests_max": max(t["requests"] for t in ticks_),
            "requests_total": sum(t["requests"] for t in ticks_),
            "over_goal": [(t["at"], t["requests"], t["asked"]) for t in over],
            "cpu_median_s": statistics.median(t["cpu_s"] for t in ticks_),
            "cpu_max_s": max(t["cpu_s"] for t in ticks_),
            "errors": [t["error"] for t in ticks_ if t["error"]],
            "peak_rss_mb": run["peak_rss_mb"]}


def report_midnight(r: dict[str, Any]) -> str:
    return (f"{r['size']:>10} midnight {r['day']:2d}→{r['day'] + 1:2d}: {r['ticks_count']} ticks, "
            f"≤{r['requests_max']} req a tick ({r['requests_total']} in all; "
            f"{len(r['over_goal'])} over {GOALS['steady_requests']}), CPU median "
            f"{r['cpu_median_s']:.3f} s, max {r['cpu_max_s']:.3f} s, peak RSS "
            f"{r['peak_rss_mb']:.1f} MB")


def budgets_case(size: str, day: int, counts: list[int], steady: int,
                 rounds: int) -> list[dict[str, Any]]:
    """One backfilled store on ``day``, then ``rounds`` rounds in which each count of budgets
    in turn gets ``steady`` ticks in a process of its own over a copy of it (the store holds
    usage, not budgets); each count's CPU is the median of all its rounds' ticks, the counts
    taking turns as the days do in ``steady_cases``."""
    first = datetime(*MONTH, day, 14, 3, tzinfo=UTC)
    moments = [first + timedelta(minutes=i) for i in range(1, steady + 2)]
    sim = Sim(size, moments[-1] + timedelta(minutes=1))
    runs: dict[int, list[dict[str, Any]]] = {count: [] for count in counts}
    try:
        with tempfile.TemporaryDirectory() as name:
            base = Path(name) / "base"
            base.mkdir()
            run_child(base, sim.url, budget_blocks(size, 23), [first])
            for round_ in range(rounds):
                for count in counts:
                    tmp = Path(name) / f"b{count}-{round_}"
                    shutil.copytree(base, tmp)
                    runs[count].append(run_child(tmp, sim.url, budget_blocks(size, count),
                                                 moments))
    finally:
        sim.close()
    results = []
    for count in counts:
        warm = [t for run in runs[count] for t in run["ticks"][1:]]
        results.append({"size": size, "day": day, "budgets": count, "rounds": rounds,
                        "round_medians_cpu_s": [
                            statistics.median(t["cpu_s"] for t in run["ticks"][1:])
                            for run in runs[count]],
                        "steady_cpu_s": statistics.median(t["cpu_s"] for t in warm),
                        "steady_requests_max": max(t["requests"] for t in warm),
                        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs[count])})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1000x20000")
    parser.add_argument("--day", type=int, action="append")
    parser.add_argument("--budgets", type=int, default=23)
    parser.add_argument("--steady", type=int, default=5, help="steady ticks to measure")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of steady ticks, the days taking turns")
    parser.add_argument("--case", action="append",
                        choices=["steady", "midnight", "budgets"])
    parser.add_argument("--json", type=Path, default=Path("bench/scale.json"))
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--config")
    parser.add_argument("--moments")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    cases = args.case or ["steady", "midnight", "budgets"]
    out: dict[str, Any] = {"goals": GOALS}
    if "steady" in cases:
        results = steady_cases(args.size, args.day or [2, 28], args.budgets, args.steady,
                               args.rounds)
        for result in results:
            print(report_steady(result), flush=True)
        out["results"] = results
        by_day = {r["day"]: r for r in results}
        if 2 in by_day and 28 in by_day:
            late, early = by_day[28], by_day[2]
            out["day28_over_day2"] = round(late["steady_cpu_s"] / early["steady_cpu_s"], 3)
            volume = late["fresh_rows_per_tick"] / early["fresh_rows_per_tick"]
            out["fresh_rows_day28_over_day2"] = round(volume, 3)
            out["day28_over_day2_per_fresh_row"] = round(out["day28_over_day2"] / volume, 3)
            print(f"steady CPU day 28 / day 2: {out['day28_over_day2']:.2f}× "
                  f"(goal ≤ {GOALS['day28_over_day2']}×); the simulator's traffic in those "
                  f"minutes: {volume:.2f}× ({late['fresh_rows_per_tick']} against "
                  f"{early['fresh_rows_per_tick']} rows a tick), so per fresh row "
                  f"{out['day28_over_day2_per_fresh_row']:.2f}×", flush=True)
    if "midnight" in cases:
        out["midnight"] = midnight_case(args.size, 28, args.budgets)
        print(report_midnight(out["midnight"]), flush=True)
    if "budgets" in cases:
        out["budgets"] = budgets_case(args.size, 28, [1, 100, 1000], args.steady,
                                      args.rounds)
        one = out["budgets"][0]["steady_cpu_s"]
        for r in out["budgets"]:
            print(f"{r['size']:>10} day 28 {r['budgets']:5d} budgets: steady "
                  f"{r['steady_cpu_s']:.3f} s CPU ({r['steady_cpu_s'] / one:.2f}× one budget), "
                  f"≤{r['steady_requests_max']} req, peak RSS {r['peak_rss_mb']:.1f} MB",
                  flush=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
