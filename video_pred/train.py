"""`srvp-train`: train SRVP on a video-prediction benchmark (hydra; `python -m video_pred.train`).

srvp-train dataset=smmnist                       # the paper's Stochastic Moving MNIST run
srvp-train dataset=kth dataset.root=data/kth     # after `srvp-prepare kth ...`
srvp-train debug=tiny trainer.max_steps=10       # a smoke run on CPU
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from video_pred.data import build_dataset
from video_pred.data.stream import training_loader
from video_pred.logger import RunLogger
from video_pred.trainer import Trainer, check_budget, final_preview, first_clips
from worldmodel import SRVPConfig
from worldmodel.fileio import atomic_write
from worldmodel.runtime import resolve_device, seed_everything

ConfigStore.instance().store(group="model", name="srvp_schema", node=SRVPConfig)


def train(cfg: DictConfig) -> Path:
    """Build data, model and logger from `cfg`, train (resuming when a checkpoint exists), return the run dir."""
    check_budget(cfg)
    device = resolve_device(cfg.device)
    run_dir = Path(cfg.run_dir)
    seed_everything(cfg.seed)
    trainer = Trainer(cfg, device, run_dir)
    resume_from = trainer.resume_path()
    if resume_from is not None:
        trainer.load(resume_from)
        print(f"resumed from {resume_from} at step {trainer.step}")
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    atomic_write(run_dir / "config.yaml", lambda file: file.write(config_yaml.encode()))
    train_set = build_dataset(cfg.dataset, "train", seed=cfg.seed)
    test_set = build_dataset(cfg.dataset, "test")
    preview_clips = first_clips(test_set, cfg.logger.video_clips).to(device)
    val_clips = None
    if cfg.trainer.val_every:
        val_clips = first_clips(build_dataset(cfg.dataset, "val"), cfg.trainer.val_clips).to(device)
    batches = training_loader(
        train_set,
        cfg.trainer.batch_size,
        trainer.step,
        cfg.trainer.num_workers,
        cfg.seed,
        pin_memory=device.type == "cuda",
    )
    logger = RunLogger(run_dir, cfg.logger.enabled, resume_step=trainer.step if resume_from else None)
    try:
        last = trainer.fit(batches, preview_clips, val_clips, logger)
        videos = final_preview(trainer, preview_clips, run_dir)
    finally:
        logger.close()
    print(f"checkpoint: {last}\ntensorboard: {run_dir / 'tb'}\npredictions: {', '.join(map(str, videos))}")
    return run_dir


@hydra.main(version_base="1.3", config_path="pkg://configs", config_name="train")
def _hydra_main(cfg: DictConfig) -> None:
    torch.set_float32_matmul_precision("high")
    try:
        train(cfg)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as error:
        # One line naming the culprit; everything written so far (checkpoints, logs) is intact.
        sys.exit(f"srvp-train: error: {error}")


def main() -> None:
    """Console-script entry point."""
    _hydra_main()


if __name__ == "__main__":
    main()
