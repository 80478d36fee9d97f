"""A simulated organization and a simulated Admin API over real HTTP, for tests and the demo.

Standard library only, and independent of the rest of ``guard``: it is the oracle the guard is
checked against (its own price table, its own ground truth).

* ``SimOrg``: a deterministic synthetic organization and its true bill (``truth_cents``);
* ``SimServer``/``SimClock``/``Fault``: the Admin API on loopback, with lag and fault injection.
"""

from guard.sim.clock import SimClock
from guard.sim.faults import Fault
from guard.sim.hourly import SimCodeExecution
from guard.sim.org import SimOrg
from guard.sim.population import SimApiKey, SimWorkspace
from guard.sim.server import RecordedRequest, SimServer
from guard.sim.usage import SimUsage

__all__ = [
    "Fault",
    "RecordedRequest",
    "SimApiKey",
    "SimClock",
    "SimCodeExecution",
    "SimOrg",
    "SimServer",
    "SimUsage",
    "SimWorkspace",
]
