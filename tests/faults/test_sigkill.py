"""The SIGKILL campaign (issue 12): a month of `guard check` ticks, killed with SIGKILL at
effect boundaries and at seeded-random points, restarted, and compared with the same month
run without kills.

A month of March 2026 (``SimOrg.generate(7)``) is ticked by ``python -m guard check --json
--at T`` processes, through ``tests/faults/killer.py`` (which plants the kill in-process and
turns off Slack's one-message-a-second pacing, since the fake has no rate limit), against the
simulated Admin API and a fake Slack Web API with a bot token and a channel id, so the
exactly-once path applies: outbox rows marked ``sending``, the dedup key in each message's
metadata, a ``sending`` row looked up in ``conversations.history`` before it is posted again.
Three budgets (the organization and two workspaces) cross their soft and hard limits and
forecasts during the month, so several incidents fire, repeat and resolve at the rollover.

Each campaign replays the month; at a tick it runs the check with a kill planted, and when
the process really died by SIGKILL (a point that never came is not counted) it runs the same
``--at`` again, possibly with the next kill point, until a run completes. Between a kill and
its rerun the harness ages what the dead process held as if the rerun came minutes later
(``guard check`` keeps the leader lease 3 minutes of wall clock and its outbox claims 2
minutes of tick time): ``UPDATE leases SET expires_at = 0`` and the same for outbox claims.
Nothing else is touched.

Campaigns (points chosen with ``random.Random`` seeded from ``SEED``):

- store, decision and files: hooks at the lease, the cache writes of the fetch, inside and
  after the transaction that records the decision with its outbox rows, the fallback files,
  the fallback's and the audit's records, the lease release;
- outbox and Slack: hooks at the outbox claim, before and after ``chat.postMessage``, before
  the incident's message is remembered, before and after the row is marked delivered, after
  ``chat.update`` and after the history lookup;
- Slack's reply in flight: the fake Slack accepts ``chat.postMessage`` and SIGKILLs the
  process before it answers;
- the k-th HTTP request (Admin API or Slack), before it is sent or after its answer;
- a random delay after the process started.

Invariants, each a row of the summary table (suite ``sigkill``) and an assertion: no
notification lost (every post of the reference run, with its text, in its thread), none sent
twice (each dedup key at most once, no reply twice in a thread), spend never double-counted
(every tick's spend and the stored caches equal the reference), state consistent after
restart (every tick's tier, the final env and state files, alert states and audit log equal
the reference, no outbox row left owed or claimed), and no traceback in any process's stderr.

Points are counted only where the process really died by SIGKILL; each campaign's count is
on its first row of the table (so the table's total is the number of kills). Nothing
asserted depends on the machine's speed: a random delay may land anywhere, or after the
process ended (then it is no point), and the invariants hold either way.

``make test`` runs a bounded form (5 ticks, a kill at every other tick of each campaign: about
a dozen); ``make faults`` the whole month, every other day, up to 2–4 kills a tick (≥ 150
asserted; about 200).

Three regressions at the end reproduce what this campaign first found (F1–F3, fixed in
7436ad9): a rerun's updates superseding the repeats still owed (lost thread replies), the
first fallback never audited nor reloaded after a kill before it was recorded, and an audit
entry lost between the fallback's record and its own.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import FULL
from killer import KILLED
from slackfake import SlackFake
from table import Row, record

from guard.sim import SimClock, SimServer
from tests.test_tick import KEY, MARCH, ORG, config_file

SEED = 12
"""The campaign's seed (the issue's number): the same points on every run."""
KILLER = Path(__file__).with_name("killer.py")
APRIL = datetime(2026, 4, 1, tzinfo=UTC)
WORKSPACES = (ORG.workspaces[0].id, ORG.workspaces[1].id)
TIMEOUT_S = 300


def schedule() -> list[datetime]:
    """The ticks of the month at 06:00: every other day in full, four chosen days when
    bounded (the first firings, the hard limit, runaway), then the rollover."""
    days = range(0, 31, 2) if FULL else (1, 10, 25, 29)
    return [*(MARCH + timedelta(days=d, hours=6) for d in days), APRIL + timedelta(hours=6)]


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the fake Slack that can kill its client -------------------------------------------------


class KillingSlack(SlackFake):
    """SlackFake that, when armed, accepts the n-th ``chat.postMessage`` and SIGKILLs the
    sending process before answering: the post is in Slack, its reply never arrives."""

    def __init__(self) -> None:
        super().__init__()
        self._nth = 0
        self._seen = 0
        self._victim: int | None = None
        self._pid_known = threading.Event()
        self.fired = 0

    def up(self) -> None:
        super().up()
        server = self._server
        if server is not None:  # the answer to a dead process may fail to write: not news
            server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]

    def arm(self, nth: int) -> None:
        """Kill at the ``nth`` accepted post from now (the pid follows with ``victim``)."""
        self._nth, self._seen, self._victim = nth, 0, None
        self._pid_known.clear()

    def victim(self, pid: int) -> None:
        self._victim = pid
        self._pid_known.set()

    def disarm(self) -> None:
        self._nth, self._victim = 0, None
        self._pid_known.clear()

    def _api(self, method: str, authorization: str | None, params: Any) -> Any:
        answer = super()._api(method, authorization, params)
        body = answer.body
        if (method == "chat.postMessage" and self._nth and isinstance(body, dict)
                and body.get("ok")):
            self._seen += 1
            if self._seen == self._nth:
                self._pid_known.wait(60)  # set right after Popen; no race in practice
                if self._victim is not None:
                    os.kill(self._victim, signal.SIGKILL)
                    self.fired += 1
                self._nth = 0
        return answer

    def history(self) -> list[dict[str, Any]]:
        """Every accepted post with its metadata, oldest first."""
        with self._lock:
            return [dict(m) for m in self._history]


# --- one campaign's world, runs and recovery -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Point:
    """Where a run is killed: a hook spec for killer.py, a delay, or Slack's n-th post."""

    label: str
    spec: str = "none"
    delay: float | None = None
    slack_nth: int = 0


