"""Inputs a new user gives the newest surfaces (own videos, any gymnasium env, the Python API): each is either
used correctly or refused in one line naming the culprit, before any work starts where it can be."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from srvp import envs
from srvp.agents import loop as control_loop
from srvp.agents import train as control_entry
from srvp.agents.world_model import EpisodeFilter, build_world_model, check_environment
from srvp.common.checkpoints import save_checkpoint
from srvp.video_pred import evaluate, figures
from srvp.video_pred.data import build_dataset, dataset_defaults
from srvp.video_pred.data.prepare_folder import prepare_folder
from srvp.video_pred.data.prepared import RawVideo, claim_output_folder, load_meta, prepare_videos
from srvp.video_pred.prepare import main as prepare_main
from srvp.worldmodel import SRVP, SRVPConfig
from tests.mnist_files import write_fake_mnist
from tests.test_evaluate import NoiseVideo
from tests.test_prepare_folder import make_frames, write_video
from tests.test_reliability import run_entry_point
from tests.worldmodel_testing import SMALLEST, TINY, random_clips, tiny_model

CPU = torch.device("cpu")


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


# ------------------------------------------------------------------------------------------ the Python API
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_frames_are_refused_before_they_touch_the_model(bad):
    """One NaN pixel in training mode would make the loss NaN and write NaN into every BatchNorm statistic."""
    model = tiny_model().train()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    frames = random_clips(2, 4).float() / 255
    frames[1, 2, 0, 10, 20] = bad
    with pytest.raises(ValueError, match="NaN" if bad != bad else "must lie in") as error:
        model.elbo(frames)
    one_line(error)
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name
    with pytest.raises(ValueError, match="NaN" if bad != bad else "must lie in"):
        model.eval().predict(frames[:, :3], 2)


def test_numpy_and_float64_frames_are_taken_as_the_model_takes_tensors():
    """What numpy gives (float64 arrays, uint8 arrays) is converted, not refused from inside torch."""
    model = tiny_model()
    clips = random_clips(2, 4)
    torch.manual_seed(0)
    expected = model.predict(clips[:, :3], 2)
    for given in (clips.numpy(), clips.numpy() / 255.0, clips.double() / 255):
        torch.manual_seed(0)
        assert torch.allclose(model.predict(given[:, :3], 2), expected, atol=1e-6)
    torch.manual_seed(0)
    loss = model.elbo(clips).loss
    torch.manual_seed(0)
    assert torch.allclose(model.elbo(clips.numpy() / 255.0).loss, loss)
    with pytest.raises(TypeError, match="frames must be a torch.Tensor or a numpy array, got list") as error:
        model.encode(clips.tolist())
    one_line(error)


def test_actions_must_match_the_model_exactly():
    """A scalar, a 1-element or a wrongly batched action is refused, never broadcast; a model without actions
    refuses them rather than ignoring them."""
    model = build_world_model(TINY, action_dim=2).eval()
    start = torch.zeros(3, model.config.y_dim)
    for shape in [(3, 4, 1), (3, 4), (1, 4, 2), (3, 2, 2)]:
        with pytest.raises(ValueError, match=r"actions of shape \(3, >= 4, 2\) expected") as error:
            model.imagine(start, 4, actions=torch.zeros(shape))
        assert f"got {shape}" in one_line(error)
    assert model.imagine(start, 4, actions=np.zeros((3, 4, 2))).frame_states.shape == (3, 5, model.config.y_dim)
    with pytest.raises(ValueError, match=r"model.action_dim=0") as error:
        tiny_model().predict(random_clips(1, 3), 2, actions=torch.zeros(1, 4, 2))
    one_line(error)


@pytest.mark.parametrize("action", [torch.tensor(0.5), torch.tensor([0.5]), torch.zeros(3), torch.zeros(1, 2)])
def test_episode_filter_refuses_an_action_of_another_shape(action):
    model = build_world_model(TINY, action_dim=2).eval()
    frames = random_clips(1, 2)[0]
    episode_filter = EpisodeFilter(model, context=4, device=CPU)
    episode_filter.reset(frames[0])
    with pytest.raises(
        ValueError, match=re.escape(f"action of shape {tuple(action.shape)}, but the model takes actions of shape (2,)")
    ) as error:
        episode_filter.step(action, frames[1])
    one_line(error)
    episode_filter.step(np.array([0.5, -0.5]), frames[1].numpy())
    assert episode_filter.state().shape == (1, model.config.y_dim)


def test_episode_filter_needs_the_model_in_eval_mode():
    model = build_world_model(TINY, action_dim=2)
    episode_filter = EpisodeFilter(model, context=4, device=CPU)
    with pytest.raises(RuntimeError, match=r"call model.eval\(\) first") as error:
        episode_filter.reset(random_clips(1, 1)[0, 0])
    one_line(error)


# ------------------------------------------------------------------------------------------ gymnasium envs
class FlatEnv(gymnasium.Env):
    """A continuous-action environment whose renderer draws `frame`, or raises `render_error`."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None, height: int = 48, value: int = 0, missing: bool = False):
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.render_mode, self.height, self.value, self.missing = render_mode, height, value, missing

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 0.0, False, False, {}

    def render(self):
        if self.missing:
            raise gymnasium.error.DependencyNotInstalled('pygame is not installed, run `pip install "gymnasium[x]"`')
        return np.full((self.height, 64, 3), self.value, np.uint8)


