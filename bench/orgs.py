"""Benchmark: several organizations in one daemon, and across replicas (issue 13, item 4).

(a) **Ten organizations in one process.** Ten simulated Admin APIs (``python -m guard.sim``,
    seeds 1–10, each its own process, clock fixed) answer every request ``--latency-ms``
    late (300 ms: a real API is not on loopback; 0 is also measured, where a tick is all CPU
    and ten of them on this machine's cores cannot overlap). One process builds each
    organization's parts as the daemon does (``wiring.build_organization``) over one SQLite
    state store and ticks them at once, each in its own thread (``guard.entry.several``).
    After the first ticks (the backfill), each round ticks the first organization alone,
    then all ten together; the ratio is the median wall time of ten over that of one.
    Then the same with the tenth organization's key revoked (its API answers 401), and
    with its API answering 5 s late: the nine others' tick durations (median per
    organization) and results (every budget's spend, the fallback tier, the firing
    conditions, the requests made) are compared with the run where all ten were well.

(b) **Three replicas, twelve organizations, one PostgreSQL database.** Three real
    ``guard run`` processes (``state.instance`` r1–r3, a tick every 10 s, the default 15 s
    lease) on a fresh database on loopback; the leases table is read every half second for
    who leads what. Once the split holds (every organization led, 4/4/4) one replica is
    SIGKILLed; the takeover is the time until the two others lead all twelve again, and
    until each of its organizations had an acting (not standby) tick on a survivor. From the
    replicas' logs, no two acting ticks of one organization overlap.

Prints a table and writes bench/orgs.json.

    python bench/orgs.py [--rounds 5] [--latency-ms 300] [--skip-replicas]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from guard.config import load_settings
from guard.core.summary import TickReport
from guard.entry import wiring
from guard.entry.several import each
from guard.errors import GuardError
from guard.shell.tick import run_tick

KEY = "sk-ant-admin-bench-orgs"
DEAD_KEY = "sk-ant-admin-revoked"
PG_ADMIN = os.environ.get("GUARD_TEST_PG_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
OUT = Path(__file__).with_suffix(".json")
ORGS_ONE_PROCESS = 10
ORGS_REPLICAS = 12
REPLICAS = 3
SLOW_MS = 5000
TAKEOVER_BOUND_S = 30.0


# --- simulators ----------------------------------------------------------------------------------


@contextmanager
def simulators(specs: list[tuple[int, float, bool]], now: datetime | None) -> Iterator[list[str]]:
    """One ``python -m guard.sim`` per (seed, latency ms, realtime); their base URLs."""
    procs = []
    for seed, latency, realtime in specs:
        args = [sys.executable, "-m", "guard.sim", "--seed", str(seed), "--admin-key", KEY,
                "--latency-ms", str(latency)]
        args += ["--realtime"] if realtime else []
        args += ["--now", now.strftime("%Y-%m-%dT%H:%M:%SZ")] if now is not None else []
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, text=True))
    try:
        yield [p.stdout.readline().strip() for p in procs if p.stdout is not None]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def organization(name: str, url: str, key: str, out: Path) -> str:
    return (f'[[organizations]]\nname = "{name}"\nadmin_api_key = "{key}"\n'
            f'base_url = "{url}"\nenv_file = "{out / f"{name}.env"}"\n'
            f'state_file = "{out / f"{name}.json"}"\n'
            '[[organizations.budgets]]\nname = "org"\nscope = "organization"\n'
            "soft_limit_usd = 20000\nhard_limit_usd = 60000\n"
            '[[organizations.budgets]]\nname = "default-ws"\nscope = "workspace"\n'
            'match = "default"\nsoft_limit_usd = 3000\nhard_limit_usd = 6000\n')


# --- (a) ten organizations in one process --------------------------------------------------------


def outcome(report: TickReport | GuardError) -> Any:
    """What a tick decided, to compare across runs (not its timing)."""
    if isinstance(report, GuardError):
        return {"error": str(report)}
    body = report.as_json()
    return {"budgets": [(b["name"], b["spend_usd"], b["firing"]) for b in body["budgets"]],
            "tier": body["fallback"]["tier"], "api_requests": body["api_requests"],
            "upstream_error": body["upstream_error"]}


@contextmanager
def one_process(urls: list[str], root: Path,
                tenth: tuple[str, str] | None = None) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Ten organizations' parts in this process over one SQLite store, as the daemon builds
    them; ``tenth`` replaces the tenth's (base URL, key)."""
    root.mkdir(parents=True)
    body = f'[anthropic]\nmax_retries = 0\n[state]\nurl = "sqlite:///{root / "state.db"}"\n'
    for i, given in enumerate(urls):
        url, key = tenth if tenth is not None and i == len(urls) - 1 else (given, KEY)
        body += organization(f"org{i:02d}", url, key, root)
    (root / "guard.toml").write_text(body)
    orgs = load_settings(root / "guard.toml").organizations_in_force()
    with wiring.Stores() as stores:
        guards = {org.name: wiring.build_organization(org, stores) for org in orgs}
        for guard in guards.values():
            guard.tick.holder = "bench"
            guard.tick.config = replace(guard.tick.config, lease_ttl=timedelta(minutes=30))
        try:
            yield orgs, guards
        finally:
            for guard in guards.values():
                guard.close()


