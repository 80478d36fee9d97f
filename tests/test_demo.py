"""`guard demo`: a simulated month through the real tick, ending with a summary."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from guard.adapters.sinks import read_env
from guard.entry.cli import app


def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--month", "2026-02", "--step-hours", "12",
                                      *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_breach_demo_flips_the_fallback_and_matches_the_truth(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Breach: the env file ends at haiku, alerts were sent, and the ledger, billed through
    the analytics watermark and calibrated after it, matches the billed truth."""
    out = demo(tmp_path, monkeypatch, "--scenario", "breach")
    assert len(re.findall(r"^2026-0[23]-\d\dT00:00:00Z  org-monthly", out, re.M)) == 27
    errors = [abs(float(e)) for e in re.findall(r"([+-]\d+\.\d{4}) %", out)]
    assert len(errors) == 4 and max(errors) < 0.1
    assert "billing source: analytics, billed through 2026-02-28T19:00:00Z" in out
    assert re.search(r"reconciliation: 0 models off the bill by more than 2 %", out)
    assert re.search(r"alerts sent: \d+ firing", out)
    assert "fallback changes:" in out and "→ haiku (auto)" in out
    assert read_env(tmp_path / "demo-out" / "model.env")["GUARD_TIER"] == "haiku"


def test_spike_demo_raises_runaway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spike: ten times the traffic for three hours on the 14th trips the runaway condition."""
    out = demo(tmp_path, monkeypatch, "--scenario", "spike", "--step-hours", "2")
    assert "Runaway spend" in out
    assert "runaway → sonnet" in out


def test_demo_rejects_a_bad_month_and_scenario() -> None:
    """A bad --month or --scenario is a usage error with exit 2."""
    assert CliRunner().invoke(app, ["demo", "--month", "March"]).exit_code == 2
    result = CliRunner().invoke(app, ["demo", "--scenario", "chaos"])
    assert result.exit_code == 2 and "--scenario" in result.stderr
