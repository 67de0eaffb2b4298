"""The SRVP training loop: Adam with constant-then-linear-decay LR, mixed precision, optional torch.compile,
TensorBoard logging, atomic checkpoints and exact resume (the same losses after a kill as without one).

Under torchrun the model is wrapped in DistributedDataParallel; each rank reads its own share of the draw
stream (`DrawSampler`) and rank 0 alone writes logs, checkpoints and videos."""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm import tqdm

from video_pred.baselines import baseline_futures
from video_pred.distributed import DistributedContext, any_rank, gather_from_ranks, host_group
from video_pred.logger import RunLogger
from video_pred.media import side_by_side, write_video
from video_pred.protocol import FRAME_METRICS, best_of_n, score_samples
from worldmodel import SRVP, ElboOutput, SRVPConfig, load_checkpoint, save_checkpoint
from worldmodel.checkpoint import capture_rng_state, restore_rng_state
from worldmodel.runtime import autocast, seed_everything


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the weights since the last checkpoint are not trusted."""


def constant_then_linear_decay(steps: int, decay_steps: int) -> Callable[[int], float]:
    """LR factor of `LambdaLR`, stepped after every optimiser step, for the official schedule: optimiser steps
    1..`steps` use the full rate, step `steps` + k uses (n - k) / n with n = `decay_steps`, so the last step
    (k = n) uses 0. The factor receives the number of scheduler steps taken, one less than the step to come.

    The official loop steps its scheduler after each step s >= `steps`; with `steps` = 0 that first happens
    after step 1, so step 1 keeps the full rate there too (hence max(steps, 1))."""

    def factor(taken: int) -> float:
        if decay_steps == 0:
            return 1.0
        decayed = max(0, taken + 1 - max(steps, 1))
        return max(0.0, (decay_steps - decayed) / decay_steps)

    return factor


@dataclass
class StopRequest:
    """Set by SIGTERM/SIGINT: the loop finishes the current step, checkpoints and returns."""

    requested: bool = False
    previous: dict[int, Any] = field(default_factory=dict)

    def __enter__(self) -> StopRequest:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def build_optimizer(trainer: DictConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """`trainer.optimizer` (a partial) on the model's parameters; with `trainer.fused_optimizer`, the
    single-kernel update on CUDA (`fused=True`) and the multi-tensor one elsewhere (`foreach=True`)."""
    options = {}
    if trainer.fused_optimizer:
        options = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return instantiate(trainer.optimizer)(model.parameters(), **options)


def build_model(config: SRVPConfig, device: torch.device, channels_last: bool) -> SRVP:
    """The model on `device`, its convolutions in channels-last memory format when asked."""
    model = SRVP(config).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def optimisation_step(
    model: SRVP,
    loss_fn: Callable[[torch.Tensor], ElboOutput],
    optimizer: torch.optim.Optimizer,
    batch: torch.Tensor,
    precision: str,
) -> ElboOutput:
    """One update on uint8 clips (b t c h w): forward under `precision`, backward, optimiser step.

    `loss_fn` is the model itself or its DDP / compiled wrapper. Nothing here synchronises with the host.
    """
    model.train()
    with autocast(batch.device, precision):
        output = loss_fn(batch)
    optimizer.zero_grad(set_to_none=True)
    output.loss.backward()
    optimizer.step()
    return output


class Trainer:
    """Owns the model, optimiser, schedule and run directory of one training run (one rank of it under DDP)."""

    def __init__(
        self, cfg: DictConfig, device: torch.device, run_dir: Path, dist: DistributedContext | None = None
    ) -> None:
        self.cfg, self.device, self.run_dir = cfg, device, run_dir
        self.dist = dist or DistributedContext()
        trainer = cfg.trainer
        model_config = SRVPConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))
        self.model = build_model(model_config, device, trainer.channels_last)
        if device.type == "cuda":
            # Fixed input shapes at every step: let cuDNN time its algorithms once and keep the fastest.
            torch.backends.cudnn.benchmark = True
        train_module: torch.nn.Module = self.model
        if self.dist.enabled:
            # As the official code: BatchNorm statistics over the global batch whenever several GPUs train.
            sync = device.type == "cuda" if trainer.sync_batchnorm == "auto" else trainer.sync_batchnorm
            if sync:
                if device.type != "cuda":
                    raise ValueError("trainer.sync_batchnorm=true needs CUDA devices (SyncBatchNorm is GPU-only)")
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            # DDP broadcasts rank 0's weights and buffers now, then averages gradients in backward.
            train_module = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.optimizer = build_optimizer(trainer, self.model, device)
        self.total_steps = int(trainer.steps) + int(trainer.lr_decay_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, constant_then_linear_decay(int(trainer.steps), int(trainer.lr_decay_steps))
        )
        self.loss_fn = torch.compile(train_module) if trainer.compile else train_module
        self.host_group = host_group(self.dist)
        self.step = 0
        self.best_val_psnr: float | None = None
        self.last_train_values: dict[str, float] = {}
        self.checkpoint_dir = run_dir / "checkpoints"

    def final_metrics(self) -> dict[str, float]:
        """Last logged training loss parts and the best validation PSNR, for the hyper-parameter table."""
        metrics = {name: value for name, value in self.last_train_values.items() if name in ("loss", "nll")}
        if self.best_val_psnr is not None:
            metrics["best_val_psnr"] = self.best_val_psnr
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def resume_path(self) -> Path | None:
        """The explicit `ckpt_path`, else run_dir/checkpoints/last.pt when resuming is on and it exists."""
        if self.cfg.ckpt_path:
            return Path(self.cfg.ckpt_path)
        last = self.checkpoint_dir / "last.pt"
        return last if self.cfg.resume and last.exists() else None

    def load(self, path: Path) -> None:
        """Restore weights, optimiser, schedule, step, best validation score and RNG states."""
        payload = load_checkpoint(path, map_location=self.device)
        saved = SRVPConfig.from_dict(payload["model_config"])
        if saved != self.model.config:
            raise ValueError(f"checkpoint {path} was trained with another model config; resume with the same one")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.step = payload["step"]
        extra = payload.get("extra", {})
        self.best_val_psnr = extra.get("best_val_psnr")
        rank_states = extra.get("rank_rng", [payload["rng"]])
        if len(rank_states) == self.dist.world_size:
            restore_rng_state(rank_states[self.dist.rank])
        else:
            # Another number of processes than the saved run: each rank gets its own deterministic noise, no
            # longer the draws an uninterrupted run would have made.
            seed_everything(self.cfg.seed + self.dist.rank + self.dist.world_size * self.step)
            if self.dist.is_main:
                print(
                    f"{path} holds the RNG states of {len(rank_states)} processes, this run has "
                    f"{self.dist.world_size}: every rank was re-seeded"
                )

    def save(self, name: str, rank_rng: list[dict[str, Any]] | None = None) -> Path:
        """Atomically write checkpoints/<name>.pt with everything needed to resume or evaluate; `rank_rng`
        holds every rank's RNG states under DDP, so each rank resumes its own noise."""
        extra: dict[str, Any] = {}
        if self.best_val_psnr is not None:
            extra["best_val_psnr"] = self.best_val_psnr
        if rank_rng is not None:
            extra["rank_rng"] = rank_rng
        return save_checkpoint(
            self.checkpoint_dir / f"{name}.pt",
            self.model,
            self.step,
            config=OmegaConf.to_container(self.cfg, resolve=True),
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            extra=extra or None,
        )

    # ------------------------------------------------------------------ evaluation during training
    @contextmanager
    def evaluation_noise(self) -> Iterator[None]:
        """The same sampling noise at every evaluation (run seed), drawn without touching the training RNG:
        validation and videos are comparable across steps, and a run stopped at any step (where it writes a
        last video) resumes with the noise an uninterrupted run would draw."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.cfg.seed)
            yield

    @torch.no_grad()
    def validation_psnr(self, clips: torch.Tensor) -> dict[str, float]:
        """Model selection score of the validation clips (b t c h w): per clip, the best of `val_samples`
        samples by PSNR averaged over `val_frames` ('all': the reconstructed conditioning frames too, as the
        official selection; 'predicted': predicted frames only), then the mean over clips -> {'psnr': score};
        with 'all', also the predicted frames' share -> 'psnr_predicted', comparable with the baselines."""
        cond, trainer = self.cfg.dataset.cond_frames, self.cfg.trainer
        self.model.eval()
        with self.evaluation_noise(), autocast(self.device, trainer.precision):
            predictions = self.model.predict(clips[:, :cond], clips.shape[1] - cond, trainer.val_samples)
        frames = {"psnr_predicted": slice(cond, None)} if trainer.val_frames == "predicted" else {
            "psnr": slice(None), "psnr_predicted": slice(cond, None)}
        scores = {}
        for name, kept in frames.items():
            per_frame = score_samples(predictions[:, :, kept].float(), clips[:, kept].float().div(255),
                                      [FRAME_METRICS["psnr"]])["psnr"]
            scores[name] = best_of_n(per_frame, higher_is_better=True).mean().item()
        scores.setdefault("psnr", scores["psnr_predicted"])
        return scores

    def baseline_psnr(self, clips: torch.Tensor, mean_frame: torch.Tensor) -> dict[str, float]:
        """PSNR of the predicted frames of clips (b t c h w) by each model-free baseline, logged beside the
        validation PSNR so a curve can be read against what no model reaches."""
        cond = self.cfg.dataset.cond_frames
        videos = clips.float().div(255)
        futures = baseline_futures(videos[:, :cond], clips.shape[1] - cond, mean_frame)
        psnr = [FRAME_METRICS["psnr"]]
        return {name: score_samples(future[:, None], videos[:, cond:], psnr)["psnr"].mean().item()
                for name, future in futures.items()}

    @torch.no_grad()
    def prediction_video(self, clips: torch.Tensor, samples: int) -> np.ndarray:
        """Truth beside `samples` predictions for each clip, clips stacked vertically: uint8 (t h w 3)."""
        cond = self.cfg.dataset.cond_frames
        self.model.eval()
        with self.evaluation_noise(), autocast(self.device, self.cfg.trainer.precision):
            predictions = self.model.predict(clips[:, :cond], clips.shape[1] - cond, samples).float()
        rows = [
            side_by_side([clip.cpu(), *sample.cpu()], cond) for clip, sample in zip(clips, predictions, strict=True)
        ]
        return np.concatenate(rows, axis=1)

    # ------------------------------------------------------------------ the loop
    def fit(
        self,
        batches: Iterator[torch.Tensor],
        preview_clips: torch.Tensor,
        val_clips: torch.Tensor | None,
        logger: RunLogger | None,
        mean_frame: torch.Tensor | None = None,
    ) -> Path:
        """Train until the schedule ends (or `trainer.max_steps`, or SIGTERM/SIGINT); return the last checkpoint.

        `logger` may be None on ranks other than 0, which write nothing. With `mean_frame` (c h w), each
        validation also logs the model-free baselines' PSNR on the validation clips' predicted frames
        (val/baseline_psnr_predicted/*, beside the model's val/psnr_predicted)."""
        trainer = self.cfg.trainer
        stop_at = min(self.total_steps, trainer.max_steps or self.total_steps)
        last = self.checkpoint_dir / "last.pt"
        sums: dict[str, torch.Tensor] = {}
        window, window_start = 0, time.perf_counter()
        nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        baselines = None
        if val_clips is not None and mean_frame is not None and self.dist.is_main:
            baselines = self.baseline_psnr(val_clips, mean_frame)
        progress = tqdm(
            total=stop_at,
            initial=self.step,
            desc="train",
            dynamic_ncols=True,
            mininterval=2,
            disable=not self.dist.is_main,
        )
        with StopRequest() as stop:
            while self.step < stop_at:
                batch = next(batches).to(self.device, non_blocking=True)
                output = optimisation_step(self.model, self.loss_fn, self.optimizer, batch, trainer.precision)
                self.scheduler.step()
                self.step += 1
                # Accumulate on the device: no host synchronisation inside the step.
                nonfinite |= ~torch.isfinite(output.loss.detach())
                for name, value in output.parts.items():
                    sums[name] = sums.get(name, 0) + value.float()
                window += 1
                # A signal may reach the ranks at different steps: they stop together at the first step
                # where any of them saw it (a rank leaving alone would hang the others' all-reduce).
                stop_now = any_rank(stop.requested, self.host_group)
                at_end = self.step == stop_at or stop_now
                if self.step % trainer.log_every == 0 or at_end:
                    self._check_finite(nonfinite)
                    elapsed = time.perf_counter() - window_start
                    values = {name: (total / window).item() for name, total in sums.items()}
                    values["lr"] = self.scheduler.get_last_lr()[0]
                    values["sequences_per_s"] = window * batch.shape[0] * self.dist.world_size / max(elapsed, 1e-9)
                    self.last_train_values = values
                    if self.dist.is_main:
                        logger.scalars(self.step, "train", values)
                    progress.set_postfix(loss=f"{values['loss']:.1f}", seq_s=f"{values['sequences_per_s']:.1f}")
                    sums, window, window_start = {}, 0, time.perf_counter()
                writes = self.dist.is_main
                if writes and val_clips is not None and trainer.val_every and self.step % trainer.val_every == 0:
                    scores = self.validation_psnr(val_clips)
                    logger.scalars(self.step, "val", scores)
                    if baselines is not None:
                        logger.scalars(self.step, "val/baseline_psnr_predicted", baselines)
                    if self.best_val_psnr is None or scores["psnr"] > self.best_val_psnr:
                        self.best_val_psnr = scores["psnr"]
                        self.save("best")
                if writes and (self.step % trainer.video_every == 0 or at_end):
                    video = self.prediction_video(preview_clips, self.cfg.logger.video_samples)
                    logger.video(self.step, "predictions/truth_then_samples", video)
                if self.step % trainer.ckpt_every == 0 or at_end:
                    self._check_finite(nonfinite)
                    rank_rng = gather_from_ranks(capture_rng_state(), self.host_group) if self.dist.enabled else None
                    if writes:
                        last = self.save("last", rank_rng)
                progress.update(1)
                if stop_now:
                    break
        progress.close()
        return last

    def _check_finite(self, nonfinite: torch.Tensor) -> None:
        # All ranks agree, so every one of them stops with this error rather than waiting for the others.
        if any_rank(bool(nonfinite.item()), self.host_group):
            raise NonFiniteLossError(
                f"the loss became NaN/inf before step {self.step}; nothing was saved after it. Resume from "
                f"{self.checkpoint_dir / 'last.pt'} with a lower trainer.optimizer.lr or check the data"
            )


