"""`make gpu-check`: about nine minutes of one GPU turned into the figures that need a GPU.

Parts, in this order, each timed and allowed to fail without losing the others (results.json and
results.md are rewritten after every part, so a run cut short keeps what finished):
1. `gpu_tests`: the CUDA-only tests (`pytest -m gpu`) and a bf16-vs-fp32 check of one training step's loss
   and gradient on identical weights, batch and noise;
2. `train_throughput`: the training step at the paper's batch sizes (SM-MNIST DCGAN 128, KTH VGG with skips
   and dt=1/2 100, BAIR 192): eager fp32 vs the Trainer default (bf16 autocast on CUDA, channels-last,
   fused Adam, cuDNN autotuning, factorised decoder) vs the default + torch.compile; sequences/s, peak
   memory, and the achieved FLOP rate as a share of this GPU's dense bf16 matmul rate measured in the run;
3. `sampling`: best-of-100 on KTH- and BAIR-sized models, clips/s end to end and the seconds of predict,
   decode and metrics alone;
4. `planning`: CEM at the PlaNet budget (horizon 12, 1000 candidates, 10 iterations), ms per decision and
   latent transitions/s, eager vs torch.compile vs CUDA graphs (compile mode reduce-overhead);
5. `smmnist_training`: Stochastic Moving MNIST at the paper's settings for a fixed budget of steps (sized
   from a measured step rate to fill `--train-seconds`), then best-of-100 PSNR/SSIM on fixed test clips
   beside the model-free baselines: a first quality point on the paper's benchmark;
6. `control`: `make control`'s experiment (cartpole-swingup) at PlaNet's budget (the control world model at
   full width, 100 updates of 50 x 50 frames per episode, CEM 1000 x 10 with top 100) for a fixed number of
   episodes, then the evaluation on 10 fixed seeds beside the random and zero-action policies, and the loop's
   speed (environment steps/s, updates/s, ms per decision). It needs the control extra (gymnasium, dm-control,
   MuJoCo) and EGL or OSMesa on the GPU machine; without them it fails alone, naming what is missing.

It needs torch, einops, numpy, scipy, matplotlib, tensorboard, torchmetrics, tqdm, imageio, pillow, PyYAML
and pytest (a GPU image's usual set) plus hydra-core, omegaconf and antlr4-python3-runtime, which
`make gpu-wheels` fetches as wheels on a machine with a package registry (README, "GPU check").

    python3 -m bench.gpu_check --out DIR --mnist-dir DIR [--dry-run]

`--dry-run` runs every part at tiny sizes on CPU (the test suite does; MNIST files need not be the real
ones then).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REQUIRED = {
    "torch": "torch",
    "einops": "einops",
    "numpy": "numpy",
    "scipy": "scipy",
    "matplotlib": "matplotlib",
    "tensorboard": "tensorboard",
    "torchmetrics": "torchmetrics",
    "tqdm": "tqdm",
    "imageio": "imageio",
    "PIL": "pillow",
    "yaml": "PyYAML",
    "pytest": "pytest",
    "hydra": "hydra-core",
    "omegaconf": "omegaconf",
    "antlr4": "antlr4-python3-runtime",
}
"""Modules the check imports -> the package that provides each."""
REPO = Path(__file__).resolve().parents[1]
PAPER_DATASETS = ("smmnist", "kth", "bair")


def missing_packages() -> list[str]:
    """The packages of REQUIRED that cannot be imported here."""
    missing = []
    for module, package in REQUIRED.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    return missing


@dataclass(frozen=True)
class Sizes:
    """How much work each part does: the real check on a GPU, or a dry run on CPU."""

    tiny_models: bool
    throughput_batches: dict[str, int] | None
    """Batch per dataset; None: the paper's batch size."""
    timed_steps: int
    compile: bool
    sampling_clips: int
    sampling_samples: int
    sampling_chunk: int
    planning: tuple[int, int, int]
    """Horizon, candidates, iterations."""
    planning_repeats: int
    train_seconds: float
    train_batch: int | None
    """Training batch; None: the paper's."""
    eval_clips: int
    eval_samples: int
    control_episodes: int
    """Planning episodes of the control part (after 5 random ones); 0 in a dry run: debug=control_tiny's."""


