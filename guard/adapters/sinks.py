"""The fallback sinks: the env file, the JSON state file and the reload hook (DESIGN §5).

Applications read the env file (systemd ``EnvironmentFile=``, ``docker --env-file``, POSIX
``set -a; . file``) and the state file; both are replaced atomically (temp file in the same
directory, fsync, rename, fsync of the directory), so a reader sees the old file or the new
one, never a partial or empty one. Values keep to ``[A-Za-z0-9_.,:/@+-]``: rendering anything
else raises ``ValueError`` before a byte is written.

Writing is level-triggered and idempotent: ``FileSinks.write`` may be called every tick with
the desired state and rewrites only files whose content differs, so the caller keeps
``FallbackState.updated_at`` at the time of the last *change*, not the tick.

The reload contract belongs to the caller: ``FileSinks.reload`` runs the hook every time it is
called. Call it once after a change of target (``write`` rewrote the env file, or
``FallbackState.same_target`` says the target moved) and, when it reports ``ok=False``, again
on the next tick until it succeeds; never on every tick. ``reload`` never raises for a
failing hook: a missing executable, a non-zero exit or a timeout come back as ``ok=False``
with a short ``detail`` for the log.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from guard.config.sections import FallbackSettings

__all__ = [
    "FallbackState",
    "FileSinks",
    "ReloadResult",
    "Sink",
    "atomic_write",
    "read_env",
    "render_env",
    "render_state",
    "state_document",
]

Source = Literal["auto", "override"]
SOURCES: tuple[str, ...] = ("auto", "override")
FILE_MODE = 0o644
_VALUE = re.compile(r"[A-Za-z0-9_.,:/@+-]+")
_CHAIN_ITEM = re.compile(r"[A-Za-z0-9_.:/@+-]+")  # the chain is comma-joined
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GUARD_VARS = ("GUARD_MODEL_CHAIN", "GUARD_TIER", "GUARD_LEVEL", "GUARD_SOURCE",
               "GUARD_UPDATED_AT")
_DETAIL_CHARS = 200


@dataclass(frozen=True, slots=True)
class FallbackState:
    """The fallback in force: a tier of the chain, its model and the models below it."""

    tier: str
    level: int
    model: str
    chain: tuple[str, ...]
    source: str
    updated_at: datetime
    reason: str
    firing: tuple[str, ...]
    override_expires_at: datetime | None = None
    override_by: str | None = None
    override_reason: str | None = None

    def __post_init__(self) -> None:
        if not self.chain or self.chain[0] != self.model:
            raise ValueError(f"chain {self.chain!r} must start with the model {self.model!r}")
        if self.level < 0:
            raise ValueError(f"level {self.level} is negative")
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r} is not one of {', '.join(SOURCES)}")
        for name in ("updated_at", "override_expires_at"):
            moment = getattr(self, name)
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"{name} {moment.isoformat()} has no time zone")

    @classmethod
    def build(cls, chain_tiers: Sequence[str], models_by_tier: Mapping[str, str], level: int,
              *, source: str, updated_at: datetime, reason: str, firing: Sequence[str] = (),
              override_expires_at: datetime | None = None, override_by: str | None = None,
              override_reason: str | None = None) -> FallbackState:
        """The state at ``level`` of ``chain_tiers``, its models looked up in ``models_by_tier``."""
        if not 0 <= level < len(chain_tiers):
            raise ValueError(f"level {level} is outside the chain {list(chain_tiers)}")
        missing = [tier for tier in chain_tiers[level:] if tier not in models_by_tier]
        if missing:
            raise ValueError(f"no model for tier {', '.join(missing)}")
        models = tuple(models_by_tier[tier] for tier in chain_tiers[level:])
        return cls(chain_tiers[level], level, models[0], models, source, updated_at, reason,
                   tuple(firing), override_expires_at, override_by, override_reason)

    def same_target(self, other: FallbackState) -> bool:
        """Whether ``other`` sends applications to the same place (tier, model, chain, source)."""
        return (self.tier, self.model, self.chain, self.source) == (
            other.tier, other.model, other.chain, other.source)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What the reload hook did: ``ran`` is False only when it was skipped (none, dry-run)."""

    ran: bool
    ok: bool
    detail: str


class Sink(Protocol):
    """Where the fallback state goes; ``FileSinks`` is the real one, tests bring a fake."""

    def write(self, state: FallbackState, dry_run: bool = False) -> list[Path]:
        """Bring the outputs to ``state``; return what was actually rewritten."""
        ...

    def reload(self, dry_run: bool = False) -> ReloadResult:
        """Tell the applications to re-read the outputs."""
        ...