gymnasium.register(id="srvp-test/Flat-v0", entry_point=FlatEnv, max_episode_steps=5)


@pytest.mark.parametrize(
    ("make_kwargs", "message"),
    [
        (
            {},
            r"srvp-test/Flat-v0 rendered a constant frame of shape \(48, 64, 3\) \(every value 0\) at its first reset",
        ),
        ({"value": 255}, r"constant frame of shape \(48, 64, 3\) \(every value 255\)"),
        ({"height": 0}, r"srvp-test/Flat-v0 rendered an empty or non-image frame of shape \(0, 64, 3\)"),
    ],
)
def test_an_empty_or_constant_render_is_refused_at_the_first_reset(make_kwargs, message):
    env = envs.make_gym_env("srvp-test/Flat-v0", make_kwargs=make_kwargs)
    with pytest.raises(RuntimeError, match=message) as error:
        env.reset(seed=0)
    one_line(error)


def test_mujoco_rendering_at_zero_size_is_refused_at_the_first_reset():
    """The issue's example: Reacher-v5 with width and height 0 trained on all-black frames."""
    env = envs.make_gym_env("Reacher-v5", make_kwargs={"width": 0, "height": 0})
    with pytest.raises(RuntimeError, match=r"Reacher-v5 rendered an empty or non-image frame of shape \(0, 0, 3\)"):
        env.reset(seed=0)
    env.close()


@pytest.mark.parametrize(
    ("env_id", "make_kwargs", "error", "message"),
    [
        ("Nope-v0", None, ValueError, r"env.id=Nope-v0: Environment `Nope` doesn't exist"),
        ("Reacher-v9", None, ValueError, r"env.id=Reacher-v9: Environment version `v9` for environment `Reacher`"),
        (None, None, ValueError, r"env.id=None: give a registered gymnasium id"),
        (
            "srvp-test/Flat-v0",
            {"colour": 3},
            ValueError,
            r"srvp-test/Flat-v0 does not take the arguments \{'colour': 3\} \(env.make_kwargs\): .*'colour'$",
        ),
    ],
)
def test_gymnasium_user_errors_are_one_line_naming_the_id(env_id, make_kwargs, error, message):
    with pytest.raises(error, match=message) as caught:
        envs.make_gym_env(env_id, make_kwargs=make_kwargs)
    one_line(caught)


def test_a_renderer_needing_a_missing_package_is_named_in_one_line():
    env = envs.make_gym_env("srvp-test/Flat-v0", make_kwargs={"missing": True})
    with pytest.raises(ImportError, match=r"^srvp-test/Flat-v0 cannot render: pygame is not installed, run") as error:
        env.reset(seed=0)
    one_line(error)


def control_config(tmp_path, *overrides: str):
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        return compose(
            "control", overrides=["debug=control_tiny", "loop.max_episode_steps=5", f"run_dir={tmp_path}", *overrides]
        )


