"""``guard fallback status`` without the command line's imports (issue 13).

The command line loads typer, httpx, rich and every part of a tick; the status of the fallback
needs only the configuration (pydantic) and the state store (SQLAlchemy). ``launch`` sends
the plain forms, ``guard [--config PATH] fallback status [--json]``, here, and everything else
(``--help``, a typo, another option) to the command line. Both print ``status_text`` and end
on an error with ``common.failure``, so the output and the exit codes are the same.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from guard.config import load_settings, resolve_config_path
from guard.entry.common import failure, log_to_stderr
from guard.entry.stores import opened_store, ops
from guard.errors import GuardError
from guard.shell.ops import describe_status


def status_text(config_path: Path, as_json: bool) -> str:
    """The fallback in force, why, and any pin, read from the store; raises ``GuardError``."""
    settings = load_settings(config_path)
    with opened_store(settings.state.url) as store:
        found = ops(settings, store).fallback_status(datetime.now(UTC))
    return json.dumps(found, indent=2) if as_json else describe_status(found)


def main(config: Path | None, as_json: bool) -> int:
    """Print the status, or the error on stderr; the exit code (as the command line ends)."""
    log_to_stderr()
    try:
        text = status_text(resolve_config_path(config, os.environ), as_json)
    except GuardError as exc:
        message, code = failure(exc)
        print(message, file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("Aborted!", file=sys.stderr)
        return 1
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `guard fallback status | head -1`: quietly 1, as click does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0
