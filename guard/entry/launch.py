"""The console script's first step: answer what needs little before importing everything.

The command line (``guard.entry.cli``) pulls in typer, rich, pydantic, SQLAlchemy and httpx,
about a second of CPU. ``--version`` needs none of it (tools and health checks call it
often), so it is answered here from the standard library. A plain ``fallback status`` (what
on-call types and scripts poll) needs only the configuration and the store, so it goes to
``guard.entry.status``. A plain ``run`` (the daemon) needs no typer and no rich, which it would
otherwise hold for its whole life, so it goes to ``guard.entry.run``. Everything else goes on
to ``guard.entry.cli.main``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

STATUS = ["fallback", "status"]
RUN = ["run"]


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
    if (config := run_form(args)) is not None:
        from guard.entry import run  # noqa: PLC0415  (the daemon's imports, no typer or rich)

        sys.exit(run.main(config[0]))
    from guard.entry.cli import main as cli  # noqa: PLC0415  (the heavy imports, only now)

    cli()


def status_form(args: Sequence[str]) -> tuple[Path | None, bool] | None:
    """``(--config, --json)`` of a plain ``[--config PATH] fallback status [--json]``, else
    None (the command line then parses it, and says what is wrong with it)."""
    config, rest = config_option(args)
    if rest not in (STATUS, [*STATUS, "--json"]):
        return None
    return config, rest[-1] == "--json"


def run_form(args: Sequence[str]) -> tuple[Path | None] | None:
    """``(--config,)`` of a plain ``[--config PATH] run``, else None (the command line's)."""
    config, rest = config_option(args)
    return (config,) if rest == RUN else None


def config_option(args: Sequence[str]) -> tuple[Path | None, list[str]]:
    """A leading ``--config PATH`` (or ``--config=PATH``) and the arguments after it."""
    rest = list(args)
    if rest[:1] == ["--config"] and len(rest) > 1 and rest[1] and not rest[1].startswith("-"):
        return Path(rest[1]), rest[2:]
    if rest[:1] and rest[0].startswith("--config=") and rest[0] != "--config=":
        return Path(rest[0].removeprefix("--config=")), rest[1:]
    return None, rest
