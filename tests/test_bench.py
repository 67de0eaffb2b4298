"""The bench scripts run (tiny sizes) and print their tables: they must not rot between GPU sessions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

COMMANDS = {
    "train_step": ["bench/train_step.py", "--datasets", "smmnist", "--batch-sizes", "1", "--steps", "1"],
    "sampling": ["bench/sampling.py", "--datasets", "smmnist", "--clips", "1", "--samples", "2"],
    "planning": ["bench/planning.py", "--candidates", "8", "--iterations", "1", "--horizon", "2", "--repeats", "1"],
    "data_loading": ["bench/data_loading.py", "--batches", "1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_bench_script_prints_a_table(name):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, *COMMANDS[name]], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) >= 2, result.stdout
