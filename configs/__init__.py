"""Hydra configuration tree of srvp, shipped as a package so `pkg://configs` resolves when installed.

Importing it (hydra does, to read `pkg://configs`) registers the model's typed schema, `SRVPConfig`, as
`model/srvp_schema` and `world_model/srvp_schema`: the dataclass holds every default, the YAML files only
what differs, and an unknown or mistyped model key fails at composition.
"""

from hydra.core.config_store import ConfigStore

from worldmodel import SRVPConfig

for group in ("model", "world_model"):
    ConfigStore.instance().store(group=group, name="srvp_schema", node=SRVPConfig)
