"""Benchmark: the real ``guard run`` idling on the simulated organization.

The simulated Admin API (``python -m guard.sim``, seed 7: 4 workspaces + default, 16 keys)
runs in its own process. ``guard run`` runs as it would in production: HTTP server, scheduler,
state store, fallback files, notifications to the log, five budgets (organization, default
workspace, a workspace, a key, a model family), a tick every 10 s. After the first tick has
backfilled the month, the CPU time the process uses per steady tick is read from
``/proc/PID/stat``, and its peak RSS from ``VmHWM`` in ``/proc/PID/status``.

Goals (issue 6): peak RSS ≤ 80 MB, ≤ 0.2 s CPU per steady-state tick.

    python bench/daemon.py [--ticks 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from guard.sim import SimOrg

KEY = "sk-ant-admin-bench-daemon"
GOAL_RSS_MB = 80.0
GOAL_CPU_S = 0.2
INTERVAL_S = 10


def config(tmp: Path, url: str) -> Path:
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
    args = parser.parse_args()
    sim = subprocess.Popen([sys.executable, "-m", "guard.sim", "--seed", "7", "--admin-key",
                            KEY], stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        url = sim.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
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


if __name__ == "__main__":
    main()
