"""PlaNet-style training of the action-conditioned SRVP from pixels, as importable functions.

`ControlRun` is one run, assembled from its parts (environment, world model, optimiser, replay buffer, planner
factory, logger, typed settings); `ControlRun.from_config` builds them from srvp-control's config, and
`train(cfg)` runs it: `seed_episodes` episodes of uniform random actions, then `episodes` times
{`collect_interval` ELBO + reward updates on (batch_size, seq_len) windows of the replay buffer; one
episode acting by latent planning (`PlanningPolicy`) with Gaussian exploration noise; every `eval_every`
episodes, noiseless evaluation episodes and videos}. After every episode the buffer is saved (incrementally)
and a checkpoint written (atomically), so `train` on the same run directory continues exactly where it stopped.

Randomness, for exact resumption: each episode's environment seed, random actions and planner/noise
generator derive from (seed, stream, episode index); buffer sampling uses its own torch.Generator and the
model's sampling the global RNGs, both saved in the checkpoint. Environment steps count simulator steps
(agent steps x action repeat), the unit of PlaNet's and Dreamer's budgets.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium
import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from srvp import envs
from srvp.agents.buffer import EpisodeBuffer
from srvp.agents.config import ControlConfig, control_settings
from srvp.agents.diagnostics import SPREAD_WARNING, diagnose
from srvp.agents.evaluation import (
    RETURNS_PLOT_NAME,
    load_or_compute_baselines,
    plot_returns,
    returns_ci,
    summary_rows,
    summary_table,
)
from srvp.agents.planner import Planner
from srvp.agents.policy import PlanningPolicy, Policy, RandomPolicy, ZeroPolicy
from srvp.agents.world_model import build_world_model, check_environment, open_loop_states, reward_targets
from srvp.common.checkpoints import restore_training, save_checkpoint
from srvp.common.configs import check_clip_length, config_changes, write_run_config
from srvp.common.logger import RunLogger
from srvp.common.media import side_by_side, time_grid, write_image, write_video
from srvp.common.optimisation import LossAverages, NonFiniteLossError, build_optimizer, optimisation_step
from srvp.common.runtime import StoppedEarly, StopRequest, autocast, resolve_device, restore_rng_state, seed_everything
from srvp.worldmodel import SRVP, load_checkpoint

TRAIN_STREAM, EVAL_STREAM, VIDEO_STREAM, SAMPLE_STREAM = 0, 1, 2, 3
CHECKPOINT_NAME = "checkpoints/last.pt"
BUFFER_DIR = "buffer"
SUMMARY_NAME = "summary"
EVAL_VIDEO_NAME = "eval_episode.gif"
"""The first evaluation episode of the latest evaluation, as the agent saw it."""
OPEN_LOOP_NAME = "open_loop.png"
"""The latest open-loop prediction: observed then imagined frames (bottom) under the truth (top), in time."""
DIAGNOSTIC_WINDOWS = 16
"""Windows of the replay buffer (posterior states) and of the evaluation episodes (open-loop predictions) that
the diagnostics of every evaluation are measured on."""


def stream_seed(seed: int, stream: int, index: int) -> int:
    """A 31-bit seed for item `index` of random stream `stream` (train episodes, eval episodes, ...)."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0] >> 1)


class Episode(NamedTuple):
    """One episode: frames uint8 (T+1, H, W, 3), actions float32 (T, A), rewards float32 (T,), sim steps, and
    the seconds spent in the environment (simulation and rendering) and in the policy (filtering, planning)."""

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    sim_steps: int
    env_seconds: float = 0.0
    policy_seconds: float = 0.0

    @property
    def total_reward(self) -> float:
        return float(self.rewards.sum())


class Interrupted(Exception):
    """A stop was requested (SIGTERM/SIGINT) in the middle of an episode or of the updates."""


