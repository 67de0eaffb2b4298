"""srvp-control: train the action-conditioned SRVP from pixels by latent planning (PlaNet-style loop).

`srvp-control` (or `python -m srvp.agents.train`) with hydra overrides, e.g. `env=cheetah-run agent=mppi`;
`run_dir=X` on an existing run continues it from its last checkpoint and replay buffer. A user error ends
in one line naming the culprit (exit status 1); SIGTERM/SIGINT stop it with the last checkpoint kept and exit
status 128 + the signal's number.
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from srvp.agents.loop import train
from srvp.common.configs import check_overlay, run_hydra_main
from srvp.common.files import check_output_arguments
from srvp.common.runtime import StoppedEarly


@hydra.main(config_path="pkg://srvp.configs", config_name="control", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    """Resolve the run directory hydra created, then train."""
    with open_dict(cfg):
        cfg.run_dir = HydraConfig.get().runtime.output_dir
    try:
        check_overlay(cfg, "srvp-control")
        summary = train(cfg)
    except StoppedEarly as stopped:
        print(f"srvp-control: {stopped}", file=sys.stderr)
        sys.exit(stopped.exit_status)
    except (ValueError, FileNotFoundError, RuntimeError, OSError, ImportError) as error:
        # One line naming the culprit; the run directory keeps its last checkpoint and buffer.
        sys.exit(f"srvp-control: error: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
    print(" ".join(f"{name}={value:.4g}" for name, value in summary.items()))


def main() -> None:
    """Console-script entry point: an unusable output folder is refused before hydra creates it."""
    check_output_arguments(sys.argv[1:], ("hydra.run.dir", "run_dir"), "srvp-control")
    run_hydra_main("srvp-control", _hydra_main)


if __name__ == "__main__":
    main()