def test_srvp_control_reports_gymnasium_errors_in_one_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match="env.id=Nope-v0: Environment `Nope` doesn't exist"):
        control_loop.train(control_config(tmp_path, "env=gym", "env.id=Nope-v0"))
    exit_info = run_entry_point(control_entry.main, monkeypatch, "env=gym", "debug=control_tiny", f"run_dir={tmp_path}")
    assert str(exit_info.code) == "srvp-control: error: env.id required but not given: add env.id=... to the command"


# ------------------------------------------------------------------------------------------ srvp-prepare folder
@pytest.fixture(scope="module")
def six_videos(tmp_path_factory) -> Path:
    """Six short lossless-enough AVI files (mjpeg), 12 frames each."""
    raw = tmp_path_factory.mktemp("six")
    for index in range(6):
        write_video(raw / f"v{index}.avi", make_frames(12, index), "avi", "mjpeg", "yuvj420p")
    return raw


def prepared_files(out: Path) -> dict[str, list[str]]:
    return {split: sorted(path.name for path in (out / split).glob("*.npy")) for split in ("train", "val", "test")}


SHORT = {"min_frames": 4, "test_clip_length": 4, "test_clip_count": 2}


@pytest.mark.parametrize(
    ("changed", "flag"),
    [
        ({"seed": 7}, "(seed: 42 -> 7)"),
        ({"test_fraction": 0.5}, "test_fraction: 0.1 -> 0.5"),
        ({"val_fraction": 0.4}, "val_fraction: 0.05 -> 0.4"),
    ],
)
def test_a_rerun_of_prepare_folder_with_other_split_options_is_refused(six_videos, tmp_path, changed, flag):
    """It used to redraw the split: videos moved between train and test, their old copies stayed behind."""
    out = tmp_path / "out"
    meta = prepare_folder(six_videos, out, **SHORT)
    files = prepared_files(out)
    assert prepare_folder(six_videos, out, **SHORT) == meta  # the same options resume
    with pytest.raises(ValueError, match=re.escape(flag)) as error:
        prepare_folder(six_videos, out, **SHORT, **changed)
    one_line(error)
    assert load_meta(out) == meta and prepared_files(out) == files


def test_prepare_refuses_to_move_a_prepared_video_into_another_split(six_videos, tmp_path):
    """Whatever moved it (a folder prepared before the options were recorded, raw files added, a split file
    edited), a video already prepared in one split is never written into another."""
    out = tmp_path / "out"
    meta = prepare_folder(six_videos, out, **SHORT)
    (out / "folder_options.json").unlink()  # as an older version left it: no split options recorded
    (out / ".srvp-prepare.json").unlink()
    (out / "meta.json").unlink()
    files = prepared_files(out)
    test_video = meta["splits"]["test"]
    split_file = tmp_path / "splits.txt"
    split_file.write_text(
        "\n".join(
            f"{'train' if name in test_video else 'test'} {name}"
            for name in sorted(path.name for path in six_videos.glob("*.avi"))
        )
    )
    with pytest.raises(ValueError, match=r"already holds \d+ of these videos in another split") as error:
        prepare_folder(six_videos, out, **SHORT, split_file=split_file)
    one_line(error)
    assert prepared_files(out) == files


def test_every_prepared_dataset_refuses_a_rerun_with_another_seed(tmp_path):
    """KTH, Human3.6M and BAIR draw their validation videos and test clips from --seed too."""
    claim_output_folder(tmp_path, "kth", 42)
    claim_output_folder(tmp_path, "kth", 42)
    with pytest.raises(ValueError, match=r"was prepared with --seed 42: rerun with --seed 42 to resume") as error:
        claim_output_folder(tmp_path, "kth", 7)
    one_line(error)


