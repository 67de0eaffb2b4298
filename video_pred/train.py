"""`srvp-train`: train SRVP on a video-prediction benchmark (hydra; `python -m srvp.video_pred.train`).

srvp-train dataset=smmnist                       # the paper's Stochastic Moving MNIST run
srvp-train dataset=kth dataset.root=data/kth     # after `srvp-prepare kth ...`
srvp-train debug=tiny trainer.max_steps=10       # a smoke run on CPU
torchrun --nproc_per_node=4 -m srvp.video_pred.train  # DDP over 4 GPUs; trainer.batch_size is the global batch
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from srvp.common.configs import check_overlay, run_hydra_main, write_run_config
from srvp.common.files import check_output_arguments
from srvp.common.logger import RunLogger
from srvp.common.runtime import StoppedEarly, seed_everything
from srvp.video_pred.baselines import mean_training_frame
from srvp.video_pred.config import MOVED_KEYS, check_train_config
from srvp.video_pred.curves import VALIDATION_PLOT_NAME
from srvp.video_pred.data import build_dataset
from srvp.video_pred.data.stream import training_loader
from srvp.video_pred.distributed import DistributedContext, context_from_env, per_rank_batch, setup, teardown
from srvp.video_pred.evaluate import eval_defaults, evaluate, results_table
from srvp.video_pred.trainer import Trainer, final_preview, first_clips


def train(cfg: DictConfig, dist: DistributedContext | None = None) -> Path:
    """Build data, model and logger from `cfg`, train (resuming when a checkpoint exists), return the run dir.

    Under torchrun (`dist` from the environment) every rank runs this; `trainer.batch_size` is the global
    batch, split evenly between ranks, and rank 0 alone writes the run directory.
    """
    check_train_config(cfg)
    dist = dist or context_from_env()
    rank_batch = per_rank_batch(cfg.trainer.batch_size, dist.world_size)
    device = setup(cfg.device, dist)
    try:
        return _train_rank(cfg, dist, device, rank_batch)
    finally:
        teardown(dist)


def _train_rank(cfg: DictConfig, dist: DistributedContext, device: torch.device, rank_batch: int) -> Path:
    run_dir = Path(cfg.run_dir)
    # Ranks differ in their sampling noise; DDP copies rank 0's initial weights to all of them.
    seed_everything(cfg.seed + dist.rank)
    trainer = Trainer(cfg, device, run_dir, dist)
    resume_from = trainer.resume_path()
    if resume_from is not None:
        trainer.load(resume_from)
        print(f"resumed from {resume_from} at step {trainer.step}")
    trainer.budget_window()  # a time budget this run cannot keep is refused before config.yaml records it
    if dist.is_main:
        write_run_config(
            run_dir,
            OmegaConf.to_yaml(cfg, resolve=True),
            trainer.step if resume_from else None,
            trainer.changes_from_checkpoint(),
        )
    train_set = build_dataset(cfg.dataset, "train", seed=cfg.seed)
    test_set = build_dataset(cfg.dataset, "test")
    preview_clips = first_clips(test_set, cfg.logger.video_clips).to(device)
    val_clips = mean_frame = None
    if cfg.trainer.val_every:
        val_set = build_dataset(cfg.dataset, "val", size=cfg.trainer.val_clips)
        val_clips = first_clips(val_set, len(val_set)).to(device)
        if dist.is_main:
            mean_frame = mean_training_frame(build_dataset(cfg.dataset, "train")).to(device)
    # The training set is an endless stream indexed by draw number, so DrawSampler (not torch's
    # DistributedSampler, which needs a finite length) splits it: rank r takes draws r, r + world, ...
    batches = training_loader(
        train_set,
        batch_size=rank_batch,
        start_step=trainer.step,
        num_workers=cfg.trainer.num_workers,
        seed=cfg.seed,
        rank=dist.rank,
        world_size=dist.world_size,
        pin_memory=device.type == "cuda",
    )
    if not dist.is_main:
        trainer.fit(batches, preview_clips=preview_clips, val_clips=val_clips, logger=None)
        stop_if_signalled(trainer, run_dir)
        return run_dir
    logger = RunLogger(run_dir, enabled=cfg.logger.enabled, resume_step=trainer.step if resume_from else None)
    try:
        last = trainer.fit(
            batches, preview_clips=preview_clips, val_clips=val_clips, logger=logger, mean_frame=mean_frame
        )
        stop_if_signalled(trainer, run_dir)
        videos = final_preview(trainer, preview_clips, run_dir)
        logged = {key: cfg[key] for key in ("model", "trainer", "optimizer", "grad_clip", "dataset", "seed")}
        logger.hparams(OmegaConf.to_container(OmegaConf.create(logged), resolve=True), trainer.final_metrics())
    finally:
        logger.close()
    print(f"checkpoint: {last}\ntensorboard: {run_dir / 'tb'}\npredictions: {', '.join(map(str, videos))}")
    if (run_dir / VALIDATION_PLOT_NAME).exists():
        print(f"validation PSNR/SSIM against training minutes, with the baselines: {run_dir / VALIDATION_PLOT_NAME}")
    if cfg.final_eval is not None:
        evaluated = last if trainer.average is None else last.with_name("ema.pt")
        final_evaluation(cfg, evaluated, run_dir / "eval")
    return run_dir


def stop_if_signalled(trainer: Trainer, run_dir: Path) -> None:
    """Raise StoppedEarly when a signal stopped the trainer (after its checkpoint): the process then exits with
    128 + the signal's number, so a scheduler or script can tell it from a finished run."""
    if trainer.stopped_by is not None:
        raise StoppedEarly(
            trainer.stopped_by,
            f"step {trainer.step} (checkpoint {run_dir / 'checkpoints'})",
            f"srvp-train run_dir={run_dir} with the same overrides",
        )


def final_evaluation(cfg: DictConfig, checkpoint: Path, out_dir: Path) -> dict:
    """srvp-eval's protocol on `checkpoint` with the `final_eval` settings (eval.yaml keys), into `out_dir`;
    prints the model against the model-free baselines and returns the report."""
    eval_cfg = OmegaConf.merge(
        eval_defaults(), {"device": cfg.device}, cfg.final_eval, {"ckpt_path": str(checkpoint), "out_dir": str(out_dir)}
    )
    report = evaluate(eval_cfg, out_dir)
    print(
        f"evaluation of {checkpoint.name} on {report['num_clips']} test clips, best of {report['num_samples']} "
        f"samples (model vs model-free baselines):\n{results_table(report)}\nresults: {out_dir / 'eval.json'}"
    )
    return report


@hydra.main(version_base="1.3", config_path="pkg://srvp.configs", config_name="train")
def _hydra_main(cfg: DictConfig) -> None:
    torch.set_float32_matmul_precision("high")
    with open_dict(cfg):  # run_dir=X and hydra.run.dir=X (or a sweep job's folder) both name the run folder
        cfg.run_dir = HydraConfig.get().runtime.output_dir
    try:
        check_overlay(cfg, "srvp-train")
        train(cfg)
    except StoppedEarly as stopped:
        print(f"srvp-train: {stopped}", file=sys.stderr)
        sys.exit(stopped.exit_status)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as error:
        # One line naming the culprit; everything written so far (checkpoints, logs) is intact.
        sys.exit(f"srvp-train: error: {error}")


def main() -> None:
    """Console-script entry point."""
    check_output_arguments(sys.argv[1:], ("run_dir", "hydra.run.dir", "hydra.sweep.dir"), "srvp-train")
    run_hydra_main("srvp-train", _hydra_main, MOVED_KEYS)


if __name__ == "__main__":
    main()
