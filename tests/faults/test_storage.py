"""The storage-fault table (issue 12, item 3): the state store or the fallback files fail
while the organization crosses its hard limit.

Every scenario is the same month seen by real `guard check --json --at` processes: a clean
check on day 14 (the soft limit reached, its alert posted), then the fault, then two checks
after the hard limit was crossed on day 20, then the fault repaired and one more check.
Whatever failed, the crossing moves the env file to haiku and reaches Slack exactly once (at
once, or when Slack returns), nothing relaxes meanwhile, the soft alert is not posted again,
the journal is merged once the store is back and no process prints a traceback.

``make test`` runs the read-only directory and the daemon; ``make faults`` runs them all.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from conftest import FULL
from slackfake import SlackFake
from table import Row, record

from guard.adapters.sinks import read_env
from guard.entry import wiring
from guard.sim import SimClock, SimOrg, SimServer

KEY = "sk-ant-admin-storage-faults"
ORG = SimOrg.generate(7)
MARCH = datetime(2026, 3, 1, tzinfo=UTC)
CLEAN = MARCH + timedelta(days=14)
"""The clean check: the soft limit (month-to-date at day 10) was reached days ago."""
FAULTED = (MARCH + timedelta(days=21), MARCH + timedelta(days=21, hours=6))
"""Two checks during the fault, after the hard limit (month-to-date at day 20) was crossed."""
REPAIRED = MARCH + timedelta(days=21, hours=12)
SOFT_USD = ORG.truth_cents(MARCH, MARCH + timedelta(days=10), "organization") // 100
HARD_USD = ORG.truth_cents(MARCH, MARCH + timedelta(days=20), "organization") // 100
HAIKU = "claude-haiku-5-5"


@dataclass
class Checked:
    """One `guard check` process."""

    at: datetime
    code: int
    body: dict[str, Any]
    stderr: str


@dataclass
class Month:
    """The directories, services and checks of one scenario."""

    root: Path
    sim: SimServer
    slack: SlackFake
    state_url: str
    checks: list[Checked] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def env_file(self) -> Path:
        return self.run_dir / "model.env"

    @property
    def database(self) -> Path:
        return self.state_dir / "state.db"

    def config(self) -> Path:
        path = self.root / "guard.toml"
        path.write_text(
            f'[anthropic]\nadmin_api_key = "{KEY}"\nbase_url = "{self.sim.base_url}"\n'
            "max_retries = 0\n"
            f'[state]\nurl = "{self.state_url}"\n'
            f'[fallback]\nenv_file = "{self.env_file}"\n'
            f'state_file = "{self.run_dir / "fallback.json"}"\n'
            f'[slack]\nbot_token = "{self.slack.token}"\nchannel = "{self.slack.channel}"\n'
            f'base_url = "{self.slack.base_url}"\ndigest_hour_utc = 0\n'
            '[[budgets]]\nname = "org-monthly"\nscope = "organization"\n'
            f"soft_limit_usd = {SOFT_USD}\nhard_limit_usd = {HARD_USD}\n")
        return path

    def check(self, at: datetime) -> Checked:
        """`guard check --json --at` in a process of its own, its temporary directory ours."""
        self.sim.clock.set(at)
        environment = {**os.environ, "TMPDIR": str(self.root / "tmp")}
        done = subprocess.run(
            [sys.executable, "-m", "guard", "--config", str(self.config()), "check", "--json",
             "--at", at.strftime("%Y-%m-%dT%H:%M:%SZ")],
            capture_output=True, text=True, timeout=300, check=False, env=environment)
        body = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
        checked = Checked(at, done.returncode, body, done.stderr)
        self.checks.append(checked)
        return checked

    def tier(self) -> str | None:
        try:
            return read_env(self.env_file).get("GUARD_TIER")
        except OSError:
            return None

    def top_level(self, title: str) -> int:
        """How many top-level posts start with ``title``."""
        return sum(1 for c in self.slack.posts()
                   if c.thread_ts is None and (c.text or "").startswith(title))

    def journals(self) -> list[Path]:
        """Journal files left anywhere this scenario's processes could have written one."""
        return sorted([*self.state_dir.glob("*.journal"), *(self.root / "tmp").glob("*.journal")])

    def outbox(self) -> list[tuple[str, str]]:
        """The store's outbox rows for hard_reached's first post: (dedup key, status)."""
        engine = sa.create_engine(self.state_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT dedup, status FROM outbox")).all()
        finally:
            engine.dispose()
        return [(str(r[0]), str(r[1])) for r in rows
                if ":hard_reached:" in str(r[0]) and str(r[0]).endswith(":firing")]


@dataclass(frozen=True)
class Fault:
    """A storage fault: how it starts and how it is repaired; what a faulted check exits."""

    name: str
    start: Callable[[Month, ExitStack], None]
    repair: Callable[[Month], None]
    faulted_code: int = 3
    without_store: bool = True
    slack_down: bool = False
    mounts: tuple[str, ...] = ()
    """Directories that must be a tmpfs of their own (mounted before the clean check)."""
    postgres: bool = False
    bounded: bool = False


# --- the faults -------------------------------------------------------------------------------

def _remount(directory: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(directory)], check=True)