GPU_SIZES = Sizes(
    tiny_models=False,
    throughput_batches=None,
    timed_steps=5,
    compile=True,
    sampling_clips=4,
    sampling_samples=100,
    sampling_chunk=50,
    planning=(12, 1000, 10),
    planning_repeats=3,
    train_seconds=210.0,
    train_batch=None,
    eval_clips=1000,
    eval_samples=100,
    control_episodes=20,
)
DRY_SIZES = Sizes(
    tiny_models=True,
    throughput_batches={name: 2 for name in PAPER_DATASETS},
    timed_steps=1,
    compile=False,
    sampling_clips=1,
    sampling_samples=2,
    sampling_chunk=2,
    planning=(2, 8, 1),
    planning_repeats=1,
    train_seconds=2.0,
    train_batch=4,
    eval_clips=2,
    eval_samples=2,
    control_episodes=0,
)
TINY_MODEL = {
    "filters": 4,
    "code_dim": 8,
    "y_dim": 4,
    "z_dim": 4,
    "content_dim": 8,
    "inf_hidden": 16,
    "fwd_hidden": 16,
    "lstm_hidden": 8,
}
"""Model widths of a dry run (the paper's architecture families, variants and dt kept)."""


@dataclass
class Context:
    """What the parts share: device, sizes, output folder and the results so far."""

    device: Any
    sizes: Sizes
    out: Path
    mnist_dir: Path | None
    dry_run: bool
    results: dict[str, Any]


