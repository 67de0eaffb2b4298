"""Stochastic Moving MNIST (Denton & Fergus 2018, as updated by SRVP): bouncing 28x28 digits in 64x64 frames.

Each digit follows a continuous piecewise-linear path in the box [0, 36]^2 of its top-left corner. When
the path meets a wall, the exact crossing time is computed and the rest of the step is travelled with a
new velocity: the sign flipped on the wall's axis (deterministic) or a fresh uniform draw over
{-4..4}^2 with that sign forced away from the wall (stochastic). Because bounces are events of the
continuous path, sampling it with any step dt (1/dt integer) gives the same positions at integer times;
the random draws are tied to each trajectory's n-th bounce, not to the sampling grid.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch.utils.data import Dataset

from srvp.common.files import atomic_write
from srvp.worldmodel.config import substeps as euler_substeps
from srvp.worldmodel.model import FRAME_SIZE

DIGIT_SIZE = 28
MAX_SPEED = 4
TEST_SEED = 42
TEST_SIZE = 10_000
TEST_NUM_DIGITS = 2
# Two crossings closer in time than this are one corner bounce.
_SAME_TIME = 1e-9
# Positions are snapped to this many decimals before rounding to pixels so that float noise (which differs
# between step sizes) cannot flip a rounding decision at an exact half pixel.
_SNAP_DECIMALS = 6
_RENDER_CHUNK = 256


@dataclass(frozen=True)
class Trajectories:
    """Sampled digit paths, `n` trajectories at times 0, dt, 2 dt, ..., num_frames - 1."""

    positions: np.ndarray
    """(n, samples, 2) float64: top-left corner (row, col) of the digit, in [0, limit]."""
    velocities: np.ndarray
    """(n, samples, 2) float64: velocity (pixels per frame) leaving each sample time."""
    dt: float
    """Time between two samples, in frames."""

    def pixel_offsets(self) -> np.ndarray:
        """(n, num_frames, 2) int64 drawing offsets at integer times: positions rounded half to even."""
        substeps = round(1 / self.dt)
        snapped = np.round(self.positions[:, ::substeps], _SNAP_DECIMALS)
        return np.rint(snapped).astype(np.int64)


class _BounceVelocities:
    """Stochastic bounce velocities: bounce n of trajectory i takes entry (i, n) of a lazily grown table.

    Trajectories form groups, each with its own generator (one group for a test set drawn from one seed;
    one group per training clip, whose digits share the clip's generator). The table grows by blocks of a
    fixed width, each group drawing its rows of the block from its own generator in order, so an entry's
    value depends on its group's generator state only: never on when the simulation asked for it (hence
    on the step size), nor on which other groups are simulated alongside (hence on the batch).
    """

    def __init__(self, groups: list[np.random.Generator], group_size: int, block: int) -> None:
        self.groups, self.group_size, self.block = groups, group_size, block
        count = len(groups) * group_size
        self.table = np.empty((count, 0, 2), dtype=np.float64)
        self.used = np.zeros(count, dtype=np.int64)

    def take(self, which: np.ndarray) -> np.ndarray:
        """One fresh velocity (k, 2) for each trajectory index in `which`."""
        if which.size == 0:
            return np.empty((0, 2))
        while self.used[which].max() >= self.table.shape[1]:
            new_block = np.concatenate(
                [rng.integers(-MAX_SPEED, MAX_SPEED + 1, size=(self.group_size, self.block, 2)) for rng in self.groups]
            )
            self.table = np.concatenate([self.table, new_block.astype(np.float64)], axis=1)
        velocities = self.table[which, self.used[which]]
        self.used[which] += 1
        return velocities


def simulate_trajectories(
    start_positions: np.ndarray,
    start_velocities: np.ndarray,
    num_frames: int,
    deterministic: bool,
    rng: np.random.Generator | list[np.random.Generator] | None = None,
    dt: float = 1.0,
    limit: float = FRAME_SIZE - DIGIT_SIZE,
) -> Trajectories:
    """Bounce `n` points inside [0, limit]^2 from (n, 2) starts, sampling every dt up to time num_frames - 1.

    Stochastic bounces draw their velocities from `rng` (required then): one generator for all trajectories,
    or a list of g generators, generator j serving the j-th of g equal consecutive groups of trajectories.
    All trajectories advance together (vectorised); within a step, each one repeatedly moves to its next
    wall crossing and bounces until the step's remaining time is spent.
    """
    substeps = euler_substeps(dt)
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not deterministic and rng is None:
        raise ValueError("stochastic bounces need a random generator (rng)")
    groups = [rng] if isinstance(rng, np.random.Generator) else list(rng or [])
    position = np.array(start_positions, dtype=np.float64)
    velocity = np.array(start_velocities, dtype=np.float64)
    if position.ndim != 2 or position.shape[1] != 2 or velocity.shape != position.shape:
        raise ValueError(f"starts must be (n, 2) positions and velocities: {position.shape}, {velocity.shape}")
    if np.any(position < 0) or np.any(position > limit):
        raise ValueError(f"start positions must lie in [0, {limit}]")
    count = len(position)
    bounce_velocities = None
    if not deterministic:
        if count % len(groups):
            raise ValueError(f"{count} trajectories cannot form {len(groups)} equal groups (one per generator)")
        bounce_velocities = _BounceVelocities(groups, count // len(groups), block=4 + num_frames // 4)
    num_samples = (num_frames - 1) * substeps + 1
    positions = np.empty((count, num_samples, 2))
    velocities = np.empty((count, num_samples, 2))
    positions[:, 0], velocities[:, 0] = position, velocity
    for sample in range(1, num_samples):
        remaining = np.full(count, dt)
        # Only trajectories that just bounced can bounce again within this step.
        candidates = np.arange(count)
        while candidates.size:
            position_now, velocity_now = position[candidates], velocity[candidates]
            # Time until each axis reaches the wall it is heading to (inf when still on that axis).
            wall = np.where(velocity_now > 0, limit, 0.0)
            moving = velocity_now != 0
            time_to_wall = np.full_like(position_now, np.inf)
            time_to_wall[moving] = np.maximum((wall[moving] - position_now[moving]) / velocity_now[moving], 0.0)
            first_hit = time_to_wall.min(axis=1)
            # A wall reached exactly at the end of the step bounces now, so the velocity recorded at a
            # sample time is always the one leaving it, whatever the rounding of the remaining time.
            hits = first_hit <= remaining[candidates] + _SAME_TIME
            candidates, hit_time, wall = candidates[hits], first_hit[hits], wall[hits]
            hit_axes = time_to_wall[hits] <= hit_time[:, None] + _SAME_TIME
            crossing = position_now[hits] + velocity_now[hits] * hit_time[:, None]
            position[candidates] = np.where(hit_axes, wall, crossing)
            remaining[candidates] = np.maximum(remaining[candidates] - hit_time, 0.0)
            new_velocity = velocity_now[hits] if deterministic else bounce_velocities.take(candidates)
            away_from_wall = np.where(wall > 0, -1.0, 1.0)
            velocity[candidates] = np.where(hit_axes, away_from_wall * np.abs(new_velocity), new_velocity)
        position += velocity * remaining[:, None]
        positions[:, sample], velocities[:, sample] = position, velocity
    return Trajectories(positions=positions, velocities=velocities, dt=dt)


def sample_trajectories(
    rng: np.random.Generator,
    count: int,
    num_frames: int,
    deterministic: bool,
    dt: float = 1.0,
    digit_size: int = DIGIT_SIZE,
) -> Trajectories:
    """Random trajectories: integer start in [0, 64 - digit_size]^2, velocity uniform over {-4..4}^2."""
    limit = FRAME_SIZE - digit_size
    start_positions = rng.integers(0, limit + 1, size=(count, 2))
    start_velocities = rng.integers(-MAX_SPEED, MAX_SPEED + 1, size=(count, 2))
    return simulate_trajectories(start_positions, start_velocities, num_frames, deterministic, rng, dt, limit)


def render_clips(digit_images: np.ndarray, offsets: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Draw digits into clips: images (n, d, h, w) uint8 at offsets (n, d, T, 2) -> (n, T, 1, 64, 64) uint8.

    Overlapping digits are summed, then clipped at 255. `out`, when given, must be zero-filled (n, T, 1,
    64, 64) uint8; the clips are drawn into it (no large temporary).
    """
    count, num_digits, height, width = digit_images.shape
    num_frames = offsets.shape[2]
    if offsets.shape != (count, num_digits, num_frames, 2):
        raise ValueError(f"offsets {offsets.shape} do not match digit images {digit_images.shape}")
    if offsets.min(initial=0) < 0 or np.any(offsets + (height, width) > FRAME_SIZE):
        raise ValueError("digit offsets fall outside the frame")
    clips = np.zeros((count, num_frames, 1, FRAME_SIZE, FRAME_SIZE), np.uint8) if out is None else out
    # windows[i, t, r, c] is the (height, width) block of frame (i, t) whose corner is (r, c); writes go
    # through to the clips. Within one digit slot each frame gets exactly one block, so the gathered blocks
    # are summed in uint16 and saturated at 255 before being written back.
    windows = np.lib.stride_tricks.sliding_window_view(clips[:, :, 0], (height, width), axis=(2, 3), writeable=True)
    clip_index = np.arange(count)[:, None]
    frame_index = np.arange(num_frames)[None, :]
    for slot in range(num_digits):
        block_index = (clip_index, frame_index, offsets[:, slot, :, 0], offsets[:, slot, :, 1])
        summed = windows[block_index].astype(np.uint16) + digit_images[:, slot, None]
        windows[block_index] = np.minimum(summed, 255)
    return clips


