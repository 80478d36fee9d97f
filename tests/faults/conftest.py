"""The fault suite (issue 12): SIGKILL campaigns, HA on PostgreSQL, storage faults, hostile input.

``make test`` runs it in a bounded form (a few points and repetitions of every scenario);
``make faults`` sets ``GUARD_FAULTS=full`` for the whole campaign and prints the summary
table that ``tests/faults/report.py`` builds from the rows each scenario records.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

FULL = os.environ.get("GUARD_FAULTS") == "full"
"""The whole campaign (``make faults``), else the bounded form ``make test`` runs."""