class Run:
    """One set of ten organizations, ticked together round after round."""

    def __init__(self, orgs: Any, guards: dict[str, Any], at: datetime) -> None:
        self.orgs, self.guards, self.at = orgs, guards, at
        self.durations: dict[str, list[float]] = {org.name: [] for org in orgs}
        self.together: list[float] = []
        self.alone: list[float] = []
        self.outcomes: dict[str, Any] = {}

    def _timed(self, org: Any) -> tuple[float, TickReport]:
        started = time.monotonic()
        report = run_tick(self.guards[org.name].tick, self.at)
        return time.monotonic() - started, report

    def first(self) -> float:
        started = time.monotonic()
        each(self.orgs, self._timed)
        return time.monotonic() - started

    def one(self) -> None:
        started = time.monotonic()
        each(self.orgs[:1], self._timed)
        self.alone.append(time.monotonic() - started)

    def ten(self) -> None:
        started = time.monotonic()
        results = each(self.orgs, self._timed)
        self.together.append(time.monotonic() - started)
        for name, result in results.items():
            if isinstance(result, GuardError):
                self.outcomes[name] = outcome(result)
                continue
            self.durations[name].append(result[0])
            self.outcomes[name] = outcome(result[1])

    def median(self, name: str) -> float:
        return statistics.median(self.durations[name])


def part_a(latency_ms: float, rounds: int, root: Path) -> dict[str, Any]:
    at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    out: dict[str, Any] = {"latency_ms": latency_ms, "rounds": rounds}
    seeds = list(range(1, ORGS_ONE_PROCESS + 1))
    with simulators([(s, 0.0, False) for s in seeds], at) as urls, \
            one_process(urls, root / "loopback") as parts:
        bare = Run(*parts, at)
        bare.first()
        for _ in range(rounds):
            bare.one()
            bare.ten()
    out["loopback"] = {"one_s": statistics.median(bare.alone),
                       "ten_s": statistics.median(bare.together)}
    out["loopback"]["ratio"] = out["loopback"]["ten_s"] / out["loopback"]["one_s"]
    specs = [(s, latency_ms, False) for s in seeds] + [(seeds[-1], float(SLOW_MS), False)]
    with simulators(specs, at) as urls, one_process(urls[:-1], root / "well") as well_parts, \
            one_process(urls[:-1], root / "dead", (urls[-2], DEAD_KEY)) as dead_parts, \
            one_process(urls[:-1], root / "slow", (urls[-1], KEY)) as slow_parts:
        runs = {"well": Run(*well_parts, at), "dead_key": Run(*dead_parts, at),
                "slow_api": Run(*slow_parts, at)}
        firsts = {name: run.first() for name, run in runs.items()}
        for _ in range(rounds):  # interleaved, so the machine's load falls on all alike
            runs["well"].one()
            for run in runs.values():
                run.ten()
    well = runs["well"]
    out["well"] = {"first_tick_s": round(firsts["well"], 2),
                   "one_s": statistics.median(well.alone),
                   "ten_s": statistics.median(well.together)}
    out["well"]["ratio"] = out["well"]["ten_s"] / out["well"]["one_s"]
    others = [f"org{i:02d}" for i in range(ORGS_ONE_PROCESS - 1)]
    tenth = f"org{ORGS_ONE_PROCESS - 1:02d}"
    for name in ("dead_key", "slow_api"):
        run = runs[name]
        out[name] = {
            "others_same_result": all(run.outcomes[n] == well.outcomes[n] for n in others),
            "others_median_s": statistics.median(run.median(n) for n in others),
            "well_median_s": statistics.median(well.median(n) for n in others),
            "others_max_ratio": max(run.median(n) / well.median(n) for n in others),
            "tenth": run.outcomes[tenth], "tenth_s": run.median(tenth),
            "ten_s": statistics.median(run.together)}
    return out