@dataclass
class Outcome:
    """What a campaign came to."""

    name: str
    kills: list[tuple[str, str]] = field(default_factory=list)
    """(tick, point label) of every kill that really happened."""
    processes: int = 0
    planned: int = 0
    ticks: dict[str, Any] = field(default_factory=dict)
    """Per tick, what the completed run reported: tier, model, budgets' spend and firing."""
    failures: list[str] = field(default_factory=list)
    """Completed runs that exited other than 0."""
    tracebacks: list[str] = field(default_factory=list)
    posts: list[tuple[str, str | None, str]] = field(default_factory=list)
    """(dedup, parent dedup for a thread reply, text) of every post Slack accepted."""
    unkeyed: int = 0
    files: dict[str, str] = field(default_factory=dict)
    store: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class World:
    """A simulated Admin API, a fake Slack and a state directory for one campaign."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.sim = SimServer(ORG, SimClock(MARCH), admin_key=KEY)
        self.slack = KillingSlack()

    def __enter__(self) -> World:
        self.sim.start()
        self.slack.up()
        self.cfg = write_config(self.root, self.sim.base_url, self.slack)
        return self

    def __exit__(self, *exc: object) -> None:
        self.slack.down()
        self.sim.stop()

    def run(self, at: datetime, point: Point) -> tuple[int, str, str]:
        """One `guard check --json --at` process with ``point`` planted: (rc, out, err)."""
        self.sim.clock.set(at)
        command = [sys.executable, str(KILLER), point.spec, "--", "--config", str(self.cfg),
                   "check", "--json", "--at", stamp(at)]
        if point.slack_nth:
            self.slack.arm(point.slack_nth)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) as proc:
            if point.slack_nth:
                self.slack.victim(proc.pid)
            try:
                out, err = proc.communicate(timeout=point.delay or TIMEOUT_S)
            except subprocess.TimeoutExpired:
                if point.delay is None:
                    raise
                proc.send_signal(signal.SIGKILL)
                out, err = proc.communicate(timeout=TIMEOUT_S)
        self.slack.disarm()
        return proc.returncode, out, err

    def recover(self) -> None:
        """Age what the killed process held, as if the rerun came minutes later."""
        path = self.root / "state.db"
        if not path.exists():
            return
        conn = sqlite3.connect(path, timeout=30)
        try:
            for statement in ("UPDATE leases SET expires_at = 0",
                              "UPDATE outbox SET claimed_until = 0 "
                              "WHERE claimed_until IS NOT NULL"):
                try:
                    conn.execute(statement)
                except sqlite3.OperationalError as exc:  # killed before the schema existed
                    if "no such table" not in str(exc):
                        raise
            conn.commit()
        finally:
            conn.close()


def write_config(root: Path, base_url: str, slack: SlackFake) -> Path:
    """test_tick's config (the org budget at 30 % / 80 % of March), two workspace budgets,
    Slack by bot token and channel id, and a reload hook."""
    cfg = config_file(root, base_url)
    text = cfg.read_text().replace(
        "[fallback]\n", f'[fallback]\nreload_command = ["/bin/sh", "-c", '
        f'"echo reload >> {root / "reloads.txt"}"]\n')
    lines = [text.rstrip("\n")]
    for n, (workspace, soft, hard) in enumerate(
            [(WORKSPACES[0], "0.25", "0.6"), (WORKSPACES[1], "0.5", "0.9")]):
        month = ORG.truth_cents(MARCH, APRIL, "workspace", workspace) / 100
        lines += ["[[budgets]]", f'name = "ws-{n}"', 'scope = "workspace"',
                  f'match = "{workspace}"',
                  f"soft_limit_usd = {max(1, int(month * Decimal(soft)))}",
                  f"hard_limit_usd = {max(2, int(month * Decimal(hard)))}"]
    lines += ["[slack]", f'bot_token = "{slack.token}"', f'base_url = "{slack.base_url}"',
              f'channel = "{slack.channel}"']
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def summary(stdout: str) -> dict[str, Any]:
    """What a completed check decided, in the parts a kill must not change."""
    body = json.loads(stdout)
    return {"tier": body["fallback"]["tier"], "model": body["fallback"]["model"],
            "budgets": sorted((b["name"], str(b["spend_usd"]), sorted(b["firing"]))
                              for b in body["budgets"])}


Chooser = Callable[[int, int], Point | None]
"""(tick index, kills so far at this tick) → the next point, or None for a plain run."""


def campaign(name: str, root: Path, chooser: Chooser) -> Outcome:
    """Replay the month with kills where ``chooser`` says; collect what it came to."""
    outcome = Outcome(name)
    started = time.monotonic()
    with World(root) as world:
        for index, at in enumerate(schedule()):
            killed_here = 0
            while True:
                point = chooser(index, killed_here) or Point("none")
                outcome.planned += point.label != "none"
                rc, out, err = world.run(at, point)
                outcome.processes += 1
                if "Traceback" in err:
                    outcome.tracebacks.append(f"{stamp(at)} {point.label}: {err[-2000:]}")
                if rc == KILLED and point.label != "none":
                    outcome.kills.append((stamp(at), point.label))
                    killed_here += 1
                    world.recover()
                    continue
                if rc != 0:
                    outcome.failures.append(f"{stamp(at)} {point.label}: exit {rc}: "
                                            f"{err[-500:]}")
                    world.recover()
                    if killed_here > 20:
                        break
                    killed_here += 1
                    continue
                outcome.ticks[stamp(at)] = summary(out)
                break
        collect(outcome, world)
    outcome.seconds = time.monotonic() - started
    return outcome


def collect(outcome: Outcome, world: World) -> None:
    """Slack's posts, the fallback files and the store, once the month is over."""
    history = world.slack.history()
    by_ts = {m["ts"]: m for m in history}
    for m in history:
        dedup = dedup_of(m)
        if dedup is None:
            outcome.unkeyed += 1
            continue
        parent = by_ts.get(m["thread_ts"]) if m["thread_ts"] else None
        outcome.posts.append((dedup, dedup_of(parent) if parent else None, m["text"] or ""))
    for name in ("model.env", "fallback.json"):
        path = world.root / name
        outcome.files[name] = path.read_text() if path.exists() else "<missing>"
    reloads = world.root / "reloads.txt"
    outcome.files["reloads"] = str(len(reloads.read_text().splitlines())
                                   if reloads.exists() else 0)
    conn = sqlite3.connect(world.root / "state.db", timeout=30)
    try:
        def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in conn.execute(sql).fetchall()]

        outcome.store = {
            "usage_hours": rows("SELECT count(*), sum(token_units), sum(web_search_units), "
                                "sum(input_tokens), sum(output_tokens) FROM usage_hours"),
            "cost_days": rows("SELECT count(*), sum(amount_units) FROM cost_days"),
            "billed_hours": rows("SELECT count(*), sum(token_units), sum(list_units) "
                                 "FROM billed_hours"),
            "alert_states": rows("SELECT * FROM alert_states ORDER BY budget, condition"),
            "fallback_state": rows("SELECT tier, level, model, source, updated_at, reason, "
                                   "firing FROM fallback_state"),
            "audit": rows("SELECT at, action, subject, before, after FROM audit_log "
                          "ORDER BY at, id"),
            "outbox": rows("SELECT status, count(*) FROM outbox GROUP BY status "
                           "ORDER BY status"),
            "stuck": rows("SELECT dedup, status, claimed_by FROM outbox WHERE status = 'owed' "
                          "OR (claimed_by IS NOT NULL AND status != 'superseded')"),
            "incidents": rows("SELECT count(*), count(DISTINCT incident) FROM incidents"),
            "rows": rows("SELECT id, dedup, incident, kind, status FROM outbox ORDER BY id"),
        }
    finally:
        conn.close()


