"""srvp world model: the SRVP model as a reusable module (no datasets, no environments)."""

from srvp.worldmodel.checkpoint import checkpoint_payload, load_checkpoint, load_model
from srvp.worldmodel.config import SRVPConfig
from srvp.worldmodel.model import SRVP, ElboOutput, Encoded, Observation, Rollout

__all__ = [
    "SRVP",
    "SRVPConfig",
    "ElboOutput",
    "Encoded",
    "Observation",
    "Rollout",
    "checkpoint_payload",
    "load_checkpoint",
    "load_model",
]
