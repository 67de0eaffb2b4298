"""The planning glue of the action-conditioned SRVP: batched objective, filtering, toy planning problem."""

import pytest
import torch
from hydra import compose, initialize_config_module

from srvp.agents.planner import CEMPlanner, MPPIPlanner
from srvp.agents.world_model import (
    EpisodeFilter,
    LatentObjective,
    build_world_model,
    filter_state,
    imagined_returns,
    reward_targets,
)

TINY = dict(
    channels=3,
    filters=4,
    code_dim=8,
    y_dim=4,
    z_dim=3,
    content_dim=8,
    inf_hidden=16,
    fwd_hidden=16,
    lstm_hidden=8,
    y1_frames=2,
    content_frames=2,
)
ACTION_DIM = 2


@pytest.fixture
def model():
    return build_world_model(TINY, ACTION_DIM).eval()


def test_build_adds_actions_and_reward_head(model):
    assert model.config.action_dim == ACTION_DIM
    assert model.config.heads == {"reward": 1}
    with pytest.raises(ValueError, match="action_dim"):
        build_world_model(TINY, 0)


def test_reward_targets_align_rewards_with_the_frame_they_lead_to():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    targets = reward_targets(rewards)
    assert targets.shape == (1, 4)
    assert targets[0, 0].isnan() and torch.equal(targets[0, 1:], rewards[0])


@pytest.mark.parametrize("dt", [1.0, 0.5])
def test_batched_objective_equals_a_loop_over_candidates(model, dt):
    states = torch.randn(2, TINY["y_dim"])
    actions = torch.rand(2, 5, 4, ACTION_DIM) * 2 - 1  # b n h a
    returns = LatentObjective(model, dt=dt, prior_mean=True)(states)(actions)
    assert returns.shape == (2, 5)
    with torch.no_grad():
        for b in range(2):
            for n in range(5):
                rollout = model.imagine(states[b : b + 1], 4, dt, actions=actions[b : b + 1, n], prior_mean=True)
                expected = model.predict_heads(rollout.frame_states[:, 1:])["reward"].sum()
                torch.testing.assert_close(returns[b, n], expected, rtol=1e-5, atol=1e-5)


def test_prior_samples_differ_between_candidates_and_follow_the_generator(model):
    states = torch.randn(1, TINY["y_dim"])
    actions = torch.zeros(1, 6, 3, ACTION_DIM)
    first = LatentObjective(model, prior_mean=False, generator=torch.Generator().manual_seed(3))(states)(actions)
    again = LatentObjective(model, prior_mean=False, generator=torch.Generator().manual_seed(3))(states)(actions)
    assert torch.equal(first, again)
    assert first.unique().numel() > 1  # same actions, different z samples


@pytest.mark.parametrize(
    "planner",
    [
        CEMPlanner(ACTION_DIM, horizon=4, candidates=32, top_k=4, iterations=3),
        MPPIPlanner(ACTION_DIM, horizon=4, candidates=32, iterations=3),
    ],
)
def test_planner_with_untrained_model_on_cpu(model, planner):
    plan = planner.plan(
        LatentObjective(model)(torch.randn(3, TINY["y_dim"])), batch_size=3, generator=torch.Generator().manual_seed(0)
    )
    assert plan.shape == (3, 4, ACTION_DIM)
    assert plan.isfinite().all() and plan.abs().max() <= 1


def hand_set_model():
    """Deterministic single-layer model with y_{t+1} = y_t + (a0, -a1) and reward r(y) = y0 + y1.

    From y = 0 the return of a plan is sum_t (H - t)(a0_t - a1_t): best is a = (+1, -1) at every step.
    """
    config = dict(TINY, y_dim=2, stochastic=False, fwd_layers=1)
    model = build_world_model(config, ACTION_DIM).eval()
    with torch.no_grad():
        for layer in (model.transition.net[0], model.heads["reward"][0]):
            layer.weight.zero_()
            layer.bias.zero_()
        model.transition.net[0].weight[:, 2:] = torch.tensor([[1.0, 0.0], [0.0, -1.0]])  # input [y, a]
        model.heads["reward"][0].weight[:] = torch.tensor([[1.0, 1.0]])
    return model