def _fill(directory: Path) -> None:
    """Write zeros into ``directory`` until its file system is full, to the last block."""
    for name, chunk in (("filler", 65536), ("crumbs", 512)):
        try:
            fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError:
            return
        try:
            while os.write(fd, b"\0" * chunk) == chunk:
                pass
        except OSError:
            pass
        finally:
            os.close(fd)


def _unfill(directory: Path) -> None:
    for name in ("filler", "crumbs"):
        (directory / name).unlink(missing_ok=True)


def _read_only(month: Month, stack: ExitStack) -> None:
    _remount(month.state_dir, "ro")


def _read_write(month: Month) -> None:
    _remount(month.state_dir, "rw")


def _lock(month: Month, stack: ExitStack) -> None:
    holder = sqlite3.connect(month.database, timeout=0, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    month.__dict__["lock"] = holder
    stack.callback(holder.close)


def _unlock(month: Month) -> None:
    holder = month.__dict__.pop("lock")
    holder.execute("COMMIT")
    holder.close()


def _corrupt(month: Month, stack: ExitStack) -> None:
    shutil.copyfile(month.database, month.root / "state.db.good")
    for suffix in ("-wal", "-shm"):
        Path(f"{month.database}{suffix}").unlink(missing_ok=True)
    month.database.write_bytes(b"this is not a database " * 4096)


def _restore(month: Month) -> None:
    shutil.copyfile(month.root / "state.db.good", month.database)


def _delete(month: Month, stack: ExitStack) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{month.database}{suffix}").unlink(missing_ok=True)


def _nothing(month: Month) -> None:
    pass


def _refuse_connections(month: Month, stack: ExitStack) -> None:
    _allow_connections(month, allow=False)


def _accept_connections(month: Month) -> None:
    _allow_connections(month, allow=True)


def _allow_connections(month: Month, allow: bool) -> None:
    name = sa.engine.make_url(month.state_url).database
    with _admin() as admin, admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}'))
        if not allow:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :name"), {"name": name})


def _fill_state(month: Month, stack: ExitStack) -> None:
    _fill(month.state_dir)


def _unfill_state(month: Month) -> None:
    _unfill(month.state_dir)


def _fill_run(month: Month, stack: ExitStack) -> None:
    _fill(month.run_dir)


def _unfill_run(month: Month) -> None:
    _unfill(month.run_dir)


def _replace_run(month: Month, stack: ExitStack) -> None:
    month.run_dir.rename(month.root / "run.aside")
    month.run_dir.write_text("an operator's mistake: a file where the directory was\n")


def _put_back_run(month: Month) -> None:
    month.run_dir.unlink()
    (month.root / "run.aside").rename(month.run_dir)


FAULTS = [
    Fault("state directory read-only", _read_only, _read_write, mounts=("state",),
          bounded=True),
    Fault("state directory full (ENOSPC)", _fill_state, _unfill_state, mounts=("state",)),
    Fault("database locked by another process", _lock, _unlock),
    Fault("database corrupted", _corrupt, _restore),
    Fault("database deleted", _delete, _nothing, faulted_code=0, without_store=False),
    Fault("PostgreSQL refuses connections", _refuse_connections, _accept_connections,
          postgres=True),
    Fault("env-file directory full (ENOSPC)", _fill_run, _unfill_run, faulted_code=0,
          without_store=False, mounts=("run",)),
    Fault("env-file directory replaced by a file", _replace_run, _put_back_run,
          without_store=False),
    Fault("state directory read-only and Slack down", _read_only, _read_write,
          mounts=("state",), slack_down=True),
]