def table(title: str, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    """A result table for results.md (and results.json)."""
    return {"title": title, "columns": columns, "rows": rows}


def setting(name: str, sizes: Sizes):
    """The paper's setting of dataset `name`, with tiny widths in a dry run."""
    from bench.train_step import train_setting

    chosen = train_setting(name)
    return replace(chosen, model=replace(chosen.model, **TINY_MODEL)) if sizes.tiny_models else chosen


# ---------------------------------------------------------------------------------------------- part 1
def gpu_tests(ctx: Context) -> dict[str, Any]:
    """`pytest -m gpu` over the test files that hold CUDA tests, and the bf16-vs-fp32 step check."""
    files = sorted(
        str(path.relative_to(REPO)) for path in (REPO / "tests").glob("test_*.py") if "mark.gpu" in path.read_text()
    )
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    output = (done.stdout + done.stderr).strip().splitlines()
    summary = next(
        (line.strip("= ") for line in reversed(output) if re.search(r"\d+ (passed|failed|skipped|error)", line)),
        "no summary line",
    )
    numerics = bf16_step_numerics(ctx)
    return {
        "pytest": {"files": files, "returncode": done.returncode, "summary": summary, "tail": output[-30:]},
        "bf16_numerics": numerics,
        "tables": [
            table(
                "CUDA-only tests (pytest -m gpu)",
                ["files", "exit status", "summary"],
                [[" ".join(files), done.returncode, summary]],
            ),
            table(
                "One training step, bf16 autocast vs fp32 (same weights, batch, noise; KTH model)",
                ["quantity", "value"],
                [[name, f"{value:.3g}" if isinstance(value, float) else value] for name, value in numerics.items()],
            ),
        ],
    }


def bf16_step_numerics(ctx: Context) -> dict[str, Any]:
    """Loss and whole-gradient agreement of one KTH-model step (VGG, skips, dt=1/2) in bf16 vs fp32."""
    import torch

    from srvp.common.optimisation import build_model
    from srvp.common.runtime import autocast

    paper = setting("kth", ctx.sizes)
    torch.manual_seed(0)
    model = build_model(paper.model, ctx.device, channels_last=True)
    # Smooth random videos (low-frequency noise), closer to natural frames than white noise.
    coarse = torch.rand(4, paper.train_length, paper.model.channels, 8, 8, device=ctx.device)
    videos = torch.nn.functional.interpolate(coarse.flatten(0, 1), size=(64, 64), mode="bilinear")
    clips = (videos.view(4, paper.train_length, -1, 64, 64) * 255).to(torch.uint8)

    def loss_and_gradient(precision: str) -> tuple[dict[str, float], torch.Tensor]:
        torch.manual_seed(1)  # the same skip frame, content frames and latent noise in both runs
        model.zero_grad(set_to_none=True)
        with autocast(ctx.device, precision):
            output = model.elbo(clips)
        output.loss.backward()
        gradient = torch.cat([p.grad.flatten().double() for p in model.parameters() if p.grad is not None])
        return {name: value.item() for name, value in output.parts.items()}, gradient

    reference, reference_gradient = loss_and_gradient("fp32")
    low, low_gradient = loss_and_gradient("bf16")
    cosine = torch.nn.functional.cosine_similarity(low_gradient, reference_gradient, dim=0).item()
    relative = ((low_gradient - reference_gradient).norm() / reference_gradient.norm()).item()
    result: dict[str, Any] = {
        f"{name} relative difference": abs(low[name] - value) / max(abs(value), 1e-12)
        for name, value in reference.items()
    }
    result.update(
        {
            "gradient cosine": cosine,
            "gradient relative error": relative,
            "within tolerance": bool(result["loss relative difference"] < 1e-2 and cosine > 0.99),
        }
    )
    return result


# ---------------------------------------------------------------------------------------------- part 2
def train_throughput(ctx: Context) -> dict[str, Any]:
    """Training-step variants of the three paper models, timed side by side at the paper's batch sizes."""
    import torch

    from bench.step_variants import StepOptions
    from bench.timing import matmul_flops_per_second
    from bench.train_step import time_variants

    on_cuda = ctx.device.type == "cuda"
    default = StepOptions(
        channels_last=True, fused_optimizer=True, factorised_decoder=True, bf16=on_cuda, cudnn_benchmark=on_cuda
    )
    variants = {"eager fp32": StepOptions(), "Trainer default": default}
    if ctx.sizes.compile:
        variants["default + compile"] = replace(default, compile=True)
    size = 8192 if on_cuda else 1024
    bf16_rate = matmul_flops_per_second(ctx.device, torch.bfloat16, size=size, repeats=10 if on_cuda else 2)
    rows, raw = [], {}
    for name in PAPER_DATASETS:
        paper = setting(name, ctx.sizes)
        batch = (ctx.sizes.throughput_batches or {}).get(name, paper.batch_size)
        timings = time_variants(
            paper.model, paper.train_length, batch, list(variants.values()), ctx.device, ctx.sizes.timed_steps
        )
        for label, timing in zip(variants, timings, strict=True):
            rate = timing.flops / timing.median
            raw[f"{name}/{label}"] = {
                "batch": batch,
                "step_seconds": timing.seconds,
                "warmup_seconds": timing.warmup_seconds,
                "peak_mib": timing.peak_mib,
                "flops": timing.flops,
            }
            rows.append(
                [
                    name,
                    batch,
                    label,
                    f"{timing.median * 1000:.1f}",
                    f"{batch / timing.median:.0f}",
                    f"{timing.peak_mib:.0f}",
                    f"{rate / 1e12:.3g}",
                    f"{rate / bf16_rate:.1%}",
                    f"{timings[0].median / timing.median:.2f}x",
                    f"{timing.warmup_seconds:.1f}",
                ]
            )
    return {
        "bf16_matmul_tflops": bf16_rate / 1e12,
        "variants": {label: options.label() for label, options in variants.items()},
        "timings": raw,
        "tables": [
            table(
                f"Training step (dense bf16 matmul rate measured here: {bf16_rate / 1e12:.3g} TFLOP/s)",
                [
                    "model",
                    "batch",
                    "variant",
                    "ms/step",
                    "seq/s",
                    "peak MiB",
                    "TFLOP/s",
                    "of bf16 matmul",
                    "speed-up",
                    "warm-up s",
                ],
                rows,
            )
        ],
    }


# ---------------------------------------------------------------------------------------------- part 3
def sampling(ctx: Context) -> dict[str, Any]:
    """Best-of-N sampling end to end and its parts on the KTH and BAIR models."""
    from bench.sampling import time_sampling

    sizes, rows = ctx.sizes, []
    for name in ("kth", "bair"):
        timing = time_sampling(
            setting(name, sizes),
            sizes.sampling_clips,
            sizes.sampling_samples,
            sizes.sampling_chunk,
            bf16=ctx.device.type == "cuda",
            device=ctx.device,
        )
        rows.append(
            [
                name,
                sizes.sampling_clips,
                sizes.sampling_samples,
                f"{sizes.sampling_clips / timing.end_to_end:.2f}",
                f"{timing.end_to_end:.2f}",
                f"{timing.predict:.2f}",
                f"{timing.decode:.2f}",
                f"{timing.metrics:.2f}",
            ]
        )
    return {
        "tables": [
            table(
                "Best-of-N sampling (PSNR + SSIM), bf16 generation on CUDA",
                ["model", "clips", "samples", "clips/s", "end-to-end s", "predict s", "decode s", "metrics s"],
                rows,
            )
        ]
    }


# ---------------------------------------------------------------------------------------------- part 4
def planning(ctx: Context) -> dict[str, Any]:
    """CEM decisions of the control world model: eager, compiled, and compiled with CUDA graphs."""
    from bench.planning import time_decision

    horizon, candidates, iterations = ctx.sizes.planning
    modes: dict[str, bool | str] = {"eager": False}
    if ctx.sizes.compile:
        modes["torch.compile"] = True
        if ctx.device.type == "cuda":
            modes["compile + CUDA graphs"] = "reduce-overhead"
    transitions = horizon * candidates * iterations
    rows = []
    for label, mode in modes.items():
        wall, _ = time_decision(
            "residual", ctx.device, ctx.sizes.planning_repeats, mode, horizon, candidates, iterations
        )
        rows.append([label, f"{wall * 1000:.1f}", f"{transitions / wall:,.0f}"])
    title = f"CEM planning, horizon {horizon}, {candidates} candidates, {iterations} iterations"
    return {"tables": [table(title, ["rollout", "ms/decision", "latent transitions/s"], rows)]}


# ---------------------------------------------------------------------------------------------- part 5
def smmnist_training(ctx: Context) -> dict[str, Any]:
    """The paper's SM-MNIST run for a step budget sized to `train_seconds`, then best-of-N evaluation."""
    import torch
    from hydra import compose, initialize_config_module
    from omegaconf import open_dict

    from bench.step_variants import StepOptions, TrainStep
    from bench.timing import median, seconds
    from srvp.video_pred.train import train

    if ctx.mnist_dir is None:
        raise ValueError("--mnist-dir is required for the SM-MNIST training part (the four MNIST idx files)")
    paper = setting("smmnist", ctx.sizes)
    batch = ctx.sizes.train_batch or paper.batch_size
    on_cuda = ctx.device.type == "cuda"
    probe = TrainStep(
        paper.model,
        StepOptions(
            channels_last=True, fused_optimizer=True, factorised_decoder=True, bf16=on_cuda, cudnn_benchmark=on_cuda
        ),
        ctx.device,
    )
    clips = torch.randint(0, 256, (batch, paper.train_length, 1, 64, 64), dtype=torch.uint8, device=ctx.device)
    probe(clips)
    step_seconds = median([seconds(lambda: probe(clips), ctx.device) for _ in range(5)])
    steps = max(2, int(ctx.sizes.train_seconds / step_seconds))
    run_dir = ctx.out / "smmnist_run"
    overrides = {
        "dataset": "smmnist",
        "dataset.mnist_dir": ctx.mnist_dir,
        "dataset.verify_md5": not ctx.dry_run,
        "dataset.cache_dir": ctx.out / "cache",
        "run_dir": run_dir,
        "device": ctx.device,
        "trainer.batch_size": batch,
        "trainer.max_steps": steps,
        "trainer.num_workers": 6,
        "trainer.log_every": 50,
        "trainer.ckpt_every": steps,
        "trainer.video_every": steps,
    }
    final_eval = {
        "max_clips": ctx.sizes.eval_clips,
        "num_samples": ctx.sizes.eval_samples,
        "metrics": ["psnr", "ssim"],
        "batch_size": 25,
        "sample_chunk": 100,
        "num_workers": 2,
    }
    if ctx.sizes.tiny_models:
        overrides.update({f"model.{key}": value for key, value in TINY_MODEL.items()})
        overrides.update({"dataset.test_size": 8, "trainer.num_workers": 0})
        final_eval["num_workers"] = 0
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"{key}={value}" for key, value in overrides.items()])
    with open_dict(cfg):
        cfg.final_eval = final_eval
    started = time.perf_counter()
    train(cfg)
    elapsed = time.perf_counter() - started
    report = json.loads((run_dir / "eval" / "eval.json").read_text())
    last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line][-1]
    rows = [
        [
            "model",
            *(f"{report['metrics'][m]['mean']:.4g} ± {report['metrics'][m]['ci95']:.2g}" for m in ("psnr", "ssim")),
        ]
    ]
    rows += [
        [name, *(f"{scores[m]['mean']:.4g}" for m in ("psnr", "ssim"))] for name, scores in report["baselines"].items()
    ]
    title = (
        f"SM-MNIST, paper settings, {steps} steps at batch {batch} ({elapsed:.0f} s with evaluation); "
        f"best of {report['num_samples']} on the first {report['num_clips']} test clips"
    )
    return {
        "steps": steps,
        "batch": batch,
        "probe_step_seconds": step_seconds,
        "seconds": elapsed,
        "last_train_scalars": last,
        "eval": {
            "metrics": report["metrics"],
            "baselines": {name: {m: scores[m]["mean"] for m in scores} for name, scores in report["baselines"].items()},
        },
        "tables": [table(title, ["prediction", "PSNR", "SSIM"], rows)],
    }