def run_episode(env: gymnasium.Env, policy: Policy, seed: int, stop: StopRequest | None = None) -> Episode:
    """Play one episode of `env` reset with `seed`, acting with `policy`; raise Interrupted when `stop` is
    requested (the partial episode is dropped: the run resumes from its last checkpoint)."""
    clock = time.perf_counter
    start = clock()
    frame, info = env.reset(seed=seed)
    env_seconds, policy_seconds = clock() - start, 0.0
    policy.reset(frame)
    frames, actions, rewards, done = [frame], [], [], False
    while not done:
        if stop is not None and stop.requested:
            raise Interrupted
        start = clock()
        action = policy.act()
        middle = clock()
        frame, reward, terminated, truncated, info = env.step(action)
        end = clock()
        policy.observe(action, frame)
        policy_seconds += middle - start + clock() - end
        env_seconds += end - middle
        frames.append(frame)
        actions.append(action)
        rewards.append(reward)
        done = terminated or truncated
    return Episode(
        np.stack(frames),
        np.stack(actions).astype(np.float32),
        np.asarray(rewards, np.float32),
        int(info["sim_steps"]),
        env_seconds,
        policy_seconds,
    )


def update_world_model(
    model: SRVP,
    optimizer: torch.optim.Optimizer,
    buffer: EpisodeBuffer,
    *,
    updates: int,
    batch_size: int,
    seq_len: int,
    generator: torch.Generator,
    device: torch.device,
    precision: str = "auto",
    grad_clip: float | None = None,
    stop: StopRequest | None = None,
) -> dict[str, float]:
    """`updates` optimisation steps on the ELBO + reward loss of buffer windows; returns the parts' means.

    The steps are the video-prediction trainer's own (`srvp.common.optimisation.optimisation_step`); the loss is
    checked for NaN once, after the last update (one host synchronisation per collect interval), and a NaN
    stops the run before anything is saved.
    """
    averages = LossAverages(device)
    for _ in range(updates):
        if stop is not None and stop.requested:
            raise Interrupted
        batch = buffer.sample(batch_size, seq_len, generator=generator)
        frames = batch["obs"].to(device, non_blocking=True)
        targets = {"reward": reward_targets(batch["rewards"]).to(device, non_blocking=True)}
        output = optimisation_step(
            model,
            optimizer,
            frames,
            precision=precision,
            actions=batch["actions"].to(device),
            head_targets=targets,
            grad_clip=grad_clip,
        )
        averages.add(output)
    if averages.any_nonfinite():
        raise NonFiniteLossError(
            f"the world-model loss became NaN/inf within the last {updates} updates; nothing "
            "was saved after it: resume from the last checkpoint with a lower optimizer.lr"
        )
    return averages.read()


