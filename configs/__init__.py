"""Hydra configuration tree of srvp, shipped as a package so `pkg://srvp.configs` resolves when installed.

Importing it (hydra does, to read `pkg://srvp.configs`) registers the typed schemas the YAML files compose onto,
so that an unknown key or a value of the wrong type fails while the config is composed, and the YAML holds only
what differs from the dataclasses' defaults (each field documented where it is defined):
- `train_schema` (`srvp.video_pred.config.TrainConfig`: the trainer, logger and run settings) for train.yaml;
- `control_schema` (`srvp.agents.config.ControlConfig`: planning, the loop and the run settings) for
  control.yaml, when the `control` extra is installed (srvp-control cannot run without it);
- `model/srvp_schema` and `world_model/srvp_schema`: `SRVPConfig`'s fields and defaults. One field is looser than
  the dataclass: `dt` also takes a fraction such as `model.dt=1/3`, which `SRVPConfig.from_dict` reads exactly.
"""

import dataclasses
import typing
from typing import Any

from hydra.core.config_store import ConfigStore

from srvp.common.extras import installed
from srvp.video_pred.config import TrainConfig
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


_store = ConfigStore.instance()
for group in ("model", "world_model"):
    _store.store(group=group, name="srvp_schema", node=_schema())
_store.store(name="train_schema", node=TrainConfig)
if installed("control"):
    from srvp.agents.config import ControlConfig

    _store.store(name="control_schema", node=ControlConfig)