def control(ctx: Context) -> dict[str, Any]:
    """make control's experiment at PlaNet's budget on this device: returns beside the baselines, loop speed."""
    from hydra import compose, initialize_config_module
    from omegaconf import open_dict

    from srvp.agents.loop import train

    run_dir = ctx.out / "control_run"
    # PlaNet's loop and planner (configs/control.yaml) with the experiment's task and world model at full width.
    overrides = ["experiment=cpu_control", f"device={ctx.device}", "logger.enabled=false"]
    if ctx.sizes.control_episodes:
        episodes = ctx.sizes.control_episodes
        overrides += ["world_model.filters=32", "world_model.inf_hidden=256", "world_model.fwd_hidden=256"]
        overrides += ["world_model.lstm_hidden=256", "loop.collect_interval=100", "loop.batch_size=50"]
        overrides += ["loop.seq_len=50", f"loop.episodes={episodes}", f"loop.eval_every={episodes // 2}"]
        overrides += ["agent.candidates=1000", "agent.top_k=100", "agent.iterations=10"]
    else:
        overrides.append("debug=control_tiny")
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        cfg = compose(config_name="control", overrides=overrides)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
    started = time.perf_counter()
    train(cfg)
    elapsed = time.perf_counter() - started
    summary = json.loads((run_dir / "summary.json").read_text())
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    train_lines = [line for line in lines if "train/policy_seconds" in line]
    speed = {
        "env_steps_per_s": sum(line["train/env_steps_per_s"] for line in train_lines) / len(train_lines),
        "updates_per_s": [line["time/updates_per_s"] for line in lines if "time/updates_per_s" in line][-1],
        "ms_per_decision": train_lines[-1]["train/ms_per_decision"],
    }
    rows = [[row["policy"], f"{row['mean']:.1f} ± {row['ci95']:.1f}", int(row["episodes"])] for row in summary["rows"]]
    title = f"{summary['title']} ({elapsed:.0f} s in all)"
    return {
        "seconds": elapsed,
        "summary": summary,
        "speed": speed,
        "tables": [
            table(title, ["policy", "return ± 95%", "episodes"], rows),
            table("control loop speed", list(speed), [[f"{value:.3g}" for value in speed.values()]]),
        ],
    }