def dedup_of(message: dict[str, Any]) -> str | None:
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != \
            "budget_guard_notification":
        return None
    payload = metadata.get("event_payload")
    return str(payload["dedup"]) if isinstance(payload, dict) and "dedup" in payload else None


# --- where the kills go -------------------------------------------------------------------

STORE_HOOKS = (  # (boundary.when, how many calls a tick makes at most, to draw n from)
    ("lease.hold.after", 1), ("cache.usage.before", 2), ("cache.usage.after", 2),
    ("cache.cost.after", 1), ("cache.meta.after", 2), ("outbox.enqueue.after", 3),
    ("states.save.after", 1), ("decision.commit.before", 1), ("decision.commit.after", 1),
    ("sinks.write.before", 1), ("file.write.after", 1), ("sinks.write.after", 1),
    ("fallback.save.before", 1), ("fallback.save.after", 1), ("audit.after", 1),
    ("lease.release.before", 1))
SLACK_HOOKS = (
    ("outbox.claim.after", 3), ("slack.post.before", 3), ("slack.post.after", 3),
    ("outbox.remember.before", 1), ("outbox.delivered.before", 3),
    ("outbox.delivered.after", 3), ("slack.update.after", 3), ("slack.find.after", 1))


def hooks(name: str, table: tuple[tuple[str, int], ...], per_tick: int,
          every: int = 1) -> Chooser:
    """Walk ``table`` in a seeded-random order, round and round (a kill point each),
    ``per_tick`` kills at most at every ``every``-th tick, drawing which call of a boundary
    from the seeded random too."""
    rng = random.Random(f"{SEED}:{name}")
    table = tuple(rng.sample(table, len(table)))
    cursor = 0

    def choose(index: int, killed: int) -> Point | None:
        nonlocal cursor
        if killed >= per_tick or index % every:
            return None
        boundary, most = table[cursor % len(table)]
        cursor += 1
        nth = rng.randint(1, most)
        return Point(boundary, f"{boundary}:{nth}")

    return choose