# --- (b) three replicas on PostgreSQL ------------------------------------------------------------


@contextmanager
def database() -> Iterator[str]:
    name = f"guard_bench_orgs_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def replica(root: Path, name: str, url: str, sims: list[str]) -> subprocess.Popen[bytes]:
    home = root / name
    home.mkdir(parents=True)
    body = (f'[anthropic]\nmax_retries = 0\npoll_interval_s = 10\n'
            f'[state]\nurl = "{url}"\ninstance = "{name}"\n'
            f'[http]\nlisten = "127.0.0.1:0"\n'
            f'[fallback]\nenv_file = "{home / "model.env"}"\n'
            f'state_file = "{home / "fallback.json"}"\n')
    for i in range(ORGS_REPLICAS):
        body += organization(f"org{i:02d}", sims[i % len(sims)], KEY, home)
    (home / "guard.toml").write_text(body)
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith(("GUARD_", "SLACK_", "ANTHROPIC_"))}
    log = (home / "guard.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "guard", "--config", str(home / "guard.toml"),
                             "run"], stderr=log, stdout=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=env)


def leaders(engine: sa.Engine) -> tuple[dict[str, str], dict[str, int]]:
    """Organization → live leader's instance, and organization → epoch."""
    now = int(time.time())
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name, holder, expires_at, epoch FROM leases "
                                    "WHERE name LIKE 'leader:%'")).all()
    led = {r.name.split(":", 1)[1]: r.holder.rsplit(":", 1)[1] for r in rows
           if r.expires_at > now}
    return led, {r.name.split(":", 1)[1]: r.epoch for r in rows}


def acting_ticks(log: Path, instance: str) -> list[tuple[str, str, float, float]]:
    """(organization, instance, start, end) of every acting tick a replica logged."""
    out = []
    for raw in log.read_text().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        msg = str(line.get("msg", ""))
        if not msg.startswith("tick of ") or "[standby]" in msg or " finished in " not in msg:
            continue
        seconds = float(msg.split(" finished in ", 1)[1].split("s:", 1)[0])
        end = datetime.fromisoformat(line["ts"]).timestamp()
        out.append((str(line.get("organization")), instance, end - seconds, end))
    return out


def overlaps(ticks: list[tuple[str, str, float, float]]) -> list[list[Any]]:
    """Pairs of acting ticks of one organization on two replicas that overlap in time."""
    found = []
    for i, (org, who, start, end) in enumerate(ticks):
        for other_org, other, s2, e2 in ticks[i + 1:]:
            if org == other_org and who != other and start < e2 - 0.02 and s2 < end - 0.02:
                found.append([org, who, round(start, 2), round(end, 2), other, round(s2, 2),
                              round(e2, 2)])
    return found


def part_b(root: Path) -> dict[str, Any]:
    with simulators([(s, 0.0, True) for s in range(1, 5)], None) as sims, database() as url:
        names = [f"r{i}" for i in range(1, REPLICAS + 1)]
        procs = {n: replica(root, n, url, sims) for n in names}
        engine = sa.create_engine(url)
        try:
            return _observe(engine, procs, root)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            codes = {n: p.wait(timeout=90) for n, p in procs.items()}
            engine.dispose()
            print(f"  replicas exited: {codes}")


