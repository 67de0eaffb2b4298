"""The SRVP world model inside your own loop: train it on your own arrays, filter the current state, plan.

No hydra, no environment and no replay buffer of ours: the data are three numpy arrays you already have,

    frames   uint8   (N, T, 64, 64, C)   N sequences of T frames, C = 3 (RGB) or 1 (grey), channel-last
    actions  float   (N, T-1, A)         actions[:, t] in [-1, 1] leads from frames[:, t] to frames[:, t+1]
    rewards  float   (N, T-1)            rewards[:, t] is earned by that transition

saved together in one .npz file (`--data episodes.npz`, keys frames, actions, rewards). Without `--data`, a
synthetic task is generated so the example runs anywhere: a white square on black moves by 6 pixels times
the action (a 2-d velocity), and the reward is minus the square's distance to the centre after the move, so
the best actions push it toward the centre.

What it shows, with the public API only:
1. `srvp.agents.world_model.build_world_model` makes the action-conditioned SRVP with a reward head;
2. `srvp.common.optimisation.optimisation_step` trains it on random windows of the arrays (ELBO + reward loss),
   printing the loss as it decreases;
3. `srvp.agents.policy.PlanningPolicy`, the agent of srvp-control, follows a sequence frame by frame (here the
   first `--context` frames of the last one, with `reset` and `observe`), as it would while acting: it infers
   the current latent state y_t from the last frames and actions;
4. its `act` searches action sequences in imagination with `srvp.agents.planner.CEMPlanner`, scored by the reward
   head summed over an imagined rollout, and the first planned action is printed, in [-1, 1] and of size A.

    python examples/own_loop.py                                    # synthetic data, about 90 s on one CPU core
    python examples/own_loop.py --data episodes.npz --steps 20000 --filters 32 --device cuda

Tensors live on `--device` (auto: CUDA when available); frames stay uint8 until the model converts them.
At the default size the plan is a demonstration of the calls, not of good control: that needs more steps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from srvp.agents.planner import CEMPlanner
from srvp.agents.policy import PlanningPolicy
from srvp.agents.world_model import build_world_model, reward_targets
from srvp.common.optimisation import optimisation_step
from srvp.common.runtime import resolve_device, seed_everything

SQUARE, SPEED, SIZE = 8, 6.0, 64


def synthetic_episodes(count: int, length: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A square moved by random 2-d actions: frames (count, length, 64, 64, 3), actions, rewards (see above)."""
    low, high = SQUARE / 2, SIZE - SQUARE / 2
    position = rng.uniform(low, high, (count, 2))
    actions = rng.uniform(-1, 1, (count, length - 1, 2)).astype(np.float32)
    positions, rewards = [position], []
    for t in range(length - 1):
        position = np.clip(position + SPEED * actions[:, t], low, high)
        positions.append(position)
        rewards.append(-np.linalg.norm(position - SIZE / 2, axis=1) / (SIZE / 2))
    corners = np.rint(np.stack(positions, axis=1) - SQUARE / 2).astype(int)  # (count, length, 2): x, y
    frames = np.zeros((count, length, SIZE, SIZE, 3), dtype=np.uint8)
    for index in np.ndindex(count, length):
        x, y = corners[index]
        frames[index][y : y + SQUARE, x : x + SQUARE] = 255
    return {"frames": frames, "actions": actions, "rewards": np.stack(rewards, axis=1).astype(np.float32)}


def load_episodes(path: Path) -> dict[str, np.ndarray]:
    """The three arrays of an .npz file, checked against the shapes above (one-line errors)."""
    if not path.is_file():
        raise FileNotFoundError(f"--data {path} does not exist")
    with np.load(path) as data:
        missing = sorted({"frames", "actions", "rewards"} - set(data.files))
        if missing:
            raise ValueError(f"{path} lacks the arrays {missing}: expected frames, actions and rewards")
        episodes = {name: data[name] for name in ("frames", "actions", "rewards")}
    frames, actions, rewards = episodes["frames"], episodes["actions"], episodes["rewards"]
    if (
        frames.dtype != np.uint8
        or frames.ndim != 5
        or frames.shape[2:4] != (SIZE, SIZE)
        or frames.shape[4] not in (1, 3)
    ):
        raise ValueError(f"frames must be uint8 (N, T, 64, 64, 1 or 3), got {frames.dtype} {frames.shape}")
    count, length = frames.shape[:2]
    if actions.ndim != 3 or actions.shape[:2] != (count, length - 1):
        raise ValueError(f"actions must be shaped ({count}, {length - 1}, A) for these frames, got {actions.shape}")
    if rewards.shape != (count, length - 1):
        raise ValueError(f"rewards must be shaped ({count}, {length - 1}) for these frames, got {rewards.shape}")
    return {"frames": frames, "actions": actions.astype(np.float32), "rewards": rewards.astype(np.float32)}


