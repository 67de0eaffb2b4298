"""Planning speed of the action-conditioned SRVP: latency per MPC decision and latent transitions per second.

At the PlaNet budget (CEM, horizon 12, 1000 candidates, top 100, 10 iterations) the SRVP residual transition
and a GRU transition (world_model.transition=gru, otherwise the same model) are timed side by side in one
process, on CPU and on CUDA when available. One transition = one imagined step of one candidate (prior on
z, transition, reward head).

    python -m bench.planning [--devices cpu cuda] [--repeats 3] [--compile [MODE]]
"""

from __future__ import annotations

import argparse
import time

import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from bench.timing import median, synchronize
from srvp.agents.planner import CEMPlanner
from srvp.agents.world_model import LatentObjective, build_world_model

ACTION_DIM = 1  # cartpole


def time_decision(
    transition: str,
    device: torch.device,
    repeats: int,
    compile: bool | str,
    horizon: int,
    candidates: int,
    iterations: int,
) -> tuple[float, float]:
    """Median wall and process-CPU seconds of one planning decision (after a one-iteration warm-up), with the
    rollout eager, compiled (True) or compiled in a torch.compile mode ("reduce-overhead": CUDA graphs).

    The CPU seconds show how much of the wall time the process actually ran on a shared machine.
    """
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        cfg = compose("control", overrides=["run_dir=unused", f"world_model.transition={transition}"])
    world_model = cfg.world_model
    values = OmegaConf.to_container(world_model, resolve=True)
    model = build_world_model(values, ACTION_DIM).to(device).eval()
    objective = LatentObjective(model, device=device, compile=compile)(
        torch.zeros(1, model.config.y_dim, device=device)
    )
    generator = torch.Generator(device).manual_seed(0)
    top_k = max(1, candidates // 10)
    warm_up = CEMPlanner(ACTION_DIM, horizon=horizon, candidates=candidates, top_k=top_k, iterations=1)
    warm_up.plan(objective, generator=generator, device=device)
    planner = CEMPlanner(ACTION_DIM, horizon=horizon, candidates=candidates, top_k=top_k, iterations=iterations)
    timings = []
    for _ in range(repeats):
        synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        planner.plan(objective, generator=generator, device=device)
        synchronize(device)
        timings.append((time.perf_counter() - start, time.process_time() - cpu_start))
    return median([wall for wall, _ in timings]), median([cpu for _, cpu in timings])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--devices", nargs="+", default=["cpu", "cuda"], help="devices to time (cuda skipped when unavailable)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed decisions per setting (median reported)")
    parser.add_argument(
        "--compile",
        nargs="?",
        const=True,
        default=False,
        metavar="MODE",
        help="torch.compile the batched rollout (optionally in a mode, e.g. reduce-overhead)",
    )
    parser.add_argument("--horizon", type=int, default=12)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    transitions = args.horizon * args.candidates * args.iterations
    print(
        f"CEM: horizon {args.horizon}, {args.candidates} candidates, {args.iterations} iterations "
        f"({transitions:,} transitions per decision); torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, compile={args.compile}"
    )
    print(f"{'device':<8} {'transition':<10} {'ms/decision':>12} {'transitions/s':>14} {'CPU s/decision':>15}")
    for name in args.devices:
        if name.startswith("cuda") and not torch.cuda.is_available():
            print(f"{name:<8} (not available)")
            continue
        device = torch.device(name)
        for transition in ("residual", "gru"):
            seconds, cpu_seconds = time_decision(
                transition, device, args.repeats, args.compile, args.horizon, args.candidates, args.iterations
            )
            print(
                f"{name:<8} {transition:<10} {1000 * seconds:>12.1f} {transitions / seconds:>14,.0f} "
                f"{cpu_seconds:>15.3g}"
            )


if __name__ == "__main__":
    main()