# ------------------------------------------------------------------------------------------ srvp-eval, srvp-figures
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A prepared grey 'kth' folder with train, val and 7-frame test clips, a prepared RGB 'folder' dataset, and
    tiny checkpoints trained (by their configs) on that kth folder and on deterministic Moving MNIST."""
    root = tmp_path_factory.mktemp("checkpoints")
    videos = [NoiseVideo(f"v{index}", split, f"video {index}") for index, split in enumerate(["test"] * 2 + ["val"])]
    videos.append(NoiseVideo("v9", "train", "train video"))
    prepare_videos("kth", videos, root / "kth", channels=1, seed=0, test_clip_length=7, test_clip_count=3)
    rgb = [RGBVideo(f"v{index}", split, f"rgb {index}") for index, split in enumerate(["test", "train"])]
    prepare_videos("folder", rgb, root / "rgb", channels=3, seed=0, test_clip_length=7, test_clip_count=3)
    config = SRVPConfig(**SMALLEST)
    kth = {"name": "kth", "root": str(root / "kth"), "cond_frames": 3, "pred_frames": 4, "train_length": 5}
    save_checkpoint(root / "kth.pt", SRVP(config), step=1, config={"model": config.to_dict(), "dataset": kth})
    mnist = {
        "name": "mmnist_deterministic",
        "mnist_dir": str(write_fake_mnist(root / "mnist", count=20)),
        "verify_md5": False,
        "cache_dir": str(root / "cache"),
        "cond_frames": 3,
        "pred_frames": 4,
        "test_size": 2,
    }
    save_checkpoint(root / "mnist.pt", SRVP(config), step=1, config={"model": config.to_dict(), "dataset": mnist})
    return {"kth": root / "kth", "rgb": root / "rgb", "kth.pt": root / "kth.pt", "mnist.pt": root / "mnist.pt"}


@dataclass(frozen=True)
class RGBVideo(RawVideo):
    """Seeded random RGB frames."""

    def decode(self) -> np.ndarray:
        return np.random.default_rng(int(self.video_id[1:])).integers(0, 256, (9, 3, 64, 64), dtype=np.uint8)


def eval_config(checkpoint: Path, *overrides: str):
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        base = compose(config_name="eval", overrides=list(overrides))
    quick = {"ckpt_path": str(checkpoint), "metrics": ["psnr"], "baselines": False, "num_samples": 1}
    return OmegaConf.merge(base, {**quick, "device": "cpu", "num_workers": 0})


def test_eval_and_figures_refuse_a_dataset_key_their_dataset_does_not_use(checkpoints, tmp_path):
    """srvp-eval on a Moving MNIST checkpoint with dataset.root=<a prepared folder> scored Moving MNIST."""
    rgb = checkpoints["rgb"]
    cfg = eval_config(checkpoints["mnist.pt"], f"dataset.root={rgb}")
    expected = (
        f"dataset.root={rgb} is not used by mmnist_deterministic (the dataset the checkpoint was trained on): to "
        "evaluate on a prepared folder, give its dataset too (dataset.name=folder)"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        evaluate.evaluate(cfg, tmp_path / "eval")
    assert not (tmp_path / "eval").exists()
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        figures_cfg = compose("figures", [f"ckpt_path={checkpoints['mnist.pt']}", f"dataset.root={rgb}"])
    with pytest.raises(ValueError, match=re.escape(expected)):
        figures.make_figures(figures_cfg)
    # Naming the dataset evaluates on it, when the model takes its frames.
    with pytest.raises(ValueError, match=r"model takes 1-channel frames but .*rgb holds 3-channel videos") as error:
        evaluate.evaluate(eval_config(checkpoints["mnist.pt"], f"dataset.root={rgb}", "dataset.name=folder"), tmp_path)
    one_line(error)
    kth = checkpoints["kth"]
    report = evaluate.evaluate(
        eval_config(checkpoints["mnist.pt"], f"dataset.root={kth}", "dataset.name=kth"), tmp_path
    )
    assert report["dataset"]["name"] == "kth" and report["num_clips"] == 3
    assert evaluate.evaluated(report["dataset"], "test") == f"kth test split ({kth})"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset.cond_frames=1"], "dataset.cond_frames=1: the checkpoint's model infers y_1 from 2 frames"),
        (["dataset.pred_frames=0"], "dataset.pred_frames=0: must be at least 1"),
        (
            ["dataset.pred_frames=5"],
            "dataset.cond_frames + dataset.pred_frames = 3 + 5 = 8 frames, but the fixed test clips of",
        ),
        (["dataset.channels=3"], "dataset.channels=3 but"),
    ],
)
def test_eval_names_the_dataset_key_before_any_clip_is_generated(checkpoints, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        evaluate.evaluate(eval_config(checkpoints["kth.pt"], *overrides), tmp_path / "eval")
    one_line(error)
    assert not (tmp_path / "eval").exists()


def test_eval_on_the_validation_split(checkpoints, tmp_path):
    """split=val always failed: no clip count was passed."""
    report = evaluate.evaluate(
        eval_config(checkpoints["kth.pt"], "split=val", "+dataset.val_length=7", "max_clips=3"), tmp_path
    )
    assert report["num_clips"] == 3


def test_a_folder_without_validation_videos_names_trainer_val_every(checkpoints):
    section = OmegaConf.merge(dataset_defaults("folder"), {"root": str(checkpoints["rgb"]), "val_length": 5})
    with pytest.raises(
        ValueError, match=r"has no val video: .* or train without validation \(trainer.val_every=null\)"
    ):
        build_dataset(section, "val", size=2)
    section.train_length = 12
    with pytest.raises(ValueError, match=r"dataset.train_length = 12 frames, but the longest train video of .* has 9"):
        build_dataset(section, "train")


def test_prepare_names_the_crop_or_the_files_when_no_test_video_is_left(six_videos, tmp_path):
    """It ended with 'no test video has at least N frames', as if the clip length were the cause."""
    with pytest.warns(RuntimeWarning), pytest.raises(SystemExit) as error:
        prepare_main(["folder", "--raw", str(six_videos), "--out", str(tmp_path / "a"), "--crop", "0,0,100,100"])
    message = str(error.value.code)
    assert message.startswith("srvp-prepare: error: no test video could be prepared: all 1 failed (e.g. ")
    assert message.endswith("frames are 80x48, smaller than the crop box (0, 0, 100, 100))") and "\n" not in message
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("v0.avi", "v1.avi"):
        (raw / name).symlink_to(six_videos / name)
    (raw / "broken.avi").write_bytes(b"not a video" * 100)
    (tmp_path / "splits.txt").write_text("train v0.avi\ntrain v1.avi\ntest broken.avi\n")
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match=r"all 1 failed \(e.g. .*broken.avi: "):
        prepare_folder(raw, tmp_path / "b", split_file=tmp_path / "splits.txt", **SHORT)


# ------------------------------------------------------------------------------------------ srvp-control
def test_episode_frames_follow_the_time_limits():
    dmc = envs.make_env("cartpole-swingup")
    assert envs.max_episode_frames(dmc) == 1000 // 8 + 1  # dm_control's 1000 steps, action repeat 8
    assert envs.max_episode_frames(envs.make_env("cartpole-swingup", max_episode_steps=5)) == 6
    assert envs.max_episode_frames(envs.make_gym_env("srvp-test/Flat-v0", action_repeat=2)) == 4  # ceil(5 / 2) + 1
    assert envs.max_episode_frames(envs.make_gym_env("srvp-test/Flat-v0", action_repeat=2, max_episode_steps=2)) == 3
    dmc.close()


@pytest.mark.parametrize(
    ("overrides", "channels", "seq_len", "message"),
    [
        (["env.size=32"], 3, 4, "env.size=32: the environment gives frames of shape (32, 32, 3) but the world model"),
        ([], 1, 4, "world_model.channels=1 but the environment gives frames of shape (64, 64, 3)"),
        ([], 3, 7, "loop.seq_len=7: episodes have at most 6 frames (the time limit, or loop.max_episode_steps)"),
    ],
)
def test_control_frames_and_windows_the_model_cannot_take_are_named_before_any_episode(
    tmp_path, overrides, channels, seq_len, message
):
    """They failed after the seed episodes (a frame-shape error) or after collection (no window to sample)."""
    cfg = control_config(tmp_path, *overrides)
    env = control_loop.make_env(cfg.env, cfg.loop.max_episode_steps)
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        check_environment(
            env.observation_space.shape, episode_frames=envs.max_episode_frames(env), channels=channels, seq_len=seq_len
        )
    one_line(error)
    env.close()