def sample_windows(
    episodes: dict[str, np.ndarray], batch_size: int, seq_len: int, rng: np.random.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random windows: frames uint8 (b t c h w), actions (b, t-1, A), reward targets (b, t) on `device`."""
    count, length = episodes["frames"].shape[:2]
    rows = rng.integers(count, size=batch_size)
    starts = rng.integers(length - seq_len + 1, size=batch_size)
    steps = starts[:, None] + np.arange(seq_len)
    frames = torch.from_numpy(episodes["frames"][rows[:, None], steps])
    actions = torch.from_numpy(episodes["actions"][rows[:, None], steps[:, :-1]])
    rewards = torch.from_numpy(episodes["rewards"][rows[:, None], steps[:, :-1]])
    frames = rearrange(frames, "b t h w c -> b t c h w").to(device)
    return frames, actions.to(device), reward_targets(rewards).to(device)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="an .npz with frames, actions, rewards (default: synthetic)")
    parser.add_argument("--episodes", type=int, default=64, help="synthetic sequences")
    parser.add_argument("--length", type=int, default=20, help="frames per synthetic sequence")
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=10, help="frames per training window")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--filters", type=int, default=16, help="width of the encoder/decoder")
    parser.add_argument("--state-dim", type=int, default=16, help="size of the latent state y")
    parser.add_argument("--hidden", type=int, default=128, help="width of the MLPs")
    parser.add_argument("--context", type=int, default=4, help="frames the state is filtered from")
    parser.add_argument("--horizon", type=int, default=8, help="planned steps")
    parser.add_argument("--candidates", type=int, default=300, help="CEM samples per iteration")
    parser.add_argument("--top-k", type=int, default=30, help="CEM elites")
    parser.add_argument("--iterations", type=int, default=5, help="CEM iterations")
    parser.add_argument("--log-every", type=int, default=25, help="steps per printed loss (a mean)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run(args: argparse.Namespace) -> None:
    seed_everything(args.seed)
    rng = np.random.default_rng(args.seed)
    device = resolve_device(args.device)
    episodes = load_episodes(args.data) if args.data else synthetic_episodes(args.episodes, args.length, rng)
    frames, actions = episodes["frames"], episodes["actions"]
    count, length, _, _, channels = frames.shape
    action_dim = actions.shape[2]
    if not 2 <= args.seq_len <= length or not 2 <= args.context <= length:
        raise ValueError(f"--seq-len {args.seq_len} and --context {args.context} must lie in [2, {length}]")
    if args.steps < 2 * args.log_every:
        raise ValueError(f"--steps {args.steps} must be at least twice --log-every {args.log_every}")
    print(f"data: frames {frames.shape} uint8, actions {actions.shape}, rewards {episodes['rewards'].shape}")

    model = build_world_model(
        {
            "channels": channels,
            "filters": args.filters,
            "code_dim": 2 * args.state_dim,
            "y_dim": args.state_dim,
            "content_dim": args.hidden,
            "inf_hidden": args.hidden,
            "fwd_hidden": args.hidden,
            "lstm_hidden": args.hidden,
            "y1_frames": 2,  # y_1 (position and velocity) from two frames
            "content_frames": 2,
            "f_gain": 0.5,  # a small initial transition keeps untrained rollouts bounded
            # The control world model's loss (configs/world_model/srvp_control.yaml, docs/control.md): a small
            # observation variance and residual weight keep the latents and f alive, and no z (a deterministic
            # y_{t+1} = y_t + f(y_t, a_t)) keeps the actions' effect where imagination can see it.
            "nu": 0.05,
            "l2_weight": 0.01,
            "free_nats": 3.0,
            "stochastic": False,
            "beta": 1.0,
        },
        action_dim,
    ).to(device)
    print(f"model: {sum(p.numel() for p in model.parameters()):,} parameters on {device}")
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    losses = []
    for step in range(1, args.steps + 1):
        batch, batch_actions, rewards = sample_windows(episodes, args.batch_size, args.seq_len, rng, device)
        output = optimisation_step(
            model, optimizer, batch, actions=batch_actions, head_targets={"reward": rewards}, grad_clip=100.0
        )
        losses.append(output.loss.item())
        if step % args.log_every == 0:
            print(f"step {step:5d}  loss {np.mean(losses[-args.log_every :]):10.1f}")
    first, last = np.mean(losses[: args.log_every]), np.mean(losses[-args.log_every :])
    print(f"loss: {first:.1f} -> {last:.1f} (means of the first and last {args.log_every} steps)")

    # Act as an agent would: follow the last sequence frame by frame (uint8 h w c, the environment's layout),
    # then plan from the state y_t of its latest frame, filtered from the last frames and actions.
    model.eval()
    planner = CEMPlanner(
        action_dim, horizon=args.horizon, candidates=args.candidates, top_k=args.top_k, iterations=args.iterations
    )
    generator = torch.Generator(device).manual_seed(args.seed)
    policy = PlanningPolicy(model, planner, context_frames=args.context, generator=generator)
    policy.reset(frames[-1, 0])
    for t in range(1, args.context):
        policy.observe(actions[-1, t - 1], frames[-1, t])
    action = policy.act()  # (action_dim,) in [-1, 1]
    state, plan = policy.filter.state(), policy.plan  # (1, y_dim), (1, horizon, action_dim)
    predicted = policy.objective.returns(state, plan[:, None])[0, 0].item()
    idle = policy.objective.returns(state, torch.zeros_like(plan)[:, None])[0, 0].item()
    print(f"planned action: {np.array2string(action, precision=3, separator=', ')}")
    print(f"predicted return of the plan {predicted:.3f}, of doing nothing {idle:.3f}")
    if not args.data:
        ys, xs = np.nonzero(frames[-1, args.context - 1, :, :, 0])
        toward = np.sign([SIZE / 2 - xs.mean(), SIZE / 2 - ys.mean()]).astype(int).tolist()
        print(f"the square is at x={xs.mean():.0f}, y={ys.mean():.0f}: the centre lies along {toward}")


def main() -> None:
    args = build_parser().parse_args()
    try:
        run(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        sys.exit(f"own_loop: error: {error}")


if __name__ == "__main__":
    main()
