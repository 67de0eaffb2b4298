"""srvp world model: the SRVP model as a reusable module (no datasets, no environments)."""

from worldmodel.checkpoint import checkpoint_payload, load_checkpoint, load_model
from worldmodel.config import SRVPConfig
from worldmodel.model import SRVP, ElboOutput, Encoded, Observation, Rollout

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