def in_flight(name: str, per_tick: int, every: int = 1) -> Chooser:
    rng = random.Random(f"{SEED}:{name}")

    def choose(index: int, killed: int) -> Point | None:
        if killed >= per_tick or index % every:
            return None
        return Point("chat.postMessage answer in flight", slack_nth=rng.randint(1, 3))

    return choose


def requests(name: str, per_tick: int, every: int = 1) -> Chooser:
    rng = random.Random(f"{SEED}:{name}")

    def choose(index: int, killed: int) -> Point | None:
        if killed >= per_tick or index % every:
            return None
        when = rng.choice(("before", "after"))
        return Point(f"request.{when}", f"request.{when}:{rng.randint(1, 24)}")

    return choose


def delays(name: str, per_tick: int, every: int = 1) -> Chooser:
    rng = random.Random(f"{SEED}:{name}")

    def choose(index: int, killed: int) -> Point | None:
        if killed >= per_tick or index % every:
            return None
        return Point("random delay", delay=round(rng.uniform(0.3, 2.5), 2))

    return choose


def per_tick(full: int) -> tuple[int, int]:
    """(kills at most per tick, at every how many ticks): ``full`` at each tick of the whole
    month, one at every other tick when bounded."""
    return (full, 1) if FULL else (1, 2)


