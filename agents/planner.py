"""Sampling-based planners over action sequences in [-1, 1]: the cross-entropy method and MPPI.

Both refine a diagonal Gaussian over open-loop action sequences ``(horizon, action_dim)``. Each
iteration samples ``candidates`` sequences for each of ``B`` independent problems, scores all
``B * candidates`` of them with ONE call of a batched objective (e.g. a world-model rollout summing
predicted rewards), and refits the Gaussian; the plan is the final mean. They differ only in the
refit: CEM averages the ``top_k`` best candidates, MPPI weights every candidate by
``exp(return / temperature)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

Objective = Callable[[Tensor], Tensor]
"""Maps candidate action sequences (B, N, H, A) in [-1, 1] to their returns (B, N), higher is better."""

SHIFT_FILLS = ("zero", "repeat")


def shift_plan(plan: Tensor, fill: Literal["zero", "repeat"] = "zero") -> Tensor:
    """Advance a plan (B, H, A) by one step for warm starting: drop step 0, append a new last step.

    The new last step is zero (the uninformed mean) or a copy of the previous last step.
    """
    if fill == "zero":
        last = torch.zeros_like(plan[:, -1:])
    elif fill == "repeat":
        last = plan[:, -1:]
    else:
        raise ValueError(f"fill must be one of {SHIFT_FILLS}, got {fill!r}")
    return torch.cat([plan[:, 1:], last], dim=1)


class Planner(ABC):
    """Shared sampling loop of Gaussian-refitting planners; subclasses only say how to refit.

    Arguments: ``horizon`` steps per plan, ``candidates`` samples per problem and iteration,
    ``iterations`` refits (= objective calls) per plan, ``init_std`` the initial standard deviation
    (also used around a warm start), ``min_std`` a floor on the refitted deviation so the search never
    collapses before the last iteration.
    """

    def __init__(
        self,
        action_dim: int,
        *,
        horizon: int = 12,
        candidates: int = 1000,
        iterations: int = 10,
        init_std: float = 1.0,
        min_std: float = 0.05,
    ) -> None:
        for name, value in (
            ("action_dim", action_dim),
            ("horizon", horizon),
            ("candidates", candidates),
            ("iterations", iterations),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if not init_std > 0 or not min_std >= 0:
            raise ValueError(f"need init_std > 0 and min_std >= 0, got {init_std} and {min_std}")
        self.action_dim = int(action_dim)
        self.horizon = int(horizon)
        self.candidates = int(candidates)
        self.iterations = int(iterations)
        self.init_std = float(init_std)
        self.min_std = float(min_std)

    @abstractmethod
    def _refit(self, actions: Tensor, returns: Tensor) -> tuple[Tensor, Tensor]:
        """New mean and std (B, H, A) from candidates (B, N, H, A) and returns (B, N), finite or -inf."""

    @torch.no_grad()
    def plan(
        self,
        objective: Objective,
        batch_size: int = 1,
        warm_start: Tensor | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Return the planned action sequences (B, H, A) in [-1, 1] maximising ``objective``.

        ``warm_start`` (B, H, A), e.g. ``shift_plan`` of the previous plan, is the initial mean
        (zeros otherwise); its device is used, else ``device`` (default CPU). ``generator`` must live on
        that device. The objective is called exactly ``iterations`` times with (B, candidates, H, A).
        """
        shape = (batch_size, self.horizon, self.action_dim)
        if warm_start is None:
            mean = torch.zeros(shape, device=device)
        elif tuple(warm_start.shape) != shape:
            raise ValueError(f"warm_start must be shaped {shape}, got {tuple(warm_start.shape)}")
        else:
            mean = warm_start.detach().float().clamp(-1.0, 1.0)
        std = torch.full_like(mean, self.init_std)
        for _ in range(self.iterations):
            noise = torch.randn((batch_size, self.candidates, *shape[1:]), generator=generator, device=mean.device)
            actions = (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp_(-1.0, 1.0)
            returns = objective(actions)
            if tuple(returns.shape) != (batch_size, self.candidates):
                raise ValueError(
                    f"objective must return shape {(batch_size, self.candidates)}, got {tuple(returns.shape)}"
                )
            # A diverging rollout (NaN return) must never be selected; -inf gives it zero weight.
            returns = torch.nan_to_num(returns.float(), nan=-torch.inf)
            mean, std = self._refit(actions, returns)
            std = std.clamp(min=self.min_std)
        return mean


class CEMPlanner(Planner):
    """Cross-entropy method (PlaNet): refit mean and std to the ``top_k`` best candidates."""

    def __init__(
        self,
        action_dim: int,
        *,
        horizon: int = 12,
        candidates: int = 1000,
        top_k: int = 100,
        iterations: int = 10,
        init_std: float = 1.0,
        min_std: float = 0.05,
    ) -> None:
        super().__init__(
            action_dim,
            horizon=horizon,
            candidates=candidates,
            iterations=iterations,
            init_std=init_std,
            min_std=min_std,
        )
        if int(top_k) != top_k or not 1 <= top_k <= candidates:
            raise ValueError(f"top_k must be an integer in [1, candidates={candidates}], got {top_k}")
        self.top_k = int(top_k)

    def _refit(self, actions: Tensor, returns: Tensor) -> tuple[Tensor, Tensor]:
        elite_index = returns.topk(self.top_k, dim=1).indices  # b k
        elites = torch.gather(
            actions, 1, elite_index[:, :, None, None].expand(-1, -1, self.horizon, self.action_dim)
        )  # b k h a
        return elites.mean(dim=1), elites.std(dim=1, unbiased=False)


class MPPIPlanner(Planner):
    """Model-predictive path integral: softmax(return / temperature)-weighted mean and std of all candidates.

    ``temperature`` is in units of return: candidates whose return is ``temperature`` below the best
    get ``1/e`` of its weight. A small temperature approaches picking the best sample, a large one
    the plain average.
    """

    def __init__(
        self,
        action_dim: int,
        *,
        horizon: int = 12,
        candidates: int = 1000,
        iterations: int = 10,
        temperature: float = 0.5,
        init_std: float = 1.0,
        min_std: float = 0.05,
    ) -> None:
        super().__init__(
            action_dim,
            horizon=horizon,
            candidates=candidates,
            iterations=iterations,
            init_std=init_std,
            min_std=min_std,
        )
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def _refit(self, actions: Tensor, returns: Tensor) -> tuple[Tensor, Tensor]:
        weights = torch.softmax(returns / self.temperature, dim=1)[:, :, None, None]  # b n 1 1
        mean = (weights * actions).sum(dim=1)
        variance = (weights * (actions - mean.unsqueeze(1)).square()).sum(dim=1)
        return mean, variance.sqrt()
