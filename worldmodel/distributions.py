"""Diagonal Gaussians parameterised by networks, and the closed-form KL divergences of the ELBO."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

MIN_STD = 1e-8
"""Added to softplus(raw scale) so a collapsed posterior never gives a zero std (log 0 in the KL)."""


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` in float32 if it is in a narrower float (bf16/fp16 under autocast), else unchanged: loss terms
    sum ~1e5 elements and must not be accumulated in bf16; a float64 model keeps float64."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


class Gaussian(NamedTuple):
    """Diagonal Gaussian given by its mean and standard deviation (same shape)."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def from_raw(cls, params: torch.Tensor) -> Gaussian:
        """Split a network output (..., 2 d) into mean and std = softplus(raw) + 1e-8."""
        mean, raw_scale = params.chunk(2, dim=-1)
        return cls(mean, F.softplus(raw_scale) + MIN_STD)

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised sample mean + std * eps."""
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise


def kl_divergence(q: Gaussian, p: Gaussian) -> torch.Tensor:
    """Elementwise KL(q || p) between diagonal Gaussians, in float32 (at least) even under autocast."""
    q_mean, q_std, p_mean, p_std = (at_least_float32(v) for v in (q.mean, q.std, p.mean, p.std))
    variance_ratio = (q_std / p_std).pow(2)
    mean_term = ((q_mean - p_mean) / p_std).pow(2)
    return 0.5 * (variance_ratio + mean_term - 1 - variance_ratio.log())


def balanced_kl(q: Gaussian, p: Gaussian, prior_share: float) -> torch.Tensor:
    """Elementwise KL(q || p) whose gradient moves the prior with weight 2 `prior_share` and the posterior with
    weight 2 (1 - `prior_share`) (KL balancing; 0.5 gives the plain KL's gradient)."""
    moves_prior = kl_divergence(Gaussian(q.mean.detach(), q.std.detach()), p)
    moves_posterior = kl_divergence(q, Gaussian(p.mean.detach(), p.std.detach()))
    # Both terms are valued as KL(q || p): subtracting one detached copy leaves that value and these gradients.
    return 2 * prior_share * moves_prior + 2 * (1 - prior_share) * moves_posterior - moves_prior.detach()


def kl_standard_normal(q: Gaussian) -> torch.Tensor:
    """Elementwise KL(q || N(0, I))."""
    mean, std = at_least_float32(q.mean), at_least_float32(q.std)
    return 0.5 * (std.pow(2) + mean.pow(2) - 1) - std.log()


def gaussian_nll(target: torch.Tensor, mean: torch.Tensor, variance: float) -> torch.Tensor:
    """Elementwise -log N(target; mean, variance I), Gaussian constant included."""
    squared_error = (at_least_float32(target) - at_least_float32(mean)).pow(2)
    return 0.5 * (squared_error / variance + math.log(2 * math.pi * variance))
