"""``guard run`` without the command line's imports (issue 13).

The daemon logs JSON or plain lines and prints nothing else, so it needs neither typer nor
rich (about 4.5 MB resident, held for the daemon's whole life). ``launch`` sends the plain
form, ``guard [--config PATH] run``, here; everything else (``--help``, a typo, another
option) goes to the command line, whose ``run`` command calls ``run`` below too. Both end a
failed start with ``common.failure``, so the messages and the exit codes are the same.
(httpx's own command line, which would bring rich back, is kept out by ``guard.entry``.)
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from guard.config import Settings, resolve_config_path
from guard.core.summary import TickReport
from guard.entry import wiring
from guard.entry.common import EXIT_UPSTREAM, failure
from guard.entry.daemon import Daemon, configure_logging
from guard.entry.http import HttpState, OrganizationsState, build_app
from guard.entry.metrics import Metrics
from guard.entry.server import HttpServer
from guard.errors import ConfigError, GuardError
from guard.shell.ops import Ops

if TYPE_CHECKING:
    from slack_sdk.socket_mode import SocketModeClient


class StartFailed(Exception):
    """The daemon could not start: the message for stderr and the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def main(config: Path | None) -> int:
    """``guard [--config PATH] run``: the exit code; a failed start printed on stderr."""
    try:
        return run(resolve_config_path(config, os.environ))
    except StartFailed as exc:
        print(exc.message, file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:  # during start-up; once running, SIGINT stops it cleanly
        print("Aborted!", file=sys.stderr)
        return 1


def run(config_path: Path) -> int:
    """The daemon with its HTTP endpoint (and Socket Mode with an app token) until SIGTERM;
    its exit code. Raises ``StartFailed`` when it cannot start."""
    configure_logging()
    stores = wiring.Stores()
    try:
        daemon = Daemon(
            config_path, lambda org: wiring.build_organization(org, stores),
            degrade=lambda org: wiring.degraded(org.settings, wiring.admin_client(org.settings),
                                                organization=org.name if org.several else None))
    except GuardError as exc:
        raise StartFailed(*failure(exc)) from None
    names = [org.name for org in daemon.settings.organizations_in_force()]
    state = OrganizationsState(names) if daemon.settings.several else HttpState()
    metrics = Metrics(names if daemon.settings.several else ())

    def observe(report: TickReport | None, seconds: float, at: datetime,
                error: Exception | None, organization: str) -> None:
        if isinstance(state, OrganizationsState):
            state.update(report, at, error, organization)
        else:
            state.update(report, at, error)
        metrics.observe(report, seconds, at, error, organization)

    daemon.observe = observe

    def on_call() -> Ops:
        if daemon.settings.several:
            raise ConfigError([("organization", "on-call writes over HTTP and Slack name no "
                                "organization yet, so with [[organizations]] they are refused")])
        return wiring.ops(daemon.settings, stores.get(daemon.settings.state.url))

    http = daemon.settings.http
    server = HttpServer(build_app(state, metrics, lambda: daemon.settings, on_call))
    try:
        server.start(http.host, http.port)
    except OSError as exc:
        raise StartFailed(f"error: cannot listen on {http.listen}: {exc.strerror or exc}",
                          EXIT_UPSTREAM) from None
    listener = socket_mode(daemon.settings, on_call, daemon.clock)
    try:
        return daemon.run()
    finally:
        server.stop()
        stores.close()
        if listener is not None:
            listener.close()


def socket_mode(settings: Settings, on_call: Callable[[], Ops],
                clock: Callable[[], datetime]) -> SocketModeClient | None:
    """Start on-call from Slack when an app token is configured (else None); slack-sdk is
    imported only then."""
    app_token = settings.slack.secret_value("app_token")
    if not app_token:
        return None
    from guard.entry.oncall import OnCall, start_socket_mode  # noqa: PLC0415

    try:
        oncall = OnCall(on_call(), settings.slack.oncall_user_ids,
                        wiring.transport_for(settings), clock)
        client = wiring.socket_mode_client(app_token, settings.slack.base_url)
        return start_socket_mode(client, oncall)
    except GuardError as exc:
        logging.getLogger("guard.daemon").error("Socket Mode not started: %s", exc)
        return None
