"""The bench scripts run at tiny sizes and print tables of sane numbers: they must not rot between GPU
sessions."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

COMMANDS = {
    "train_step": ["-m", "bench.train_step", "--datasets", "smmnist", "--batch-sizes", "1", "--steps", "1"],
    "sampling": ["-m", "bench.sampling", "--datasets", "smmnist", "--clips", "1", "--samples", "2"],
    "planning": ["-m", "bench.planning", "--candidates", "8", "--iterations", "1", "--horizon", "2", "--repeats", "1"],
    "data_loading": ["-m", "bench.data_loading", "--batches", "2", "--scale", "0.1"],
}
ROWS = {"train_step": ("smmnist", 3), "sampling": ("smmnist", 2), "planning": ("cpu", 2), "data_loading": ("", 6)}
"""Script -> (how its data rows start, how many there are)."""


def run_driver(arguments: list[str]) -> None:
    """`python -m <arguments>` from the repository on one thread; it must succeed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", *arguments]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_bench_script_prints_a_table(name):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, *COMMANDS[name]], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    prefix, count = ROWS[name]
    lines = result.stdout.splitlines()
    header = next(
        index
        for index, line in enumerate(lines)
        if line.split() and line.split()[0] in ("setting", "device", "dataset")
    )
    rows = [line for line in lines[header + 1 :] if line.startswith(prefix) and line.strip()][:count]
    assert len(rows) == count, result.stdout
    for row in rows:
        # Every measured quantity (times, rates, speed-ups, memory, shares) is a positive finite number.
        numbers = [float(value.replace(",", "").rstrip("%x")) for value in re.findall(r"\d[\d,]*\.?\d*[%x]?", row)]
        assert numbers and all(0 < value < float("inf") for value in numbers[-3:]), row


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_part(tmp_path):
    """`make gpu-check`'s script at tiny sizes on CPU: every part succeeds and lands in both result files."""
    sys.path.insert(0, str(REPO / "tests"))
    from mnist_files import write_fake_mnist

    mnist = write_fake_mnist(tmp_path / "mnist")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--dry-run", "--out", str(out), "--mnist-dir", str(mnist)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    parts = results["parts"]
    assert list(parts) == ["gpu_tests", "train_throughput", "sampling", "planning", "smmnist_training", "control"]
    assert all(part["status"] == "ok" for part in parts.values()), {k: v.get("error") for k, v in parts.items()}
    throughput = parts["train_throughput"]["result"]["timings"]
    assert {key.split("/")[0] for key in throughput} == {"smmnist", "kth", "bair"}
    assert all(timing["flops"] > 0 and min(timing["step_seconds"]) > 0 for timing in throughput.values())
    numerics = parts["gpu_tests"]["result"]["bf16_numerics"]
    assert 0 < numerics["gradient cosine"] <= 1 and numerics["loss relative difference"] < 0.1
    training = parts["smmnist_training"]["result"]
    assert set(training["eval"]["baselines"]) == {"black", "last_frame", "mean_frame"}
    control = parts["control"]["result"]
    assert [row["policy"] for row in control["summary"]["rows"]] == ["agent", "random", "zero"]
    assert all(value > 0 for value in control["speed"].values())
    markdown = (out / "results.md").read_text()
    assert markdown.count("\n## ") == 6 and "| model | " in markdown and "| agent | " in markdown


def test_gpu_check_names_missing_packages(tmp_path):
    """Where a package is missing, the check stops with one line naming it (here: hydra hidden)."""
    blocker = tmp_path / "hydra"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('hidden for the test')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--dry-run", "--out", str(tmp_path / "o")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1].startswith("bench.gpu_check: error: missing Python packages: hydra-core")
    )


