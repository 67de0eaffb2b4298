"""End-to-end `srvp-train` runs in subprocesses: smoke run, exact resume after a kill, clean stop, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from hydra.core.global_hydra import GlobalHydra

from srvp.video_pred import train as train_entry
from srvp.worldmodel import load_checkpoint, load_model
from tests.mnist_files import write_fake_mnist

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("mnist"), count=40)


def train_command(run_dir: Path, mnist_dir: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "srvp.video_pred.train",
        "debug=tiny",
        f"run_dir={run_dir}",
        f"dataset.mnist_dir={mnist_dir}",
        "dataset.verify_md5=false",
        f"dataset.cache_dir={run_dir.parent / 'cache'}",
        "trainer.log_every=1",
        "device=cpu",
        *overrides,
    ]


def run_train(run_dir: Path, mnist_dir: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        train_command(run_dir, mnist_dir, *overrides), cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {entry["step"]: entry["train/loss"] for entry in map(json.loads, lines) if "train/loss" in entry}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, mnist_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """One tiny srvp-train run shared by the tests that only read its outputs."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    return run_dir, run_train(run_dir, mnist_dir)


@pytest.mark.slow
def test_smoke_run_writes_checkpoint_logs_and_videos(trained_run):
    run_dir, result = trained_run
    assert "checkpoint:" in result.stdout and "predictions:" in result.stdout
    payload = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert payload["step"] == 8 and payload["config"]["dataset"]["name"] == "smmnist"
    model, _ = load_model(run_dir / "checkpoints" / "last.pt")
    assert model.config.filters == 8
    assert sorted(losses(run_dir)) == list(range(1, 9))
    assert any((run_dir / "tb").iterdir()) and any((run_dir / "tb").rglob("hparams/events.out.tfevents.*"))
    assert (run_dir / "predictions.gif").stat().st_size > 0 and (run_dir / "predictions.mp4").stat().st_size > 0
    assert (run_dir / "config.yaml").read_text().count("smmnist") >= 1


