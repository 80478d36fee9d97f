"""The console script's first step: answer what needs little before importing everything.

The command line (``guard.entry.cli``) pulls in typer, rich, pydantic, SQLAlchemy and httpx,
about a second of CPU. ``--version`` needs none of it (tools and health checks call it
often), so it is answered here from the standard library. A plain ``fallback status`` (what
on-call types and scripts poll) needs only the configuration and the store, so it goes to
``guard.entry.status``. Everything else goes on to ``guard.entry.cli.main``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

STATUS = ["fallback", "status"]


def main() -> None:
    """Console-script entry point."""
    args = sys.argv[1:]
    if args == ["--version"]:
        from guard import __version__  # noqa: PLC0415  (guard/__init__ is stdlib only)

        print(f"budget-guard {__version__}")
        return
    if (form := status_form(args)) is not None:
        from guard.entry import status  # noqa: PLC0415  (pydantic and SQLAlchemy, no more)

        sys.exit(status.main(*form))
    from guard.entry.cli import main as cli  # noqa: PLC0415  (the heavy imports, only now)

    cli()


def status_form(args: Sequence[str]) -> tuple[Path | None, bool] | None:
    """``(--config, --json)`` of a plain ``[--config PATH] fallback status [--json]``, else
    None (the command line then parses it, and says what is wrong with it)."""
    rest, config = list(args), None
    if rest[:1] == ["--config"] and len(rest) > 1 and rest[1] and not rest[1].startswith("-"):
        config, rest = Path(rest[1]), rest[2:]
    elif rest[:1] and rest[0].startswith("--config=") and rest[0] != "--config=":
        config, rest = Path(rest[0].removeprefix("--config=")), rest[1:]
    if rest not in (STATUS, [*STATUS, "--json"]):
        return None
    return config, rest[-1] == "--json"
