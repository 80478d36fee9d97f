"""Shared fixtures: every test starts from an environment free of the guard's variables."""

from __future__ import annotations

import os

import pytest

_PREFIXES = ("GUARD_", "SLACK_", "ANTHROPIC_")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strip GUARD_*, SLACK_* and ANTHROPIC_* so no test depends on the caller's shell."""
    for name in list(os.environ):
        if name.upper().startswith(_PREFIXES):
            monkeypatch.delenv(name, raising=False)
