"""DDP training on CPU: two gloo processes train a tiny SRVP on different draws and end with identical weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from torch.utils.data import Dataset

import video_pred.train  # noqa: F401  (registers the model schema in hydra's ConfigStore)
from video_pred.data.stream import training_loader
from video_pred.distributed import DistributedContext, context_from_env, per_rank_batch, setup, teardown
from video_pred.logger import RunLogger
from video_pred.trainer import Trainer
from worldmodel import SRVP, SRVPConfig
from worldmodel.runtime import seed_everything

WORLD_SIZE = 2
GLOBAL_BATCH = 4
STEPS = 3
CLIP_SHAPE = (6, 1, 64, 64)


class IndexedClips(Dataset):
    """Endless draw-indexed clips: clip i is a pure function of i, like the real training streams."""

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.randint(0, 256, CLIP_SHAPE, dtype=torch.uint8, generator=torch.Generator().manual_seed(index))


def flat_weights(model: torch.nn.Module) -> torch.Tensor:
    """All parameters as one vector (BatchNorm running statistics are buffers: each rank updates them on its
    own batch, and DDP re-broadcasts rank 0's at the start of every forward)."""
    return torch.cat([parameter.detach().flatten() for parameter in model.parameters()])


def _rank_worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE),
    )
    torch.set_num_threads(1)
    context = context_from_env()
    device = setup("cpu", context)
    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["debug=tiny", f"trainer.max_steps={STEPS}", "trainer.video_every=1000", "logger.enabled=false",
                       f"run_dir={out_dir}/run", f"trainer.batch_size={GLOBAL_BATCH}"],
        )
    # Each rank builds different weights: DistributedDataParallel must broadcast rank 0's.
    seed_everything(100 + rank)
    built = flat_weights(SRVP(SRVPConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))))
    seed_everything(100 + rank)
    trainer = Trainer(cfg, device, Path(cfg.run_dir), context)
    initial = flat_weights(trainer.model)
    batches = training_loader(
        IndexedClips(), per_rank_batch(GLOBAL_BATCH, WORLD_SIZE), 0, 0, seed=0, rank=rank, world_size=WORLD_SIZE
    )
    logger = RunLogger(cfg.run_dir, enabled=False) if context.is_main else None
    preview = torch.stack([IndexedClips()[index] for index in range(2)])
    trainer.fit(batches, preview, None, logger)
    weights = {"built": built, "initial": initial, "final": flat_weights(trainer.model)}
    torch.save(weights, Path(out_dir) / f"rank{rank}.pt")
    teardown(context)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(120)
def test_two_gloo_ranks_end_with_identical_trained_weights(tmp_path):
    mp.start_processes(_rank_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    assert not torch.equal(ranks[0]["built"], ranks[1]["built"])  # the test can tell ranks apart
    assert torch.equal(ranks[1]["initial"], ranks[0]["built"])  # rank 0's weights were broadcast
    assert torch.equal(ranks[0]["final"], ranks[1]["final"])
    assert not torch.allclose(ranks[0]["final"], ranks[0]["initial"])
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()  # rank 0 wrote its checkpoint


def test_global_batch_must_split_between_ranks():
    assert per_rank_batch(8, 4) == 2
    with pytest.raises(ValueError, match="trainer.batch_size=6 does not split over 4"):
        per_rank_batch(6, 4)


def test_single_process_without_torchrun_variables(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert context_from_env() == DistributedContext()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2 is outside WORLD_SIZE=2"):
        context_from_env()
