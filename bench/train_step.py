"""Training-step throughput: sequences/s and peak memory of forward + backward + Adam, fast path vs baseline.

Models are the paper's SM-MNIST (DCGAN, 15 frames) and KTH (VGG with skips, dt=1/2, 20 frames) configs,
composed from `configs/` as `srvp-train` composes them. The baseline is our own model with every switch
off (eager, float32, contiguous, default Adam); the fast path adds channels-last and foreach/fused Adam,
plus torch.compile (`--compile`) and bf16 autocast (`--bf16`). Both run in the same process, alternating
step by step, so load on the machine hits them alike; the ratio is fast / baseline throughput.
Run: `.venv/bin/python bench/train_step.py --device cpu --batch-sizes 4 --steps 3`.
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import dataclass

import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import video_pred.train  # noqa: F401  (registers the model schema in hydra's ConfigStore)
from video_pred.train_step import StepOptions, TrainStep
from worldmodel import SRVPConfig

DATASETS = {"smmnist": [], "kth": ["dataset.root=unused"]}


def paper_setting(name: str) -> tuple[SRVPConfig, int]:
    """The model config and training clip length of dataset `name`, as `srvp-train dataset=name` uses them."""
    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"dataset={name}", *DATASETS[name]])
    return SRVPConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True)), int(cfg.dataset.train_length)


@dataclass
class Timing:
    """Seconds of the timed steps of one variant, and its peak memory."""

    seconds: list[float]
    peak_mib: float

    @property
    def median(self) -> float:
        return sorted(self.seconds)[len(self.seconds) // 2]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: peak allocated since the last reset; CPU: the process's peak resident set (all variants)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_variants(
    model_config: SRVPConfig, length: int, batch: int, variants: list[StepOptions], device: torch.device, steps: int
) -> list[Timing]:
    """Warm up every variant (compilation, cuDNN autotuning), then time `steps` steps of each, interleaved."""
    clips = torch.randint(0, 256, (batch, length, model_config.channels, 64, 64), dtype=torch.uint8, device=device)
    runners = []
    for options in variants:
        torch.manual_seed(0)
        runners.append(TrainStep(model_config, options, device))
    timings = [Timing([], 0.0) for _ in variants]
    for runner in runners:
        for _ in range(2):
            runner(clips)
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
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench/train_step.py: error: --device cuda but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.set_float32_matmul_precision("high")
    fast = StepOptions(channels_last=True, fused_optimizer=True)
    variants = [StepOptions(), fast]
    if args.bf16:
        variants.append(StepOptions(channels_last=True, fused_optimizer=True, bf16=True))
    if args.compile:
        variants.append(StepOptions(channels_last=True, fused_optimizer=True, compile=True, bf16=args.bf16))
    print(f"device={device} threads={torch.get_num_threads()} baseline=our model, every switch off (eager fp32)")
    print(f"{'setting':<8} {'batch':>5} {'variant':<45} {'step s':>8} {'seq/s':>8} {'peak MiB':>9} {'speed-up':>8}")
    for name in args.datasets:
        model_config, length = paper_setting(name)
        for batch in args.batch_sizes:
            timings = time_variants(model_config, length, batch, variants, device, args.steps)
            for options, timing in zip(variants, timings, strict=True):
                ratio = timings[0].median / timing.median
                print(
                    f"{name:<8} {batch:>5} {options.label():<45} {timing.median:>8.3f} "
                    f"{batch / timing.median:>8.2f} {timing.peak_mib:>9.0f} {ratio:>7.2f}x"
                )


if __name__ == "__main__":
    main()
