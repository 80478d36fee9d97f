"""What every command shares: global options, ``--at``, exit codes, errors without tracebacks."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from guard.entry.common import failure
from guard.errors import GuardError, InvalidInput

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Options:
    """Global options, resolved once."""

    config_path: Path


AtOption = Annotated[str | None, typer.Option(
    "--at", help="Evaluate as of this RFC 3339 instant; no data after it is requested.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
DryRunOption = Annotated[bool, typer.Option(
    "--dry-run", help="Compute everything, change nothing (no files, no Slack, no keys, "
                      "no state).")]


def now() -> datetime:
    """The wall clock, read once per command."""
    return datetime.now(UTC)


def caller() -> str:
    """Who is acting: ``$GUARD_ACTOR`` or the OS user."""
    actor = os.environ.get("GUARD_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


AT_AHEAD = timedelta(minutes=1)
"""How far past the wall clock ``--at`` may be (clock skew); later is refused (DESIGN §3)."""


def parse_at(raw: str | None, wall: datetime) -> datetime:
    """``--at`` as an aware UTC datetime; ``wall`` when absent.

    A moment later than the wall clock + 1 minute is refused before anything is opened: data
    of the future does not exist, and deciding on it would write a fallback and alert states
    from $0 of spend.
    """
    if raw is None:
        return wall
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput([("--at", f"not an RFC 3339 timestamp: {raw!r}")]) from None
    if moment.tzinfo is None:
        raise InvalidInput([("--at", f"{raw!r} has no time zone (add Z or an offset)")])
    moment = moment.astimezone(UTC)
    if moment > wall + AT_AHEAD:
        raise InvalidInput([("--at", f"{raw} is in the future (now is "
                                    f"{wall.strftime('%Y-%m-%dT%H:%M:%SZ')}); nothing was done")])
    return moment


def guarded(action: Callable[[], T]) -> T:
    """Run ``action``; a known error becomes a clear message and its exit code."""
    try:
        return action()
    except GuardError as exc:
        fail(*failure(exc))


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


def console() -> Console:
    """A console for stdout; wide enough for the table when piped or captured."""
    from rich.console import Console  # noqa: PLC0415  (rich loads only for terminal output)

    return Console() if sys.stdout.isatty() else Console(width=160)


def dry(dry_run: bool) -> str:
    """`` [dry run]`` when it was one."""
    return " [dry run]" if dry_run else ""
