"""srvp-control: train the action-conditioned SRVP from pixels by latent planning (PlaNet-style loop).

`srvp-control` (or `python -m agents.train`) with hydra overrides, e.g. `env=cheetah-run agent=mppi`;
`run_dir=X` on an existing run continues it from its last checkpoint and replay buffer.
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from agents.loop import train


@hydra.main(config_path="pkg://configs", config_name="control", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Resolve the run directory hydra created, then train."""
    with open_dict(cfg):
        cfg.run_dir = HydraConfig.get().runtime.output_dir
    summary = train(cfg)
    print(" ".join(f"{name}={value:.4g}" for name, value in summary.items()))


if __name__ == "__main__":
    main()