CAMPAIGNS: dict[str, tuple[str, Callable[[], Chooser], int]] = {
    # name → (the fault, as the table says it; its chooser; least kills in the full form)
    "store": ("SIGKILL at store, decision and file boundaries (hooks)",
              lambda: hooks("store", STORE_HOOKS, *per_tick(4)), 35),
    "slack": ("SIGKILL at outbox and Slack boundaries (hooks)",
              lambda: hooks("slack", SLACK_HOOKS, *per_tick(4)), 25),
    "in-flight": ("SIGKILL by Slack with chat.postMessage's reply in flight",
                  lambda: in_flight("in-flight", *per_tick(3)), 20),
    "request": ("SIGKILL at the seeded-random k-th HTTP request",
                lambda: requests("request", *per_tick(3)), 20),
    "delay": ("SIGKILL after a seeded-random delay",
              lambda: delays("delay", *per_tick(2)), 0),
}
if not FULL:  # make test: the effect-boundary hooks and the reply in flight, the rest in full
    CAMPAIGNS = {name: CAMPAIGNS[name] for name in ("store", "in-flight")}
LEAST_IN_FULL = 150


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """The reference month and every campaign, run side by side (two at a time)."""
    root = tmp_path_factory.mktemp("sigkill")
    jobs: dict[str, Chooser] = {"reference": lambda _i, _k: None}
    jobs.update({name: make() for name, (_, make, _least) in CAMPAIGNS.items()})
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(campaign, name, root / name, chooser)
                   for name, chooser in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


# --- the invariants ------------------------------------------------------------------------


def lost(ref: Outcome, run: Outcome) -> list[str]:
    have = Counter(run.posts)
    return [f"{d} (in thread of {p})" if p else d for d, p, t in ref.posts
            if have[(d, p, t)] == 0]


def duplicated(run: Outcome) -> list[str]:
    """A dedup key posted more than once, or the same reply twice in one thread."""
    counts = Counter(d for d, _, _ in run.posts)
    replies = Counter((p, t) for _, p, t in run.posts if p is not None)
    return ([f"{d} ×{n}" for d, n in counts.items() if n > 1]
            + [f"reply {t[:60]!r} in the thread of {p} ×{n}"
               for (p, t), n in replies.items() if n > 1])


def double_counted(ref: Outcome, run: Outcome) -> list[str]:
    wrong = [f"{t}: {run.ticks.get(t, {}).get('budgets')} != {s['budgets']}"
             for t, s in ref.ticks.items() if run.ticks.get(t, {}).get("budgets") != s["budgets"]]
    wrong += [f"{table}: {run.store[table]} != {ref.store[table]}"
              for table in ("usage_hours", "cost_days", "billed_hours")
              if run.store[table] != ref.store[table]]
    return wrong