@pytest.mark.slow
def test_learning_driver_at_a_tiny_size_resumes_without_redoing_work(tmp_path):
    """bench.learning: every variant evaluated at every step with the baselines, results kept on disk, and a
    second call with one more step adds only that step (the runs resume from their checkpoints)."""
    sys.path.insert(0, str(REPO / "tests"))
    from mnist_files import write_fake_mnist

    mnist = write_fake_mnist(tmp_path / "mnist")
    out = tmp_path / "learning"
    common = [
        "--out",
        str(out),
        "--variants",
        "residual",
        "gru",
        "--clips",
        "2",
        "--samples",
        "1",
        "--mnist-dir",
        str(mnist),
        "--device",
        "cpu",
        "debug=tiny",
        "dataset.verify_md5=false",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        "dataset.test_size=4",
        "logger.enabled=false",
    ]
    for stops in (["1", "2"], ["1", "2", "3"]):
        run_driver(["bench.learning", "--eval-at", *stops, *common])
    results = json.loads((out / "results.json").read_text())
    runs = [(entry["variant"], entry["step"]) for entry in results["evaluations"]]
    assert runs == [("residual", 1), ("gru", 1), ("residual", 2), ("gru", 2), ("residual", 3), ("gru", 3)]
    assert all(0 < entry["psnr"] < 100 and -1 <= entry["ssim"] <= 1 for entry in results["evaluations"])
    assert set(results["baselines"]) == {"black", "last_frame", "mean_frame"}
    assert "| 3 | gru |" in (out / "results.md").read_text()
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert results["experiment"] == "cpu_mmnist"


TINY_WORLD_MODEL = "filters=4,code_dim=8,y_dim=4,z_dim=3,content_dim=8,inf_hidden=16,fwd_hidden=16,lstm_hidden=8"


@pytest.mark.slow
def test_control_model_driver_measures_every_diagnostic_at_a_tiny_size(tmp_path):
    """bench.control_model: random episodes collected once, each variant trained on them and measured at every
    update count and filter context against the baselines; results.json and results.md written."""
    out = tmp_path / "control_model"
    command = ["bench.control_model", "--out", str(out), "--collect", "cartpole-swingup", "2"]
    command += ["1", "--episode-steps", "12", "--batch-size", "2", "--seq-len", "5", "--context", "2", "3"]
    command += ["--horizon", "3", "--windows", "2", "--eval-at", "2", "--variant", TINY_WORLD_MODEL]
    command += [f"{TINY_WORLD_MODEL},l2_weight=0.5,seq_len=4"]
    run_driver(command)
    rows = json.loads((out / "results.json").read_text())
    assert [(row["updates"], row["context"], row["variant"].endswith("seq_len=4")) for row in rows] == [
        (updates, context, variant) for variant in (False, True) for updates in (0, 2) for context in (2, 3)
    ]
    assert [row["seq_len"] for row in rows] == [5] * 4 + [4] * 4  # a loop key of a variant sets its updates
    pictures = sorted(path.name for path in out.glob("open_loop_*.png"))
    assert len(pictures) == 2 and all("," not in name and "=" not in name for name in pictures)
    for row in rows:
        assert all(0 <= row[f"f_active_{index}"] <= 1 for index in range(3))
        assert row["return_spread"] >= 0 and row["heldout_psnr_last_frame"] > 0
        assert row["heldout_reward_mse"] >= 0 and row["heldout_reward_mse_mean_reward"] >= 0
    assert "seq_len=4 | 2 | 3 |" in (out / "results.md").read_text()


@pytest.mark.slow
def test_control_driver_at_a_tiny_size_resumes_without_redoing_work(tmp_path):
    """bench.control: every variant run to every stage through srvp-control's loop, its evaluation and the
    baselines recorded, and a second call with one more stage adds only that stage (the runs resume)."""
    out = tmp_path / "control"
    common = ["--out", str(out), "--variants", "residual", "residual_dt_1"]
    for stages in (["1"], ["1", "2"]):
        run_driver(["bench.control", "debug=control_tiny", "--stages", *stages, *common])
    results = json.loads((out / "results.json").read_text())
    runs = [(entry["variant"], entry["episodes"]) for entry in results["evaluations"]]
    assert runs == [("residual", 1), ("residual_dt_1", 1), ("residual", 2), ("residual_dt_1", 2)]
    assert set(results["baselines"]) == {"random", "zero"}
    assert all(entry["env_steps"] > 0 and entry["heldout_psnr_last_frame"] > 0 for entry in results["evaluations"])
    assert "| 2 |" in (out / "results.md").read_text()
    assert (out / "returns.png").read_bytes()[:4] == b"\x89PNG"
