"""A simulated organization and a simulated Admin API over real HTTP, for tests and the demo.

Standard library only, and independent of the rest of ``guard``: it is the oracle the guard is
checked against (its own price table, its own ground truth).

* ``SimOrg``: a deterministic synthetic organization and its list-price bill (``truth_cents``);
* ``SimServer``/``SimClock``/``Fault``: the Admin API on loopback (legacy usage and cost
  reports, the Usage and Cost Analytics API, workspaces, API keys), with lag, an hourly
  analytics watermark, late revisions, a discount, price errors and fault injection; its
  ``billed_truth_cents`` is the final bill the analytics API adds up to;
* ``Billing``: the discount, price errors and revision delay of a bill.
"""

from guard.sim.billing import Billing
from guard.sim.clock import SimClock
from guard.sim.faults import Fault
from guard.sim.hourly import SimCodeExecution
from guard.sim.org import SimOrg
from guard.sim.population import SimApiKey, SimWorkspace
from guard.sim.server import RecordedRequest, SimServer
from guard.sim.usage import SimUsage

__all__ = [
    "Billing",
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