def final_preview(trainer: Trainer, preview_clips: torch.Tensor, out_dir: Path) -> list[Path]:
    """Write the final prediction video as GIF and MP4 in `out_dir`."""
    video = trainer.prediction_video(preview_clips, trainer.cfg.logger.video_samples)
    return [write_video(out_dir / "predictions.gif", video), write_video(out_dir / "predictions.mp4", video)]


def first_clips(dataset: Dataset, count: int) -> torch.Tensor:
    """The first `count` clips of a fixed dataset, stacked (b t c h w)."""
    count = min(count, len(dataset))
    if count == 0:
        raise ValueError("the evaluation split has no clips")
    return torch.stack([dataset[index] for index in range(count)])


def check_budget(cfg: DictConfig) -> None:
    """Reject trainer values that cannot run, naming the key."""
    trainer = cfg.trainer
    for key in ("batch_size", "log_every", "video_every", "ckpt_every"):
        if int(trainer[key]) < 1:
            raise ValueError(f"trainer.{key}={trainer[key]}: must be a positive integer")
    if (
        int(trainer.steps) < 0
        or int(trainer.lr_decay_steps) < 0
        or int(trainer.steps) + int(trainer.lr_decay_steps) < 1
    ):
        raise ValueError("trainer.steps + trainer.lr_decay_steps must be at least 1")
    if trainer.val_frames not in ("all", "predicted"):
        raise ValueError(f"trainer.val_frames={trainer.val_frames!r}: expected all or predicted")
    if trainer.sync_batchnorm not in ("auto", True, False):
        raise ValueError(f"trainer.sync_batchnorm={trainer.sync_batchnorm!r}: expected auto, true or false")
    if trainer.val_every and (int(trainer.val_clips) < 1 or int(trainer.val_samples) < 1):
        raise ValueError("trainer.val_clips and trainer.val_samples must be positive when trainer.val_every is set")
    if not math.isfinite(float(trainer.optimizer.lr)) or float(trainer.optimizer.lr) <= 0:
        raise ValueError(f"trainer.optimizer.lr={trainer.optimizer.lr}: must be a positive number")
