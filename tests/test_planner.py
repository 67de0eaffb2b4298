"""Planners against a linear-quadratic problem whose optimum is known in closed form; MPC helper; configs."""

from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from srvp.agents.mpc import MPCController
from srvp.agents.planner import CEMPlanner, MPPIPlanner, Planner, shift_plan

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "agent"

# Linear dynamics s' = A s + B a, reward -(s'^T Q s' + a^T R a), summed over a short horizon.
HORIZON, STATE_DIM, ACTION_DIM = 5, 2, 2
DYNAMICS = torch.tensor([[1.0, 0.2], [0.0, 1.0]], dtype=torch.float64)
CONTROL = torch.tensor([[0.1, 0.0], [0.3, 0.2]], dtype=torch.float64)
STATE_COST = torch.eye(STATE_DIM, dtype=torch.float64)
ACTION_COST = 0.1 * torch.eye(ACTION_DIM, dtype=torch.float64)
# Initial states chosen so that the unconstrained optimum lies inside [-1, 1] (max |a*| ~ 0.8).
INITIAL_STATES = torch.tensor([[0.5, -0.4], [-0.25, 0.6], [0.15, 0.2]], dtype=torch.float64)


def lq_returns(actions: torch.Tensor, initial_states: torch.Tensor) -> torch.Tensor:
    """Returns (B, N) of action sequences (B, N, H, A) from initial states (B, S), in float64."""
    actions = actions.double()
    dynamics, control, state_cost, action_cost = (
        matrix.to(actions.device) for matrix in (DYNAMICS, CONTROL, STATE_COST, ACTION_COST)
    )
    state = initial_states[:, None].expand(-1, actions.shape[1], -1)
    total = torch.zeros(actions.shape[:2], dtype=torch.float64, device=actions.device)
    for step in range(actions.shape[2]):
        action = actions[:, :, step]
        state = state @ dynamics.T + action @ control.T
        total -= (state @ state_cost * state).sum(-1) + (action @ action_cost * action).sum(-1)
    return total


def lq_optimum(initial_state: torch.Tensor) -> torch.Tensor:
    """Unconstrained optimal open-loop actions (H, A): stacked states are F s0 + G a, so a* solves a
    regularised least-squares problem (G^T Q G + R) a = -G^T Q F s0."""
    power = [torch.linalg.matrix_power(DYNAMICS, k) for k in range(HORIZON + 1)]
    free_response = torch.cat(power[1:])
    control_response = torch.zeros(HORIZON * STATE_DIM, HORIZON * ACTION_DIM, dtype=torch.float64)
    for step in range(HORIZON):
        for earlier in range(step + 1):
            control_response[
                step * STATE_DIM : (step + 1) * STATE_DIM, earlier * ACTION_DIM : (earlier + 1) * ACTION_DIM
            ] = power[step - earlier] @ CONTROL
    state_cost = torch.block_diag(*[STATE_COST] * HORIZON)
    action_cost = torch.block_diag(*[ACTION_COST] * HORIZON)
    hessian = control_response.T @ state_cost @ control_response + action_cost
    optimum = -torch.linalg.solve(hessian, control_response.T @ state_cost @ free_response @ initial_state)
    return optimum.reshape(HORIZON, ACTION_DIM)


def make_planner(kind: str, **overrides) -> Planner:
    if kind == "cem":
        return CEMPlanner(ACTION_DIM, horizon=HORIZON, **overrides)
    # Returns here span about one unit, so the temperature is a tenth of that.
    return MPPIPlanner(ACTION_DIM, horizon=HORIZON, temperature=0.1, **overrides)


@pytest.mark.parametrize(("kind", "max_gap"), [("cem", 0.01), ("mppi", 0.03)])
def test_batched_planning_reaches_each_lq_optimum(kind: str, max_gap: float) -> None:
    optimum = torch.stack([lq_optimum(state) for state in INITIAL_STATES])
    assert optimum.abs().max() < 1, "test problem must have an interior optimum"
    best = lq_returns(optimum[:, None], INITIAL_STATES)[:, 0]
    baseline = lq_returns(torch.zeros_like(optimum)[:, None], INITIAL_STATES)[:, 0]
    generator = torch.Generator().manual_seed(1)
    plan = make_planner(kind).plan(
        lambda actions: lq_returns(actions, INITIAL_STATES).float(), batch_size=3, generator=generator
    )
    assert plan.shape == (3, HORIZON, ACTION_DIM) and plan.dtype == torch.float32
    achieved = lq_returns(plan[:, None], INITIAL_STATES)[:, 0]
    # Fraction of the improvement over zero actions that the plan misses, per problem.
    gap = (best - achieved) / (best - baseline)
    assert (gap < max_gap).all(), gap
    assert (gap > -1e-6).all(), "a plan cannot beat the closed-form optimum"
    if kind == "cem":
        torch.testing.assert_close(plan.double(), optimum, atol=0.05, rtol=0)


