"""The fallback sinks: the env file, the JSON state file and the reload hook (DESIGN §5).

Applications read the env file (systemd ``EnvironmentFile=``, ``docker --env-file``, POSIX
``set -a; . file``) and the state file; both are replaced atomically (temp file in the same
directory, fsync, rename, fsync of the directory), so a reader sees the old file or the new
one, never a partial or empty one. What goes into them is ``guard.core.fallback``'s rendering.

Writing is level-triggered and idempotent: ``FileSinks.write`` may be called every tick with
the desired state and rewrites only files whose content differs, so the caller keeps
``FallbackState.updated_at`` at the time of the last *change*, not the tick.

The reload contract belongs to the caller: ``FileSinks.reload`` runs the hook every time it is
called. Call it once after a change of target and, when it reports ``ok=False``, again on the
next tick until it succeeds; never on every tick. ``reload`` never raises for a failing hook:
a missing executable, a non-zero exit or a timeout come back as ``ok=False`` with a short
``detail`` for the log.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from guard.core.fallback import (
    ENV_NAME,
    FallbackState,
    from_env,
    from_state_document,
    render_claude_settings,
    render_env,
    render_state,
)
from guard.core.records import ReloadResult
from guard.errors import SinkError

__all__ = ["FileSinks", "atomic_write", "read_env"]

ENV_MODE = 0o644
"""The env file's default mode: applications running as other users read it."""
STATE_MODE = 0o600
"""The state file's mode: it holds reasons and who pinned."""
SETTINGS_MODE = 0o644
"""Claude Code's managed settings: every user's Claude Code reads them."""
_DETAIL_CHARS = 200


def atomic_write(path: Path, text: str, mode: int = STATE_MODE) -> bool:
    """Replace ``path`` with ``text`` atomically with ``mode`` (whatever the umask); False,
    touching nothing, if equal."""
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        if exc.errno != errno.ENOSPC or not path.is_file():
            raise
        return _in_place(path, data)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        if exc.errno != errno.ENOSPC or not path.is_file():
            raise
        return _in_place(path, data)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return True


def _in_place(path: Path, data: bytes) -> bool:
    """A full disk leaves no room for a temporary copy: rewrite the file where it is, in
    one write of its blocks (a reader may see it change mid-read, where a rename never
    would, but the fallback still tightens). No room even for that raises ``OSError``."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable: without this a crash may bring back the old file."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_env(path: Path) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of an env file (blank lines and ``#`` comments skipped)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not ENV_NAME.fullmatch(name):
            raise ValueError(f"{path}:{number}: not a KEY=VALUE line")
        values[name] = value
    return values


class FileSinks:
    """The env file, the state file and the reload hook of ``[fallback]``."""

    def __init__(self, env_file: Path | None, state_file: Path | None,
                 model_var: str = "ANTHROPIC_MODEL", reload_command: Sequence[str] = (),
                 *, run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
                 timeout_s: float = 30, env_mode: int = ENV_MODE,
                 claude_code: bool = False, claude_code_settings: Path | None = None) -> None:
        self.claude_code = claude_code
        """Whether the env file also carries Claude Code's variables (DESIGN §5)."""
        self.claude_code_settings = claude_code_settings
        """Claude Code's managed settings, capped at the tier (``None``: not written)."""
        self.env_file = env_file
        self.env_mode = env_mode
        self.state_file = state_file
        self.model_var = model_var
        self.reload_command = tuple(reload_command)
        self._run = run
        self.timeout_s = timeout_s

    def write(self, state: FallbackState) -> list[Path]:
        """Bring both files to ``state``; the paths rewritten (none when unchanged).

        Both files are rendered before either is written, so a bad value writes nothing.
        """
        outputs: list[tuple[Path, str, int]] = []
        if self.env_file is not None:
            outputs.append((self.env_file,
                            render_env(state, self.model_var, self.claude_code),
                            self.env_mode))
        if self.state_file is not None:
            outputs.append((self.state_file, render_state(state), STATE_MODE))
        if self.claude_code_settings is not None:
            outputs.append((self.claude_code_settings,
                            render_claude_settings(state, _settings(self.claude_code_settings)),
                            SETTINGS_MODE))
        written = []
        for path, text, mode in outputs:
            try:
                if atomic_write(path, text, mode):
                    written.append(path)
            except OSError as exc:
                raise SinkError(f"fallback file {path} not written, the old one stays: "
                                f"{exc.strerror or type(exc).__name__}") from None
        return written

    def last(self) -> FallbackState | None:
        """The fallback the files on disk say is in force (the state file, else the env
        file), or ``None`` if neither can be read: what a tick without its store starts from."""
        if self.state_file is not None:
            try:
                return from_state_document(json.loads(self.state_file.read_text("utf-8")))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass
        if self.env_file is not None:
            try:
                return from_env(read_env(self.env_file), self.model_var)
            except (OSError, ValueError, KeyError):
                pass
        return None

    def reload(self) -> ReloadResult:
        """Run the reload hook once (no shell, with a timeout); a failure is ``ok=False``."""
        command = list(self.reload_command)
        if not command:
            return ReloadResult(ran=False, ok=True, detail="no reload command configured")
        try:
            done = self._run(command, capture_output=True, text=True, timeout=self.timeout_s,
                             check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return ReloadResult(True, False, f"{command[0]} timed out after {self.timeout_s:g} s")
        except FileNotFoundError:
            return ReloadResult(True, False, f"{command[0]}: executable not found")
        except OSError as exc:
            return ReloadResult(True, False, f"{command[0]}: cannot run: {exc.strerror or exc}")
        return _result(command[0], done)


def _settings(path: Path) -> dict[str, Any]:
    """Claude Code's managed settings as they stand (``{}`` when there is no file yet); a
    file that is not a JSON object is left alone, not overwritten."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SinkError(f"Claude Code settings {path} not readable, not written: "
                        f"{exc.strerror or type(exc).__name__}") from None
    try:
        document = json.loads(text) if text.strip() else {}
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise SinkError(f"Claude Code settings {path} is not a JSON object; it is left as it "
                        "is and the fallback files are not written")
    return document


def _result(program: str, done: subprocess.CompletedProcess[str]) -> ReloadResult:
    """The outcome of a hook that ran to its end, with the tail of its output on failure."""
    if done.returncode == 0:
        return ReloadResult(True, True, f"{program} exited 0")
    how = (f"killed by signal {-done.returncode}" if done.returncode < 0
           else f"exited {done.returncode}")
    output = " ".join(f"{done.stderr or ''} {done.stdout or ''}".split())
    tail = f": {output[-_DETAIL_CHARS:]}" if output else ""
    return ReloadResult(True, False, f"{program} {how}{tail}")
