"""The runnable examples at a tiny size, in a subprocess as a user runs them: examples/own_loop.py trains the
world model on synthetic or user arrays (the loss decreases), filters a state and plans an action."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--steps", "30", "--log-every", "10", "--batch-size", "4", "--seq-len", "6", "--filters", "4"]
TINY += ["--state-dim", "4", "--hidden", "16", "--candidates", "16", "--top-k", "4", "--iterations", "2"]
TINY += ["--horizon", "3", "--context", "3", "--device", "cpu"]


def own_loop(*args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(REPO / "examples" / "own_loop.py"), *TINY, *args]
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)


def check_output(stdout: str, action_dim: int) -> None:
    """The loss decreased and the planned action has `action_dim` entries in [-1, 1]."""
    first, last = map(float, re.search(r"^loss: ([\d.]+) -> ([\d.]+)", stdout, re.MULTILINE).groups())
    assert last < first, stdout
    action = re.search(r"^planned action: \[(.*)\]", stdout, re.MULTILINE).group(1)
    values = [float(value) for value in action.split(",")]
    assert len(values) == action_dim and all(-1 <= value <= 1 for value in values), stdout


@pytest.mark.slow
def test_own_loop_on_synthetic_data():
    result = own_loop("--episodes", "8", "--length", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data: frames (8, 8, 64, 64, 3) uint8, actions (8, 7, 2), rewards (8, 7)" in result.stdout
    check_output(result.stdout, action_dim=2)
    assert "the centre lies along" in result.stdout


@pytest.mark.slow
def test_own_loop_on_user_arrays(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.zeros((5, 7, 64, 64, 1), dtype=np.uint8)
    frames[:, :, 20:40, 10:30] = rng.integers(100, 256, (5, 7, 1, 1, 1), dtype=np.uint8)
    actions, rewards = rng.uniform(-1, 1, (5, 6, 3)), rng.normal(size=(5, 6))
    np.savez(tmp_path / "mine.npz", frames=frames, actions=actions, rewards=rewards)
    result = own_loop("--data", str(tmp_path / "mine.npz"))
    assert result.returncode == 0, result.stderr[-3000:]
    check_output(result.stdout, action_dim=3)

    np.savez(tmp_path / "wrong.npz", frames=frames, actions=actions[:, :5], rewards=rewards)
    result = own_loop("--data", str(tmp_path / "wrong.npz"))
    assert result.returncode == 1
    assert result.stderr.strip() == "own_loop: error: actions must be shaped (5, 6, A) for these frames, got (5, 5, 3)"