@pytest.mark.slow
def test_trained_checkpoint_evaluates_and_draws_figures(tmp_path, trained_run):
    """The whole chain on CPU: srvp-train, then srvp-eval and srvp-figures on nothing but its checkpoint."""
    checkpoint = trained_run[0] / "checkpoints" / "last.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    evaluation = subprocess.run(
        [
            sys.executable,
            "-m",
            "srvp.video_pred.evaluate",
            f"ckpt_path={checkpoint}",
            f"out_dir={tmp_path / 'eval'}",
            "metrics=[psnr,ssim]",
            "num_samples=3",
            "max_clips=4",
            "batch_size=2",
            "num_workers=0",
            "device=cpu",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["num_clips"] == 4 and report["num_samples"] == 3
    assert report["metrics"]["psnr"]["mean"] > 0 and -1 <= report["metrics"]["ssim"]["mean"] <= 1
    figures = subprocess.run(
        [
            sys.executable,
            "-m",
            "srvp.video_pred.figures",
            f"ckpt_path={checkpoint}",
            "figure=content_swap",
            "clips=[0,1]",
            f"out_dir={tmp_path / 'figures'}",
            "formats=[gif]",
            "device=cpu",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert figures.returncode == 0, figures.stderr[-3000:]
    written = [Path(line) for line in figures.stdout.split() if line.endswith((".png", ".gif"))]
    assert written and all(path.stat().st_size > 0 for path in written)


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_losses(tmp_path, mnist_dir):
    straight = tmp_path / "straight"
    run_train(straight, mnist_dir, "trainer.ckpt_every=3")
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        train_command(killed, mnist_dir, "trainer.ckpt_every=3"),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists(), "the run was killed before its first checkpoint"
    saved = load_checkpoint(checkpoint)
    killed_at, trained_seconds = saved["step"], saved["extra"]["train_seconds"]
    assert killed_at < 8, "the run finished before it could be killed"
    assert trained_seconds > 0
    result = run_train(killed, mnist_dir, "trainer.ckpt_every=3")
    assert f"resumed from {checkpoint} at step {killed_at}" in result.stdout
    assert losses(killed) == losses(straight)
    # The training clock goes on from the killed run's time instead of restarting at 0.
    rows = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    resumed_seconds = [row["train/seconds"] for row in rows if row["step"] > killed_at and "train/seconds" in row]
    assert resumed_seconds and min(resumed_seconds) > trained_seconds
    resumed_model, _ = load_model(checkpoint)
    straight_model, _ = load_model(straight / "checkpoints" / "last.pt")
    for name, tensor in straight_model.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_weight_average_is_evaluated_and_resumes_exactly(tmp_path, mnist_dir):
    # trainer.ema_decay: the final evaluation reads checkpoints/ema.pt (the average, not the last weights), and a
    # run stopped half-way (trainer.max_steps) then resumed ends with the same average as a straight run.
    options = ("trainer.ema_decay=0.5", "trainer.lr_warmup_steps=3", "trainer.ckpt_every=2")
    final_eval = "final_eval={num_samples: 2, max_clips: 4, metrics: [psnr], num_workers: 0}"
    straight = tmp_path / "straight"
    result = run_train(straight, mnist_dir, *options, final_eval)
    assert "evaluation of ema.pt" in result.stdout
    evaluated = json.loads((straight / "eval" / "eval.json").read_text())["checkpoint"]
    assert Path(evaluated).name == "ema.pt"
    average, _ = load_model(straight / "checkpoints" / "ema.pt")
    last, _ = load_model(straight / "checkpoints" / "last.pt")
    assert any(not torch.equal(tensor, last.state_dict()[name]) for name, tensor in average.state_dict().items()), (
        "the average equals the last weights"
    )
    stopped = tmp_path / "stopped"
    run_train(stopped, mnist_dir, *options, "trainer.max_steps=4")
    assert load_checkpoint(stopped / "checkpoints" / "ema.pt")["step"] == 4
    run_train(stopped, mnist_dir, *options)
    assert losses(stopped) == losses(straight)
    resumed, _ = load_model(stopped / "checkpoints" / "ema.pt")
    for name, tensor in average.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def recorded_step_counts(run_dir: Path) -> tuple[int, int]:
    trainer = yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]
    return trainer["steps"], trainer["lr_decay_steps"]


BUDGET = (
    "trainer.time_budget_s=8",
    "trainer.steps=150",
    "trainer.lr_decay_steps=50",
    "trainer.batch_size=1",
    "trainer.log_every=10",
    "trainer.video_every=1000",
    "trainer.ckpt_every=1000",
)


@pytest.mark.slow
def test_a_time_budget_records_its_step_counts_and_its_schedule_is_the_one_recorded(tmp_path, mnist_dir):
    budgeted = tmp_path / "budgeted"
    result = run_train(budgeted, mnist_dir, *BUDGET)
    steps, decay = recorded_step_counts(budgeted)
    seconds = load_checkpoint(budgeted / "checkpoints" / "last.pt")["extra"]["seconds_per_step"]
    assert f"time budget 8 s at {seconds:.3f} s per step (steps 101-150)" in result.stdout
    assert f"trainer.steps={steps} and trainer.lr_decay_steps={decay}" in result.stdout
    assert steps + decay == max(150, int(8 / seconds)) and steps == max(150, round((steps + decay) * 3 / 4))
    assert max(losses(budgeted)) == steps + decay
    # The counts given directly train the same weights: the steps before the counts were set ran at the rate
    # the recorded schedule gives them.
    given = tmp_path / "given"
    run_train(given, mnist_dir, *BUDGET[1:], f"trainer.steps={steps}", f"trainer.lr_decay_steps={decay}")
    assert losses(given) == losses(budgeted)
    given_model, _ = load_model(given / "checkpoints" / "last.pt")
    budgeted_model, _ = load_model(budgeted / "checkpoints" / "last.pt")
    for name, tensor in given_model.state_dict().items():
        torch.testing.assert_close(budgeted_model.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    # A run stopped after setting its counts resumes with them, without timing again, and reports no change.
    stopped = tmp_path / "stopped"
    run_train(stopped, mnist_dir, *BUDGET, "trainer.max_steps=151")
    counts = recorded_step_counts(stopped)
    resumed = run_train(stopped, mnist_dir, *BUDGET)
    assert "time budget" not in resumed.stdout and "settings changed" not in resumed.stdout
    assert recorded_step_counts(stopped) == counts
    assert max(losses(stopped)) == sum(counts)
    # Stopped before the counts were set, it times the steps left before trainer.steps when it resumes.
    early = tmp_path / "early"
    assert "time budget" not in run_train(early, mnist_dir, *BUDGET, "trainer.max_steps=140").stdout
    assert "(steps 141-150): trainer.steps=" in run_train(early, mnist_dir, *BUDGET).stdout
    assert max(losses(early)) == sum(recorded_step_counts(early))


def test_a_time_budget_needs_the_timed_steps_at_the_full_rate(tmp_path, mnist_dir):
    result = run_train(tmp_path / "run", mnist_dir, "trainer.time_budget_s=8", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "srvp-train: error: trainer.time_budget_s times steps 101 to trainer.steps at the full rate before it "
        "sets the step counts: trainer.steps=6 must be at least 120 (it gives the timed steps and the ratio to "
        "trainer.lr_decay_steps)"
    )
    # A budget added to a run past its constant steps cannot keep them at the rate it would set.
    counts = ("trainer.steps=120", "trainer.lr_decay_steps=0", *BUDGET[3:])
    run_train(tmp_path / "past", mnist_dir, *counts)
    config = (tmp_path / "past" / "config.yaml").read_text()
    result = run_train(tmp_path / "past", mnist_dir, *counts, "trainer.time_budget_s=8", check=False)
    assert result.returncode == 1 and (tmp_path / "past" / "config.yaml").read_text() == config
    assert result.stderr.strip().splitlines()[-1] == (
        "srvp-train: error: trainer.time_budget_s: the run is at step 120, past trainer.steps=120, the last step "
        "it would time at the full rate: give this run its step counts instead of a budget"
    )


@pytest.mark.slow
def test_sigterm_checkpoints_the_current_step_and_resume_finishes(tmp_path, mnist_dir):
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        train_command(run_dir, mnist_dir, "trainer.ckpt_every=100"),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while (not metrics.exists() or not metrics.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=240)
    # Not a finished run: 128 + SIGTERM, and one line saying where it stopped and how to resume.
    assert process.returncode == 128 + signal.SIGTERM
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("srvp-train: stopped early by SIGTERM at step ")
    assert f"resume with: srvp-train run_dir={run_dir}" in last_line
    stopped_at = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    assert 1 <= stopped_at <= 8
    run_train(run_dir, mnist_dir)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 8
    assert sorted(losses(run_dir)) == list(range(1, 9))


def test_a_user_error_exits_with_status_1_and_one_line(tmp_path, mnist_dir):
    """The exit-code contract, through a real process: status 1, one line on stderr, no traceback."""
    result = run_train(tmp_path / "run", mnist_dir, "dataset.mnist_dir=/no/such/folder", check=False)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("srvp-train: error:") and "/no/such/folder" in last_line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.batch_size=0"], "trainer.batch_size"),
        (["model.dt=0.3"], "dt=0.3"),
        (["model.nu=1e-40"], "NaN/inf"),  # the likelihood overflows: stop before anything is saved
        (["trainer.ema_decay=1.0"], "trainer.ema_decay=1.0"),
        (["trainer.lr_warmup_steps=-1"], "trainer.lr_warmup_steps"),
        (["device=cuda:3"] if not torch.cuda.is_available() else ["model.arch=resnet"], "cuda:3|model.arch"),
    ],
)
def test_user_errors_end_in_one_line_naming_the_culprit(tmp_path, mnist_dir, monkeypatch, overrides, message):
    run_dir = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["srvp-train", *train_command(run_dir, mnist_dir, *overrides)[3:]])
    try:
        with pytest.raises(SystemExit) as exit_info:
            train_entry.main()
    finally:
        GlobalHydra.instance().clear()
    line = str(exit_info.value.code)
    assert line.startswith("srvp-train: error:") and "\n" not in line
    assert any(part in line for part in message.split("|")), line
    assert not (run_dir / "checkpoints" / "last.pt").exists()


def test_prepared_dataset_without_root_names_the_key(tmp_path):
    command = [sys.executable, "-m", "srvp.video_pred.train", "debug=tiny", "dataset=kth", f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("srvp-train: error: dataset.root is required for kth")