def inconsistent(ref: Outcome, run: Outcome) -> list[str]:
    wrong = [f"{t}: tier {run.ticks.get(t, {}).get('tier')} != {s['tier']}"
             for t, s in ref.ticks.items() if run.ticks.get(t, {}).get("tier") != s["tier"]]
    wrong += [f"{name} differs" for name in ("model.env", "fallback.json")
              if run.files[name] != ref.files[name]]
    wrong += [f"{table}: {run.store[table]} != {ref.store[table]}"
              for table in ("alert_states", "fallback_state", "audit", "incidents")
              if run.store[table] != ref.store[table]]
    if run.store["stuck"]:
        wrong.append(f"outbox rows left owed or claimed: {run.store['stuck']}")
    if int(run.files["reloads"]) < int(ref.files["reloads"]):
        wrong.append(f"reload hook ran {run.files['reloads']} times, "
                     f"reference {ref.files['reloads']}")
    return wrong


def crashed(run: Outcome) -> list[str]:
    return run.tracebacks + run.failures


LOST = "no notification lost"
INVARIANTS: dict[str, Callable[[Outcome, Outcome], list[str]]] = {
    LOST: lost,
    "no notification sent twice": lambda _ref, run: duplicated(run),
    "spend never double-counted": double_counted,
    "state consistent after restart": inconsistent,
    "no traceback": lambda _ref, run: crashed(run),
}
def cases() -> Iterator[Any]:
    for name in CAMPAIGNS:
        for invariant in INVARIANTS:
            yield pytest.param(name, invariant, id=f"{name}-{invariant.replace(' ', '-')}")


def test_the_reference_month_is_what_the_campaigns_are_measured_against(
        outcomes: dict[str, Outcome]) -> None:
    """Without kills: every tick completes, each dedup key is posted once, the limits are
    crossed (several incidents, the fallback reaches haiku), nothing is left owed."""
    ref = outcomes["reference"]
    problems = [*crashed(ref), *duplicated(ref)]
    incidents = {d for d, p, _ in ref.posts if p is None and d.endswith(":firing")}
    tiers = [s["tier"] for s in ref.ticks.values()]
    record(Row(suite="sigkill", fault="none (reference month)",
               invariant="completes; each notification once; limits crossed",
               ok=not problems and len(incidents) >= 3 and "haiku" in tiers, points=0,
               repetitions=ref.processes,
               detail=f"{len(ref.ticks)} ticks, {len(ref.posts)} posts, "
                      f"{len(incidents)} incidents, tiers {sorted(set(tiers))}, "
                      f"{ref.seconds:.0f} s"))
    assert not problems
    assert ref.unkeyed == 0
    assert len(incidents) >= 3 and "haiku" in tiers
    assert len(ref.ticks) == len(schedule()) and not ref.store["stuck"]


@pytest.mark.parametrize(("name", "invariant"), list(cases()))
def test_sigkill_campaign(outcomes: dict[str, Outcome], name: str, invariant: str) -> None:
    """One invariant of one campaign, against the reference month."""
    ref, run = outcomes["reference"], outcomes[name]
    problems = INVARIANTS[invariant](ref, run)
    by_point = Counter(label for _, label in run.kills)
    first = invariant == next(iter(INVARIANTS))
    detail = (f"{len(run.kills)} kills of {run.planned} planned, {len(run.ticks)} ticks, "
              f"{run.processes} processes, {len(run.posts)} posts, {run.seconds:.0f} s"
              + (": " + ", ".join(f"{k} ×{n}" for k, n in sorted(by_point.items()))
                 if first else ""))
    if invariant == LOST:
        detail += f"; {len(problems)} of the reference's {len(ref.posts)} posts lost"
    elif invariant == "no notification sent twice":
        detail += f"; {len(problems)} duplicates"
    if problems:
        detail += f"; {len(problems)} problems: " + "; ".join(o[:300] for o in problems[:3])
    record(Row(suite="sigkill", fault=CAMPAIGNS[name][0], invariant=invariant,
               ok=not problems, points=len(run.kills) if first else 0,
               repetitions=run.processes, detail=detail))
    assert not problems, "\n".join(problems)
    assert len(run.ticks) == len(schedule())
    if FULL:
        assert len(run.kills) >= CAMPAIGNS[name][2]


