"""Planning with the SRVP world model: planners, MPC, the planning policy, replay buffer, the PlaNet-style control
loop and its typed settings."""

from srvp.common.extras import require_extra

require_extra("control", "srvp.agents")
