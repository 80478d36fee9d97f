"""``guard`` with a SIGKILL planted at an effect boundary, for the SIGKILL campaign.

    python tests/faults/killer.py POINT -- --config guard.toml check --json --at STAMP

``POINT`` is ``none`` (a plain run) or ``BOUNDARY.WHEN:N``: the process sends itself SIGKILL
``before`` or ``after`` the ``N``-th call of that boundary in this process, then (if the
point never came) runs to its end as ``guard`` would. Boundaries are the guard's own
functions, patched in this process only: the store's writes (caches, the decision's
transaction, the fallback, the audit log, the lease), the outbox's claim and marks, the
Slack Web API's calls, the fallback files. ``request`` is any HTTP request, to the Admin API
(httpx) or to Slack (slack-sdk), counted together: the seeded-random points.

Slack's pacing (one message a second per channel) is turned off: the fake Slack has no rate
limit, and a month of ticks would otherwise spend most of its time asleep. Nothing else of
the guard is changed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from guard.adapters import chat, sinks, slack
from guard.adapters.store.caches import Caches
from guard.adapters.store.lease import Lease
from guard.adapters.store.outbox import Outbox
from guard.adapters.store.state import Records

KILLED = -signal.SIGKILL
"""A ``Popen.returncode`` of a process that SIGKILL ended."""

BOUNDARIES: dict[str, tuple[Any, str]] = {
    "lease.hold": (Lease, "hold"),
    "lease.release": (Lease, "release"),
    "cache.usage": (Caches, "replace_usage_hours"),
    "cache.cost": (Caches, "replace_cost_days"),
    "cache.meta": (Caches, "set_meta"),
    "outbox.enqueue": (Outbox, "enqueue"),
    "states.save": (Records, "save_alert_states"),
    "decision.commit": (Records, "together"),
    "outbox.claim": (Outbox, "claim"),
    "outbox.remember": (Outbox, "remember_message"),
    "outbox.delivered": (Outbox, "delivered"),
    "slack.find": (slack.SlackWebApi, "find"),
    "slack.post": (slack.SlackWebApi, "post"),
    "slack.update": (slack.SlackWebApi, "update"),
    "sinks.write": (sinks.FileSinks, "write"),
    "file.write": (sinks, "atomic_write"),
    "fallback.save": (Records, "save_fallback"),
    "audit": (Records, "audit"),
}
"""Where a hook can kill: name → (owner, attribute)."""


def die() -> None:
    """SIGKILL this process: no handler, no cleanup, no flush."""
    os.kill(os.getpid(), signal.SIGKILL)


def plant(boundary: str, when: str, nth: int) -> None:
    """Kill ``when`` ("before" or "after") the ``nth`` call of ``boundary``."""
    if when not in ("before", "after") or nth < 1:
        raise SystemExit(f"killer: bad point {boundary}.{when}:{nth}")
    calls = 0

    def counted() -> bool:
        nonlocal calls
        calls += 1
        return calls == nth

    if boundary == "request":
        _plant_requests(when, counted)
        return
    owner, name = BOUNDARIES[boundary]
    original: Callable[..., Any] = getattr(owner, name)
    if boundary == "decision.commit":
        setattr(owner, name, _commit_hook(original, when, counted))
        return

    @functools.wraps(original)
    def hooked(*args: Any, **kwargs: Any) -> Any:
        hit = counted()
        if hit and when == "before":
            die()
        result = original(*args, **kwargs)
        if hit:
            die()
        return result

    setattr(owner, name, hooked)


def _commit_hook(original: Callable[..., Any], when: str,
                 counted: Callable[[], bool]) -> Callable[..., Any]:
    """``Records.together``: "before" kills inside the transaction, after every write of the
    decision and before its commit; "after" kills right after the commit."""

    @contextlib.contextmanager
    def together(self: Records) -> Iterator[object]:
        hit = counted()
        with original(self) as conn:
            yield conn
            if hit and when == "before":
                die()
        if hit:
            die()

    return together


def _plant_requests(when: str, counted: Callable[[], bool]) -> None:
    """Count every HTTP request, Admin API and Slack alike, and kill at the chosen one."""
    send = httpx.Client.send

    @functools.wraps(send)
    def sending(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        hit = counted()
        if hit and when == "before":
            die()
        try:
            return send(self, request, **kwargs)
        finally:
            if hit:
                die()

    guarded = slack._guarded

    def slack_call(method: str, secret: str, call: Callable[[], Any]) -> Any:
        hit = counted()
        if hit and when == "before":
            die()
        try:
            return guarded(method, secret, call)
        finally:
            if hit:
                die()

    httpx.Client.send = sending  # type: ignore[method-assign]
    slack._guarded = slack_call


def unpaced() -> None:
    """No waiting between Slack messages (the fake has no rate limit)."""
    chat.PacedTransport._wait = lambda self, channel: None  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    """Plant the point, then run guard's command line with the arguments after ``--``."""
    if len(argv) < 2 or argv[1] != "--":
        raise SystemExit(__doc__)
    point, args = argv[0], argv[2:]
    unpaced()
    if point != "none":
        where, _, nth = point.rpartition(":")
        boundary, _, when = where.rpartition(".")
        plant(boundary, when, int(nth))
    from guard.entry.cli import main as guard_main  # noqa: PLC0415

    sys.argv = ["guard", *args]
    guard_main()


if __name__ == "__main__":
    main(sys.argv[1:])
