"""Receding-horizon control: plan at every step, execute the first action, warm start the next plan.

The controller knows nothing of models: ``build_objective(state)`` turns whatever the caller tracks
(an observation, a filtered latent state, ...) into the batched objective the planner maximises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from srvp.agents.planner import SHIFT_FILLS, Objective, Planner, shift_plan


class MPCController:
    """Model-predictive controller around a ``Planner``.

    ``exploration_noise`` is the std of Gaussian noise added to the executed action when ``act`` is
    asked to explore (data collection), then clipped to [-1, 1]. ``warm_start`` reuses the previous
    plan shifted by one step (new last step ``warm_start_fill``) as the next initial mean.
    """

    def __init__(
        self,
        planner: Planner,
        build_objective: Callable[[Any], Objective],
        *,
        exploration_noise: float = 0.0,
        warm_start: bool = True,
        warm_start_fill: Literal["zero", "repeat"] = "zero",
        device: torch.device | str = "cpu",
    ) -> None:
        if not exploration_noise >= 0:
            raise ValueError(f"exploration_noise must be >= 0, got {exploration_noise}")
        if warm_start_fill not in SHIFT_FILLS:
            raise ValueError(f"warm_start_fill must be one of {SHIFT_FILLS}, got {warm_start_fill!r}")
        self.planner = planner
        self.build_objective = build_objective
        self.exploration_noise = float(exploration_noise)
        self.warm_start = warm_start
        self.warm_start_fill = warm_start_fill
        self.device = torch.device(device)
        self.previous_plan: Tensor | None = None

    def reset(self) -> None:
        """Forget the previous plan (call between episodes)."""
        self.previous_plan = None

    def act(
        self,
        state: Any,
        batch_size: int = 1,
        explore: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Plan from ``state`` and return the first action (B, A) in [-1, 1], with noise if ``explore``.

        ``generator`` (on the controller's device) drives both the planner and the noise.
        """
        initial_mean = None
        if self.warm_start and self.previous_plan is not None:
            if self.previous_plan.shape[0] != batch_size:
                raise ValueError(
                    f"batch_size {batch_size} differs from the previous plan's "
                    f"{self.previous_plan.shape[0]}: call reset() first"
                )
            initial_mean = shift_plan(self.previous_plan, self.warm_start_fill)
        plan = self.planner.plan(
            self.build_objective(state),
            batch_size=batch_size,
            warm_start=initial_mean,
            generator=generator,
            device=self.device,
        )
        self.previous_plan = plan
        action = plan[:, 0]
        if explore and self.exploration_noise > 0:
            noise = torch.randn(action.shape, generator=generator, device=action.device)
            action = (action + self.exploration_noise * noise).clamp(-1.0, 1.0)
        return action
