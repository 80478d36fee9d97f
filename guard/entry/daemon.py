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
from dataclasses import dataclass
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
from guard.config import Settings, load_settings, render_settings
from guard.core.summary import TickReport
from guard.entry.heartbeat import Heartbeat
from guard.entry.wiring import Guard, daemon_holder
from guard.errors import ConfigError, GuardError, StoreError
from guard.shell.degraded import Degraded, run_degraded
from guard.shell.tick import run_tick

log = logging.getLogger("guard.daemon")
Builder = Callable[[Settings], Guard]
DegradedBuilder = Callable[[Settings], Degraded]
Observer = Callable[[TickReport | None, float, datetime, Exception | None], None]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage()}
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
class Daemon:
    """Loads the config, schedules ticks and handles signals."""

    config_path: Path
    build: Builder
    observe: Observer | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    degrade: DegradedBuilder | None = None
    """The parts of ticks while the store cannot even be opened (``None``: they fail)."""

    def __post_init__(self) -> None:
        self.settings = load_settings(self.config_path)
        self.scheduler = BlockingScheduler(timezone=UTC,
                                           executors={"default": ThreadPoolExecutor(1)})
        self.ticks = 0
        self._guard: Guard | None = None
        self._heartbeat: Heartbeat | None = None
        self._degraded: tuple[Settings, Degraded] | None = None

    def run(self) -> int:
        """Schedule, block until a signal stops the scheduler, and return the exit code."""
        log.info("budget-guard %s starting; effective config:\n%s", __version__,
                 render_settings(self.settings))
        self._schedule(first_at=self.clock())
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._reload)
        self.scheduler.start()
        self._stop_heartbeat()
        self._release()
        self._retire()
        log.info("stopped after %d ticks", self.ticks)
        return 0

    def _release(self) -> None:
        """Give the leader lease up on a clean exit, so a standby takes over at once."""
        current = self._guard
        if current is None:
            return
        try:
            if current.tick.release():
                log.info("leader lease released")
        except GuardError as exc:
            log.warning("leader lease not released (it expires on its own): %s", exc)

    def guard(self) -> Guard:
        """The parts of the current settings generation, built on first use after a reload.

        Only the tick thread calls it, between ticks, so a generation is never closed under
        a tick in flight.
        """
        current = self._guard
        if current is not None and current.settings is not self.settings:
            self._retire()
            current = None
        if current is None:
            current = self._guard = self.build(self.settings)
            current.tick.holder = daemon_holder(self.settings)
            if self._degraded is not None and self._degraded[0] is self.settings:
                current.tick.degraded = self._degraded[1]  # its journal, in memory too
            self._degraded = None
            self._heartbeat = Heartbeat(current.tick.lease, current.tick.holder,
                                        current.tick.config.lease_ttl, self.clock,
                                        on_gain=self._tick_soon).start()
        return current

    def _tick_soon(self) -> None:
        """The heartbeat just took the lease (the leader died or paused): tick now."""
        if self.ticks:
            with contextlib.suppress(JobLookupError, SchedulerNotRunningError):  # stopping
                self.scheduler.modify_job("tick", next_run_time=self.clock())

    def _stop_heartbeat(self) -> None:
        beating, self._heartbeat = self._heartbeat, None
        if beating is not None:
            beating.stop()

    def tick(self) -> TickReport | None:
        """One tick; a failure is logged with its reason and survived."""
        started, at = time.monotonic(), self.clock()
        report: TickReport | None = None
        error: Exception | None = None
        try:
            report = self._run(at)
            self._log(report, time.monotonic() - started)
        except (GuardError, OSError) as exc:
            error = exc
            log.error("tick failed, trying again next interval: %s", exc)
        except Exception as exc:
            error = exc
            log.exception("tick failed unexpectedly, trying again next interval")
        finally:
            self.ticks += 1
        if self.observe is not None:
            self.observe(report, time.monotonic() - started, at, error)
        return report

    def _run(self, at: datetime) -> TickReport:
        """A tick with the store, or without it when it cannot even be opened."""
        try:
            guard = self.guard()
        except StoreError as exc:
            if self.degrade is None:
                raise
            if self._degraded is None or self._degraded[0] is not self.settings:
                self._degraded = (self.settings, self.degrade(self.settings))
            return run_degraded(self._degraded[1], at, exc)
        return run_tick(guard.tick, at)

    def _schedule(self, first_at: datetime | None = None) -> None:
        interval = self.settings.anthropic.poll_interval_s
        trigger = IntervalTrigger(seconds=interval, jitter=max(1, interval // 10), timezone=UTC)
        self.scheduler.add_job(self.tick, trigger, id="tick", replace_existing=True,
                               max_instances=1, coalesce=True, misfire_grace_time=interval,
                               next_run_time=first_at)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: finishing the tick in flight", signal.Signals(signum).name)
        threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": True},
                         daemon=True).start()

    def _reload(self, _signum: int, _frame: FrameType | None) -> None:
        try:
            fresh = load_settings(self.config_path)
        except ConfigError as exc:
            log.error("SIGHUP: config reload refused, the old config keeps running: %s", exc)
            return
        changed = fresh.anthropic.poll_interval_s != self.settings.anthropic.poll_interval_s
        self.settings = fresh  # the next tick builds its parts from these
        if changed:
            self._schedule(first_at=self.clock() + timedelta(
                seconds=fresh.anthropic.poll_interval_s))
        log.info("SIGHUP: config reloaded from %s", self.config_path)

    def _retire(self) -> None:
        """Close the current generation's parts (its heartbeat first)."""
        self._stop_heartbeat()
        old, self._guard = self._guard, None
        if old is not None:
            old.close()

    def _log(self, report: TickReport, seconds: float) -> None:
        body = report.as_json()
        log.info("tick finished in %.2fs: fallback %s (%s)%s, %d notifications, %d owed, "
                 "%d Admin API requests%s", seconds, body["fallback"]["tier"],
                 body["fallback"]["source"], " changed" if body["fallback"]["changed"] else "",
                 len(body["notifications"]), body["notifications_owed"],
                 body["api_requests"], " [standby]" if report.standby else
                 " [without the state store]" if report.store_error else "")
        if report.upstream_error:
            log.warning("Admin API unavailable; decided on stored data: %s",
                        report.upstream_error)

