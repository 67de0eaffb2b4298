"""srvp-train's settings as typed dataclasses (hydra's schemas for configs/train.yaml, registered by
`srvp.configs`): the trainer section, the logger, and the run as a whole. The defaults are the paper's
optimisation; configs/dataset/*.yaml overlay each dataset's values, configs/experiment/ and configs/debug/ theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from srvp.common.configs import check_clip_length, check_integer
from srvp.common.settings import LoggerConfig, RunConfig, check_fields, check_run_settings, setting

BUDGET_SKIPPED_STEPS, BUDGET_MIN_TIMED_STEPS = 100, 20
"""A run with `trainer.time_budget_s` times its optimisation steps after the first BUDGET_SKIPPED_STEPS
(allocator, thread pools and data workers warming up) up to the given `trainer.steps`, at least
BUDGET_MIN_TIMED_STEPS of them, then sets its step counts. The step time of 2 CPU cores wanders by 10-15% over
minutes: windows of 100 and 300 steps ran 20% slower and 12% faster than the rest of their `make train`
(filling 7 1/2 minutes of a 9-minute budget, then 10 min 11 s); `make train` times about 1,100 steps."""

MOVED_KEYS = {"trainer.optimizer": "optimizer"}
"""Keys srvp-train read elsewhere before -> where they are now: the optimiser moved to the top level, where
srvp-control has it (a command or saved config with the old key is told the new one)."""


@dataclass
class TrainerConfig:
    """Optimisation schedule, speed switches and run bookkeeping of srvp-train (the `trainer:` section)."""

    batch_size: int = setting(128, minimum=1)
    """Clips per optimisation step over all processes (split evenly between ranks under torchrun)."""
    steps: int = setting(1_000_000, minimum=0)
    """Optimiser steps at the constant learning rate."""
    lr_decay_steps: int = setting(100_000, minimum=0)
    """Optimiser steps after `steps`, the learning rate decaying linearly to 0 (the last one at 0)."""
    lr_warmup_steps: int = setting(0, minimum=0)
    """Linear warm-up of the first steps to the full rate (0: none, as the paper)."""
    time_budget_s: float | None = setting(None, minimum=1)
    """Seconds of optimisation steps the schedule fills (validation, videos and checkpoints excluded; `make
    train`: 540), or null for `steps` and `lr_decay_steps` as given. The run times its steps from 101 to `steps`
    (at the full rate; `steps` must be at least 120) and then sets `steps` and `lr_decay_steps`, in the ratio
    given, so that the whole schedule fills the budget at that speed; config.yaml records the counts it set
    and the checkpoints the time per step, from which a resume sets the same counts."""
    num_workers: int = setting(2, minimum=0)
    """Data-loading processes (0: load in the training process)."""
    compile: bool = False
    """torch.compile the training step."""
    channels_last: bool = True
    """Channels-last memory format for the convolutions (1.3x faster on CPU here)."""
    fused_optimizer: bool = True
    """Fused (CUDA) / foreach (CPU) optimiser update: the same numerics in fewer kernels."""
    sync_batchnorm: Any = setting("auto", choices=("auto", True, False))
    """BatchNorm statistics over the global batch under torchrun: auto is on with several GPUs (as the official
    code), off on CPU; or true / false."""
    log_every: int = setting(50, minimum=1)
    """Steps between scalars written to TensorBoard and metrics.jsonl."""
    video_every: int = setting(5000, minimum=1)
    """Steps between prediction videos in TensorBoard."""
    ckpt_every: int = setting(1000, minimum=1)
    """Steps between atomic checkpoints (checkpoints/last.pt)."""
    val_every: int | None = setting(None, minimum=0)
    """Steps between validations (PSNR of the best of `val_samples`, and best.pt); null or 0: no validation."""
    val_clips: int = setting(400, minimum=1)
    """Fixed validation clips (the official selection: 400; a CPU run may take 64)."""
    val_samples: int = setting(100, minimum=1)
    """Samples per validation clip, the best by PSNR scored (official: 100; a CPU run may take 10)."""
    val_frames: str = setting("all", choices=("all", "predicted"))
    """The frames whose PSNR selects the sample and the checkpoint: all (official: the reconstructed conditioning
    frames too) | predicted."""
    ema_decay: float | None = None
    """Decay in (0, 1) of a moving average of the weights (e.g. 0.999), used by validation, videos and
    checkpoints/ema.pt, which the final evaluation reads; null: none (as the paper)."""
    max_steps: int | None = setting(None, minimum=1)
    """Stop after this many steps (smoke runs); the schedule still spans steps + lr_decay_steps."""

    def __post_init__(self) -> None:
        check_fields(self, "trainer")
        if self.steps + self.lr_decay_steps < 1:
            raise ValueError("trainer.steps + trainer.lr_decay_steps must be at least 1")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"trainer.ema_decay={self.ema_decay}: expected a decay in (0, 1), or null for none")


@dataclass
class TrainLoggerConfig(LoggerConfig):
    """srvp-train's logging: TensorBoard with prediction videos of fixed test clips."""

    video_clips: int = setting(4, minimum=1)
    """Test clips shown in the prediction videos."""
    video_samples: int = setting(2, minimum=1)
    """Predicted samples per clip beside the truth."""

    def __post_init__(self) -> None:
        check_fields(self, "logger")


@dataclass
class TrainConfig(RunConfig):
    """srvp-train's whole config: the shared run settings, the model (SRVPConfig's schema, from configs/model/),
    the dataset (each dataset's own keys, configs/dataset/), the trainer and the logger."""

    model: Any = MISSING
    """The model's hyper-parameters: every field of `srvp.worldmodel.SRVPConfig`."""
    dataset: Any = MISSING
    """The dataset's keys (configs/dataset/<name>.yaml): name, clip lengths, where its files are."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Optimisation schedule and bookkeeping."""
    logger: TrainLoggerConfig = field(default_factory=TrainLoggerConfig)
    """TensorBoard and prediction videos."""
    ckpt_path: str | None = None
    """Start from (resume) this checkpoint instead of run_dir's last one."""
    final_eval: Any = None
    """srvp-eval settings (configs/eval.yaml keys, e.g. {max_clips: 256, num_samples: 10}) to evaluate the last
    checkpoint after training, against the model-free baselines, into run_dir/eval; null: none."""


def check_train_config(cfg: DictConfig) -> None:
    """The checks of srvp-train's composed config that its schema's types cannot make, each a one-line error
    naming the key, before anything runs: the run settings' and the trainer's ranges and choices, and the
    dataset's clip lengths against the model's."""
    check_run_settings(cfg)
    OmegaConf.to_object(cfg.trainer)  # TrainerConfig checks its values when it is built
    OmegaConf.to_object(cfg.logger)
    dataset, model = cfg.dataset, cfg.model
    check_clip_length("dataset.train_length", dataset.train_length, model, "model")
    check_integer("dataset.pred_frames", dataset.pred_frames, 1)
    check_integer("dataset.cond_frames", dataset.cond_frames, max(model.y1_frames, model.content_frames))
