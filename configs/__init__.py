"""Hydra configuration tree of srvp, shipped as a package so `pkg://srvp.configs` resolves when installed.

Importing it (hydra does, to read `pkg://srvp.configs`) registers the model's typed schema as `model/srvp_schema`
and `world_model/srvp_schema`: `SRVPConfig`'s fields and defaults (the YAML files hold only what differs),
so an unknown or mistyped model key fails at composition. One field is looser than the dataclass: `dt` also
takes a fraction such as `model.dt=1/3`, which `SRVPConfig.from_dict` reads exactly.
"""

import dataclasses
import typing
from typing import Any

from hydra.core.config_store import ConfigStore

from srvp.worldmodel import SRVPConfig


def _schema() -> type:
    """SRVPConfig's fields with their defaults, `dt` typed Any so that a fraction string composes."""
    hints = typing.get_type_hints(SRVPConfig)

    def default(field: dataclasses.Field) -> dataclasses.Field:
        if field.default_factory is not dataclasses.MISSING:
            return dataclasses.field(default_factory=field.default_factory)
        return dataclasses.field(default=field.default)

    fields = [(f.name, Any if f.name == "dt" else hints[f.name], default(f)) for f in dataclasses.fields(SRVPConfig)]
    return dataclasses.make_dataclass("SRVPSchema", fields)


for group in ("model", "world_model"):
    ConfigStore.instance().store(group=group, name="srvp_schema", node=_schema())