PARTS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "gpu_tests": gpu_tests,
    "train_throughput": train_throughput,
    "sampling": sampling,
    "planning": planning,
    "smmnist_training": smmnist_training,
    "control": control,
}


def markdown(results: dict[str, Any]) -> str:
    """results.md: the machine, then one section per part with its tables (or its error)."""
    lines = ["# srvp GPU check", ""] + [f"- {key}: {value}" for key, value in results["machine"].items()]
    for name, part in results["parts"].items():
        lines += ["", f"## {name} ({part['status']}, {part['seconds']:.0f} s)"]
        if part["status"] != "ok":
            lines += ["", f"    {part.get('error', '')}"]
            continue
        for entry in part["result"].get("tables", []):
            lines += [
                "",
                f"**{entry['title']}**",
                "",
                "| " + " | ".join(entry["columns"]) + " |",
                "|" + "---|" * len(entry["columns"]),
            ]
            lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in entry["rows"]]
    return "\n".join(lines) + "\n"


def write_results(out: Path, results: dict[str, Any]) -> None:
    from srvp.common.files import atomic_write

    atomic_write(out / "results.json", lambda file: file.write(json.dumps(results, indent=1, default=str).encode()))
    atomic_write(out / "results.md", lambda file: file.write(markdown(results).encode()))


