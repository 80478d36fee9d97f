"""What every command shares and needs no library for: exit codes, the message and code each
known error ends a command with, and logging to stderr.

Standard library only, so that a command answered before the command line's imports
(``guard.entry.status``) ends exactly as the command line would.
"""

from __future__ import annotations

import logging
import sys

from guard.errors import ConfigError, GuardError, StoreError, UpstreamError

EXIT_CONFIG = 2
EXIT_UPSTREAM = 3
EXIT_STANDBY = 4


def failure(exc: GuardError) -> tuple[str, int]:
    """What a command prints on stderr for ``exc``, and the code it exits with."""
    if isinstance(exc, ConfigError):
        return str(exc), EXIT_CONFIG
    if isinstance(exc, UpstreamError | StoreError):
        return f"error: {exc}", EXIT_UPSTREAM
    return f"error: {exc}", 1


def log_to_stderr() -> None:
    """Warnings and errors of every logger on stderr, one line each."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
