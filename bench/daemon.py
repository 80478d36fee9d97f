"""Benchmark: the real ``guard run`` idling on the simulated organization.

The simulated Admin API (``python -m guard.sim``, seed 7: 4 workspaces + default, 16 keys)
runs in its own process. ``guard run`` runs as it would in production: HTTP server, scheduler,
state store, fallback files, notifications to the log, five budgets (organization, default
workspace, a workspace, a key, a model family), a tick every 10 s. After the first tick has
backfilled the month, the CPU time the process uses per steady tick is read from
``/proc/PID/stat``, and its peak RSS from ``VmHWM`` in ``/proc/PID/status``.

Goals (issue 6): peak RSS ≤ 80 MB, ≤ 0.2 s CPU per steady-state tick.

``--rss N`` runs N ticks back to back instead (issue 13: ≤ 80 MB after 1,000 ticks, the last
100 within 1 MB). The child is still ``guard run`` (``guard.entry.launch.main``), with the
HTTP server, heartbeat and observers, but its scheduler's trigger fires every ``--interval``
seconds (without jitter), and its ``Daemon`` is a bench subclass that reads ``VmRSS`` from
``/proc/self/status`` after every tick, then stops itself with SIGTERM after the Nth.
``--tracemalloc`` also writes the allocations that grew between tick 100 and the last.
Figures go to ``bench/daemon.json``.

    python bench/daemon.py [--ticks 5]
    python bench/daemon.py --rss 1000 [--interval 0.3] [--tracemalloc]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KEY = "sk-ant-admin-bench-daemon"
GOAL_RSS_MB = 80.0
GOAL_CPU_S = 0.2
GOAL_GROWTH_MB = 1.0
INTERVAL_S = 10
JSON = Path(__file__).with_name("daemon.json")


def config(tmp: Path, url: str) -> Path:
    from guard.sim import SimOrg  # noqa: PLC0415  (the parent's only: the child is guard run)

    org = SimOrg.generate(7)
    path = tmp / "guard.toml"
    path.write_text(
        f'[anthropic]\nadmin_api_key = "{KEY}"\nbase_url = "{url}"\n'
        f"poll_interval_s = {INTERVAL_S}\n"
        f'[state]\nurl = "sqlite:///{tmp / "state.db"}"\n'
        f'[fallback]\nenv_file = "{tmp / "model.env"}"\nstate_file = "{tmp / "fallback.json"}"\n'
        '[http]\nlisten = "127.0.0.1:0"\n'
        '[[budgets]]\nname = "org"\nscope = "organization"\n'
        "soft_limit_usd = 30000\nhard_limit_usd = 60000\n"
        '[[budgets]]\nname = "default"\nscope = "workspace"\nmatch = "default"\n'
        "soft_limit_usd = 3000\nhard_limit_usd = 6000\n"
        f'[[budgets]]\nname = "first-ws"\nscope = "workspace"\nmatch = "{org.workspaces[0].id}"\n'
        "soft_limit_usd = 2000\nhard_limit_usd = 4000\n"
        f'[[budgets]]\nname = "first-key"\nscope = "api_key"\nmatch = "{org.api_keys[0].id}"\n'
        "soft_limit_usd = 1000\nhard_limit_usd = 2000\n"
        '[[budgets]]\nname = "opus"\nscope = "model"\nmatch = "claude-opus"\n'
        "soft_limit_usd = 2000\nhard_limit_usd = 4000\n")
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ticks_logged(log: Path) -> int:
    return log.read_text().count("tick finished") if log.exists() else 0


def wait_ticks(log: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while ticks_logged(log) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {ticks_logged(log)} ticks in {timeout:.0f} s; see {log}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=5, help="steady ticks to measure")
    parser.add_argument("--rss", type=int, metavar="N", help="N ticks back to back: RSS")
    parser.add_argument("--interval", type=float, default=0.3,
                        help="seconds between the ticks of --rss")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("CONFIG", "SAMPLES", "TRACE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.rss, args.interval, Path(args.child[1]),
              Path(args.child[2]) if args.tracemalloc else None)
        return
    sim = subprocess.Popen([sys.executable, "-m", "guard.sim", "--seed", "7", "--admin-key",
                            KEY], stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        url = sim.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            if args.rss:
                measure_rss(Path(tmp), url, args.rss, args.interval, args.tracemalloc)
            else:
                measure(Path(tmp), url, args.ticks)
    finally:
        sim.terminate()
        sim.wait()


def measure(tmp: Path, url: str, steady: int) -> None:
    log = tmp / "run.log"
    with log.open("w") as out:
        daemon = subprocess.Popen([str(Path(sys.executable).with_name("guard")), "--config",
                                   str(config(tmp, url)), "run"], stderr=out,
                                  stdout=subprocess.DEVNULL)
    try:
        wait_ticks(log, 1, 120)
        first_cpu = cpu_seconds(daemon.pid)
        wait_ticks(log, 2, 3 * INTERVAL_S)
        start_cpu = cpu_seconds(daemon.pid)
        wait_ticks(log, 2 + steady, (steady + 2) * INTERVAL_S * 1.5)
        per_tick = (cpu_seconds(daemon.pid) - start_cpu) / steady
        rss = peak_rss_mb(daemon.pid)
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
    print("guard run on the simulated organization (seed 7), 5 budgets, a tick every "
          f"{INTERVAL_S} s, HTTP on")
    print(f"start-up and first tick (backfill): {first_cpu:.2f} s CPU")
    print(f"steady ticks ({steady}): {per_tick:.3f} s CPU per tick (idle time between "
          "ticks included)")
    print(f"peak RSS (VmHWM): {rss:.1f} MB; exit code after SIGTERM: {code}")
    cpu_ok = "ok" if per_tick <= GOAL_CPU_S else "MISSED"
    rss_ok = "ok" if rss <= GOAL_RSS_MB else "MISSED"
    print(f"goals: ≤ {GOAL_CPU_S} s CPU per steady tick: {cpu_ok}; "
          f"peak RSS ≤ {GOAL_RSS_MB:.0f} MB: {rss_ok}")



# --- --rss: many ticks, RSS after each --------------------------------------------------------

def vm_rss_kb() -> int:
    """This process's resident set now (``VmRSS``), in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def child(config_path: Path, total: int, interval: float, samples: Path,
          trace: Path | None) -> None:
    """``guard --config CONFIG run``, its daemon ticking every ``interval`` s, ``total`` times."""
    import tracemalloc  # noqa: PLC0415
    from datetime import UTC  # noqa: PLC0415

    from apscheduler.triggers.interval import IntervalTrigger  # noqa: PLC0415

    from guard.entry import daemon as daemon_module  # noqa: PLC0415
    from guard.entry.launch import main as guard_main  # noqa: PLC0415

    if trace is not None:
        tracemalloc.start(8)
    out = samples.open("w", buffering=1)
    marks: dict[int, tracemalloc.Snapshot] = {}

    def every_interval(**_given: object) -> IntervalTrigger:
        """The daemon's trigger, at ``interval`` instead of poll_interval_s, no jitter."""
        return IntervalTrigger(seconds=interval, timezone=UTC)

    class BenchDaemon(daemon_module.Daemon):
        def tick(self, *args: Any, **kwargs: Any) -> Any:
            report = super().tick(*args, **kwargs)
            out.write(f"{self.ticks} {vm_rss_kb()} {int(report is not None)}\n")
            if trace is not None and self.ticks in (100, total):
                marks[self.ticks] = tracemalloc.take_snapshot()
                if self.ticks == total and 100 in marks:
                    write_growth(marks[100], marks[total], trace)
            if self.ticks == total:
                os.kill(os.getpid(), signal.SIGTERM)
            return report

    daemon_module.Daemon = BenchDaemon  # what `guard run` builds, in this process only
    daemon_module.IntervalTrigger = every_interval  # type: ignore[assignment]
    sys.argv = ["guard", "--config", str(config_path), "run"]
    guard_main()


