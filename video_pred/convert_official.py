"""Convert an official SRVP run (github.com/edouardelasalles/srvp) into an srvp checkpoint that `srvp-eval` and
`srvp-figures` read like one of ours: the weights renamed by `srvp.worldmodel.official`, the official arguments,
and the benchmark section they imply (dataset name, conditioning and predicted frames).

    python -m srvp.video_pred.convert_official --official model.pt --config config.json --out ours.pt
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from srvp.common.checkpoints import save_checkpoint
from srvp.worldmodel.official import load_official, read_official_args

OFFICIAL_DATASETS = {"smmnist": "smmnist", "kth": "kth", "human": "human36m", "bair": "bair"}
"""Official dataset names -> ours (deterministic Moving MNIST is `smmnist` with `deterministic` there)."""


def dataset_section(args: Mapping[str, Any]) -> dict[str, Any]:
    """What the official arguments say about the benchmark, in our dataset-config names (test protocol)."""
    section: dict[str, Any] = {}
    if args.get("dataset") in OFFICIAL_DATASETS:
        section["name"] = OFFICIAL_DATASETS[args["dataset"]]
    if args.get("dataset") == "smmnist":
        section["num_digits"] = int(args.get("ndigits", 2))
        section["deterministic"] = bool(args.get("deterministic", False))
        if section["deterministic"]:
            section["name"] = "mmnist_deterministic"
    if args.get("nt_cond") is not None:
        section["cond_frames"] = int(args["nt_cond"])
    # The predicted length is the benchmark's test protocol (our dataset config), not `seq_len_test`: the
    # official training arguments use that for validation clips (30 frames for KTH, whose test clips are 40).
    return section


def convert_official_checkpoint(weights_path: str | Path, config_path: str | Path, out_path: str | Path) -> Path:
    """Write our checkpoint for an official run: the converted model, the official arguments and the
    dataset section they imply (under config['dataset'])."""
    args = read_official_args(config_path)
    model = load_official(weights_path, args)
    run_config = {"dataset": dataset_section(args), "official": {"weights": str(weights_path), "args": args}}
    return save_checkpoint(out_path, model, step=0, config=run_config)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: python -m srvp.video_pred.convert_official --official model.pt --config config.json --out ours.pt"""
    parser = argparse.ArgumentParser(description="Convert an official SRVP checkpoint into an srvp one.")
    parser.add_argument("--official", required=True, help="official weights (model.pt / model_best.pt)")
    parser.add_argument("--config", required=True, help="the official run's config.json")
    parser.add_argument("--out", required=True, help="where to write our checkpoint")
    options = parser.parse_args(argv)
    try:
        out_path = convert_official_checkpoint(options.official, options.config, options.out)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        parser.exit(1, f"error: {error}\n")
    print(out_path)


if __name__ == "__main__":
    main()