@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_objective_called_once_per_iteration_with_all_candidates(kind: str) -> None:
    calls = []

    def objective(actions: torch.Tensor) -> torch.Tensor:
        calls.append(actions)
        return -actions.square().sum(dim=(2, 3))

    elites = {"top_k": 8} if kind == "cem" else {}
    planner = make_planner(kind, candidates=64, iterations=7, **elites)
    planner.plan(objective, batch_size=4, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 7
    for actions in calls:
        assert actions.shape == (4, 64, HORIZON, ACTION_DIM)
        assert actions.min() >= -1 and actions.max() <= 1


@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_same_generator_state_gives_same_plan(kind: str) -> None:
    def objective(actions: torch.Tensor) -> torch.Tensor:
        return lq_returns(actions, INITIAL_STATES).float()

    plans = [
        make_planner(kind).plan(objective, batch_size=3, generator=torch.Generator().manual_seed(5)) for _ in range(2)
    ]
    torch.testing.assert_close(plans[0], plans[1], rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_nan_returns_are_never_selected(kind: str) -> None:
    def objective(actions: torch.Tensor) -> torch.Tensor:
        # Returns grow with the first action but are NaN (a diverged rollout) where it is positive.
        first = actions[:, :, 0, 0]
        return torch.where(first > 0, torch.nan, first)

    plan = make_planner(kind).plan(objective, generator=torch.Generator().manual_seed(0))
    assert -0.2 < plan[0, 0, 0] <= 0


def test_warm_start_is_the_initial_mean() -> None:
    warm_start = torch.linspace(-0.3, 0.3, HORIZON * ACTION_DIM).reshape(1, HORIZON, ACTION_DIM)
    first_candidates = []

    def objective(actions: torch.Tensor) -> torch.Tensor:
        first_candidates.append(actions)
        return torch.zeros(actions.shape[:2])

    planner = CEMPlanner(ACTION_DIM, horizon=HORIZON, candidates=4000, top_k=10, iterations=1, init_std=0.1)
    planner.plan(objective, warm_start=warm_start, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(first_candidates[0].mean(dim=1), warm_start, atol=0.01, rtol=0)
    torch.testing.assert_close(first_candidates[0].std(dim=1), torch.full_like(warm_start, 0.1), atol=0.01, rtol=0)


@pytest.mark.parametrize("fill", ["zero", "repeat"])
def test_shift_plan_drops_the_executed_step(fill: str) -> None:
    plan = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    shifted = shift_plan(plan, fill)
    assert torch.equal(shifted[:, :-1], plan[:, 1:])
    expected_last = torch.zeros(2, 3) if fill == "zero" else plan[:, -1]
    assert torch.equal(shifted[:, -1], expected_last)


def test_planner_rejects_bad_inputs() -> None:
    planner = CEMPlanner(ACTION_DIM, horizon=HORIZON, candidates=16, top_k=4, iterations=2)
    with pytest.raises(ValueError, match="objective must return shape"):
        planner.plan(lambda actions: actions.sum(dim=(2, 3, 1)))
    with pytest.raises(ValueError, match="warm_start must be shaped"):
        planner.plan(lambda actions: actions.sum(dim=(2, 3)), warm_start=torch.zeros(1, HORIZON + 1, ACTION_DIM))
    with pytest.raises(ValueError, match="top_k"):
        CEMPlanner(ACTION_DIM, candidates=10, top_k=11)
    with pytest.raises(ValueError, match="temperature"):
        MPPIPlanner(ACTION_DIM, temperature=0.0)
    with pytest.raises(ValueError, match="horizon"):
        MPPIPlanner(ACTION_DIM, horizon=0)
    with pytest.raises(ValueError, match="fill"):
        shift_plan(torch.zeros(1, 2, 1), "last")


class RecordingPlanner(CEMPlanner):
    """A real CEM planner that also records the warm start it was given."""

    def __init__(self) -> None:
        super().__init__(ACTION_DIM, horizon=HORIZON, candidates=32, top_k=4, iterations=2)
        self.warm_starts: list[torch.Tensor | None] = []

    def plan(self, objective, batch_size=1, warm_start=None, generator=None, device=None) -> torch.Tensor:
        self.warm_starts.append(warm_start)
        return super().plan(objective, batch_size, warm_start, generator, device)


def test_mpc_returns_first_action_and_warm_starts_from_shifted_plan() -> None:
    planner = RecordingPlanner()
    states_seen = []

    def build_objective(state: torch.Tensor):
        states_seen.append(state)
        return lambda actions: lq_returns(actions, state).float()

    controller = MPCController(planner, build_objective, warm_start_fill="repeat")
    generator = torch.Generator().manual_seed(0)
    first = controller.act(INITIAL_STATES, batch_size=3, generator=generator)
    first_plan = controller.previous_plan
    assert first.shape == (3, ACTION_DIM) and torch.equal(first, first_plan[:, 0])
    controller.act(INITIAL_STATES * 2, batch_size=3, generator=generator)
    assert planner.warm_starts[0] is None
    assert torch.equal(planner.warm_starts[1], shift_plan(first_plan, "repeat"))
    assert torch.equal(states_seen[1], INITIAL_STATES * 2)
    controller.reset()
    controller.act(INITIAL_STATES[:1], batch_size=1, generator=generator)
    assert planner.warm_starts[2] is None
    with pytest.raises(ValueError, match="reset"):
        controller.act(INITIAL_STATES, batch_size=3, generator=generator)


def test_mpc_exploration_noise_is_added_and_clipped() -> None:
    planner = CEMPlanner(ACTION_DIM, horizon=HORIZON, candidates=32, top_k=4, iterations=2)

    def build_objective(state: torch.Tensor):
        # Optimum at the boundary, so unclipped noise would leave [-1, 1] about half of the time.
        return lambda actions: actions.sum(dim=(2, 3))

    controller = MPCController(planner, build_objective, exploration_noise=1.0, warm_start=False)
    generator = torch.Generator().manual_seed(0)
    noisy = torch.stack([controller.act(None, batch_size=64, explore=True, generator=generator) for _ in range(3)])
    assert noisy.min() >= -1 and noisy.max() <= 1
    assert (noisy == 1).any(), "noise should push some actions onto the bound"
    assert not torch.equal(noisy[-1], controller.previous_plan[:, 0]), "noise was not added"
    clean = controller.act(None, batch_size=64, explore=False, generator=generator)
    assert torch.equal(clean, controller.previous_plan[:, 0])


@pytest.mark.parametrize(("name", "planner_type"), [("cem", CEMPlanner), ("mppi", MPPIPlanner)])
def test_agent_configs_instantiate_with_planet_budget(name: str, planner_type: type) -> None:
    config = OmegaConf.load(CONFIG_DIR / f"{name}.yaml")
    with pytest.raises(InstantiationException, match="action_dim"):  # given by the environment, not the YAML
        instantiate(config)
    planner = instantiate(config, action_dim=6)
    assert isinstance(planner, planner_type) and planner.action_dim == 6
    assert (planner.horizon, planner.candidates, planner.iterations) == (12, 1000, 10)
    if name == "cem":
        assert planner.top_k == 100


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_planning_on_cuda(kind: str) -> None:
    initial_states = INITIAL_STATES.cuda()
    optimum = torch.stack([lq_optimum(state) for state in INITIAL_STATES])

    def objective(actions: torch.Tensor) -> torch.Tensor:
        assert actions.is_cuda
        return lq_returns(actions, initial_states).float()

    generator = torch.Generator(device="cuda").manual_seed(0)
    plan = make_planner(kind).plan(objective, batch_size=3, generator=generator, device="cuda")
    assert plan.is_cuda
    achieved = lq_returns(plan[:, None].cpu(), INITIAL_STATES)[:, 0]
    best = lq_returns(optimum[:, None], INITIAL_STATES)[:, 0]
    assert (achieved > best - 0.05 * best.abs()).all()
