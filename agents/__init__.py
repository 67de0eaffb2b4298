"""Planning with the SRVP world model: planners, MPC, replay buffer, the PlaNet-style control loop."""

from srvp.common.extras import require_extra

require_extra("control", "srvp.agents")
