"""The entry points: the command line, the daemon, and the one place that builds real parts.

Importing any of them first keeps httpx from importing its own command line: httpx's package
``__init__`` imports ``httpx._main`` (click, rich and pygments, about 4 MB resident) whenever
they are installed, to offer ``httpx.main``. Nothing here calls it, and the daemon would hold
that memory for its whole life (issue 13). Marking the module absent before httpx is first
imported makes httpx define its stand-in ``main`` instead, which says its dependencies are
missing. Once httpx is imported (a test, an application), this changes nothing.
"""

import sys

if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
