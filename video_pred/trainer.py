"""The SRVP training loop: Adam with constant-then-linear-decay LR, mixed precision, optional torch.compile,
TensorBoard logging, atomic checkpoints and exact resume (the same losses after a kill as without one).

Under torchrun the model is wrapped in DistributedDataParallel; each rank reads its own share of the draw
stream (`DrawSampler`) and rank 0 alone writes logs, checkpoints and videos."""

from __future__ import annotations

import copy
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm import tqdm

from srvp.common.checkpoints import apply_schedule, restore_training, save_checkpoint
from srvp.common.configs import config_changes, upgrade_saved_config, write_run_config
from srvp.common.logger import RunLogger
from srvp.common.media import side_by_side, write_video
from srvp.common.optimisation import LossAverages, NonFiniteLossError, build_model, build_optimizer, optimisation_step
from srvp.common.runtime import StopRequest, autocast, capture_rng_state, restore_rng_state, seed_everything
from srvp.video_pred.config import BUDGET_MIN_TIMED_STEPS, BUDGET_SKIPPED_STEPS, MOVED_KEYS
from srvp.video_pred.curves import VALIDATION_PLOT_NAME, plot_validation, read_validation_history
from srvp.video_pred.distributed import DistributedContext, any_rank, gather_from_ranks, host_group
from srvp.video_pred.protocol import FRAME_METRICS, run_best_of_n
from srvp.worldmodel import SRVPConfig, load_checkpoint


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


def with_warmup(factor: Callable[[int], float], warmup_steps: int) -> Callable[[int], float]:
    """`factor` with a linear warm-up: optimiser step s <= `warmup_steps` runs at s / `warmup_steps` of it
    (a short run at a high rate starts without the first large Adam steps; 0 keeps `factor` unchanged)."""
    if warmup_steps == 0:
        return factor
    return lambda taken: min(1.0, (taken + 1) / warmup_steps) * factor(taken)


def budget_step_counts(
    budget_s: float, seconds_per_step: float, steps: int, decay_steps: int, done: int = 0
) -> tuple[int, int]:
    """The schedule's (constant, decaying) step counts that take `budget_s` seconds at `seconds_per_step`, in the
    ratio `steps` : `decay_steps`; the `done` steps already taken at the full rate stay at it."""
    total = max(1, done, int(budget_s / seconds_per_step))
    constant = max(done, round(total * steps / (steps + decay_steps)))
    return constant, total - constant