def utc_text(moment: datetime) -> str:
    """An aware time as RFC 3339 UTC to the second: ``2026-03-12T14:05:00Z``."""
    if moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_env(state: FallbackState, model_var: str = "ANTHROPIC_MODEL") -> str:
    """The env file of DESIGN §5; raises ``ValueError`` naming the variable of a bad value."""
    if not _ENV_NAME.fullmatch(model_var) or model_var in _GUARD_VARS:
        raise ValueError(f"{model_var!r} cannot be the model variable")
    pairs = (
        (model_var, state.model),
        ("GUARD_MODEL_CHAIN", ",".join(state.chain)),
        ("GUARD_TIER", state.tier),
        ("GUARD_LEVEL", str(state.level)),
        ("GUARD_SOURCE", state.source),
        ("GUARD_UPDATED_AT", utc_text(state.updated_at)),
    )
    for name, value in pairs:
        if not _VALUE.fullmatch(value):
            raise ValueError(f"{name}: value {value!r} is empty or has characters outside "
                             "[A-Za-z0-9_.,:/@+-]")
    for model in state.chain:
        if not _CHAIN_ITEM.fullmatch(model):
            raise ValueError(f"GUARD_MODEL_CHAIN: model id {model!r} has characters outside "
                             "[A-Za-z0-9_.:/@+-]")
    return "".join(f"{name}={value}\n" for name, value in pairs)


def state_document(state: FallbackState) -> dict[str, Any]:
    """The state file's JSON object (also served by ``GET /v1/fallback``), keys in order."""
    return {
        "model": state.model,
        "chain": list(state.chain),
        "tier": state.tier,
        "level": state.level,
        "source": state.source,
        "updated_at": utc_text(state.updated_at),
        "reason": state.reason,
        "firing": list(state.firing),
        "override": _override_document(state),
    }


def _override_document(state: FallbackState) -> dict[str, str | None] | None:
    fields = (state.override_expires_at, state.override_by, state.override_reason)
    if state.source != "override" and all(field is None for field in fields):
        return None
    expires = state.override_expires_at
    return {"expires_at": None if expires is None else utc_text(expires),
            "by": state.override_by, "reason": state.override_reason}


def render_state(state: FallbackState) -> str:
    """The state file: ``state_document`` as indented JSON with a trailing newline."""
    return json.dumps(state_document(state), indent=2, ensure_ascii=False) + "\n"


def atomic_write(path: Path, text: str) -> bool:
    """Replace ``path`` with ``text`` atomically, mode 0644; False, touching nothing, if equal."""
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), FILE_MODE)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
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
        if not sep or not _ENV_NAME.fullmatch(name):
            raise ValueError(f"{path}:{number}: not a KEY=VALUE line")
        values[name] = value
    return values


class FileSinks:
    """The env file, the state file and the reload hook of ``[fallback]``."""

    def __init__(self, env_file: Path | None, state_file: Path | None,
                 model_var: str = "ANTHROPIC_MODEL", reload_command: Sequence[str] = (),
                 *, run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
                 timeout_s: float = 30) -> None:
        self.env_file = env_file
        self.state_file = state_file
        self.model_var = model_var
        self.reload_command = tuple(reload_command)
        self._run = run
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: FallbackSettings) -> FileSinks:
        """The sinks a ``[fallback]`` section describes."""
        return cls(settings.env_file, settings.state_file, settings.model_var,
                   settings.reload_command)

    def write(self, state: FallbackState, dry_run: bool = False) -> list[Path]:
        """Bring both files to ``state``; the paths rewritten (none when unchanged or dry-run).

        Both files are rendered before either is written, so a bad value writes nothing.
        """
        outputs: list[tuple[Path, str]] = []
        if self.env_file is not None:
            outputs.append((self.env_file, render_env(state, self.model_var)))
        if self.state_file is not None:
            outputs.append((self.state_file, render_state(state)))
        if dry_run:
            return []
        return [path for path, text in outputs if atomic_write(path, text)]

    def reload(self, dry_run: bool = False) -> ReloadResult:
        """Run the reload hook once (no shell, with a timeout); a failure is ``ok=False``."""
        command = list(self.reload_command)
        if not command:
            return ReloadResult(ran=False, ok=True, detail="no reload command configured")
        if dry_run:
            return ReloadResult(ran=False, ok=True, detail=f"dry run: would run {command[0]}")
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


def _result(program: str, done: subprocess.CompletedProcess[str]) -> ReloadResult:
    """The outcome of a hook that ran to its end, with the tail of its output on failure."""
    if done.returncode == 0:
        return ReloadResult(True, True, f"{program} exited 0")
    how = (f"killed by signal {-done.returncode}" if done.returncode < 0
           else f"exited {done.returncode}")
    output = " ".join(f"{done.stderr or ''} {done.stdout or ''}".split())
    tail = f": {output[-_DETAIL_CHARS:]}" if output else ""
    return ReloadResult(True, False, f"{program} {how}{tail}")
