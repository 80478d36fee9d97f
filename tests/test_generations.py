"""The daemon builds its parts once per settings generation, not once per tick."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes import MemoryOutbox, MemoryState, RecordingSinks, RecordingTransport, StaticFetcher
from test_shell import AT, CONFIG, snapshot

from guard.adapters.admin.client import AdminClient
from guard.adapters.store.engine import Store
from guard.config.organizations import Organization
from guard.entry import wiring
from guard.entry.daemon import Daemon
from guard.entry.wiring import Guard
from guard.shell.tick import Tick


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with wiring.opened_store(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        yield opened


def write_config(path: Path, interval: int) -> Path:
    path.write_text(f"[anthropic]\npoll_interval_s = {interval}\n")
    return path


class Builder:
    """Builds a generation on fakes and remembers every one it built."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.built: list[Guard] = []

    def __call__(self, org: Organization) -> Guard:
        settings = org.settings
        outbox = MemoryOutbox()
        tick = Tick(StaticFetcher(snapshot()), MemoryState(), outbox, outbox, outbox,
                    RecordingSinks(), RecordingTransport(), CONFIG)
        http = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(500)))
        self.built.append(Guard(settings, self.store, AdminClient(http), tick))
        return self.built[-1]


def test_ticks_share_one_generation_until_a_reload(tmp_path: Path, store: Store) -> None:
    """Three ticks build the parts once; after SIGHUP the next tick builds a new generation
    and closes the old one's HTTP client."""
    config = write_config(tmp_path / "guard.toml", 60)
    build = Builder(store)
    daemon = Daemon(config, build, clock=lambda: AT)
    reports = [daemon.tick() for _ in range(3)]
    assert all(r is not None and r.fallback.tier == "sonnet" for r in reports)
    assert len(build.built) == 1
    write_config(config, 30)
    daemon._reload(signal.SIGHUP, None)
    assert len(build.built) == 1  # nothing is built or closed inside the signal handler
    daemon.tick()
    assert len(build.built) == 2
    assert build.built[0].admin.http.is_closed and not build.built[1].admin.http.is_closed
    assert build.built[1].settings.anthropic.poll_interval_s == 30


def test_a_refused_reload_keeps_the_generation(tmp_path: Path, store: Store) -> None:
    """A broken config on SIGHUP changes nothing: the same parts serve the next tick."""
    config = write_config(tmp_path / "guard.toml", 60)
    build = Builder(store)
    daemon = Daemon(config, build, clock=lambda: AT)
    daemon.tick()
    config.write_text("[anthropic]\npoll_interval_s = 1\n")
    daemon._reload(signal.SIGHUP, None)
    daemon.tick()
    assert len(build.built) == 1 and not build.built[0].admin.http.is_closed


def test_a_generation_that_cannot_be_built_fails_the_tick_and_is_tried_again(
        tmp_path: Path, store: Store) -> None:
    """A build failure (a store down, say) is a failed tick; the next tick builds afresh."""
    config = write_config(tmp_path / "guard.toml", 60)
    build = Builder(store)
    calls: list[int] = []

    def flaky(org: Organization) -> Guard:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("state store unavailable")
        return build(org)

    daemon = Daemon(config, flaky, clock=lambda: AT)
    assert daemon.tick() is None
    assert daemon.tick() is not None and len(calls) == 2 and len(build.built) == 1
