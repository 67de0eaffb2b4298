"""Fréchet Video Distance: the Fréchet distance between Gaussians fitted to I3D features of two video sets.

Computed in float64 with a form of tr((S_a S_b)^(1/2)) that stays real and accurate when the
covariances are singular (fewer videos than the 400 feature dimensions, the usual case).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from srvp.common.stats import mean_ci95
from srvp.video_pred.metrics.i3d import NUM_CLASSES


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix; rounding-negative eigenvalues -> 0."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def gaussian_frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)) for two Gaussians, in float64.

    tr((S_a S_b)^(1/2)) is the sum of singular values of S_a^(1/2) S_b^(1/2) (S_a S_b has the spectrum of
    (S_a^(1/2) S_b^(1/2))(S_a^(1/2) S_b^(1/2))^T). Unlike square roots of the eigenvalues of
    S_a^(1/2) S_b S_a^(1/2), this does not turn rounding noise in null spaces into sqrt(noise) terms:
    on 10 samples of 400 dimensions it gives 1e-10 instead of 3e-3 for two identical covariances.
    """
    mean_a, cov_a, mean_b, cov_b = (np.asarray(array, dtype=np.float64) for array in (mean_a, cov_a, mean_b, cov_b))
    trace_sqrt_product = np.linalg.svd(_psd_sqrt(cov_a) @ _psd_sqrt(cov_b), compute_uv=False).sum()
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt_product
    # The distance is non-negative; a tiny negative value is float rounding around zero.
    return max(float(distance), 0.0)


def _mean_and_cov(features: Tensor, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean and unbiased covariance (N - 1 denominator, as TF-GAN) of features (N, D), in float64."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"frechet_distance: {name} must be (N >= 2, D) features, got shape {tuple(features.shape)}")
    array = features.detach().cpu().double().numpy()
    if not np.isfinite(array).all():
        raise ValueError(f"frechet_distance: {name} contains NaN or infinity")
    return array.mean(axis=0), np.cov(array, rowvar=False)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets a (N, D) and b (M, D)."""
    if a.ndim == 2 and b.ndim == 2 and a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance: feature sizes differ, {a.shape[1]} vs {b.shape[1]}")
    return gaussian_frechet_distance(*_mean_and_cov(a, "a"), *_mean_and_cov(b, "b"))


def fvd(real_feats: Tensor, fake_feats: Tensor) -> float:
    """FVD between real and generated videos from their I3D features (N, 400) and (M, 400) (`i3d_features`)."""
    for name, feats in (("real_feats", real_feats), ("fake_feats", fake_feats)):
        if feats.ndim != 2 or feats.shape[1] != NUM_CLASSES:
            raise ValueError(f"fvd: {name} must be I3D features (N, {NUM_CLASSES}), got shape {tuple(feats.shape)}")
    return frechet_distance(real_feats, fake_feats)


def fvd_mean_ci95(real_feats: Tensor, fake_feats_per_draw: Sequence[Tensor]) -> tuple[float, float]:
    """Mean FVD over several draws of generated videos (the protocol uses 5) and its 95% CI half-width."""
    if len(fake_feats_per_draw) == 0:
        raise ValueError("fvd_mean_ci95: no draws of generated features given")
    scores = torch.tensor([fvd(real_feats, fake_feats) for fake_feats in fake_feats_per_draw], dtype=torch.float64)
    return mean_ci95(scores)
