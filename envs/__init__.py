"""dm_control suite tasks, and any gymnasium environment with a Box action space, as pixel-observation
gymnasium environments (knows nothing of models).

Importing the package registers PlaNet's six tasks as `srvp/<domain>-<task>-v0` (idempotently); any other
suite task is registered on demand by `make_env` / `make_vector_env` or `register_task`. dm_control itself
is imported lazily, when the first environment is built, after `configure_mujoco_gl` picked a headless
OpenGL backend.
"""

from srvp.common.extras import require_extra

require_extra("control", "srvp.envs")

from srvp.envs.dmc import (
    PLANET_TASKS,
    DMCEnv,
    default_action_repeat,
    default_camera_id,
    env_id,
    make_env,
    make_vector_env,
    register_task,
)
from srvp.envs.gym_pixels import GymPixelEnv, make_gym_env
from srvp.envs.pixel_env import PixelEnv, max_episode_frames, scale_action
from srvp.envs.rendering import configure_mujoco_gl, probe_gl_backend

for _task in PLANET_TASKS:
    register_task(_task)

__all__ = [
    "PLANET_TASKS",
    "DMCEnv",
    "GymPixelEnv",
    "PixelEnv",
    "configure_mujoco_gl",
    "default_action_repeat",
    "default_camera_id",
    "env_id",
    "make_env",
    "make_gym_env",
    "make_vector_env",
    "max_episode_frames",
    "probe_gl_backend",
    "register_task",
    "scale_action",
]
