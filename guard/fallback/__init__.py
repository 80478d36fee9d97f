"""The model fallback's outputs: env file, JSON state file and reload hook (DESIGN §5).

``sinks`` renders a ``FallbackState`` into the files applications read, replaces them
atomically and only when their content changes, and runs the reload hook when asked.
"""

from guard.fallback.sinks import (
    FallbackState,
    FileSinks,
    ReloadResult,
    Sink,
    atomic_write,
    read_env,
    render_env,
    render_state,
    state_document,
)

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