def test_cem_finds_the_best_plan_of_a_hand_set_model():
    model, horizon = hand_set_model(), 5
    objective = LatentObjective(model)(torch.zeros(1, 2))
    best = torch.tensor([1.0, -1.0]).expand(1, 1, horizon, ACTION_DIM)
    assert objective(best).item() == pytest.approx(2 * horizon * (horizon + 1) / 2)
    plan = CEMPlanner(ACTION_DIM, horizon=horizon, candidates=200, top_k=20, iterations=8).plan(
        objective, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(plan, best[:, 0], atol=0.1, rtol=0)


def test_filter_state_follows_the_sliding_window(model):
    frames = torch.randint(0, 256, (7, 3, 64, 64), dtype=torch.uint8)
    actions = torch.rand(6, ACTION_DIM) * 2 - 1
    episode_filter = EpisodeFilter(model, context=4, device=torch.device("cpu"))
    episode_filter.reset(frames[0])
    # One frame only: padded to y1_frames=2 with the first frame and a zero action.
    with torch.no_grad():
        padded = filter_state(
            model, model.encode(frames[:1].expand(2, -1, -1, -1)[None]).codes, torch.zeros(1, 1, ACTION_DIM)
        )
    torch.testing.assert_close(episode_filter.state(), padded)
    for t in range(6):
        episode_filter.step(actions[t], frames[t + 1])
    with torch.no_grad():
        window = filter_state(model, model.encode(frames[3:][None]).codes, actions[3:][None])
    torch.testing.assert_close(episode_filter.state(), window, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="context"):
        EpisodeFilter(model, context=1, device=torch.device("cpu"))


def test_imagined_returns_read_rewards_at_frame_times(model):
    states = torch.randn(3, TINY["y_dim"])
    actions = torch.rand(3, 2, ACTION_DIM)
    with torch.no_grad():
        fine = imagined_returns(model, states, actions, dt=0.25, prior_mean=True)
        rollout = model.imagine(states, 2, 0.25, actions=actions, prior_mean=True)
        assert rollout.states.shape[1] == 9
        expected = model.predict_heads(rollout.states[:, 4::4])["reward"].sum(dim=(1, 2))
    torch.testing.assert_close(fine, expected)


def test_default_control_model_rollouts_stay_bounded_over_long_windows():
    from omegaconf import OmegaConf

    with initialize_config_module("srvp.configs", version_base="1.3"):
        values = OmegaConf.to_container(compose("control", overrides=["run_dir=unused"]).world_model)
    model = build_world_model({**values, "filters": 4}, 1).eval()
    with torch.no_grad():
        rollout = model.imagine(torch.randn(16, model.config.y_dim), 50, actions=torch.rand(16, 50, 1) * 2 - 1)
    # An exploding initial transition (e.g. gain 1.41) reaches norms ~1e9 here and gives infinite gradients.
    assert rollout.states.norm(dim=-1).max() < 100


@pytest.mark.slow
def test_compiled_rollout_equals_the_eager_one(model):
    states = torch.randn(2, TINY["y_dim"])
    actions = torch.rand(2, 6, 4, ACTION_DIM) * 2 - 1
    eager = LatentObjective(model, dt=0.5)(states)(actions)
    compiled = LatentObjective(model, dt=0.5, compile=True)(states)(actions)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


def test_diagnostics_imagine_from_the_state_the_agent_acts_from(model):
    """The open-loop diagnostics start from `filter_state` (posterior means), not from a sample of q(y_1): the
    same windows give the same scores twice, and the first predicted reward is the head's reward at the acting
    state rolled one step through the first future action. (The ELBO's KL terms it also reports are sampled.)"""
    from srvp.agents.diagnostics import imagined_return_spread, open_loop_quality
    from srvp.agents.world_model import REWARD_HEAD

    torch.manual_seed(0)
    frames = torch.randint(0, 256, (2, 6, 3, 64, 64), dtype=torch.uint8)
    actions = torch.rand(2, 5, ACTION_DIM) * 2 - 1
    rewards = torch.rand(2, 5)
    scores = [
        open_loop_quality(model, frames, actions, rewards, context=3, mean_reward=0.5, precision="fp32")
        for _ in range(2)
    ]
    sampled_elbo_terms = {"kl_y1", "kl_z", "nll"}
    assert {k: v for k, v in scores[0].items() if k not in sampled_elbo_terms} == {
        k: v for k, v in scores[1].items() if k not in sampled_elbo_terms
    }
    with torch.no_grad():
        start = filter_state(model, model.encode(frames[:, :3]).codes, actions[:, :2])
        states = model.imagine(start, 3, actions=actions[:, 2:], prior_mean=True).frame_states[:, 1:]
        predicted = model.predict_heads(states)[REWARD_HEAD].squeeze(-1)
    expected = (predicted - rewards[:, 2:]).pow(2).mean().item()
    assert scores[0]["reward_mse"] == pytest.approx(expected, rel=1e-5)
    spreads = [
        imagined_return_spread(
            model, frames, actions, horizon=3, candidates=4, generator=torch.Generator().manual_seed(1)
        )
        for _ in range(2)
    ]
    assert spreads[0] == spreads[1]
