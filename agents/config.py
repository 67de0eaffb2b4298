"""srvp-control's settings as typed dataclasses (hydra's schemas for configs/control.yaml, registered by
`srvp.configs`): planning, the training loop, and the run as a whole. The defaults are PlaNet's (Hafner et al.,
2019); configs/experiment/ and configs/debug/ overlay theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from srvp.agents.planner import SHIFT_FILLS
from srvp.common.configs import check_required
from srvp.common.settings import LoggerConfig, RunConfig, check_fields, setting
from srvp.worldmodel.config import parse_step, substeps


@dataclass
class PlanningConfig:
    """How a decision is planned in the world model's imagination (the `planning:` section)."""

    dt: Any = 1.0
    """Euler step of imagination, a number or a fraction such as 1/3 (1/dt an integer; < 1: finer imagined
    steps than the frames)."""
    prior_mean: bool = True
    """z of the imagined transitions: the prior's means (true) or samples from it (false)."""
    warm_start: bool = True
    """Start each decision's search from the previous plan shifted by one step."""
    warm_start_fill: str = setting("zero", choices=SHIFT_FILLS)
    """The shifted plan's new last step: zero | repeat (the previous last action)."""
    compile: Any = False
    """torch.compile the batched rollout of the candidates: false, true, or a mode (reduce-overhead: CUDA
    graphs)."""

    def __post_init__(self) -> None:
        check_fields(self, "planning")
        try:
            substeps(parse_step(self.dt))
        except ValueError as error:
            raise ValueError(f"planning.{error}") from None
        if not isinstance(self.compile, bool | str):
            raise ValueError(f"planning.compile={self.compile!r}: expected true, false or a torch.compile mode")

    @property
    def step(self) -> float:
        """`dt` as a float."""
        return parse_step(self.dt)


@dataclass
class LoopConfig:
    """PlaNet's training loop: seed episodes, then updates and one collected episode in turn, evaluated every few
    episodes (the `loop:` section)."""

    seed_episodes: int = setting(5, minimum=1)
    """S: episodes of uniform random actions first."""
    episodes: int = setting(1000, minimum=0)
    """Planning episodes to collect after the seed episodes."""
    collect_interval: int = setting(100, minimum=1)
    """C: gradient updates of the world model before each collected episode."""
    batch_size: int = setting(50, minimum=1)
    """B: replay windows per update."""
    seq_len: int = setting(50, minimum=2)
    """L: frames per replay window (at least the world model's y1_frames and content_frames)."""
    exploration_noise: float = setting(0.3, minimum=0)
    """Standard deviation of the Gaussian noise added to the collected episodes' actions."""
    context_frames: int = setting(2, minimum=1)
    """K: the acting state y_t is filtered from the last K frames (at least the world model's y1_frames). 2 is
    the control model's y1_frames: without z only a window's first y1_frames frames enter the state and the rest
    is rolled open-loop, so a longer window starts the planner from a staler state (held-out reward error 3.038
    at K 8 against 2.761 at K 2, bench.control_model); with world_model.stochastic=true the posterior reads
    every frame of the window."""
    eval_every: int = setting(10, minimum=1)
    """Evaluate every E collected episodes (and once more at the end)."""
    eval_episodes: int = setting(10, minimum=0)
    """Noiseless planning episodes per evaluation, one per fixed seed; the random and zero-action policies are
    scored once on the same seeds (run_dir/baselines.json)."""
    video_frames: int = setting(40, minimum=1)
    """Length of the open-loop video of each evaluation: context_frames observed, the rest imagined."""
    max_episode_steps: int | None = setting(None, minimum=1)
    """Agent steps per episode; null: the task's own time limit (dm_control: 1000 simulator steps)."""
    buffer_capacity: int | None = setting(None, minimum=1)
    """Replay capacity in agent steps (the oldest episodes go first); null keeps every episode."""

    def __post_init__(self) -> None:
        check_fields(self, "loop")


@dataclass
class ControlConfig(RunConfig):
    """srvp-control's whole config: the shared run settings, the environment, planner and world model (each its
    config group's node, as plain data), planning, the loop and logging."""

    threads: Any = "auto"
    """torch intra-op threads: auto (the cores this process may use) | N. Two busy torch processes on the same
    cores slow each other 10-100x: give each fewer threads. Logged at start."""
    env: Any = field(default_factory=dict)
    """The environment (configs/env/<task>.yaml): `srvp.envs.make_env` or `make_gym_env` arguments."""
    agent: Any = field(default_factory=dict)
    """The planner (configs/agent/<name>.yaml): a hydra `_target_` node; the action size comes from the env."""
    world_model: Any = field(default_factory=dict)
    """The world model's hyper-parameters: `srvp.worldmodel.SRVPConfig` fields (action_dim and the reward head come
    from the env)."""
    planning: PlanningConfig = field(default_factory=PlanningConfig)
    """How each decision is planned."""
    loop: LoopConfig = field(default_factory=LoopConfig)
    """Collection, updates and evaluations."""
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    """TensorBoard."""

    def __post_init__(self) -> None:
        super().__post_init__()
        threads = self.threads
        if threads != "auto" and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ValueError(f"threads={threads!r}: expected auto or a positive integer")


def control_settings(cfg: DictConfig) -> ControlConfig:
    """srvp-control's composed config as its dataclass, every value checked (one line naming the key) before
    anything is built: required values given, then each section's ranges and choices."""
    check_required(cfg)
    settings = OmegaConf.to_object(cfg)
    assert isinstance(settings, ControlConfig), "configs/control.yaml composes onto ControlConfig"
    return settings