@torch.no_grad()
def open_loop_prediction(
    model: SRVP,
    buffer: EpisodeBuffer,
    *,
    context: int,
    length: int,
    precision: str,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Truth and prediction (t c h w) for one buffer window of `length` frames: the `context` observed frames'
    states as the agent filters them (`filter_states`: posterior means), then imagined frames from the real
    actions with prior-mean z, as the planner imagines them; content w from the window's observed frames."""
    model.eval()
    device = next(model.parameters()).device
    window = buffer.sample(1, length, generator=generator)
    frames, actions = window["obs"].to(device), window["actions"].to(device)
    with autocast(device, precision):
        states, content, skips = open_loop_states(model, frames, actions, context)
        prediction = model.decode(states, content, skips).clamp(0, 1)
    return frames[0], prediction[0].float()


@dataclasses.dataclass
class Progress:
    """Counters of a run, saved in its checkpoints."""

    train_episodes: int = 0
    """Episodes added to the buffer (seed episodes included)."""
    env_steps: int = 0
    """Simulator steps of those episodes (agent steps x action repeat)."""
    updates: int = 0
    """Gradient updates of the world model."""


def configure_threads(threads: int | str) -> str:
    """Set torch's intra-op threads: `auto` uses the cores this process may run on (os.sched_getaffinity), an
    integer that many. Returns the line the run logs: on a machine shared with another busy process, fewer
    threads than cores avoid the oversubscription that slows every step by 10-100x."""
    if threads == "auto":
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        reason = "auto: the cores this process may use"
    else:
        count = threads
        reason = f"threads={count}"
    torch.set_num_threads(count)
    return f"torch threads: {torch.get_num_threads()} ({reason})"


def make_env(env_cfg: Mapping[str, Any], max_episode_steps: int | None) -> gymnasium.Env:
    """The pixel environment of config node `env_cfg` (configs/env/), a dm_control task or (`kind: gym`,
    configs/env/gym.yaml) any gymnasium environment, optionally with shorter episodes (smoke tests)."""
    kwargs: dict[str, Any] = {"action_repeat": env_cfg["action_repeat"], "size": env_cfg["size"]}
    if max_episode_steps:
        kwargs["max_episode_steps"] = max_episode_steps
    if env_cfg.get("kind", "dmc") == "gym":
        make_kwargs = env_cfg["make_kwargs"]
        return envs.make_gym_env(
            env_cfg["id"],
            pixels=env_cfg["pixels"],
            crop=env_cfg["crop"],
            max_sim_steps=env_cfg["max_sim_steps"],
            make_kwargs=None if make_kwargs is None else dict(make_kwargs),
            **kwargs,
        )
    return envs.make_env(env_cfg["name"], camera_id=env_cfg["camera_id"], **kwargs)


def build_planner(agent: Mapping[str, Any], action_dim: int) -> Planner:
    """The planner of config node `agent` (a hydra `_target_`), with a bad value reported in one line naming
    the agent."""
    try:
        return instantiate(agent, action_dim=action_dim)
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise ValueError(f"agent ({agent['_target_']}): {str(cause).splitlines()[0]}") from None


class ControlRun:
    """One training run of the loop, assembled from its parts: the environment, the world model and its
    optimiser, the replay buffer, a factory of planners (one per episode), the logger, and the typed settings.

    The constructor checks that the parts fit each other and the settings (frame shapes, window lengths, the
    filter's context) and touches no file; `resume` continues the run saved in `settings.run_dir`, `run` trains.
    `ControlRun.from_config` builds all of it from srvp-control's config.
    """

    def __init__(
        self,
        *,
        env: gymnasium.Env,
        model: SRVP,
        optimizer: torch.optim.Optimizer,
        buffer: EpisodeBuffer,
        planner_factory: Callable[[], Planner],
        logger: RunLogger,
        settings: ControlConfig,
    ) -> None:
        self.env, self.model, self.optimizer, self.buffer = env, model, optimizer, buffer
        self.planner_factory, self.logger, self.settings = planner_factory, logger, settings
        self.loop, self.planning = settings.loop, settings.planning
        self.run_dir = Path(settings.run_dir)
        self.device = next(model.parameters()).device
        self.action_dim = int(env.action_space.shape[0])
        check_environment(
            env.observation_space.shape,
            episode_frames=envs.max_episode_frames(env),
            channels=model.config.channels,
            seq_len=self.loop.seq_len,
        )
        check_clip_length("loop.seq_len", self.loop.seq_len, model.config, "world_model")
        if self.loop.context_frames < model.config.y1_frames:
            raise ValueError(
                f"loop.context_frames={self.loop.context_frames}: the filter window needs at least "
                f"world_model.y1_frames={model.config.y1_frames} frames"
            )
        self.horizon = planner_factory().horizon  # builds one planner now: a bad agent value fails here
        self.eval_seeds = [stream_seed(settings.seed, EVAL_STREAM, index) for index in range(self.loop.eval_episodes)]
        self.eval_history: list[dict[str, Any]] = []
        """One entry per evaluation: env_steps, mean, ci95, episodes and the per-seed returns."""
        self.baselines: dict[str, list[float]] = {}
        self.sample_generator = torch.Generator().manual_seed(stream_seed(settings.seed, SAMPLE_STREAM, 0))
        self.progress = Progress()
        self.stop: StopRequest | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ControlRun:
        """The run srvp-control's composed config `cfg` describes, every value checked first: seeded, its parts
        built, resumed from its run directory when that holds a checkpoint (and `resume` is on), and its
        config.yaml written."""
        settings = control_settings(cfg)
        device = resolve_device(settings.device)
        threads = configure_threads(settings.threads)
        seed_everything(settings.seed)
        env = make_env(settings.env, settings.loop.max_episode_steps)
        print(f"{threads}; rendering: MUJOCO_GL={os.environ.get('MUJOCO_GL', 'unset')}")  # as the env chose it
        action_dim = int(env.action_space.shape[0])
        model = build_world_model(OmegaConf.to_container(cfg.world_model, resolve=True), action_dim).to(device)
        height, width = env.observation_space.shape[:2]
        run = cls(
            env=env,
            model=model,
            optimizer=build_optimizer(settings.optimizer, model, device=device, fused=True),
            buffer=EpisodeBuffer((model.config.channels, height, width), action_dim, settings.loop.buffer_capacity),
            planner_factory=functools.partial(build_planner, settings.agent, action_dim),
            logger=RunLogger(settings.run_dir, enabled=settings.logger.enabled),
            settings=settings,
        )
        resumed_step, changes = run.resume() if settings.resume else (None, [])
        write_run_config(run.run_dir, OmegaConf.to_yaml(run.config), resumed_step, changes, "environment step")
        return run

    @property
    def env_name(self) -> str:
        """The environment's name in titles (its config's `name`)."""
        return str(self.settings.env.get("name", "environment"))

    @property
    def config(self) -> dict[str, Any]:
        """The settings as plain data: what checkpoints and config.yaml hold, and what a resumed run compares."""
        return dataclasses.asdict(self.settings)

    # ------------------------------------------------------------------ persistence
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    def resume(self) -> tuple[int | None, list[str]]:
        """Continue the run saved in the run directory, if any: weights, optimiser, replay buffer, counters,
        evaluations and random states from its last checkpoint; the logs after it are dropped (they are redone).
        Returns the environment step resumed at (None: nothing to resume) and the settings this run changes
        ('key: old -> new'). Another environment or world model is refused: the buffer and the weights belong
        to the saved ones."""
        if not self.checkpoint_path.exists():
            return None, []
        payload = load_checkpoint(self.checkpoint_path, map_location=self.device)
        saved_config, current = payload["config"], self.config
        other_env = config_changes({"env": saved_config.get("env", {})}, {"env": current["env"]})
        if other_env:
            raise ValueError(
                f"{self.run_dir} holds a run of env {saved_config.get('env', {}).get('name')}, not "
                f"{current['env'].get('name')} ({'; '.join(other_env)}): resume with the same env or "
                "choose another run_dir"
            )
        restore_training(payload, self.checkpoint_path, self.model, self.optimizer)
        extra = payload["extra"]
        self.progress = Progress(**{name: int(value) for name, value in extra["progress"].items()})
        self.buffer = EpisodeBuffer.load(self.run_dir / BUFFER_DIR)
        if self.buffer.num_episodes != int(extra["buffer_episodes"]):
            raise RuntimeError(
                f"{self.run_dir / BUFFER_DIR} holds {self.buffer.num_episodes} episodes but "
                f"{self.checkpoint_path} expects {int(extra['buffer_episodes'])}"
            )
        self.sample_generator.set_state(extra["sample_generator"])
        self.eval_history = list(extra.get("eval_history", []))
        restore_rng_state(payload["rng"])
        self.logger.rewind(self.progress.env_steps)
        # agent.action_dim comes from the environment; configs saved before it left the YAML hold it as '???'.
        ignored = ("run_dir", "resume", "agent.action_dim")
        return self.progress.env_steps, config_changes(saved_config, current, ignore=ignored)

    def save(self) -> None:
        """Buffer (new episodes only), then the checkpoint that refers to it."""
        self.buffer.save(self.run_dir / BUFFER_DIR)
        extra = {
            "progress": dataclasses.asdict(self.progress),
            "buffer_episodes": self.buffer.num_episodes,
            "sample_generator": self.sample_generator.get_state(),
            "eval_history": self.eval_history,
        }
        save_checkpoint(
            self.checkpoint_path,
            self.model,
            self.progress.updates,
            config=self.config,
            optimizer=self.optimizer,
            extra=extra,
        )

    # ------------------------------------------------------------------ acting
    def planning_policy(self, stream: int, index: int, explore: bool) -> PlanningPolicy:
        """The agent for episode `index` of `stream`, with its own generator; exploring adds the loop's noise."""
        generator = torch.Generator(self.device).manual_seed(stream_seed(self.settings.seed, stream, index))
        return PlanningPolicy(
            self.model,
            self.planner_factory(),
            context_frames=self.loop.context_frames,
            planning=self.planning,
            exploration_noise=self.loop.exploration_noise if explore else 0.0,
            device=self.device,
            precision=self.settings.precision,
            generator=generator,
        )

    def add_episode(self, episode: Episode) -> None:
        self.buffer.add_episode(episode.frames, episode.actions, episode.rewards)
        self.progress.train_episodes += 1
        self.progress.env_steps += episode.sim_steps

    def evaluate(self) -> list[Episode]:
        """Noiseless planning episodes from fixed seeds (the same at every evaluation)."""
        self.model.eval()
        return [
            run_episode(self.env, self.planning_policy(EVAL_STREAM, index, explore=False), seed, self.stop)
            for index, seed in enumerate(self.eval_seeds)
        ]

    def policy_baselines(self) -> dict[str, list[float]]:
        """Returns of the random and zero-action policies on the evaluation seeds, cached in the run directory
        (computed once per environment, episode length and seed set)."""
        key = {"env": self.config["env"], "max_episode_steps": self.loop.max_episode_steps, "seeds": self.eval_seeds}

        def policy(name: str, index: int) -> Policy:
            if name == "zero":
                return ZeroPolicy(self.action_dim)
            return RandomPolicy(self.action_dim, np.random.default_rng([self.settings.seed, EVAL_STREAM, index]))

        def returns(name: str) -> list[float]:
            return [
                run_episode(self.env, policy(name, index), seed, self.stop).total_reward
                for index, seed in enumerate(self.eval_seeds)
            ]

        return load_or_compute_baselines(self.run_dir, key, returns)

    # ------------------------------------------------------------------ the loop
    def log_episode(self, prefix: str, episodes: list[Episode], seconds: float) -> None:
        """Returns and the loop's speed: simulator steps/s, and where the episodes' time went (the environment's
        simulation and rendering, the policy's filtering and planning, per agent step: ms per decision)."""
        returns = [episode.total_reward for episode in episodes]
        steps = sum(episode.sim_steps for episode in episodes)
        agent_steps = sum(len(episode.actions) for episode in episodes)
        policy_seconds = sum(episode.policy_seconds for episode in episodes)
        self.logger.scalars(
            self.progress.env_steps,
            prefix,
            {
                "return": float(np.mean(returns)),
                "episode_sim_steps": float(np.mean([e.sim_steps for e in episodes])),
                "env_steps": float(self.progress.env_steps),
                "episodes": float(self.progress.train_episodes),
                "env_steps_per_s": steps / max(seconds, 1e-9),
                "agent_steps": float(agent_steps),
                "env_seconds": sum(episode.env_seconds for episode in episodes),
                "policy_seconds": policy_seconds,
                "ms_per_decision": 1000 * policy_seconds / max(agent_steps, 1),
            },
        )

    def run(self) -> dict[str, float]:
        """Train until `loop.episodes` planning episodes were collected; returns the last returns.

        SIGTERM/SIGINT stop the run at once with StoppedEarly: everything up to the last checkpoint (written
        after every episode) is kept, the episode or updates under way are dropped and redone on resume."""
        with StopRequest() as self.stop:
            try:
                return self._run()
            except Interrupted:
                raise StoppedEarly(
                    self.stop.signum or signal.SIGTERM,
                    f"environment step {self.progress.env_steps} (checkpoint after episode "
                    f"{self.progress.train_episodes}; the work under way is redone on resume)",
                    f"srvp-control run_dir={self.run_dir} with the same overrides",
                ) from None

    def _run(self) -> dict[str, float]:
        loop, seed = self.loop, self.settings.seed
        summary: dict[str, float] = {}
        if self.eval_seeds:
            self.baselines = self.policy_baselines()
        while self.progress.train_episodes < loop.seed_episodes:
            index = self.progress.train_episodes
            start = time.perf_counter()
            policy = RandomPolicy(self.action_dim, np.random.default_rng([seed, TRAIN_STREAM, index]))
            episode = run_episode(self.env, policy, stream_seed(seed, TRAIN_STREAM, index), self.stop)
            self.add_episode(episode)
            self.log_episode("train", [episode], time.perf_counter() - start)
            summary["seed_return"] = episode.total_reward
            self.save()
        total = loop.seed_episodes + loop.episodes
        bar = tqdm(total=total, initial=self.progress.train_episodes, desc="episodes", dynamic_ncols=True)
        while self.progress.train_episodes < total:
            summary.update(self.iteration())
            bar.update(1)
            bar.set_postfix(
                loss=f"{summary['loss']:.1f}", ret=f"{summary['train_return']:.1f}", steps=self.progress.env_steps
            )
        bar.close()
        if self.eval_seeds and (not self.eval_history or self.eval_history[-1]["env_steps"] != self.progress.env_steps):
            summary.update(self.evaluate_and_log())
        if self.eval_history:
            summary.update(self.write_summary())
        return summary

    def write_summary(self) -> dict[str, float]:
        """The last evaluation beside the baselines: printed, and written to summary.md and summary.json."""
        last = self.eval_history[-1]
        rows = summary_rows(last["returns"], self.baselines)
        title = (
            f"srvp-control {self.env_name}: evaluation return after {last['env_steps']} environment steps "
            f"({self.progress.train_episodes} training episodes, {self.progress.updates} updates), "
            f"{len(last['returns'])} fixed evaluation seeds"
        )
        table = f"{title}\n\n{summary_table(rows)}\n"
        print(table)
        (self.run_dir / f"{SUMMARY_NAME}.md").write_text(table)
        payload = {"title": title, "env_steps": last["env_steps"], "rows": rows, "evaluations": self.eval_history}
        (self.run_dir / f"{SUMMARY_NAME}.json").write_text(json.dumps(payload, indent=1))
        return {f"{row['policy']}_return": row["mean"] for row in rows[1:]}

    def iteration(self) -> dict[str, float]:
        """C updates, one exploring planning episode, maybe an evaluation, then a checkpoint."""
        loop = self.loop
        start = time.perf_counter()
        losses = update_world_model(
            self.model,
            self.optimizer,
            self.buffer,
            updates=loop.collect_interval,
            batch_size=loop.batch_size,
            seq_len=loop.seq_len,
            generator=self.sample_generator,
            device=self.device,
            precision=self.settings.precision,
            grad_clip=self.settings.grad_clip,
            stop=self.stop,
        )
        self.progress.updates += loop.collect_interval
        update_seconds = time.perf_counter() - start
        self.model.eval()
        index = self.progress.train_episodes
        start = time.perf_counter()
        episode = run_episode(
            self.env,
            self.planning_policy(TRAIN_STREAM, index, explore=True),
            stream_seed(self.settings.seed, TRAIN_STREAM, index),
            self.stop,
        )
        self.add_episode(episode)
        step = self.progress.env_steps
        self.logger.scalars(step, "losses", losses)
        self.logger.scalars(step, "time", {"updates_per_s": loop.collect_interval / update_seconds})
        self.log_episode("train", [episode], time.perf_counter() - start)
        summary = {"train_return": episode.total_reward, **losses}
        if (index - loop.seed_episodes + 1) % loop.eval_every == 0:
            summary.update(self.evaluate_and_log())
        self.save()
        return summary

    def evaluate_and_log(self) -> dict[str, float]:
        """Evaluation returns, the first evaluation episode's video and an open-loop prediction video."""
        loop, step = self.loop, self.progress.env_steps
        summary: dict[str, float] = {}
        episodes: list[Episode] = []
        if self.eval_seeds:
            start = time.perf_counter()
            episodes = self.evaluate()
            self.log_episode("eval", episodes, time.perf_counter() - start)
            self.logger.video(step, "eval/episode", episodes[0].frames)
            write_video(self.run_dir / EVAL_VIDEO_NAME, episodes[0].frames)
            returns = [episode.total_reward for episode in episodes]
            stats = returns_ci(returns)
            self.eval_history.append({"env_steps": step, **stats, "returns": returns})
            baselines = {name: returns_ci(values) for name, values in self.baselines.items()}
            self.logger.scalars(
                step,
                "eval",
                {"return_ci95": stats["ci95"], **{f"{name}_policy_return": b["mean"] for name, b in baselines.items()}},
            )
            plot_returns(
                self.run_dir / RETURNS_PLOT_NAME,
                history=self.eval_history,
                baselines=self.baselines,
                anchors=dict(self.settings.env.get("anchors") or {}),
                title=f"{self.env_name}: evaluation return on {len(returns)} fixed seeds",
            )
            summary["eval_return"] = stats["mean"]
        diagnostics = self.diagnose(episodes)
        self.logger.scalars(step, "diagnostics", diagnostics)
        if diagnostics["return_spread"] < SPREAD_WARNING:
            tqdm.write(
                f"warning: at environment step {step} the imagined returns of random action sequences differ by "
                f"{100 * diagnostics['return_spread']:.3g}% of their size: the world model ignores the actions "
                "and the planner is choosing (almost) at random"
            )
        length = min(loop.video_frames, loop.seq_len)
        if length > loop.context_frames:
            generator = torch.Generator().manual_seed(stream_seed(self.settings.seed, VIDEO_STREAM, step % 2**31))
            context = loop.context_frames
            truth, prediction = open_loop_prediction(
                self.model,
                self.buffer,
                context=context,
                length=length,
                precision=self.settings.precision,
                generator=generator,
            )
            self.logger.video(step, "open_loop/truth_vs_prediction", side_by_side([truth, prediction], context))
            write_image(self.run_dir / OPEN_LOOP_NAME, time_grid([truth, prediction], context))
        return summary

    @torch.no_grad()
    def diagnose(self, episodes: list[Episode]) -> dict[str, float]:
        """What tells a dead world model from a learning one (`srvp.agents.diagnostics`): activity of f and the
        spread of imagined returns on posterior states of replay windows, and open-loop prediction quality
        against the model-free baselines on windows of the evaluation episodes (never trained on)."""
        seed = stream_seed(self.settings.seed, VIDEO_STREAM, 0)
        context, horizon = max(self.loop.context_frames, 2), self.horizon
        replay = self.buffer.sample(DIAGNOSTIC_WINDOWS, context, generator=torch.Generator().manual_seed(seed))
        held_out = None
        if episodes and min(len(episode.actions) for episode in episodes) + 1 >= context + horizon:
            evaluation = EpisodeBuffer(self.buffer.obs_shape, self.action_dim)
            for episode in episodes:
                evaluation.add_episode(episode.frames, episode.actions, episode.rewards)
            windows = evaluation.sample(DIAGNOSTIC_WINDOWS, context + horizon, torch.Generator().manual_seed(seed))
            held_out = {name: windows[name].to(self.device) for name in ("obs", "actions", "rewards")}
        return diagnose(
            self.model,
            {name: replay[name].to(self.device) for name in ("obs", "actions")},
            held_out,
            horizon=horizon,
            mean_reward=self.buffer.reward_mean,
            generator=torch.Generator(self.device).manual_seed(seed),
            dt=self.planning.step,
            precision=self.settings.precision,
        )

    def close(self) -> None:
        self.logger.close()
        self.env.close()


def train(cfg: DictConfig) -> dict[str, float]:
    """Run (or resume) the control training described by `cfg`; returns the last returns and losses."""
    run = ControlRun.from_config(cfg)
    try:
        return run.run()
    finally:
        run.close()
