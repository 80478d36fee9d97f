"""`guard run` as a real process against the simulated Admin API and the Slack fake."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from slackfake import SlackFake

from guard.sim import Fault, SimClock, SimOrg, SimServer

KEY = "sk-ant-admin-daemon-test"


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimOrg.generate(3), SimClock(datetime.now(UTC)), admin_key=KEY) as server:
        yield server


class Running:
    """A `guard run` subprocess whose JSON log lines are collected as they come."""

    def __init__(self, config: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "guard", "--config", str(config), "run"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        self.lines: queue.Queue[dict[str, str]] = queue.Queue()
        self.seen: list[dict[str, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                self.lines.put({"msg": raw.rstrip(), "level": "raw"})

    def wait_for(self, text: str, timeout: float = 60) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line.get("msg", ""):
                return line
        raise AssertionError(f"never logged {text!r}; saw {[s['msg'][:80] for s in self.seen]}")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=60)
        self.reader.join(timeout=10)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return code


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(path: Path, sim: SimServer, slack: SlackFake, port: int = 0) -> Path:
    path.write_text(
        f'[anthropic]\nadmin_api_key = "{KEY}"\nbase_url = "{sim.base_url}"\n'
        "poll_interval_s = 10\nmax_retries = 0\n"
        f'[http]\nlisten = "127.0.0.1:{port}"\nadmin_token = "daemon-admin-token"\n'
        f'[state]\nurl = "sqlite:///{path.parent / "state.db"}"\n'
        f'[fallback]\nenv_file = "{path.parent / "model.env"}"\n'
        f'state_file = "{path.parent / "fallback.json"}"\n'
        f'[slack]\nbot_token = "{slack.token}"\nbase_url = "{slack.base_url}"\n'
        f'channel = "{slack.channel}"\n'
        '[[budgets]]\nname = "org"\nscope = "organization"\n'
        "soft_limit_usd = 100\nhard_limit_usd = 1000000\n")
    return path


def until(url: str, status: int, timeout: float = 30) -> bool:
    """Poll ``url`` until it answers ``status``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(url).status_code == status:
            return True
        time.sleep(0.3)
    return False


def test_http_surface_follows_the_admin_api(tmp_path: Path, sim: SimServer) -> None:
    """/metrics parses with all families; /readyz is 503 while the API is down, 200 after."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with SlackFake() as slack:
        daemon = Running(write_config(tmp_path / "guard.toml", sim, slack, port))
        try:
            daemon.wait_for("tick finished")
            assert httpx.get(f"{base}/healthz").status_code == 200
            assert httpx.get(f"{base}/readyz").status_code == 200
            families = {f.name for f in text_string_to_metric_families(
                httpx.get(f"{base}/metrics").text)}
            assert {"budget_guard_spend_usd", "budget_guard_forecast_usd",
                    "budget_guard_condition_firing", "budget_guard_fallback_level",
                    "budget_guard_data_age_seconds"} <= families
            assert httpx.get(f"{base}/v1/fallback").json()["tier"] in ("opus", "sonnet")
            assert httpx.post(f"{base}/v1/fallback/pin", json={
                "tier": "haiku", "for": "1h", "reason": "x"}).status_code == 401
            sim.inject(Fault(status=503, count=10_000))
            daemon.wait_for("Admin API unavailable", timeout=30)
            assert until(f"{base}/readyz", 503)
            sim.clear_faults()
            daemon.wait_for("tick finished", timeout=30)
            assert until(f"{base}/readyz", 200)
        finally:
            assert daemon.stop() == 0


def test_sigterm_mid_tick_finishes_the_tick_and_exits_0(tmp_path: Path, sim: SimServer) -> None:
    """SIGTERM during the first tick (held inside its first usage read until the signal
    was received): the tick completes, then a clean exit 0."""
    entered, release = threading.Event(), threading.Event()

    def hold(_: object) -> None:
        entered.set()
        release.wait(60)

    sim.inject(Fault(count=1, path="usage_report", corrupt=hold))
    with SlackFake() as slack:
        daemon = Running(write_config(tmp_path / "guard.toml", sim, slack))
        assert entered.wait(90), "the first tick never read usage"
        daemon.process.send_signal(signal.SIGTERM)
        daemon.wait_for("SIGTERM received")
        release.set()
        code = daemon.process.wait(timeout=60)
        daemon.wait_for("stopped after 1 ticks")
        daemon.reader.join(timeout=10)
        assert daemon.process.stderr is not None
        daemon.process.stderr.close()
    messages = [line.get("msg", "") for line in daemon.seen]
    assert code == 0
    assert any("SIGTERM received" in m for m in messages)
    finished = [m for m in messages if m.startswith("tick finished")]
    assert finished and messages.index(finished[0]) > next(
        i for i, m in enumerate(messages) if "SIGTERM received" in m)
    assert (tmp_path / "model.env").exists()
    assert any("starting" in m and "**********" in m for m in messages)
    assert KEY not in "\n".join(messages)


def test_sighup_with_a_broken_config_keeps_the_old_one(tmp_path: Path, sim: SimServer) -> None:
    """A bad config on SIGHUP is refused; the daemon keeps ticking; SIGTERM exits 0."""
    with SlackFake() as slack:
        config = write_config(tmp_path / "guard.toml", sim, slack)
        daemon = Running(config)
        daemon.wait_for("tick finished")
        config.write_text(config.read_text().replace("soft_limit_usd = 100",
                                                     "soft_limit_usd = -5"))
        daemon.process.send_signal(signal.SIGHUP)
        refused = daemon.wait_for("config reload refused")
        assert "budgets[0].soft_limit_usd" in refused["msg"]
        assert daemon.process.poll() is None
        daemon.wait_for("tick finished", timeout=30)
        assert daemon.stop() == 0
        assert slack.posts(), "the soft limit was reported to Slack"
