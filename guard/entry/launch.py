"""The console script's first step: answer ``guard --version`` before importing anything.

The command line (``guard.entry.cli``) pulls in typer, rich, pydantic, SQLAlchemy and httpx,
about a second of CPU; ``--version`` needs none of it (tools and health checks call it
often), so it is answered here from the standard library, and everything else goes on to
``guard.entry.cli.main``.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:] == ["--version"]:
        from guard import __version__  # noqa: PLC0415  (guard/__init__ is stdlib only)

        print(f"budget-guard {__version__}")
        return
    from guard.entry.cli import main as cli  # noqa: PLC0415  (the heavy imports, only now)

    cli()
