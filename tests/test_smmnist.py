"""Stochastic Moving MNIST: bounce physics, frame-rate independence, rendering, test set and datasets."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from srvp.video_pred.data import build_dataset, dataset_defaults, smmnist
from srvp.video_pred.data.smmnist import (
    FixedClips,
    StochasticMovingMNIST,
    build_test_set,
    load_official_test_set,
    load_or_build_test_set,
    render_clips,
    sample_trajectories,
    simulate_trajectories,
    split_digits,
)

LIMIT = 36


@pytest.fixture
def digits() -> np.ndarray:
    return np.random.default_rng(1).integers(1, 256, (30, 28, 28), dtype=np.uint8)


def reflect(proposal: np.ndarray) -> np.ndarray:
    """Mirror an unconstrained position into [0, LIMIT] (one reflection is enough at speed <= 4)."""
    return np.where(proposal < 0, -proposal, np.where(proposal > LIMIT, 2 * LIMIT - proposal, proposal))


@pytest.mark.parametrize("deterministic", [False, True])
def test_digits_stay_inside_the_frame(deterministic):
    trajectories = sample_trajectories(np.random.default_rng(0), 400, 40, deterministic, dt=1 / 3)
    assert trajectories.positions.min() >= -1e-9 and trajectories.positions.max() <= LIMIT + 1e-9
    offsets = trajectories.pixel_offsets()
    assert offsets.shape == (400, 40, 2) and offsets.min() == 0 and offsets.max() == LIMIT
    ones = np.ones((400, 1, 28, 28), np.uint8)
    clips = render_clips(ones, offsets[:, None])
    assert (clips.sum(axis=(2, 3, 4)) == 28 * 28).all()  # every digit pixel drawn, none cut by a border


def test_deterministic_bounce_flips_the_crossing_component():
    trajectories = sample_trajectories(np.random.default_rng(0), 300, 60, deterministic=True)
    positions, velocities = trajectories.positions, trajectories.velocities
    proposal = positions[:, :-1] + velocities[:, :-1]
    # Reaching a wall exactly at a frame already counts as a bounce at that frame.
    crossed = ((proposal <= 0) & (velocities[:, :-1] < 0)) | ((proposal >= LIMIT) & (velocities[:, :-1] > 0))
    assert crossed[..., 0].sum() > 50 and crossed[..., 1].sum() > 50
    np.testing.assert_allclose(positions[:, 1:], reflect(proposal), atol=1e-9)
    expected_velocity = np.where(crossed, -velocities[:, :-1], velocities[:, :-1])
    np.testing.assert_array_equal(velocities[:, 1:], expected_velocity)


def test_deterministic_corner_bounce_reverses_both_components():
    mid_step = simulate_trajectories([[34, 34]], [[4, 4]], num_frames=2, deterministic=True)
    np.testing.assert_allclose(mid_step.positions[0, 1], [34, 34])
    np.testing.assert_array_equal(mid_step.velocities[0, 1], [-4, -4])
    # Touching the corner exactly at a frame: the velocity leaving that frame is already reversed.
    at_frame = simulate_trajectories([[34, 35]], [[2, 1]], num_frames=3, deterministic=True)
    np.testing.assert_allclose(at_frame.positions[0], [[34, 35], [36, 36], [34, 35]])
    np.testing.assert_array_equal(at_frame.velocities[0], [[2, 1], [-2, -1], [-2, -1]])


@pytest.mark.parametrize(("start", "velocity", "wall", "axis"), [((34, 10), (3, 0), 36, 0), ((20, 2), (1, -3), 0, 1)])
def test_stochastic_bounce_travels_the_rest_of_the_step_with_a_new_velocity(start, velocity, wall, axis):
    for seed in range(20):
        rng = np.random.default_rng(seed)
        trajectory = simulate_trajectories([start], [velocity], 2, deterministic=False, rng=rng)
        new_velocity = trajectory.velocities[0, 1]
        assert new_velocity[axis] * (1 if wall == 0 else -1) >= 0  # sign forced away from the wall
        crossing = np.array(start, float) + np.array(velocity) * (2 / 3)  # reaches the wall at t = 2/3
        assert crossing[axis] == pytest.approx(wall)
        np.testing.assert_allclose(trajectory.positions[0, 1], crossing + new_velocity / 3, atol=1e-12)


def test_stochastic_bounces_redraw_only_at_walls():
    trajectories = sample_trajectories(np.random.default_rng(3), 500, 30, deterministic=False)
    positions, velocities = trajectories.positions, trajectories.velocities
    before, after = velocities[:, :-1], velocities[:, 1:]
    proposal = positions[:, :-1] + before
    # Strictly inside, with a margin for float noise (a wall reached exactly at a frame is a bounce).
    margin = 1e-6
    start, end = positions[:, :-1], proposal
    inside = (start > margin) & (start < LIMIT - margin) & (end > margin) & (end < LIMIT - margin)
    free_flight = inside.all(axis=-1)
    np.testing.assert_array_equal(after[free_flight], before[free_flight])
    np.testing.assert_allclose(positions[:, 1:][free_flight], proposal[free_flight])
    for axis in (0, 1):
        # The other axis starts more than one step's travel (4 px) from its walls, so whatever velocity the
        # bounce draws, this wall is the only one met during the step.
        other_far_from_walls = (start[..., 1 - axis] > 4 + margin) & (start[..., 1 - axis] < LIMIT - 4 - margin)
        single_bounce = ~free_flight & other_far_from_walls
        hit_far_wall = single_bounce & (proposal[..., axis] > LIMIT)
        hit_near_wall = single_bounce & (proposal[..., axis] < 0)
        assert hit_far_wall.sum() > 20 and hit_near_wall.sum() > 20
        assert (after[..., axis][hit_far_wall] <= 0).all() and (after[..., axis][hit_near_wall] >= 0).all()
    bounced = ~free_flight & (np.abs(proposal - reflect(proposal)).max(axis=-1) > 0)
    assert (np.abs(after[bounced]) != np.abs(before[bounced])).any()  # a redraw, not a mirror


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("dt", [1 / 2, 1 / 3, 1 / 4])
def test_positions_at_integer_times_do_not_depend_on_dt(deterministic, dt):
    coarse = sample_trajectories(np.random.default_rng(7), 300, 25, deterministic, dt=1.0)
    fine = sample_trajectories(np.random.default_rng(7), 300, 25, deterministic, dt=dt)
    substeps = round(1 / dt)
    assert fine.positions.shape == (300, 24 * substeps + 1, 2)
    np.testing.assert_allclose(fine.positions[:, ::substeps], coarse.positions, atol=1e-9)
    np.testing.assert_array_equal(fine.pixel_offsets(), coarse.pixel_offsets())
    assert (np.diff(np.sign(coarse.velocities), axis=1) != 0).any()  # bounces did happen


def test_bounce_draws_do_not_depend_on_request_order():
    first, second = (smmnist._BounceVelocities([np.random.default_rng(0)], 2, block=3) for _ in range(2))
    a0 = [first.take(np.array([0])) for _ in range(8)]  # grows the table twice
    a1 = [first.take(np.array([1])) for _ in range(2)]
    b1 = [second.take(np.array([1])) for _ in range(2)]
    b0 = [second.take(np.array([0])) for _ in range(8)]
    np.testing.assert_array_equal(np.concatenate(a0), np.concatenate(b0))
    np.testing.assert_array_equal(np.concatenate(a1), np.concatenate(b1))


def test_bad_dt_and_missing_rng_are_rejected():
    with pytest.raises(ValueError, match="dt"):
        sample_trajectories(np.random.default_rng(0), 2, 5, False, dt=0.3)
    with pytest.raises(ValueError, match="rng"):
        simulate_trajectories([[0, 0]], [[1, 1]], 3, deterministic=False)


def test_render_sums_and_clips_overlapping_digits():
    images = np.full((1, 2, 28, 28), 200, np.uint8)
    images[0, 1] = 30
    offsets = np.zeros((1, 2, 2, 2), np.int64)
    offsets[0, 1, 1] = (36, 36)
    clips = render_clips(images, offsets)
    assert clips.shape == (1, 2, 1, 64, 64) and clips.dtype == np.uint8
    assert (clips[0, 0, 0, :28, :28] == 230).all()  # 200 + 30 overlapping
    assert clips[0, 1, 0, 0, 0] == 200 and clips[0, 1, 0, 63, 63] == 30
    images[0, 1] = 100
    assert (render_clips(images, offsets)[0, 0, 0, :28, :28] == 255).all()  # 300 clipped


def test_test_set_is_reproducible_by_seed(digits):
    clips = build_test_set(digits, size=12, seq_len=7, deterministic=False)
    assert clips.shape == (12, 7, 1, 64, 64) and clips.dtype == np.uint8
    np.testing.assert_array_equal(clips, build_test_set(digits, size=12, seq_len=7, deterministic=False))
    assert not np.array_equal(clips, build_test_set(digits, size=12, seq_len=7, deterministic=False, seed=43))
    long_clips = build_test_set(digits, size=3, seq_len=100, deterministic=True)
    assert long_clips.shape == (3, 100, 1, 64, 64)


def test_test_set_uses_two_trajectories_per_digit(digits):
    digit_ids, offsets = smmnist._test_set_plan(digits, len(digits), 5, False, 42, 2)
    assert (np.bincount(digit_ids.ravel(), minlength=len(digits)) == 2).all()
    assert offsets.shape == (len(digits), 2, 5, 2)
    digit_ids, _ = smmnist._test_set_plan(digits, 2 * len(digits) + 1, 5, False, 42, 2)
    assert np.bincount(digit_ids.ravel()).min() >= 4


def test_cached_test_set_is_reused_and_rebuilt_when_parameters_change(digits, tmp_path, monkeypatch):
    cache = tmp_path / "smmnist_test.npy"
    clips = load_or_build_test_set(cache, digits, size=10, seq_len=6)
    np.testing.assert_array_equal(clips, build_test_set(digits, size=10, seq_len=6))
    with monkeypatch.context() as patch:
        patch.setattr(smmnist, "render_clips", lambda *args, **kwargs: pytest.fail("cache not reused"))
        np.testing.assert_array_equal(load_or_build_test_set(cache, digits, size=10, seq_len=6), clips)
    other_seed = load_or_build_test_set(cache, digits, size=10, seq_len=6, seed=1)
    np.testing.assert_array_equal(other_seed, build_test_set(digits, size=10, seq_len=6, seed=1))
    other_digits = load_or_build_test_set(cache, digits[::-1].copy(), size=10, seq_len=6, seed=1)
    assert not np.array_equal(other_digits, other_seed)
    cache.write_bytes(b"garbage")
    np.testing.assert_array_equal(load_or_build_test_set(cache, digits, size=10, seq_len=6), clips)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smmnist_test.npy", "smmnist_test.npy.json"]


def test_fixed_clips_serve_uint8_tensors(digits):
    clips = build_test_set(digits, size=4, seq_len=5)
    dataset = FixedClips(clips)
    assert len(dataset) == 4
    clip = dataset[2]
    assert clip.dtype == torch.uint8 and clip.shape == (5, 1, 64, 64)
    assert torch.equal(clip, torch.from_numpy(clips[2]))
    with pytest.raises(ValueError, match="uint8"):
        FixedClips(clips.astype(np.float32))


@pytest.mark.parametrize("num_digits", [1, 2])
def test_training_clips_are_a_function_of_seed_and_index(digits, num_digits):
    dataset = StochasticMovingMNIST(digits, num_digits, seq_len=15, deterministic=False, epoch_size=100, seed=5)
    assert len(dataset) == 100
    first = dataset[0]
    assert first.dtype == torch.uint8 and first.shape == (15, 1, 64, 64)
    assert first.sum() > 0
    assert torch.equal(dataset[0], first)
    assert not torch.equal(dataset[1], first)
    assert dataset[10**12].shape == first.shape  # an endless stream: indices past epoch_size are valid
    other = StochasticMovingMNIST(digits, num_digits, seq_len=15, deterministic=False, epoch_size=100, seed=6)
    assert not torch.equal(other[0], first)
    with pytest.raises(IndexError):
        dataset[-1]


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("num_digits", [1, 2])
def test_batched_generation_equals_clip_by_clip_generation(digits, deterministic, num_digits):
    """A batch drawn at once (vectorised over clips) holds exactly the clips that each clip's own generator
    gives when drawn alone with the scalar path: digits, start, velocity, then bounce velocities."""
    seed, seq_len = 11, 40  # 40 frames: several bounces per digit
    dataset = StochasticMovingMNIST(digits, num_digits, seq_len, deterministic, epoch_size=10, seed=seed)
    indices = [3, 0, 2**40, 17, 5, 6, 7, 8, 9, 1000]
    batch = torch.stack(dataset.__getitems__(indices))
    for position, index in enumerate(indices):
        rng = np.random.default_rng([seed, index])
        digit_ids = rng.integers(0, len(digits), size=num_digits)
        trajectories = sample_trajectories(rng, num_digits, seq_len, deterministic)
        alone = render_clips(digits[digit_ids][None], trajectories.pixel_offsets()[None])[0]
        assert torch.equal(batch[position], torch.from_numpy(alone)), f"clip {index}"
    assert torch.equal(dataset[17], batch[3])
    with pytest.raises(IndexError):
        dataset.__getitems__([1, -2])


def test_dataloader_workers_give_distinct_clips_independent_of_workers(digits):
    dataset = StochasticMovingMNIST(digits, 2, seq_len=4, deterministic=True, epoch_size=8, seed=0)
    with_workers = torch.cat(list(DataLoader(dataset, batch_size=2, num_workers=2))).flatten(1)
    assert len(torch.unique(with_workers, dim=0)) == 8
    in_process = torch.stack([dataset[i] for i in range(8)]).flatten(1)
    assert torch.equal(with_workers, in_process)


def test_split_digits_is_fixed_and_disjoint():
    digits = np.arange(200, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
    train, val = split_digits(digits, val_fraction=0.05, seed=0)
    assert len(train) == 190 and len(val) == 10
    assert set(train[:, 0, 0]).isdisjoint(val[:, 0, 0])
    np.testing.assert_array_equal(split_digits(digits, 0.05, 0)[1], val)


def write_official_test_file(path, num_clips: int, length: int) -> np.ndarray:
    """An npz in the layout of the official SRVP test-set script: `sequences` uint8 (T, N, 64, 64) beside
    latents (T, N, digits, 4), labels and digit images; returns the sequences."""
    rng = np.random.default_rng(0)
    sequences = rng.integers(0, 256, (length, num_clips, 64, 64), dtype=np.uint8)
    np.savez_compressed(
        path,
        sequences=sequences,
        latents=rng.normal(size=(length, num_clips, 2, 4)),
        labels=rng.integers(0, 10, (num_clips, 2), dtype=np.uint8),
        digits=rng.integers(0, 256, (num_clips, 2, 28, 28), dtype=np.uint8),
    )
    return sequences


def test_official_test_file_is_read_as_our_test_split(tmp_path):
    sequences = write_official_test_file(tmp_path / "smmnist_test_2digits_64.npz", num_clips=6, length=30)
    section = dataset_defaults("smmnist")
    section.test_file = str(tmp_path / "smmnist_test_2digits_64.npz")
    test_set = build_dataset(section, "test")
    assert len(test_set) == 6
    for index in range(6):
        clip = test_set[index]
        assert clip.shape == (25, 1, 64, 64)  # 5 conditioning + 20 predicted frames of each 30-frame clip
        assert torch.equal(clip[:, 0], torch.from_numpy(sequences[:25, index]))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"not a zip", "not a readable npz"),
        ({"videos": np.zeros((30, 2, 64, 64), np.uint8)}, "no 'sequences' array"),
        ({"sequences": np.zeros((30, 2, 64, 64), np.float32)}, "'sequences' must be uint8 \\(T, N, 64, 64\\)"),
        ({"sequences": np.zeros((10, 2, 64, 64), np.uint8)}, "clips of 10 frames, 25 needed"),
    ],
)
def test_bad_official_test_files_are_named(tmp_path, content, message):
    path = tmp_path / "test.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.savez(path, **content)
    with pytest.raises((ValueError, FileNotFoundError), match=f"dataset.test_file={path}: {message}"):
        load_official_test_set(path, 25)