# --- the services -------------------------------------------------------------------------

PG_ADMIN_URL = os.environ.get("GUARD_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextmanager
def _admin() -> Iterator[sa.Engine]:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _postgres_database() -> Iterator[str]:
    name = f"guard_storage_{uuid.uuid4().hex[:10]}"
    try:
        with _admin() as admin, admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable on loopback: {type(exc).__name__}")
    try:
        yield sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)
    finally:
        with _admin() as admin, admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))


@contextmanager
def _tmpfs(directory: Path, size: str) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(directory)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


@contextmanager
def _month(root: Path, fault: Fault) -> Iterator[Month]:
    with ExitStack() as stack:
        for name in fault.mounts:
            stack.enter_context(_tmpfs(root / name, "16m"))
        (root / "tmp").mkdir()
        url = (stack.enter_context(_postgres_database()) if fault.postgres
               else f"sqlite:///{root / 'state' / 'state.db'}")
        sim = stack.enter_context(SimServer(ORG, SimClock(CLEAN), admin_key=KEY))
        slack = stack.enter_context(SlackFake())
        (root / "state").mkdir(exist_ok=True)
        (root / "run").mkdir(exist_ok=True)
        yield Month(root, sim, slack, url)


# --- the scenario ---------------------------------------------------------------------------

SELECTED = [f for f in FAULTS if FULL or f.bounded]


@pytest.mark.parametrize("fault", SELECTED, ids=[f.name for f in SELECTED])
def test_a_hard_crossing_during_a_storage_fault_still_tightens_and_alerts(
        fault: Fault, tmp_path: Path) -> None:
    with _month(tmp_path, fault) as month, ExitStack() as stack:
        clean = month.check(CLEAN)
        assert clean.code == 0, clean.stderr
        assert month.top_level("Soft limit reached") == 1
        before = month.tier()
        assert before in ("opus", "sonnet"), before

        fault.start(month, stack)
        if fault.slack_down:
            month.slack.down()
        for at in FAULTED:
            month.check(at)
        tier_during = month.tier()
        hard_during = month.top_level("Hard limit reached")
        fault.repair(month)
        if fault.slack_down:
            month.slack.up()
        after = month.check(REPAIRED)
        _judge(fault, month, (tier_during, hard_during), after)


def _judge(fault: Fault, month: Month, seen: tuple[str | None, int], after: Checked) -> None:
    """Record every invariant as a row of the table, then assert them all; ``seen`` is the
    tier and the hard_reached posts at the end of the fault."""
    tier_during, hard_during = seen
    during = month.checks[1:3]
    second = during[1]
    replaced = fault.name.startswith("env-file directory replaced")
    store_error = [bool(c.body.get("store_error")) for c in during]
    outbox = month.outbox()
    checks = {
        "no traceback, every check printed its JSON":
            (all("Traceback" not in c.stderr and c.body for c in month.checks),
             "; ".join(c.stderr.strip().splitlines()[-1] for c in month.checks
                       if "Traceback" in c.stderr)),
        f"the faulted checks exit {fault.faulted_code} and say why":
            (all(c.code == fault.faulted_code for c in during)
             and store_error == [fault.without_store] * 2
             and (not replaced or all("model.env" in (c.body.get("fallback") or {})
                                      .get("error", "") for c in during)),
             f"exits {[c.code for c in during]}, store_error {store_error}"),
        "the hard crossing moves the env file to haiku"
        + (" once the directory is back" if replaced else " during the fault"):
            ((month.tier() if replaced else tier_during) == "haiku",
             f"during {tier_during}, after {month.tier()}"),
        "nothing relaxes: the second faulted check keeps haiku":
            (replaced or (second.body.get("fallback") or {}).get("tier") == "haiku",
             f"second check says {(second.body.get('fallback') or {}).get('tier')}"),
        "hard_reached reaches Slack exactly once"
        + (" (when Slack returns)" if fault.slack_down else " (during the fault)"):
            (month.top_level("Hard limit reached") == 1
             and hard_during == (0 if fault.slack_down else 1),
             f"{hard_during} during, {month.top_level('Hard limit reached')} in all"),
        "soft_reached is not posted again":
            (month.top_level("Soft limit reached") == 1,
             f"{month.top_level('Soft limit reached')} posts"),
        "the store back: exit 0, journal merged, the outbox holds it delivered":
            (after.code == 0 and not month.journals()
             and [s for _, s in outbox] == ["delivered"],
             f"exit {after.code}, journals {[p.name for p in month.journals()]}, "
             f"outbox {outbox}"),
    }
    record(*(Row("storage", fault.name, invariant, ok, points=1, repetitions=1, detail=detail)
             for invariant, (ok, detail) in checks.items()))
    failed = {k: d for k, (ok, d) in checks.items() if not ok}
    assert not failed, (failed, [(c.at, c.code, c.stderr[-2000:]) for c in month.checks])