def _observe(engine: sa.Engine, procs: dict[str, subprocess.Popen[bytes]],
             root: Path) -> dict[str, Any]:
    started = time.time()
    samples, gaps_after_split = 0, 0
    split_at: float | None = None
    while time.time() - started < 180:
        time.sleep(0.5)
        try:
            led, _ = leaders(engine)
        except sa.exc.SQLAlchemyError:
            continue  # the replicas have not created the table yet
        counts = Counter(led.values())
        if len(led) == ORGS_REPLICAS and sorted(counts.values()) == [4, 4, 4]:
            split_at = split_at or time.time()
            if time.time() - split_at >= 15:
                break
        elif split_at is not None:
            gaps_after_split += 1
    else:
        raise SystemExit(f"the split never held; last: {leaders(engine)[0]}")
    led, epochs = leaders(engine)
    split = dict(Counter(led.values()))
    victim = max(split, key=lambda n: split[n])
    orphans = sorted(o for o, n in led.items() if n == victim)
    killed = time.time()
    procs[victim].send_signal(signal.SIGKILL)
    procs[victim].wait(timeout=30)
    taken: float | None = None
    while time.time() - killed < 120:
        time.sleep(0.25)
        samples += 1
        led, now_epochs = leaders(engine)
        if len(led) == ORGS_REPLICAS and victim not in led.values():
            taken = time.time() - killed
            break
    if taken is None:
        raise SystemExit(f"no takeover within 120 s; last: {led}")
    time.sleep(25)  # the survivors' first acting ticks of the orphans, and a steady split
    led, now_epochs = leaders(engine)
    ticks = [t for n in procs for t in acting_ticks(root / n / "guard.log", n)]
    acted = {}
    for org in orphans:
        after = [t[3] for t in ticks if t[0] == org and t[1] != victim and t[2] >= killed]
        acted[org] = round(min(after) - killed, 1) if after else None
    return {"organizations": ORGS_REPLICAS, "replicas": REPLICAS,
            "split_s": round(split_at - started, 1), "split": split,
            "unled_samples_while_split_held": gaps_after_split,
            "killed": victim, "orphans": orphans,
            "takeover_leases_s": round(taken, 1),
            "takeover_first_acting_tick_s": acted,
            "split_after": dict(Counter(led.values())),
            "epochs_raised": all(now_epochs[o] > epochs[o] for o in orphans),
            "acting_tick_overlaps": len(overlaps(ticks)), "overlapping": overlaps(ticks),
            "acting_ticks": len(ticks), "started": round(started, 2),
            "killed_at": round(killed, 2)}


# --- the report ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--skip-replicas", action="store_true")
    parser.add_argument("--skip-one-process", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the replicas' files here")
    args = parser.parse_args()
    results: dict[str, Any] = {"cpus": os.cpu_count(),
                               "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    with tempfile.TemporaryDirectory(prefix="bench-orgs-") as tmp:
        if not args.skip_one_process:
            a = results["one_process"] = part_a(args.latency_ms, args.rounds, Path(tmp) / "a")
            print_a(a)
        if not args.skip_replicas:
            b = results["replicas"] = part_b(args.keep or Path(tmp) / "b")
            print_b(b)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


def print_a(a: dict[str, Any]) -> None:
    well, bare = a["well"], a["loopback"]
    print(f"(a) ten organizations in one process ({os.cpu_count()} CPUs, median of "
          f"{a['rounds']} rounds)")
    print("| API latency | tick of one | ten at once | ten / one |")
    print("|---|---|---|---|")
    print(f"| {a['latency_ms']:.0f} ms | {well['one_s']:.3f} s | {well['ten_s']:.3f} s | "
          f"{well['ratio']:.2f} |")
    print(f"| 0 ms (loopback) | {bare['one_s']:.3f} s | {bare['ten_s']:.3f} s | "
          f"{bare['ratio']:.2f} |")
    print("| tenth organization | nine others' median tick | when all well | worst other "
          "/ well | nine others' results | its own tick |")
    print("|---|---|---|---|---|---|")
    for name in ("dead_key", "slow_api"):
        r = a[name]
        print(f"| {name.replace('_', ' ')} | {r['others_median_s']:.3f} s | "
              f"{r['well_median_s']:.3f} s | {r['others_max_ratio']:.2f} | "
              f"{'unchanged' if r['others_same_result'] else 'CHANGED'} | "
              f"{r['tenth_s']:.2f} s, {(r['tenth'].get('upstream_error') or 'ok')[:40]} |")


def print_b(b: dict[str, Any]) -> None:
    print(f"(b) {b['replicas']} replicas, {b['organizations']} organizations, one PostgreSQL")
    print("| split held after | split | unled while held | killed | takeover (leases) | "
          "first acting tick of each orphan | split after | epochs raised | overlapping "
          "acting ticks |")
    print("|---|---|---|---|---|---|---|---|---|")
    acted = [v for v in b["takeover_first_acting_tick_s"].values() if v is not None]
    print(f"| {b['split_s']} s | {sorted(b['split'].values())} | "
          f"{b['unled_samples_while_split_held']} | {b['killed']} ({len(b['orphans'])} orgs) | "
          f"{b['takeover_leases_s']} s | max {max(acted) if acted else 'none'} s | "
          f"{sorted(b['split_after'].values())} | {b['epochs_raised']} | "
          f"{b['acting_tick_overlaps']} of {b['acting_ticks']} |")
    print(f"takeover within {TAKEOVER_BOUND_S:.0f} s: "
          f"{'yes' if acted and max(acted) <= TAKEOVER_BOUND_S else 'NO'}")


if __name__ == "__main__":
    main()
