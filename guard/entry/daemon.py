"""``guard run``: the tick on a schedule, with signals, reloads and structured logs.

APScheduler 3's ``BlockingScheduler`` runs the tick every ``poll_interval_s`` with jitter, one
at a time (``max_instances=1``), missed runs merged (``coalesce``), a tick that starts late by
up to one interval still run (``misfire_grace_time``), and the first tick at start.

- A failed tick is logged with its reason; the daemon lives on.
- SIGTERM / SIGINT: the tick in flight finishes, then the process exits 0.
- SIGHUP: the config file is validated again; a bad one is refused and the old one keeps
  running. A good one starts a new generation of parts (``guard.entry.wiring.Guard``) at the
  next tick: the HTTP client, the price table and the sinks are built once per generation,
  never per tick, and the state store is kept while ``state.url`` stays the same.

With several organizations (``[[organizations]]``) each one is a job of its own, with its
own parts, HTTP client and deadline, run by a pool of threads: one organization's dead key or
slow Admin API delays only its own ticks. The organizations' leader leases are split between
the replicas on the store by one ``SplitHeartbeat`` (``guard.entry.split``); a tick only
renews its organization's lease. One organization alone keeps the one leader lease and its
``Heartbeat``, as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from guard import __version__
from guard.adapters.store.lease import Lease, Renewing
from guard.config import Settings, load_settings, render_settings
from guard.config.organizations import Organization
from guard.core.summary import TickReport
from guard.entry.heap import Heap
from guard.entry.heartbeat import Heartbeat
from guard.entry.split import SplitHeartbeat
from guard.entry.wiring import Guard, daemon_holder, organization_lease
from guard.errors import ConfigError, GuardError, StoreError
from guard.shell.degraded import Degraded, run_degraded
from guard.shell.tick import run_tick

log = logging.getLogger("guard.daemon")
Builder = Callable[[Organization], Guard]
DegradedBuilder = Callable[[Organization], Degraded]
Observer = Callable[[TickReport | None, float, datetime, Exception | None, str], None]
"""A tick's report (or ``None``), its seconds, its time, its error, and the organization's
name when it is one of several (else ``""``)."""
MAX_CONCURRENT = 16
"""Organizations ticking at once at most (each tick mostly waits on its Admin API)."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage()}
        organization = getattr(record, "organization", None)
        if organization:
            entry["organization"] = organization
        if record.exc_info and record.exc_info[1] is not None:
            entry["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return json.dumps(entry)


def configure_logging(stream: Any = sys.stderr, level: int = logging.INFO) -> None:
    """Plain lines on a terminal, JSON lines otherwise (journald, containers)."""
    handler = logging.StreamHandler(stream)
    if not getattr(stream, "isatty", lambda: False)():
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@dataclass
class Lane:
    """One organization's place in the daemon: its parts, its lease's heartbeat (one
    organization alone) and its tick count; its lock is held through each of its ticks."""

    org: Organization
    guard: Guard | None = None
    heartbeat: Heartbeat | None = None
    degraded: tuple[Settings, Degraded] | None = None
    ticks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def job(self) -> str:
        """The scheduler's id of this organization's tick."""
        return f"tick:{self.org.name}" if self.org.several else "tick"

    @property
    def label(self) -> str:
        """The name reports, logs and metrics give it (``""`` for the one organization)."""
        return self.org.name if self.org.several else ""


@dataclass
class Daemon:
    """Loads the config, schedules each organization's ticks and handles signals."""

    config_path: Path
    build: Builder
    observe: Observer | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    degrade: DegradedBuilder | None = None
    """The parts of ticks while the store cannot even be opened (``None``: they fail)."""

    def __post_init__(self) -> None:
        self.settings = load_settings(self.config_path)
        self.scheduler = BlockingScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(MAX_CONCURRENT)})
        self.ticks = 0
        self.lanes = {org.name: Lane(org) for org in self.settings.organizations_in_force()}
        self._split: tuple[Settings, SplitHeartbeat] | None = None
        self._lock = threading.Lock()
        self.heap = Heap()
        """Collects and freezes after each tick (``guard.entry.heap``)."""

    def run(self) -> int:
        """Schedule, block until a signal stops the scheduler, and return the exit code."""
        log.info("budget-guard %s starting; effective config:\n%s", __version__,
                 render_settings(self.settings))
        for lane in list(self.lanes.values()):
            self._schedule(lane, first_at=self.clock())
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._reload)
        self.scheduler.start()
        self._release()
        for lane in list(self.lanes.values()):
            self._retire(lane)
        log.info("stopped after %d ticks", self.ticks)
        return 0

    def _release(self) -> None:
        """Give the leader leases up on a clean exit, so a standby takes over at once."""
        split, self._split = self._split, None
        if split is not None:
            split[1].stop()
            if given := split[1].release():
                log.info("leader leases of %d organizations released", given)
        for lane in self.lanes.values():
            self._stop_heartbeat(lane)
            if lane.guard is None or lane.org.several:
                continue
            try:
                if lane.guard.tick.release():
                    log.info("leader lease released")
            except GuardError as exc:
                log.warning("leader lease not released (it expires on its own): %s", exc)

    def guard(self, lane: Lane | None = None) -> Guard:
        """The parts of an organization's current settings generation (the first's by
        default), built on first use after a reload.

        Only the organization's own tick calls it, between its ticks, so a generation is
        never closed under a tick in flight.
        """
        lane = lane or next(iter(self.lanes.values()))
        current = lane.guard
        if current is not None and current.settings is not lane.org.settings:
            self._retire(lane)
            current = None
        if current is None:
            current = lane.guard = self.build(lane.org)
            current.tick.holder = daemon_holder(self.settings)
            if lane.degraded is not None and lane.degraded[0] is lane.org.settings:
                current.tick.degraded = lane.degraded[1]  # its journal, in memory too
            lane.degraded = None
            if lane.org.several and current.leases is not None:
                current.tick.lease = Renewing(organization_lease(current.leases.store,
                                                                   lane.org))
                self._ensure_split(current.leases, current.tick.holder,
                                   current.tick.config.lease_ttl)
            else:
                lane.heartbeat = Heartbeat(current.tick.lease, current.tick.holder,
                                           current.tick.config.lease_ttl, self.clock,
                                           on_gain=lambda: self._tick_soon(lane.org.name)
                                           ).start()
        return current

    def _ensure_split(self, leases: Lease, holder: str, ttl: timedelta) -> None:
        """The split of this settings generation's organizations, started once."""
        with self._lock:
            if self._split is not None and self._split[0] is self.settings:
                return
            if self._split is not None:
                self._split[1].stop()
            orgs = {org.name: organization_lease(leases.store, org)
                    for org in self.settings.organizations_in_force()}
            split = SplitHeartbeat(leases, orgs, holder, ttl, self.clock,
                                   on_gain=self._tick_soon, busy=self._busy)
            split.start()
            self._split = (self.settings, split)

    def _busy(self, name: str) -> bool:
        """Whether the organization ``name`` is ticking now."""
        lane = self.lanes.get(name)
        return lane is not None and lane.lock.locked()

    def _tick_soon(self, name: str) -> None:
        """An organization's lease was just taken (a leader died or paused): tick it now."""
        lane = self.lanes.get(name)
        if lane is not None and lane.ticks:
            with contextlib.suppress(JobLookupError, SchedulerNotRunningError):  # stopping
                self.scheduler.modify_job(lane.job, next_run_time=self.clock())

    def _stop_heartbeat(self, lane: Lane) -> None:
        beating, lane.heartbeat = lane.heartbeat, None
        if beating is not None:
            beating.stop()

    def tick(self, name: str | None = None) -> TickReport | None:
        """One tick of the organization ``name`` (the first by default); a failure is logged
        with its reason and survived."""
        lane = self.lanes[name] if name is not None else next(iter(self.lanes.values()))
        started, at = time.monotonic(), self.clock()
        report: TickReport | None = None
        error: Exception | None = None
        extra = {"organization": lane.label}
        with lane.lock:
            try:
                report = self._run(lane, at)
                self._log(report, time.monotonic() - started, lane.label)
            except (GuardError, OSError) as exc:
                error = exc
                log.error("tick%s failed, trying again next interval: %s", _of(lane.label), exc,
                          extra=extra)
            except Exception as exc:
                error = exc
                log.exception("tick%s failed unexpectedly, trying again next interval",
                              _of(lane.label), extra=extra)
            finally:
                lane.ticks += 1
                with self._lock:
                    self.ticks += 1
        self.heap.settle()
        if self.observe is not None:
            self.observe(report, time.monotonic() - started, at, error, lane.label)
        return report

    def _run(self, lane: Lane, at: datetime) -> TickReport:
        """A tick with the store, or without it when it cannot even be opened."""
        try:
            guard = self.guard(lane)
        except StoreError as exc:
            if self.degrade is None:
                raise
            if lane.degraded is None or lane.degraded[0] is not lane.org.settings:
                lane.degraded = (lane.org.settings, self.degrade(lane.org))
            return _named(run_degraded(lane.degraded[1], at, exc), lane.label)
        return _named(run_tick(guard.tick, at), lane.label)

    def _schedule(self, lane: Lane, first_at: datetime | None = None) -> None:
        interval = self.settings.anthropic.poll_interval_s
        trigger = IntervalTrigger(seconds=interval, jitter=max(1, interval // 10), timezone=UTC)
        self.scheduler.add_job(self.tick, trigger, args=(lane.org.name,), id=lane.job,
                               replace_existing=True, max_instances=1, coalesce=True,
                               misfire_grace_time=interval, next_run_time=first_at)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: finishing the ticks in flight", signal.Signals(signum).name)
        threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": True},
                         daemon=True).start()

    def _reload(self, _signum: int, _frame: FrameType | None) -> None:
        try:
            fresh = load_settings(self.config_path)
        except ConfigError as exc:
            log.error("SIGHUP: config reload refused, the old config keeps running: %s", exc)
            return
        changed = fresh.anthropic.poll_interval_s != self.settings.anthropic.poll_interval_s
        self.settings = fresh  # the next ticks build their parts from these
        self._reorganize(fresh, changed)
        log.info("SIGHUP: config reloaded from %s", self.config_path)

    def _reorganize(self, fresh: Settings, rescheduled: bool) -> None:
        """Give each lane its organization of ``fresh``; schedule new ones, drop gone ones."""
        first_at = self.clock() + timedelta(seconds=fresh.anthropic.poll_interval_s)
        orgs = {org.name: org for org in fresh.organizations_in_force()}
        for name, lane in list(self.lanes.items()):
            if name not in orgs or orgs[name].several != lane.org.several:
                del self.lanes[name]
                with contextlib.suppress(JobLookupError, SchedulerNotRunningError):
                    self.scheduler.remove_job(lane.job)
                threading.Thread(target=self._retire, args=(lane, True), daemon=True).start()
        for name, org in orgs.items():
            fresh_lane = name not in self.lanes
            lane = self.lanes.setdefault(name, Lane(org))
            lane.org = org
            if fresh_lane or rescheduled:
                with contextlib.suppress(SchedulerNotRunningError):
                    self._schedule(lane, first_at=self.clock() if fresh_lane else first_at)

    def _retire(self, lane: Lane, waiting: bool = False) -> None:
        """Close an organization's parts (its heartbeat first); ``waiting`` for its tick in
        flight to finish (an organization a reload removed)."""
        with lane.lock if waiting else contextlib.nullcontext():
            self._stop_heartbeat(lane)
            old, lane.guard = lane.guard, None
            if old is not None:
                if waiting and not lane.org.several:
                    old.tick.release()
                old.close()

    def _log(self, report: TickReport, seconds: float, label: str) -> None:
        body = report.as_json()
        extra = {"organization": label}
        log.info("tick%s finished in %.2fs: fallback %s (%s)%s, %d notifications, %d owed, "
                 "%d Admin API requests%s", _of(label), seconds, body["fallback"]["tier"],
                 body["fallback"]["source"], " changed" if body["fallback"]["changed"] else "",
                 len(body["notifications"]), body["notifications_owed"],
                 body["api_requests"], " [standby]" if report.standby else
                 " [without the state store]" if report.store_error else "", extra=extra)
        if report.upstream_error:
            log.warning("Admin API%s unavailable; decided on stored data: %s", _of(label),
                        report.upstream_error, extra=extra)


def _of(label: str) -> str:
    """`` of acme`` for an organization of several; nothing for the one."""
    return f" of {label}" if label else ""


def _named(report: TickReport, label: str) -> TickReport:
    """``report`` carrying its organization's name, when it is one of several."""
    return replace(report, organization=label) if label else report
