"""What tells a dead control world model from a learning one, measured on replayed or held-out episodes.

A planner can only choose well if the imagined returns depend on the actions. They stop doing so when the
transition f dies (its ReLUs never fire on the states it sees, so y moves by one constant residual) or when
the latents collapse (the posterior carries nothing the decoder or the reward head uses). Each function here
measures one of those symptoms, in eval mode and without gradients:

- `transition_activity`: the fraction of active units in each hidden layer of f on posterior rollouts;
- `imagined_return_spread`: how much the imagined returns of random action sequences differ, relative to
  their size (zero: the planner ranks candidates by numerical noise);
- `open_loop_quality`: open-loop frame PSNR/SSIM over the planning horizon against repeating the last observed
  frame, the reward-prediction error against always predicting the mean reward, and the ELBO's KL terms, on
  windows of episodes the model never trained on (so a bad return can be traced to the model or the planner).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from srvp.agents.world_model import REWARD_HEAD, filter_state, imagined_returns, open_loop_states, reward_targets
from srvp.common.frame_metrics import psnr, ssim
from srvp.common.runtime import autocast
from srvp.worldmodel import SRVP

SPREAD_CANDIDATES = 64
"""Random action sequences whose imagined returns give the spread diagnostic."""
SPREAD_WARNING = 0.01
"""Relative spread of imagined returns below which the planner is choosing (almost) at random: the issue's bar
for a model whose imagination depends on the actions (1% of the returns' magnitude)."""


@torch.no_grad()
def transition_activity(model: SRVP, frames: Tensor, actions: Tensor) -> list[float]:
    """Fraction of positive units in each hidden ReLU layer of f, over the posterior rollouts of windows
    frames (b t c h w) linked by actions (b, t-1, a); [] for a transition without ReLUs (GRU)."""
    activations = [module for module in model.transition.modules() if isinstance(module, nn.ReLU)]
    active: list[list[Tensor]] = [[] for _ in activations]
    hooks = [
        module.register_forward_hook(lambda _module, _input, output, store=store: store.append((output > 0).float()))
        for module, store in zip(activations, active, strict=True)
    ]
    model.eval()
    try:
        model.observe(frames, actions)
    finally:
        for hook in hooks:
            hook.remove()
    return [torch.cat(store).mean().item() for store in active]


@torch.no_grad()
def imagined_return_spread(
    model: SRVP,
    frames: Tensor,
    actions: Tensor,
    *,
    horizon: int,
    candidates: int,
    generator: torch.Generator,
    dt: float = 1.0,
    precision: str = "auto",
) -> dict[str, float]:
    """Imagined returns of `candidates` uniform random action sequences of `horizon` steps from the acting state
    at the last frame of each window (b t c h w; `filter_state`, the planner's own start): their spread across
    candidates relative to their mean magnitude (std_n R / mean_n |R|, averaged over windows), absolute std and
    mean. z: prior means, as planning.
    """
    model.eval()
    states = filter_state(model, model.encode(frames).codes, actions)
    batch, action_dim = states.shape[0], model.config.action_dim
    plans = torch.rand(batch * candidates, horizon, action_dim, generator=generator, device=generator.device)
    plans = (plans * 2 - 1).to(states.device)
    with autocast(states.device, precision):
        returns = imagined_returns(model, states.repeat_interleave(candidates, 0), plans, dt, prior_mean=True)
    returns = returns.float().view(batch, candidates)
    spread = returns.std(dim=1)
    relative = spread / returns.abs().mean(dim=1).clamp_min(1e-8)
    return {
        "return_spread": relative.mean().item(),
        "return_std": spread.mean().item(),
        "return_mean": returns.mean().item(),
    }


def diagnose(
    model: SRVP,
    replay: dict[str, Tensor],
    held_out: dict[str, Tensor] | None,
    *,
    horizon: int,
    mean_reward: float,
    generator: torch.Generator,
    dt: float = 1.0,
    precision: str = "auto",
) -> dict[str, float]:
    """Every diagnostic at once: activity of f (`f_active_<layer>`) and the spread of imagined returns over
    `horizon` steps on the posterior states of replay windows (`obs` (b t c h w), `actions` (b, t-1, a)), and the
    open-loop quality (`heldout_*`) of windows of episodes never trained on (`obs`, `actions`, `rewards` of
    t + horizon frames), when given."""
    frames, actions = replay["obs"], replay["actions"]
    result = {f"f_active_{index}": value for index, value in enumerate(transition_activity(model, frames, actions))}
    spread = imagined_return_spread(
        model,
        frames,
        actions,
        horizon=horizon,
        candidates=SPREAD_CANDIDATES,
        generator=generator,
        dt=dt,
        precision=precision,
    )
    result.update(spread)
    if held_out is not None:
        context = frames.shape[1]
        quality = open_loop_quality(
            model,
            held_out["obs"],
            held_out["actions"],
            held_out["rewards"],
            context=context,
            mean_reward=mean_reward,
            precision=precision,
        )
        result.update({f"heldout_{name}": value for name, value in quality.items()})
    return result


@torch.no_grad()
def open_loop_quality(
    model: SRVP,
    frames: Tensor,
    actions: Tensor,
    rewards: Tensor,
    *,
    context: int,
    mean_reward: float,
    precision: str = "auto",
) -> dict[str, float]:
    """Open-loop predictions of windows frames (b, context + H, c h w) with their actions (b, context+H-1, a)
    and rewards (b, context+H-1): `context` frames observed, H imagined from the real actions (prior-mean z),
    starting from the state the agent acts from (`open_loop_states`: posterior means, not samples).

    Returns frame PSNR/SSIM of the H predicted frames and of the last observed frame repeated (the model-free
    baseline), the mean squared error of the H predicted rewards and of `mean_reward` (the training buffer's
    mean reward, the reward baseline), and the KL terms and NLL per window of the ELBO on the whole windows.
    """
    model.eval()
    horizon = frames.shape[1] - context
    if horizon < 1 or context < model.config.y1_frames:
        raise ValueError(
            f"open-loop windows of {frames.shape[1]} frames with context {context}: need context >= "
            f"y1_frames={model.config.y1_frames} and at least one predicted frame"
        )
    device = frames.device
    with autocast(device, precision):
        states, content, skips = open_loop_states(model, frames, actions, context)
        states = states[:, context:]
        predicted = model.decode(states, content, skips).float().clamp(0, 1)
        predicted_rewards = model.predict_heads(states)[REWARD_HEAD].float().squeeze(-1)
        parts = model.elbo(frames, actions, {REWARD_HEAD: reward_targets(rewards)}).parts
    truth = frames[:, context:].float() / 255
    last = frames[:, context - 1 : context].float().div(255).expand_as(truth)
    future_rewards = rewards[:, context - 1 :]
    return {
        "psnr": psnr(predicted, truth).mean().item(),
        "ssim": ssim(predicted, truth).mean().item(),
        "psnr_last_frame": psnr(last, truth).mean().item(),
        "ssim_last_frame": ssim(last, truth).mean().item(),
        "reward_mse": (predicted_rewards - future_rewards).pow(2).mean().item(),
        "reward_mse_mean_reward": (future_rewards - mean_reward).pow(2).mean().item(),
        "kl_y1": parts["kl_y1"].item(),
        "kl_z": parts["kl_z"].item(),
        "nll": parts["nll"].item(),
    }
