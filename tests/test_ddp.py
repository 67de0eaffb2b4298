"""DDP training on CPU: two gloo processes train a tiny SRVP on different draws and end with identical weights;
a SIGTERM seen by one rank stops both at the same step, and the resumed run is bit-identical to an
uninterrupted one (every rank restores its own RNG states)."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from srvp.common.logger import RunLogger
from srvp.common.runtime import seed_everything
from srvp.video_pred.data.stream import training_loader
from srvp.video_pred.distributed import DistributedContext, context_from_env, per_rank_batch, setup, teardown
from srvp.video_pred.trainer import Trainer
from srvp.worldmodel import SRVP, SRVPConfig

WORLD_SIZE = 2
GLOBAL_BATCH = 4
STEPS = 4
CLIP_SHAPE = (6, 1, 64, 64)


class IndexedClips(Dataset):
    """Endless draw-indexed clips: clip i is a pure function of i, like the real training streams."""

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.randint(0, 256, CLIP_SHAPE, dtype=torch.uint8, generator=torch.Generator().manual_seed(index))


def flat_weights(model: torch.nn.Module) -> torch.Tensor:
    """All parameters as one vector (BatchNorm running statistics are buffers: each rank updates them on its
    own batch, and DDP re-broadcasts rank 0's at the start of every forward)."""
    return torch.cat([parameter.detach().flatten() for parameter in model.parameters()])


def terminated_at(batches: Iterator[torch.Tensor], draw: int) -> Iterator[torch.Tensor]:
    """`batches`, sending SIGTERM to this process when batch number `draw` (from 1) is taken."""
    for index, batch in enumerate(batches, start=1):
        if index == draw:
            os.kill(os.getpid(), signal.SIGTERM)
        yield batch


def rank_setup(rank: int, port: int, run_dir: str, *overrides: str) -> tuple[DistributedContext, torch.device, Any]:
    """Join the gloo group as `rank` (one thread) and compose debug=tiny's config with `overrides`."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE),
    )
    torch.set_num_threads(1)
    context = context_from_env()
    device = setup("cpu", context)
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                "debug=tiny",
                "trainer.video_every=1000",
                "logger.enabled=false",
                f"run_dir={run_dir}",
                f"trainer.batch_size={GLOBAL_BATCH}",
                *overrides,
            ],
        )
    return context, device, cfg


def _rank_worker(rank: int, port: int, run_dir: str, max_steps: int, sigterm_rank1_at: int | None) -> None:
    context, device, cfg = rank_setup(rank, port, run_dir, f"trainer.max_steps={max_steps}")
    # Each rank builds different weights: DistributedDataParallel must broadcast rank 0's.
    seed_everything(100 + rank)
    built = flat_weights(SRVP(SRVPConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))))
    seed_everything(100 + rank)
    trainer = Trainer(cfg, device, Path(run_dir), context)
    initial = flat_weights(trainer.model)
    resume_from = trainer.resume_path()
    if resume_from is not None:
        trainer.load(resume_from)
    batches = training_loader(
        IndexedClips(),
        batch_size=per_rank_batch(GLOBAL_BATCH, WORLD_SIZE),
        start_step=trainer.step,
        num_workers=0,
        seed=0,
        rank=rank,
        world_size=WORLD_SIZE,
    )
    if sigterm_rank1_at is not None and rank == 1:
        batches = terminated_at(batches, sigterm_rank1_at)
    logger = RunLogger(run_dir, enabled=False) if context.is_main else None
    preview = torch.stack([IndexedClips()[index] for index in range(2)])
    trainer.fit(batches, preview_clips=preview, val_clips=None, logger=logger)
    weights = {"built": built, "initial": initial, "final": flat_weights(trainer.model), "step": trainer.step}
    torch.save(weights, Path(run_dir) / f"rank{rank}.pt")
    teardown(context)


def _budget_worker(rank: int, port: int, run_dir: str) -> None:
    budget = ("trainer.time_budget_s=4", "trainer.steps=150", "trainer.lr_decay_steps=50", "trainer.ckpt_every=1000")
    context, device, cfg = rank_setup(rank, port, run_dir, *budget)
    trainer = Trainer(cfg, device, Path(run_dir), context)
    batches = training_loader(
        IndexedClips(),
        batch_size=per_rank_batch(GLOBAL_BATCH, WORLD_SIZE),
        start_step=0,
        num_workers=0,
        seed=0,
        rank=rank,
        world_size=WORLD_SIZE,
    )
    logger = RunLogger(run_dir, enabled=False) if context.is_main else None
    trainer.fit(batches, preview_clips=torch.stack([IndexedClips()[0]]), val_clips=None, logger=logger)
    timed = {"seconds": trainer.seconds_per_step, "counts": (cfg.trainer.steps, cfg.trainer.lr_decay_steps)}
    torch.save({**timed, "step": trainer.step}, Path(run_dir) / f"rank{rank}.pt")
    teardown(context)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_two_ranks(run_dir: Path, max_steps: int, sigterm_rank1_at: int | None = None) -> list[dict]:
    """Run both gloo ranks on `run_dir` (resuming from its last.pt when there); what each ended with."""
    args = (free_port(), str(run_dir), max_steps, sigterm_rank1_at)
    mp.start_processes(_rank_worker, args=args, nprocs=WORLD_SIZE, start_method="spawn")
    return [torch.load(run_dir / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return train_two_ranks(tmp_path_factory.mktemp("ddp") / "run", STEPS)


@pytest.mark.timeout(120)
def test_two_gloo_ranks_end_with_identical_trained_weights(uninterrupted):
    ranks = uninterrupted
    assert not torch.equal(ranks[0]["built"], ranks[1]["built"])  # the test can tell ranks apart
    assert torch.equal(ranks[1]["initial"], ranks[0]["built"])  # rank 0's weights were broadcast
    assert torch.equal(ranks[0]["final"], ranks[1]["final"])
    assert not torch.allclose(ranks[0]["final"], ranks[0]["initial"])
    assert ranks[0]["step"] == ranks[1]["step"] == STEPS


@pytest.mark.timeout(240)
def test_sigterm_on_one_rank_stops_both_and_the_resumed_run_equals_the_uninterrupted_one(tmp_path, uninterrupted):
    stopped = train_two_ranks(tmp_path / "run", STEPS, sigterm_rank1_at=2)
    assert stopped[0]["step"] == stopped[1]["step"] == 2  # rank 0 never saw the signal but stopped with rank 1
    assert torch.equal(stopped[0]["final"], stopped[1]["final"])
    payload = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert payload["step"] == 2 and len(payload["extra"]["rank_rng"]) == WORLD_SIZE
    resumed = train_two_ranks(tmp_path / "run", STEPS)
    # Each rank resumed its own noise (posterior samples, content frames) and its data draws: bit-identical.
    assert resumed[0]["step"] == resumed[1]["step"] == STEPS
    assert torch.equal(resumed[0]["final"], uninterrupted[0]["final"])


@pytest.mark.timeout(120)
def test_a_time_budget_gives_every_rank_the_same_step_counts(tmp_path):
    # Each rank times its own steps; they must agree on one schedule (the slowest rank's), or the ranks would
    # stop at different steps and the last all-reduce would wait forever.
    mp.start_processes(_budget_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    assert ranks[0]["seconds"] == ranks[1]["seconds"] > 0 and ranks[0]["counts"] == ranks[1]["counts"]
    assert ranks[0]["step"] == ranks[1]["step"] == sum(ranks[0]["counts"]) == max(150, int(4 / ranks[0]["seconds"]))


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
