"""`guard demo`: the simulated month runs to completion and agrees with the ground truth."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from guard.cli import app


def test_demo_reports_the_month_and_matches_the_truth(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A daily demo prints each midnight (2nd–28th), the final table, errors under 0.1 %."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--month", "2026-02", "--step-hours", "24"])
    assert result.exit_code == 0, result.output
    assert len(re.findall(r"^2026-0[23]-\d\dT00:00:00Z  org-monthly", result.stdout, re.M)) == 27
    errors = [abs(float(e)) for e in re.findall(r"([+-]\d+\.\d{4}) %", result.stdout)]
    assert len(errors) == 5
    assert max(errors) < 0.1
    assert (tmp_path / "demo-out" / "state.db").exists()


def test_demo_rejects_a_bad_month() -> None:
    """--month must be YYYY-MM; anything else is a usage error with exit 2."""
    result = CliRunner().invoke(app, ["demo", "--month", "March"])
    assert result.exit_code == 2
    assert "--month" in result.stderr