class WeightAverage:
    """Exponential moving average of a model's weights, evaluated instead of the weights themselves (sharper
    samples early in a short run). After optimiser step n the average moves towards the weights by
    1 - min(decay, (1 + n) / (10 + n)): the first steps, far from the decay's horizon, are not weighed down by
    the initial weights. Buffers (BatchNorm statistics) are copied, not averaged."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Move the average towards `model`'s weights after optimiser step `step` (1 for the first)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        averaged = list(self.model.parameters())
        torch._foreach_lerp_(averaged, [parameter.detach() for parameter in model.parameters()], 1 - decay)
        for average, buffer in zip(self.model.buffers(), model.buffers(), strict=True):
            average.copy_(buffer)


VALIDATION_CLIP_BATCH, VALIDATION_CHUNK = 16, 20
"""Validation clips and samples generated per pass (as srvp-eval's batch_size and sample_chunk)."""
RUN_BOOKKEEPING = ("run_dir", "resume", "ckpt_path", "trainer.max_steps", "final_eval")
"""Config keys that say where and how long to run, not what is computed: not reported as changes on resume."""


def use_sync_batchnorm(setting: bool | str, device: torch.device) -> bool:
    """Whether a distributed run converts BatchNorm to SyncBatchNorm: 'auto' does whenever the ranks are GPUs,
    as the official code does with more than one GPU; true needs CUDA (SyncBatchNorm is GPU-only)."""
    if setting == "auto":
        return device.type == "cuda"
    if setting and device.type != "cuda":
        raise ValueError("trainer.sync_batchnorm=true needs CUDA devices (SyncBatchNorm is GPU-only)")
    return bool(setting)


class TrainClock:
    """Wall-clock of the optimisation steps alone: the time spent in `side_work()` blocks (validation, videos,
    checkpoints) is left out, and `done` starts from the seconds of the run before a resume."""

    def __init__(self, done: float = 0.0) -> None:
        self.done = done
        """Seconds up to the start of the current window."""
        self._window_start = time.perf_counter()
        self._window_side = 0.0

    def total(self) -> float:
        """Training seconds so far, the current window included."""
        return self.done + time.perf_counter() - self._window_start - self._window_side

    def lap(self) -> float:
        """End the current window (added to `done`) and start the next; return the window's training seconds."""
        now = time.perf_counter()
        seconds = now - self._window_start - self._window_side
        self.done += seconds
        self._window_start, self._window_side = now, 0.0
        return seconds

    @contextmanager
    def side_work(self) -> Iterator[None]:
        """Time spent inside is not training time."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._window_side += time.perf_counter() - start


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
            if use_sync_batchnorm(trainer.sync_batchnorm, device):
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            # DDP broadcasts rank 0's weights and buffers now, then averages gradients in backward.
            train_module = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.optimizer = build_optimizer(cfg.optimizer, self.model, device=device, fused=trainer.fused_optimizer)
        self.total_steps = trainer.steps + trainer.lr_decay_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._schedule())
        self.seconds_per_step: float | None = None
        """The time per step from which `trainer.time_budget_s` set the step counts (None until then)."""
        self.budget_timed_until = 0
        """The last timed step of `trainer.time_budget_s` (the counts keep the steps up to it at the full rate)."""
        self.loaded_config: dict[str, Any] | None = None
        """The config of the checkpoint this run resumed from (None for a new run)."""
        self.average = WeightAverage(self.model, trainer.ema_decay) if trainer.ema_decay else None
        """The weights' moving average (`trainer.ema_decay`), which validation, videos and ema.pt use; or None."""
        self.loss_fn = torch.compile(train_module) if trainer.compile else train_module
        self.host_group = host_group(self.dist)
        self.step = 0
        self.stopped_by: int | None = None
        """The signal that stopped `fit` early (after a checkpoint), or None."""
        self.best_val_psnr: float | None = None
        self.train_seconds = 0.0
        """Wall-clock seconds spent in optimisation steps since the run began (validation, videos and checkpoints
        excluded), carried across resumes: the x axis of the validation curves."""
        self.last_train_values: dict[str, float] = {}
        self.checkpoint_dir = run_dir / "checkpoints"

    def _schedule(self) -> Callable[[int], float]:
        trainer = self.cfg.trainer
        schedule = constant_then_linear_decay(trainer.steps, trainer.lr_decay_steps)
        return with_warmup(schedule, trainer.lr_warmup_steps)

    def fit_time_budget(self, seconds_per_step: float, timed_until: int) -> None:
        """Set `trainer.steps` and `trainer.lr_decay_steps` (in their given ratio) so that the schedule fills
        `trainer.time_budget_s` at `seconds_per_step`, the steps up to `timed_until` staying at the full rate,
        and move the learning-rate schedule to them."""
        trainer = self.cfg.trainer
        trainer.steps, trainer.lr_decay_steps = budget_step_counts(
            trainer.time_budget_s, seconds_per_step, trainer.steps, trainer.lr_decay_steps, timed_until
        )
        self.seconds_per_step, self.budget_timed_until = seconds_per_step, timed_until
        self.total_steps = trainer.steps + trainer.lr_decay_steps
        schedule = self._schedule()
        self.scheduler.lr_lambdas = [schedule] * len(self.optimizer.param_groups)
        apply_schedule(self.scheduler)

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
            return Path(self.cfg.ckpt_path).expanduser()
        last = self.checkpoint_dir / "last.pt"
        return last if self.cfg.resume and last.exists() else None

    def load(self, path: Path) -> None:
        """Restore weights, optimiser, schedule (with the step counts a time budget set), step, best validation
        score and RNG states, and keep the checkpoint's config for `changes_from_checkpoint`."""
        payload = load_checkpoint(path, map_location=self.device)
        extra = payload.get("extra", {})
        if self.cfg.trainer.time_budget_s and "seconds_per_step" in extra:
            self.fit_time_budget(extra["seconds_per_step"], extra["budget_timed_until"])  # the counts set then
        restore_training(payload, path, self.model, self.optimizer, self.scheduler)
        self.step = payload["step"]
        self.best_val_psnr = extra.get("best_val_psnr")
        self.train_seconds = float(extra.get("train_seconds", 0.0))
        if self.average is not None:
            if "ema" in extra:
                self.average.model.load_state_dict(extra["ema"])
            else:
                self.average.model.load_state_dict(self.model.state_dict())
                print(f"{path} holds no weight average (trainer.ema_decay): it starts from the loaded weights")
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
        self.loaded_config = upgrade_saved_config(payload.get("config", {}), MOVED_KEYS)

    def changes_from_checkpoint(self) -> list[str]:
        """The settings this run changes from the loaded checkpoint's ('key: old -> new'), which take effect
        from its step; none without a loaded checkpoint."""
        if self.loaded_config is None:
            return []
        return config_changes(
            self.loaded_config, OmegaConf.to_container(self.cfg, resolve=True), ignore=RUN_BOOKKEEPING
        )

    def save(self, name: str, rank_rng: list[dict[str, Any]] | None = None) -> Path:
        """Atomically write checkpoints/<name>.pt with everything needed to resume or evaluate; `rank_rng`
        holds every rank's RNG states under DDP, so each rank resumes its own noise."""
        extra: dict[str, Any] = {"train_seconds": self.train_seconds}
        if self.seconds_per_step is not None:
            extra.update(seconds_per_step=self.seconds_per_step, budget_timed_until=self.budget_timed_until)
        if self.best_val_psnr is not None:
            extra["best_val_psnr"] = self.best_val_psnr
        if rank_rng is not None:
            extra["rank_rng"] = rank_rng
        if self.average is not None:
            extra["ema"] = self.average.model.state_dict()
        return save_checkpoint(
            self.checkpoint_dir / f"{name}.pt",
            self.model,
            self.step,
            config=OmegaConf.to_container(self.cfg, resolve=True),
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            extra=extra,
        )

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that validation, videos and the final evaluation use: the moving average when on."""
        return self.model if self.average is None else self.average.model

    def save_evaluated(self, name: str) -> Path:
        """Atomically write checkpoints/<name>.pt holding `eval_model`'s weights and no optimiser state: what
        srvp-eval reads (the moving average when `trainer.ema_decay` is set)."""
        return save_checkpoint(
            self.checkpoint_dir / f"{name}.pt",
            self.eval_model,
            self.step,
            config=OmegaConf.to_container(self.cfg, resolve=True),
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
    def validate(self, clips: torch.Tensor, mean_frame: torch.Tensor | None) -> dict[str, float]:
        """Model selection on the validation clips (b t c h w), the evaluation protocol in chunks (bounded
        memory at the official 400 clips x 100 samples): per clip, the best of `val_samples` samples by PSNR
        averaged over `val_frames` ('all': the reconstructed conditioning frames too, as the official
        selection; 'predicted'), scored on its predicted frames -> {'psnr', 'ssim': means over clips, each metric
        picking its own best sample; 'train_seconds'}; with `mean_frame`, also the model-free baselines' scores
        ('baseline_psnr/<name>', 'baseline_ssim/<name>'). PSNR alone selects best.pt, as the official code."""
        cond, trainer = self.cfg.dataset.cond_frames, self.cfg.trainer
        model = self.eval_model.eval()
        with self.evaluation_noise():
            result = run_best_of_n(
                model,
                clips.split(VALIDATION_CLIP_BATCH),
                cond_frames=cond,
                pred_frames=clips.shape[1] - cond,
                num_samples=trainer.val_samples,
                metrics=[FRAME_METRICS["psnr"], FRAME_METRICS["ssim"]],
                sample_chunk=VALIDATION_CHUNK,
                precision=self.cfg.precision,
                mean_frame=mean_frame,
                progress_bar=False,
                select_with_conditioning=trainer.val_frames == "all",
            )
        scores = {name: summary.mean for name, summary in result.metrics.items()}
        scores["train_seconds"] = self.train_seconds
        for baseline, summaries in result.baselines.items():
            scores.update({f"baseline_{name}/{baseline}": summary.mean for name, summary in summaries.items()})
        return scores

    @torch.no_grad()
    def prediction_video(self, clips: torch.Tensor, samples: int) -> np.ndarray:
        """Truth beside `samples` predictions for each clip, clips stacked vertically: uint8 (t h w 3)."""
        cond = self.cfg.dataset.cond_frames
        model = self.eval_model.eval()
        with self.evaluation_noise(), autocast(self.device, self.cfg.precision):
            predictions = model.predict(clips[:, :cond], clips.shape[1] - cond, samples).float()
        rows = [
            side_by_side([clip.cpu(), *sample.cpu()], cond) for clip, sample in zip(clips, predictions, strict=True)
        ]
        return np.concatenate(rows, axis=1)

    # ------------------------------------------------------------------ the loop
    def fit(
        self,
        batches: Iterator[torch.Tensor],
        *,
        preview_clips: torch.Tensor,
        val_clips: torch.Tensor | None,
        logger: RunLogger | None,
        mean_frame: torch.Tensor | None = None,
    ) -> Path:
        """Train until the schedule ends (or `trainer.max_steps`, or SIGTERM/SIGINT); return the last checkpoint.

        `logger` may be None on ranks other than 0, which write nothing. With `mean_frame` (c h w), each
        validation also logs the model-free baselines' PSNR on the same clips (val/baseline_psnr/*)."""
        trainer = self.cfg.trainer
        stop_at = min(self.total_steps, trainer.max_steps or self.total_steps)
        last = self.checkpoint_dir / "last.pt"
        averages = LossAverages(self.device)
        clock = TrainClock(self.train_seconds)
        budget_window = self.budget_window()
        window_start = clock.total()  # for a window starting at this step (a resume just before its end)
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
                output = optimisation_step(
                    self.loss_fn, self.optimizer, batch, precision=self.cfg.precision, grad_clip=self.cfg.grad_clip
                )
                self.scheduler.step()
                self.step += 1
                if budget_window is not None and self.step == budget_window[0]:
                    window_start = clock.total()
                if budget_window is not None and self.step == budget_window[1]:
                    first, last = budget_window
                    self._end_budget_window((clock.total() - window_start) / (last - first), first)
                    budget_window = None
                    stop_at = min(self.total_steps, trainer.max_steps or self.total_steps)
                    progress.total = stop_at
                if self.average is not None:
                    self.average.update(self.model, self.step)
                averages.add(output)  # on the device: no host synchronisation inside the step
                # A signal may reach the ranks at different steps: they stop together at the first step
                # where any of them saw it (a rank leaving alone would hang the others' all-reduce).
                stop_now = any_rank(stop.requested, self.host_group)
                at_end = self.step == stop_at or stop_now
                if self.step % trainer.log_every == 0 or at_end:
                    self._check_finite(averages)
                    elapsed = clock.lap()
                    window = averages.count
                    values = averages.read()
                    values["lr"] = self.scheduler.get_last_lr()[0]
                    values["sequences_per_s"] = window * batch.shape[0] * self.dist.world_size / max(elapsed, 1e-9)
                    values["seconds"] = clock.done
                    self.last_train_values = values
                    if self.dist.is_main:
                        logger.scalars(self.step, "train", values)
                    progress.set_postfix(loss=f"{values['loss']:.1f}", seq_s=f"{values['sequences_per_s']:.1f}")
                self.train_seconds = clock.total()
                writes = self.dist.is_main
                with clock.side_work():  # validation, videos and checkpoints: not training time
                    if writes and val_clips is not None and trainer.val_every and self.step % trainer.val_every == 0:
                        self._validate_and_record(val_clips, mean_frame, logger)
                    if writes and (self.step % trainer.video_every == 0 or at_end):
                        video = self.prediction_video(preview_clips, self.cfg.logger.video_samples)
                        logger.video(self.step, "predictions/truth_then_samples", video)
                    if self.step % trainer.ckpt_every == 0 or at_end:
                        self._check_finite(averages)
                        rank_rng = None
                        if self.dist.enabled:
                            rank_rng = gather_from_ranks(capture_rng_state(), self.host_group)
                        if writes:
                            last = self.save("last", rank_rng)
                            if self.average is not None:
                                self.save_evaluated("ema")
                progress.update(1)
                if stop_now:
                    self.stopped_by = stop.signum or signal.SIGTERM  # another rank's signal: report SIGTERM
                    break
        progress.close()
        return last

    def budget_window(self) -> tuple[int, int] | None:
        """The steps (after `first`, up to `last`) whose optimisation time sets the counts of
        `trainer.time_budget_s`: from BUDGET_SKIPPED_STEPS after the run's start (fewer when a resume starts
        near the end) to the given `trainer.steps`, whose constant rate the counts set keep; None without a
        budget, or when a resumed checkpoint had set them."""
        trainer = self.cfg.trainer
        if not trainer.time_budget_s or self.seconds_per_step is not None:
            return None
        least = BUDGET_SKIPPED_STEPS + BUDGET_MIN_TIMED_STEPS
        if trainer.steps < least:
            raise ValueError(
                f"trainer.time_budget_s times steps {BUDGET_SKIPPED_STEPS + 1} to trainer.steps at the full rate "
                f"before it sets the step counts: trainer.steps={trainer.steps} must be at least {least} (it "
                "gives the timed steps and the ratio to trainer.lr_decay_steps)"
            )
        last = trainer.steps
        if self.step >= last:
            raise ValueError(
                f"trainer.time_budget_s: the run is at step {self.step}, past trainer.steps={last}, the last step "
                "it would time at the full rate: give this run its step counts instead of a budget"
            )
        first = max(self.step, min(self.step + BUDGET_SKIPPED_STEPS, last - BUDGET_MIN_TIMED_STEPS))
        return first, last

    def _end_budget_window(self, seconds_per_step: float, first: int) -> None:
        """Set the step counts from the steps timed since `first` (the slowest rank's time under DDP); rank 0
        prints them and writes them into config.yaml."""
        self.fit_time_budget(max(gather_from_ranks(seconds_per_step, self.host_group)), self.step)
        if self.dist.is_main:
            trainer = self.cfg.trainer
            write_run_config(self.run_dir, OmegaConf.to_yaml(self.cfg, resolve=True), None, [])
            tqdm.write(
                f"time budget {trainer.time_budget_s:g} s at {self.seconds_per_step:.3f} s per step (steps "
                f"{first + 1}-{self.step}): trainer.steps={trainer.steps} and "
                f"trainer.lr_decay_steps={trainer.lr_decay_steps} ({self.total_steps} steps), in config.yaml"
            )

    def _validate_and_record(
        self, val_clips: torch.Tensor, mean_frame: torch.Tensor | None, logger: RunLogger
    ) -> dict[str, float]:
        """Validate, log the scores (val/*), redraw validation.png and keep best.pt by PSNR."""
        scores = self.validate(val_clips, mean_frame)
        logger.scalars(self.step, "val", scores)
        plot_validation(logger.run_dir / VALIDATION_PLOT_NAME, read_validation_history(logger.metrics_path))
        if self.best_val_psnr is None or scores["psnr"] > self.best_val_psnr:
            self.best_val_psnr = scores["psnr"]
            if self.average is None:
                self.save("best")
            else:
                self.save_evaluated("best")
        return scores

    def _check_finite(self, averages: LossAverages) -> None:
        # All ranks agree, so every one of them stops with this error rather than waiting for the others.
        if any_rank(averages.any_nonfinite(), self.host_group):
            last = self.checkpoint_dir / "last.pt"
            restart = (
                f"resume from {last}"
                if last.exists()
                else f"restart from {self.cfg.ckpt_path}"
                if self.cfg.ckpt_path
                else "restart the run"
            )
            raise NonFiniteLossError(
                f"the loss became NaN/inf before step {self.step}; nothing was saved after it: {restart} with a "
                "lower optimizer.lr (the new value applies from there) or check the data"
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