def _check_digits(digits: np.ndarray) -> None:
    if digits.dtype != np.uint8 or digits.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE) or not len(digits):
        raise ValueError(f"digits must be uint8 (N, 28, 28) with N >= 1, got {digits.dtype} {digits.shape}")


def _test_set_plan(
    digits: np.ndarray, size: int, seq_len: int, deterministic: bool, seed: int, num_digits: int
) -> tuple[np.ndarray, np.ndarray]:
    """Digit indices (size, num_digits) and pixel offsets (size, num_digits, seq_len, 2) of the test clips.

    Each digit slot walks its own random permutation of the digits (a new permutation every len(digits)
    clips), so with size == len(digits) and two slots every digit appears twice, each time with its own
    trajectory, paired with another random digit: two trajectories per digit, pairwise combined.
    """
    _check_digits(digits)
    if size < 1 or seq_len < 1 or num_digits < 1:
        raise ValueError(f"size, seq_len and num_digits must be >= 1, got {size}, {seq_len}, {num_digits}")
    rng = np.random.default_rng(seed)
    permutations_per_slot = -(-size // len(digits))
    digit_ids = np.stack(
        [
            np.concatenate([rng.permutation(len(digits)) for _ in range(permutations_per_slot)])[:size]
            for _ in range(num_digits)
        ],
        axis=1,
    )
    trajectories = sample_trajectories(rng, size * num_digits, seq_len, deterministic)
    return digit_ids, trajectories.pixel_offsets().reshape(size, num_digits, seq_len, 2)


def build_test_set(
    digits: np.ndarray,
    size: int = TEST_SIZE,
    seq_len: int = 25,
    deterministic: bool = False,
    seed: int = TEST_SEED,
    num_digits: int = TEST_NUM_DIGITS,
) -> np.ndarray:
    """The fixed test clips (size, seq_len, 1, 64, 64) uint8, a pure function of its arguments.

    Paper setting: MNIST test digits, 2 digits, seed 42, 10,000 clips of 25 frames (stochastic) or 100
    (deterministic).
    """
    digit_ids, offsets = _test_set_plan(digits, size, seq_len, deterministic, seed, num_digits)
    clips = np.zeros((size, seq_len, 1, FRAME_SIZE, FRAME_SIZE), np.uint8)
    for start in range(0, size, _RENDER_CHUNK):
        chunk = slice(start, start + _RENDER_CHUNK)
        render_clips(digits[digit_ids[chunk]], offsets[chunk], out=clips[chunk])
    return clips


def load_or_build_test_set(
    cache_path: str | Path,
    digits: np.ndarray,
    size: int = TEST_SIZE,
    seq_len: int = 25,
    deterministic: bool = False,
    seed: int = TEST_SEED,
    num_digits: int = TEST_NUM_DIGITS,
) -> np.ndarray:
    """`build_test_set(...)` cached in the .npy file `cache_path`, returned memory-mapped read-only.

    A JSON sidecar (`<cache_path>.json`) records the arguments and a fingerprint of the digits; the cache
    is rebuilt when they differ or the file is unreadable. Both files are written atomically, the sidecar
    last, so a crash never leaves a cache that looks valid.
    """
    cache_path = Path(cache_path)
    meta_path = cache_path.with_name(cache_path.name + ".json")
    _check_digits(digits)
    params = {
        "size": int(size),
        "seq_len": int(seq_len),
        "deterministic": bool(deterministic),
        "seed": int(seed),
        "num_digits": int(num_digits),
        "digits_md5": hashlib.md5(np.ascontiguousarray(digits).tobytes()).hexdigest(),
    }
    shape = (size, seq_len, 1, FRAME_SIZE, FRAME_SIZE)
    cached = _load_cached(cache_path, meta_path, params, shape)
    if cached is not None:
        return cached
    meta_path.unlink(missing_ok=True)
    digit_ids, offsets = _test_set_plan(digits, size, seq_len, deterministic, seed, num_digits)

    def write_npy(file: IO[bytes]) -> None:
        # The .npy header then the clips chunk by chunk: the whole set never sits in memory.
        header = {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_2_0(file, header)
        for start in range(0, size, _RENDER_CHUNK):
            chunk = slice(start, start + _RENDER_CHUNK)
            file.write(render_clips(digits[digit_ids[chunk]], offsets[chunk]).tobytes())

    atomic_write(cache_path, write_npy)
    atomic_write(meta_path, lambda file: file.write(json.dumps(params, indent=1).encode()))
    return np.load(cache_path, mmap_mode="r")


def _load_cached(cache_path: Path, meta_path: Path, params: dict, shape: tuple) -> np.ndarray | None:
    """The cached clips if both files exist, the sidecar matches `params` and the array has `shape`."""
    if not (cache_path.is_file() and meta_path.is_file()):
        return None
    try:
        if json.loads(meta_path.read_text()) != params:
            return None
        clips = np.load(cache_path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return clips if clips.shape == shape and clips.dtype == np.uint8 else None


def load_official_test_set(path: str | Path, seq_len: int) -> np.ndarray:
    """The first `seq_len` frames of the test clips in an npz written by the official SRVP script
    (`preprocessing/mmnist/make_test_set.py`: key `sequences`, uint8 (T, N, 64, 64)) as (N, seq_len, 1, 64, 64).

    Evaluating on that file compares a number with the paper on exactly the authors' clips (5,000 by default,
    the same distribution as ours but no clip in common)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"dataset.test_file={path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"dataset.test_file={path}: not a readable npz file ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"dataset.test_file={path}: not a readable npz file (a single array)")
    with archive:
        if "sequences" not in archive.files:
            raise ValueError(f"dataset.test_file={path}: no 'sequences' array (has {archive.files})")
        sequences = archive["sequences"]
    if sequences.dtype != np.uint8 or sequences.ndim != 4 or sequences.shape[2:] != (FRAME_SIZE, FRAME_SIZE):
        raise ValueError(
            f"dataset.test_file={path}: 'sequences' must be uint8 (T, N, 64, 64), got "
            f"{sequences.dtype} {sequences.shape}"
        )
    if sequences.shape[0] < seq_len:
        raise ValueError(f"dataset.test_file={path}: clips of {sequences.shape[0]} frames, {seq_len} needed")
    return np.ascontiguousarray(sequences[:seq_len].transpose(1, 0, 2, 3)[:, :, None])


def split_digits(digits: np.ndarray, val_fraction: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle the digits with a fixed seed, then cut them into (train, validation), 95% / 5% by default."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(digits))
    num_val = max(1, round(len(digits) * val_fraction))
    return digits[order[num_val:]], digits[order[:num_val]]


class StochasticMovingMNIST(Dataset):
    """Training clips generated on the fly: item i is a (seq_len, 1, 64, 64) uint8 clip.

    Item i is a pure function of (`seed`, i): it does not depend on DataLoader workers, their number, the
    order of requests or the other items of its batch, so a resumed run sees the same clips and workers
    never duplicate each other (they serve different indices). Every non-negative index is valid (an
    endless stream, as `srvp.video_pred.data.stream.DrawSampler` draws it); `epoch_size` is only the length
    reported to samplers that iterate over `range(len(dataset))`.

    A DataLoader fetches a batch through `__getitems__`, which simulates and draws all its clips at once
    (vectorised over clips and digits): each clip's random numbers still come from its own generator, in
    the order a lone `dataset[i]` draws them, so a batch equals its items generated one by one.
    """

    def __init__(
        self,
        digits: np.ndarray,
        num_digits: int,
        seq_len: int,
        deterministic: bool,
        epoch_size: int,
        seed: int = 0,
    ) -> None:
        _check_digits(digits)
        if num_digits < 1 or seq_len < 1 or epoch_size < 1:
            raise ValueError(f"num_digits, seq_len, epoch_size must be >= 1: {num_digits} {seq_len} {epoch_size}")
        self.digits = digits
        self.num_digits = num_digits
        self.seq_len = seq_len
        self.deterministic = deterministic
        self.epoch_size = epoch_size
        self.seed = seed

    def __len__(self) -> int:
        return self.epoch_size

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        """The clips of `indices`, generated together: a list of (seq_len, 1, 64, 64) uint8 tensors."""
        if min(indices, default=0) < 0:
            raise IndexError(f"negative index {min(indices)}: training clips are numbered from 0")
        count, limit = len(indices) * self.num_digits, FRAME_SIZE - DIGIT_SIZE
        generators = [np.random.default_rng([self.seed, index]) for index in indices]
        digit_ids = np.empty((len(indices), self.num_digits), np.int64)
        starts, velocities = np.empty((count, 2), np.int64), np.empty((count, 2), np.int64)
        for item, rng in enumerate(generators):
            # The draws of sample_trajectories for this clip's digits, in the same order.
            digit_ids[item] = rng.integers(0, len(self.digits), size=self.num_digits)
            rows = slice(item * self.num_digits, (item + 1) * self.num_digits)
            starts[rows] = rng.integers(0, limit + 1, size=(self.num_digits, 2))
            velocities[rows] = rng.integers(-MAX_SPEED, MAX_SPEED + 1, size=(self.num_digits, 2))
        trajectories = simulate_trajectories(starts, velocities, self.seq_len, self.deterministic, generators)
        offsets = trajectories.pixel_offsets().reshape(len(indices), self.num_digits, self.seq_len, 2)
        clips = torch.from_numpy(render_clips(self.digits[digit_ids], offsets))
        return list(clips)


class FixedClips(Dataset):
    """Clips of a uint8 array (N, T, C, H, W), possibly memory-mapped, served as torch.uint8 tensors."""

    def __init__(self, clips: np.ndarray) -> None:
        if clips.dtype != np.uint8 or clips.ndim != 5:
            raise ValueError(f"clips must be uint8 (N, T, C, H, W), got {clips.dtype} {clips.shape}")
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> torch.Tensor:
        # Copy: a memory-mapped file is read-only, and torch must own writable memory.
        return torch.from_numpy(np.array(self.clips[index]))
