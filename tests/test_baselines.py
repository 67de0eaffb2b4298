"""Model-free baselines: their futures, and the per-pixel mean training frame."""

import numpy as np
import pytest
import torch

from srvp.video_pred.baselines import baseline_futures, mean_training_frame
from srvp.video_pred.data.smmnist import StochasticMovingMNIST


def test_baseline_futures():
    context = torch.rand(2, 3, 1, 8, 8)
    mean_frame = torch.rand(1, 8, 8)
    futures = baseline_futures(context, 4, mean_frame)
    assert set(futures) == {"black", "last_frame", "mean_frame"}
    for future in futures.values():
        assert future.shape == (2, 4, 1, 8, 8)
    assert not futures["black"].any()
    for step in range(4):
        assert torch.equal(futures["last_frame"][:, step], context[:, -1])
        assert torch.equal(futures["mean_frame"][:, step], mean_frame.expand(2, 1, 8, 8))


def test_mean_training_frame_is_the_per_pixel_mean_of_fixed_clips():
    digits = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    dataset = StochasticMovingMNIST(digits, num_digits=1, seq_len=4, deterministic=True, epoch_size=100, seed=3)
    mean = mean_training_frame(dataset, clips=5)
    frames = np.concatenate([dataset[index].numpy() for index in range(5)]).astype(np.float64) / 255
    assert mean.shape == (1, 64, 64) and mean.dtype == torch.float32
    np.testing.assert_allclose(mean.numpy(), frames.mean(axis=0), atol=1e-7)
    # Digits move, so the mean is spread out: not one clip's frame, and brighter in the middle than corners.
    assert 0 < mean.max() < frames.max()
    with pytest.raises(ValueError, match="clips=0"):
        mean_training_frame(dataset, clips=0)