# --- the daemon -----------------------------------------------------------------------------

def test_the_daemon_keeps_ticking_through_a_store_outage_and_tightens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`guard run` whose state directory is read-only from its start: every tick is one
    clear line and a metric, the first one moves the env file to haiku and posts the hard
    crossing; the directory writable again, the next tick merges the journal, posts nothing
    twice, and the daemon stops cleanly, without a traceback."""
    from test_daemon import Running, free_port, until  # noqa: PLC0415

    fault = Fault("daemon: state directory read-only from the start", _read_only, _read_write,
                  mounts=("state",))
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    spent = ORG.truth_cents(start, now - timedelta(hours=3), "organization") // 100
    with _month(tmp_path, fault) as month, ExitStack() as stack:
        month.sim.clock.set(now)
        port = free_port()
        text = month.config().read_text().replace("max_retries = 0\n",
                                                  "max_retries = 0\npoll_interval_s = 10\n")
        text = text.replace(f"soft_limit_usd = {SOFT_USD}\nhard_limit_usd = {HARD_USD}\n",
                            f"soft_limit_usd = {max(1, spent // 4)}\n"
                            f"hard_limit_usd = {max(2, spent // 2)}\n")
        config = tmp_path / "daemon.toml"
        config.write_text(text + f'[http]\nlisten = "127.0.0.1:{port}"\n')
        with wiring.opened_store(month.state_url):
            pass  # the store exists, and then its directory turns read-only
        fault.start(month, stack)
        monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # where its journal goes
        running = Running(config)
        try:
            running.wait_for("fallback tightened to haiku without the state store", 90)
            running.wait_for("[without the state store]", 30)
            running.wait_for("[without the state store]", 60)
            assert until(f"http://127.0.0.1:{port}/healthz", 200)
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            tier_during, hard_during = month.tier(), month.top_level("Hard limit reached")
            journaled = [p.name for p in month.journals()]
            fault.repair(month)
            running.wait_for("state store back", 60)
            running.wait_for("tick finished", 60)
            alive = running.process.poll() is None
        finally:
            code = running.stop()
    errors = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
              if line.startswith("budget_guard_store_errors_total")]
    raw = [s["msg"] for s in running.seen if s.get("level") == "raw" or "error" in s]
    checks = {
        "every tick without the store is one line and a metric, the daemon keeps ticking":
            (alive and bool(errors) and errors[0] >= 2, f"store errors metric {errors}"),
        "the hard crossing moves the env file to haiku during the fault":
            (tier_during == "haiku", f"tier {tier_during}"),
        "hard_reached reaches Slack exactly once (during the fault)":
            (hard_during == 1 and month.top_level("Hard limit reached") == 1,
             f"{hard_during} during, {month.top_level('Hard limit reached')} in all"),
        "the store back: journal merged, clean stop, no traceback":
            (len(journaled) == 1 and not month.journals() and code == 0
             and not any("Traceback" in m for m in raw),
             f"exit {code}, journals {journaled} during, {[p.name for p in month.journals()]}"
             f" after, {raw[:3]}"),
    }
    record(*(Row("storage", fault.name, invariant, ok, points=1, repetitions=1, detail=detail)
             for invariant, (ok, detail) in checks.items()))
    failed = {k: d for k, (ok, d) in checks.items() if not ok}
    assert not failed, (failed, [s["msg"][:200] for s in running.seen])