def machine_description(device: Any) -> dict[str, str]:
    import torch

    description = {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        description["gpu"] = torch.cuda.get_device_name(device)
        description["cuda"] = str(torch.version.cuda)
    return description


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json and results.md")
    parser.add_argument("--mnist-dir", type=Path, default=None, help="folder with the four MNIST idx(.gz) files")
    parser.add_argument("--dry-run", action="store_true", help="every part at tiny sizes on CPU")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument(
        "--budget-minutes", type=float, default=9.0, help="parts not started within this wall time are skipped"
    )
    args = parser.parse_args(argv)
    missing = missing_packages()
    if missing:
        sys.exit(
            f"bench.gpu_check: error: missing Python packages: {', '.join(missing)} (bring them as wheels: "
            "`make gpu-wheels` on a machine with a registry, see README 'GPU check')"
        )
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("bench.gpu_check: error: CUDA is not available (use --dry-run for the CPU rehearsal)")
    torch.set_float32_matmul_precision("high")
    device = torch.device("cpu" if args.dry_run else "cuda")
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        device,
        DRY_SIZES if args.dry_run else GPU_SIZES,
        args.out.resolve(),
        args.mnist_dir.resolve() if args.mnist_dir else None,
        args.dry_run,
        {},
    )
    results: dict[str, Any] = {"machine": machine_description(device), "parts": {}}
    started = time.perf_counter()
    for name in args.parts:
        part_start = time.perf_counter()
        if part_start - started > 60 * args.budget_minutes:
            results["parts"][name] = {"status": "skipped", "seconds": 0.0, "error": "over the time budget"}
        else:
            print(f"[gpu-check] {name} ...", flush=True)
            try:
                results["parts"][name] = {"status": "ok", "result": PARTS[name](ctx)}
            except Exception as error:  # one part failing must not lose the others
                results["parts"][name] = {
                    "status": "failed",
                    "error": f"{type(error).__name__}: {error}",
                    "traceback": traceback.format_exc(),
                }
            results["parts"][name]["seconds"] = time.perf_counter() - part_start
            print(
                f"[gpu-check] {name}: {results['parts'][name]['status']} ({results['parts'][name]['seconds']:.0f} s)",
                flush=True,
            )
        write_results(args.out, results)
    print(markdown(results))
    failed = [name for name, part in results["parts"].items() if part["status"] != "ok"]
    print(
        f"results: {args.out / 'results.md'}, {args.out / 'results.json'}"
        + (f"; not ok: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
