#!/usr/bin/env python3
"""Mirror budget-guard's fallback into files inside an application pod (a sidecar).

Kubernetes gives a pod no file that another pod's process rewrites, and a ConfigMap is not
something the daemon updates. So each application pod runs this script next to the
application, sharing an ``emptyDir`` mounted at ``$GUARD_SYNC_DIR``:

- every ``$GUARD_SYNC_INTERVAL_S`` seconds it asks ``$GUARD_FALLBACK_URL`` (budget-guard's
  ``GET /v1/fallback``, the state-file JSON of DESIGN §5);
- it writes ``fallback.json`` (that JSON) and ``model.env`` (the env file of DESIGN §5, the
  model under ``$GUARD_MODEL_VAR``, with Claude Code's ``ANTHROPIC_DEFAULT_*_MODEL`` and
  ``CLAUDE_CODE_SUBAGENT_MODEL`` unless ``$GUARD_CLAUDE_CODE`` is ``false``), each atomically
  and only when its content changed;
- when budget-guard cannot be reached or answers nonsense, the files stay as they are: the
  application keeps the last fallback it was told, and the error goes to stderr.

The application reads them with ``guard.chain.ModelChain(env_file=...)`` or
``ModelChain(state_file=...)``, which re-reads a file whenever it changes; with its own
``default=`` until the first answer arrives. Standard library only; ``--once`` does one
round and exits 0 if the files are current, 1 if budget-guard could not be read.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

_VALUE = re.compile(r"[A-Za-z0-9_.,:/@+-]+")  # DESIGN §5: the env file's value alphabet
_MODEL = re.compile(r"[A-Za-z0-9_.:/@+-]+")  # a model id: the same, without the comma
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ALIASES = ("opus", "sonnet", "haiku")  # Claude Code's, each read from ANTHROPIC_DEFAULT_*
ENV_MODE = 0o644  # what the sidecar publishes is read by the app, as another user
STATE_MODE = 0o600


class BadAnswer(ValueError):
    """budget-guard's answer is not a fallback document this script can publish."""


def fetch(url: str, timeout_s: float) -> dict[str, Any]:
    """The fallback document at ``url``; ``OSError`` or ``BadAnswer`` when there is none."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        body = response.read(1 << 20)
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise BadAnswer(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadAnswer("not a JSON object")
    return document


def render_env(document: dict[str, Any], model_var: str, claude_code: bool = True) -> str:
    """The env file for ``document``, exactly as budget-guard writes its own."""
    chain = document.get("chain")
    if not (isinstance(chain, list) and chain and all(
            isinstance(m, str) and _MODEL.fullmatch(m) for m in chain)):
        raise BadAnswer(f"chain {chain!r} is not a list of model ids")
    if document.get("model") != chain[0]:
        raise BadAnswer(f"model {document.get('model')!r} is not the head of the chain")
    level = document.get("level")
    if not isinstance(level, int) or isinstance(level, bool) or level < 0:
        raise BadAnswer(f"level {level!r} is not a non-negative integer")
    claude_code_pairs = ((*((f"ANTHROPIC_DEFAULT_{alias.upper()}_MODEL", model)
                            for alias, model in alias_models(chain).items()),
                          ("CLAUDE_CODE_SUBAGENT_MODEL", chain[0])) if claude_code else ())
    pairs = (
        (model_var, chain[0]),
        *claude_code_pairs,
        ("GUARD_MODEL_CHAIN", ",".join(chain)),
        ("GUARD_TIER", document.get("tier")),
        ("GUARD_LEVEL", str(level)),
        ("GUARD_SOURCE", document.get("source")),
        ("GUARD_UPDATED_AT", document.get("updated_at")),
    )
    for name, value in pairs:
        if not (isinstance(value, str) and _VALUE.fullmatch(value)):
            raise BadAnswer(f"{name}: {value!r} is not a value an env file can hold")
    return "".join(f"{name}={value}\n" for name, value in pairs)


def alias_models(chain: list[str]) -> dict[str, str]:
    """Each Claude Code alias's model, as budget-guard caps it: the first model of the chain
    in force of that family (a word of the id), else the head of the chain."""
    return {alias: next((model for model in chain if re.search(
        rf"(^|[-_./:@]){alias}([-_./:@]|$)", model)), chain[0]) for alias in _ALIASES}


def render_state(document: dict[str, Any]) -> str:
    """The state file: the document as budget-guard writes its own (indented, newline)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# atomic_write, _fsync_directory and STATE_MODE are copies of guard.adapters.sinks' (this
# script cannot import guard); tests/test_deploy.py fails if the copies differ from them.
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


def sync_once(url: str, directory: Path, model_var: str, timeout_s: float,
              claude_code: bool = True) -> list[str]:
    """One round: fetch and publish; the names of the files rewritten."""
    document = fetch(url, timeout_s)
    env_text = render_env(document, model_var, claude_code)  # validate before writing
    written = []
    # The state file first: a reader of model.env never sees a newer model than fallback.json.
    if atomic_write(directory / "fallback.json", render_state(document), ENV_MODE):
        written.append("fallback.json")
    if atomic_write(directory / "model.env", env_text, ENV_MODE):
        written.append("model.env")
    return written


def _log(message: str) -> None:
    print(f"fallback-sync: {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    url = os.environ.get("GUARD_FALLBACK_URL",
                         "http://budget-guard.budget-guard.svc:9184/v1/fallback")
    directory = Path(os.environ.get("GUARD_SYNC_DIR", "/run/budget-guard"))
    interval_s = float(os.environ.get("GUARD_SYNC_INTERVAL_S", "15"))
    timeout_s = float(os.environ.get("GUARD_SYNC_TIMEOUT_S", "5"))
    model_var = os.environ.get("GUARD_MODEL_VAR", "ANTHROPIC_MODEL")
    if not _ENV_NAME.fullmatch(model_var):
        _log(f"GUARD_MODEL_VAR {model_var!r} is not an environment variable name")
        return 2
    claude_code = os.environ.get("GUARD_CLAUDE_CODE", "true").lower()
    if claude_code not in ("true", "false"):
        _log(f"GUARD_CLAUDE_CODE {claude_code!r} is neither true nor false")
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    once = "--once" in argv
    failing = False
    while True:
        try:
            written = sync_once(url, directory, model_var, timeout_s, claude_code == "true")
        except (OSError, BadAnswer) as exc:  # URLError and HTTPError are OSErrors
            if once or not failing:
                _log(f"cannot read {url}, keeping the last files: {exc}")
            failing = True
            if once:
                return 1
        else:
            if written or failing:
                _log(f"in sync with {url}" + (f", wrote {', '.join(written)}" if written else ""))
            failing = False
            if once:
                return 0
        if stop.wait(interval_s):
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
