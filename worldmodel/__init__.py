"""srvp world model: the SRVP model as a reusable module (no datasets, no environments)."""

from worldmodel.checkpoint import load_checkpoint, load_model, save_checkpoint
from worldmodel.config import SRVPConfig
from worldmodel.model import SRVP, ElboOutput, Encoded, Observation, Rollout

__all__ = [
    "SRVP",
    "SRVPConfig",
    "ElboOutput",
    "Encoded",
    "Observation",
    "Rollout",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]