def write_growth(before: object, after: object, path: Path) -> None:
    """The 25 allocation sites that grew most from ``before`` to ``after`` (tracemalloc)."""
    stats = after.compare_to(before, "traceback")  # type: ignore[attr-defined]
    lines = []
    for stat in stats[:25]:
        lines.append(f"{stat.size_diff / 1024:+9.1f} kB {stat.count_diff:+7d} blocks")
        lines.extend(f"      {frame}" for frame in stat.traceback.format()[-8:])
    path.write_text("\n".join(lines) + "\n")


def measure_rss(tmp: Path, url: str, total: int, interval: float, trace: bool) -> None:
    samples, growth, log = tmp / "rss.txt", tmp / "growth.txt", tmp / "run.log"
    command = [sys.executable, __file__, "--rss", str(total), "--interval", str(interval),
               "--child", str(config(tmp, url)), str(samples), str(growth)]
    started = time.monotonic()
    with log.open("w") as err:
        code = subprocess.run(command + (["--tracemalloc"] if trace else []), stderr=err,
                              stdout=subprocess.DEVNULL, check=False,
                              timeout=total * (interval + 5) + 300).returncode
    wall = time.monotonic() - started
    rows = [tuple(int(x) for x in line.split()) for line in samples.read_text().splitlines()]
    if len(rows) < total:
        raise SystemExit(f"{len(rows)} of {total} ticks, exit code {code}; the daemon's log:\n"
                         f"{log.read_text()[-3000:]}")
    rss = {tick: kb / 1024 for tick, kb, _ in rows}
    failed = sum(1 for _, _, ok in rows if not ok)
    last = [rss[t] for t in range(max(1, total - 99), total + 1) if t in rss]
    figures = {"ticks": len(rows), "interval_s": interval, "wall_s": round(wall, 1),
               "failed_ticks": failed, "exit_code": code, "tracemalloc": trace,
               "rss_mb": {str(t): round(rss[t], 1) for t in (1, 100, total) if t in rss},
               "last_100_max_minus_min_mb": round(max(last) - min(last), 2),
               "max_rss_mb": round(max(rss.values()), 1),
               "goals": {"rss_mb": GOAL_RSS_MB, "last_100_growth_mb": GOAL_GROWTH_MB}}
    print(f"guard run on the simulated organization (seed 7), 5 budgets, {len(rows)} ticks "
          f"{interval} s apart in {wall:.0f} s, {failed} failed, exit code {code}"
          f"{' (tracemalloc on)' if trace else ''}")
    print("RSS after tick " + ", ".join(f"{t}: {mb} MB" for t, mb in
                                        figures["rss_mb"].items()))
    print(f"last 100 ticks: max − min {figures['last_100_max_minus_min_mb']} MB; "
          f"max {figures['max_rss_mb']} MB")
    ok_rss = "ok" if rss.get(total, 1e9) <= GOAL_RSS_MB else "MISSED"
    ok_flat = "ok" if figures["last_100_max_minus_min_mb"] <= GOAL_GROWTH_MB else "MISSED"
    print(f"goals: ≤ {GOAL_RSS_MB:.0f} MB after tick {total}: {ok_rss}; last 100 within "
          f"{GOAL_GROWTH_MB} MB: {ok_flat}")
    if trace and growth.exists():
        print(f"allocations grown from tick 100 to {total}:\n{growth.read_text()}")
    if failed or code:
        print(f"see the daemon's log:\n{log.read_text()[-3000:]}")
    JSON.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures written to {JSON}")


if __name__ == "__main__":
    main()
