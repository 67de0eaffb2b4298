"""Summary statistics of the SRVP protocol: a mean with its 95% confidence half-width."""

from __future__ import annotations

import math

from torch import Tensor


def mean_ci95(values: Tensor) -> tuple[float, float]:
    """Mean of `values (N,)` and the half-width of its 95% normal confidence interval, 1.96 std / sqrt(N).

    The std is the population std (N denominator), as the official SRVP evaluation (numpy's `std`) uses.
    """
    if values.ndim != 1 or values.numel() == 0:
        raise ValueError(f"mean_ci95: expected a non-empty 1-D tensor, got shape {tuple(values.shape)}")
    values = values.double()
    if bool(values.isnan().any()):
        raise ValueError("mean_ci95: values contain NaN")
    std = values.std(correction=0).item()
    return values.mean().item(), 1.96 * std / math.sqrt(values.numel())