def test_a_rerun_after_a_kill_mid_delivery_still_posts_every_owed_repeat(
        tmp_path: Path) -> None:
    """Finding F1 of this campaign (fixed in 7436ad9), as a regression: incidents fire, a
    week later their repeats are owed; the check is killed right after Slack answered the
    first repeat's thread reply, and rerun at the same --at (lease and claims aged). The
    rerun decided the tick again and owed an ``update`` per incident, which superseded the
    repeats still owed: 7 "Still firing" thread replies never reached Slack. Every repeat
    that tick owed must reach its thread."""
    firing = MARCH + timedelta(days=10, hours=6)
    week = firing + timedelta(days=7)
    with World(tmp_path) as world:
        for at in (firing, firing + timedelta(hours=1)):
            assert world.run(at, Point("none"))[0] == 0
        rc, _, _ = world.run(week, Point("slack.post.after", "slack.post.after:1"))
        assert rc == KILLED
        world.recover()
        rc, _, err = world.run(week, Point("none"))
        assert rc == 0, err
        conn = sqlite3.connect(tmp_path / "state.db")
        try:
            owed = [r[0] for r in conn.execute(
                "SELECT dedup FROM outbox WHERE kind = 'repeat' AND created_at = ?",
                (int(week.timestamp()),))]
        finally:
            conn.close()
        posted = {dedup_of(m) for m in world.slack.history()}
    assert len(owed) >= 2
    assert [d for d in owed if d not in posted] == []


def test_enough_sigkill_points(outcomes: dict[str, Outcome]) -> None:
    """≥ 150 real kills in the full form (issue 12); a dozen or so when bounded."""
    kills = sum(len(outcomes[name].kills) for name in CAMPAIGNS)
    least = LEAST_IN_FULL if FULL else 4
    assert kills >= least, f"{kills} SIGKILL points"


def test_a_first_tick_killed_before_recording_its_fallback_still_audits_it(
        tmp_path: Path) -> None:
    """Finding F2 (fixed in 7436ad9), as a regression: the very first check is killed after
    the fallback files were written, before the fallback is recorded. The rerun, finding no
    stored fallback and no alert state, started from the files on disk: the first
    ``fallback_changed`` (none → opus) was never audited, nor its reload hook run. It must
    be audited, as in a run without the kill."""
    at = MARCH + timedelta(days=1, hours=6)
    with World(tmp_path) as world:
        rc, _, _ = world.run(at, Point("fallback.save.before", "fallback.save.before:1"))
        assert rc == KILLED
        world.recover()
        rc, _, err = world.run(at, Point("none"))
        assert rc == 0, err
        conn = sqlite3.connect(tmp_path / "state.db")
        try:
            audited = [tuple(r) for r in conn.execute(
                "SELECT action, before, after FROM audit_log ORDER BY id")]
        finally:
            conn.close()
    assert ("fallback_changed", None, "opus (auto)") in audited


def test_a_tick_killed_between_recording_its_fallback_and_its_audit_still_audits_it(
        tmp_path: Path) -> None:
    """Finding F3 (fixed in 7436ad9), as a regression: opus on March 2; on March 11 the soft
    limit moves the fallback to sonnet and the check is killed right after the fallback was
    saved, before its audit entry (they were separate transactions, so the rerun saw the
    fallback in force and the entry was lost). The change must stay audited."""
    first, change = MARCH + timedelta(days=1, hours=6), MARCH + timedelta(days=10, hours=6)
    with World(tmp_path) as world:
        assert world.run(first, Point("none"))[0] == 0
        rc, _, _ = world.run(change, Point("fallback.save.after", "fallback.save.after:1"))
        assert rc == KILLED
        world.recover()
        rc, _, err = world.run(change, Point("none"))
        assert rc == 0, err
        conn = sqlite3.connect(tmp_path / "state.db")
        try:
            audited = [tuple(r) for r in conn.execute(
                "SELECT action, before, after FROM audit_log ORDER BY id")]
        finally:
            conn.close()
    assert audited == [("fallback_changed", None, "opus (auto)"),
                       ("fallback_changed", "opus (auto)", "sonnet (auto)")]
