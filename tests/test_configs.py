"""Every hydra config composes and instantiates: the training groups, every dataset overlay and variant."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from srvp import configs
from srvp.common.settings import RunConfig
from srvp.video_pred.config import TrainConfig, TrainerConfig, check_train_config
from srvp.worldmodel import SRVP, SRVPConfig

CONFIG_ROOT = Path(configs.__file__).parent
DATASETS = sorted(path.stem for path in (CONFIG_ROOT / "dataset").glob("*.yaml"))

PAPER = {
    # name: (channels, arch, skip, y_dim, k, dt, nu (a variance), beta, batch, steps, decay, train_length, cond, pred)
    "smmnist": (1, "dcgan", False, 20, 5, 1.0, 1.0, 2.0, 128, 1_000_000, 100_000, 15, 5, 20),
    "mmnist_deterministic": (1, "dcgan", False, 20, 5, 1.0, 1.0, 2.0, 128, 800_000, 100_000, 15, 5, 95),
    "kth": (1, "vgg", True, 50, 3, 0.5, 0.04, 1.0, 100, 150_000, 50_000, 20, 10, 30),
    "human36m": (3, "vgg", True, 50, 3, 0.5, 0.04, 1.0, 100, 325_000, 25_000, 16, 8, 45),
    "bair": (3, "vgg", True, 50, 2, 0.5, 0.5041, 1.0, 192, 1_000_000, 500_000, 12, 2, 28),  # official std 0.71 squared
}


@pytest.fixture(autouse=True)
def _hydra():
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


def compose_train(*overrides: str):
    return compose(config_name="train", overrides=list(overrides), return_hydra_config=False)


def dataset_overrides(name: str) -> list[str]:
    """Prepared datasets need their (here unused) root folder."""
    return [f"dataset={name}"] + (["dataset.root=/nonexistent"] if name in ("kth", "human36m", "bair") else [])


def test_every_paper_dataset_has_a_config():
    assert set(PAPER) <= set(DATASETS)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_dataset_overlay_sets_the_paper_hyper_parameters(name):
    cfg = compose_train(*dataset_overrides(name))
    channels, arch, skip, y_dim, k, dt, nu, beta, batch, steps, decay, train_length, cond, pred = PAPER[name]
    model = SRVPConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))
    assert (model.channels, model.arch, model.skip, model.y_dim, model.z_dim) == (channels, arch, skip, y_dim, y_dim)
    assert (model.content_frames, model.y1_frames, model.dt, model.nu, model.beta) == (k, k, dt, nu, beta)
    assert model.f_gain == (1.2 if name in ("kth", "human36m") else 1.41)
    assert (cfg.trainer.batch_size, cfg.trainer.steps, cfg.trainer.lr_decay_steps) == (batch, steps, decay)
    assert (cfg.dataset.train_length, cfg.dataset.cond_frames, cfg.dataset.pred_frames) == (train_length, cond, pred)
    assert cfg.optimizer.lr == 3e-4 and list(cfg.optimizer.betas) == [0.9, 0.999] and cfg.grad_clip is None


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("overlay", ["debug=tiny", "experiment=cpu_mmnist"])
def test_every_dataset_and_overlay_instantiates_model_and_optimizer(name, overlay):
    cfg = compose_train(*dataset_overrides(name), overlay)
    check_train_config(cfg)
    model = SRVP(SRVPConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True)))
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["lr"] == cfg.optimizer.lr


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.transition=mlp"],
        ["model.transition=gru"],
        ["model.stochastic=false"],
        ["model.use_content=false"],
        ["model.action_dim=3", "+model.heads={reward: 1}"],
    ],
)
def test_variants_are_config_values(overrides):
    cfg = compose_train("debug=tiny", *overrides)
    model = SRVP(SRVPConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True)))
    frames = torch.rand(2, 6, 1, 64, 64)
    actions = torch.rand(2, 5, 3) if cfg.model.action_dim else None
    assert torch.isfinite(model.elbo(frames, actions).loss)


def test_both_entry_points_share_the_run_settings_at_the_top_level():
    """srvp-train and srvp-control read the same keys for the same things: the run folder, seeding, device,
    precision, the optimiser and gradient clipping; the trainer's YAML holds no value of its own."""
    train = compose_train()
    control = compose("control", overrides=["run_dir=unused"])
    shared = {item.name for item in dataclasses.fields(RunConfig)}
    assert shared <= set(train) and shared <= set(control)
    assert set(train) == {item.name for item in dataclasses.fields(TrainConfig)}
    assert "optimizer" not in train.trainer and (train.grad_clip, control.grad_clip) == (None, 1000.0)
    assert OmegaConf.to_object(train.trainer) == TrainerConfig(batch_size=128, steps=1_000_000, lr_decay_steps=100_000)
    assert OmegaConf.load(CONFIG_ROOT / "trainer" / "default.yaml") == {}


def test_schema_rejects_a_wrong_type():
    with pytest.raises(Exception, match="y_dim"):
        compose_train("model.y_dim=many")


def test_bad_model_value_names_the_key():
    cfg = compose_train("model.transition=lstm")
    with pytest.raises(ValueError, match="model.transition"):
        SRVPConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))
