"""``guard --version`` answers before the command line's heavy imports (issue 13)."""

from __future__ import annotations

import subprocess
import sys

import guard

HEAVY = ("typer", "rich", "pydantic", "pydantic_settings", "sqlalchemy", "httpx", "slack_sdk",
         "apscheduler", "prometheus_client")

PROBE = """
import sys
sys.argv = ["guard", *sys.argv[1:]]
from guard.entry.launch import main
try:
    main()
except SystemExit:
    pass
loaded = sorted({m.split(".")[0] for m in sys.modules} & {heavy})
print("loaded:", ",".join(loaded))
"""


def probe(*args: str) -> str:
    code = PROBE.replace("{heavy}", repr(set(HEAVY)))
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                            text=True, check=False, timeout=120)
    return result.stdout


def test_version_loads_none_of_the_heavy_libraries() -> None:
    out = probe("--version")
    assert out.splitlines()[0] == f"budget-guard {guard.__version__}"
    assert out.splitlines()[-1] == "loaded: "


def test_every_other_command_goes_on_to_the_command_line() -> None:
    """The probe must be able to fail: ``--help`` takes the full command line."""
    out = probe("--help")
    assert "typer" in out.splitlines()[-1]
