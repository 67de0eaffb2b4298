"""Training-step throughput: sequences/s and peak memory of forward + backward + Adam, fast path vs baseline.

Models are the paper's SM-MNIST (DCGAN, 15 frames), KTH (VGG with skips, dt=1/2, 20 frames) and BAIR configs,
and `make train`'s CPU experiment (`cpu_mmnist`: the DCGAN at a quarter width, 20 frames), composed from
`configs/` as `srvp-train` composes them. The baseline is our own model with every switch
off (eager, float32, contiguous, default Adam, literal decoder); then channels-last with foreach/fused
Adam, then the Trainer's default which adds the factorised decoder, plus torch.compile (`--compile`) and
bf16 autocast (`--bf16`) on top of it. All variants run in the same process, alternating step by step, so
load on the machine hits them alike; the speed-up is baseline / variant step time.
Each variant's convolution and matmul work is counted once (torch.utils.flop_counter, forward + backward),
and its rate compared with this device's float32 matmul rate, measured in the same run: a variant near
that rate is bound by arithmetic and gets faster only with less arithmetic or lower precision.
Run: `.venv/bin/python -m bench.train_step --device cpu --batch-sizes 4 --steps 3`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from functools import partial

import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from bench.step_variants import StepOptions, TrainStep
from bench.timing import matmul_flops_per_second, median, peak_memory_mib, seconds, synchronize
from srvp.common.optimisation import optimisation_step
from srvp.worldmodel import SRVPConfig

DATASETS = {
    "smmnist": ["dataset=smmnist"],
    "kth": ["dataset=kth", "dataset.root=unused"],
    "bair": ["dataset=bair", "dataset.root=unused"],
    "cpu_mmnist": ["experiment=cpu_mmnist"],
}
"""Setting name -> the srvp-train overrides that compose it."""


@dataclass(frozen=True)
class TrainSetting:
    """What `srvp-train` trains with the overrides of one DATASETS entry (a paper dataset or `make train`'s
    experiment): the model, the clip lengths and the batch size."""

    model: SRVPConfig
    train_length: int
    cond_frames: int
    pred_frames: int
    batch_size: int


def train_setting(name: str) -> TrainSetting:
    """The setting `name` of DATASETS, composed from configs/ as `srvp-train` composes it."""
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=DATASETS[name])
    return TrainSetting(
        model=SRVPConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True)),
        train_length=int(cfg.dataset.train_length),
        cond_frames=int(cfg.dataset.cond_frames),
        pred_frames=int(cfg.dataset.pred_frames),
        batch_size=int(cfg.trainer.batch_size),
    )


@dataclass
class Timing:
    """Seconds of the timed steps of one variant, its first (warm-up) step, peak memory and arithmetic."""

    seconds: list[float]
    peak_mib: float
    flops: int = 0
    warmup_seconds: float = 0.0
    """The first step: compilation and cuDNN autotuning happen there."""

    @property
    def median(self) -> float:
        return median(self.seconds)


def step_flops(runner: TrainStep, clips: torch.Tensor) -> int:
    """Floating-point operations of one eager step of `runner`'s model (convolutions and matmuls, forward
    and backward; torch.compile and autocast change how fast they run, not how many there are)."""
    counter = FlopCounterMode(display=False)
    with counter:
        optimisation_step(runner.model, runner.optimizer, clips, precision="fp32")
    return counter.get_total_flops()


def print_profile(runner: TrainStep, clips: torch.Tensor, device: torch.device, rows: int) -> None:
    """torch.profiler's table of the ops taking the most time in one step of `runner`: where time goes."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        runner(clips)
        synchronize(device)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(profiler.key_averages().table(sort_by=sort_by, row_limit=rows, max_name_column_width=48))


def time_variants(
    model_config: SRVPConfig,
    length: int,
    batch: int,
    variants: list[StepOptions],
    device: torch.device,
    steps: int,
    profile_rows: int = 0,
) -> list[Timing]:
    """Warm up every variant (compilation, cuDNN autotuning), then time `steps` steps of each, interleaved;
    with `profile_rows`, print the profile of the last variant's step."""
    clips = torch.randint(0, 256, (batch, length, model_config.channels, 64, 64), dtype=torch.uint8, device=device)
    runners = []
    for options in variants:
        torch.manual_seed(0)
        runners.append(TrainStep(model_config, options, device))
    timings = [Timing([], 0.0) for _ in variants]
    for runner, timing in zip(runners, timings, strict=True):
        timing.warmup_seconds = seconds(partial(runner, clips), device)
        runner(clips)
        timing.flops = step_flops(runner, clips)
    synchronize(device)
    for _ in range(steps):
        for runner, timing in zip(runners, timings, strict=True):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            runner(clips)
            synchronize(device)
            timing.seconds.append(time.perf_counter() - start)
            timing.peak_mib = max(timing.peak_mib, peak_memory_mib(device))
    if profile_rows:
        print_profile(runners[-1], clips, device, profile_rows)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=sorted(DATASETS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (after 2 warm-up steps)")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile variant")
    parser.add_argument("--bf16", action="store_true", help="add a bf16-autocast variant")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS", help="print the top ops of the last variant")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.train_step: error: --device cuda but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.set_float32_matmul_precision("high")
    variants = [
        StepOptions(),
        StepOptions(channels_last=True, fused_optimizer=True),
        StepOptions(channels_last=True, fused_optimizer=True, factorised_decoder=True, cudnn_benchmark=True),
    ]
    default = variants[-1]
    if args.bf16:
        variants.append(replace(default, bf16=True))
    if args.compile:
        variants.append(replace(default, compile=True, bf16=args.bf16))
    matmul_rate = matmul_flops_per_second(device)
    print(
        f"device={device} threads={torch.get_num_threads()} float32 matmul {matmul_rate / 1e9:.0f} GFLOP/s; "
        "baseline = our model with every switch off (eager fp32, literal decoder)"
    )
    print(
        f"{'setting':<10} {'batch':>5} {'variant':<64} {'step s':>8} {'seq/s':>8} {'peak MiB':>9} "
        f"{'GFLOP':>7} {'GFLOP/s':>8} {'of mm':>6} {'speed-up':>8}"
    )
    for name in args.datasets:
        setting = train_setting(name)
        for batch in args.batch_sizes:
            timings = time_variants(
                setting.model, setting.train_length, batch, variants, device, args.steps, args.profile
            )
            for options, timing in zip(variants, timings, strict=True):
                ratio = timings[0].median / timing.median
                rate = timing.flops / timing.median
                print(
                    f"{name:<10} {batch:>5} {options.label():<64} {timing.median:>8.3f} "
                    f"{batch / timing.median:>8.2f} {timing.peak_mib:>9.0f} {timing.flops / 1e9:>7.1f} "
                    f"{rate / 1e9:>8.1f} {rate / matmul_rate:>6.0%} {ratio:>7.2f}x"
                )


if __name__ == "__main__":
    main()
