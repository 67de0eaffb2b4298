"""Datasets of the four benchmarks and of a user's own prepared videos (`folder`) behind one factory: every
split yields uint8 clips (T, C, 64, 64).

Training splits are endless streams of random clips, item i being a pure function of (seed, i), so a
resumed run sees the same batches; `val` and `test` splits are fixed clips of cond_frames + pred_frames.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from srvp.video_pred.data.mnist import load_mnist
from srvp.video_pred.data.prepared import PreparedVideos, load_meta
from srvp.video_pred.data.smmnist import (
    FixedClips,
    StochasticMovingMNIST,
    build_test_set,
    load_official_test_set,
    load_or_build_test_set,
    split_digits,
)
from srvp.worldmodel import SRVPConfig

MNIST_DATASETS = ("smmnist", "mmnist_deterministic")
PREPARED_DATASETS = ("kth", "human36m", "bair", "folder")
SPLITS = ("train", "val", "test")
VALIDATION_SEED = 7
"""Seed of the fixed validation clips (independent of the run seed, so runs are compared on the same clips)."""


def dataset_defaults(name: str) -> DictConfig:
    """The `dataset` section of configs/dataset/<name>.yaml, following its defaults list (e.g. a variant of
    smmnist), as shipped with the package."""
    path = files("srvp.configs") / "dataset" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"dataset.name={name!r}: expected one of {MNIST_DATASETS + PREPARED_DATASETS}")
    content = OmegaConf.load(str(path))
    bases = [dataset_defaults(entry) for entry in content.get("defaults", []) if entry != "_self_"]
    return OmegaConf.merge(*bases, content.get("dataset", {}))


def dataset_section(trained: dict[str, Any], overrides: DictConfig | dict[str, Any]) -> DictConfig:
    """Dataset section to evaluate a checkpoint on: the dataset's shipped defaults, then the section the
    checkpoint was trained with, then the user's non-null overrides (e.g. dataset.root=/data/kth)."""
    given = {
        key: value for key, value in OmegaConf.to_container(OmegaConf.create(overrides)).items() if value is not None
    }
    name = given.get("name") or (trained or {}).get("name")
    if name is None:
        raise ValueError("the checkpoint's config has no dataset section; give it with dataset.name=... etc.")
    defaults = dataset_defaults(name)
    # A key the dataset does not read would be accepted and ignored: dataset.root=<a prepared folder> on a Moving
    # MNIST checkpoint scored Moving MNIST and recorded the root beside it.
    known = set(defaults) | set(trained or {}) | (PREPARED_OPTIONAL_KEYS if name in PREPARED_DATASETS else set())
    unused = sorted(set(given) - known)
    if unused:
        key = unused[0]
        hint = ""
        if key == "root":
            prepared = _prepared_name(given[key])
            hint = f": to evaluate on a prepared folder, give its dataset too (dataset.name={prepared})"
        source = "the dataset given" if "name" in given else "the dataset the checkpoint was trained on"
        raise ValueError(f"dataset.{key}={given[key]} is not used by {name} ({source}){hint}")
    return OmegaConf.merge(defaults, trained or {}, given)


PREPARED_OPTIONAL_KEYS = {"channels", "val_length"}
"""Keys a prepared dataset reads when present although its config file need not set them."""


def _prepared_name(root: str) -> str:
    """The dataset a prepared folder holds (its meta.json), or a placeholder naming the choices."""
    try:
        return str(load_meta(root)["dataset"])
    except (OSError, ValueError, KeyError):
        return "|".join(PREPARED_DATASETS)


def build_dataset(dataset: DictConfig, split: str, seed: int = 0, size: int | None = None) -> Dataset:
    """The `split` ('train', 'val' or 'test') of the dataset configured by `dataset` (configs/dataset/*);
    `size` is the number of fixed validation clips (the trainer's `val_clips`), required for 'val'."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {SPLITS}")
    if split == "val" and (size is None or size < 1):
        raise ValueError(f"the validation split needs a positive number of clips, got {size}")
    test_length = int(dataset.cond_frames) + int(dataset.pred_frames)
    if dataset.name in MNIST_DATASETS:
        return _moving_mnist(dataset, split, seed, test_length, size)
    if dataset.name in PREPARED_DATASETS:
        if OmegaConf.is_missing(dataset, "root") or dataset.root is None:
            raise ValueError(f"dataset.root is required for {dataset.name}: the folder written by `srvp-prepare`")
        if dataset.get("channels") is not None:
            _check_channels(dataset.root, int(dataset.channels))
        _check_prepared_lengths(dataset, split)
        if split == "train":
            return PreparedVideos(
                dataset.root, "train", int(dataset.train_length), epoch_size=2**62, seed=seed, dataset=dataset.name
            )
        if split == "val":
            # The official KTH validation uses 30-frame clips (10 + 20), shorter than its 40-frame test clips.
            val_length = int(dataset.get("val_length") or test_length)
            return PreparedVideos(
                dataset.root, "val", val_length, epoch_size=size, seed=VALIDATION_SEED, dataset=dataset.name
            )
        return PreparedVideos(dataset.root, "test", test_length, fixed_clips=True, dataset=dataset.name)
    raise ValueError(f"dataset.name={dataset.name!r}: expected one of {MNIST_DATASETS + PREPARED_DATASETS}")


def _check_prepared_lengths(dataset: DictConfig, split: str) -> None:
    """One line naming the dataset keys when the clips they ask for are longer than the prepared folder's videos
    (or fixed test clips), before any clip is read."""
    meta = load_meta(dataset.root, dataset.name)
    root, cond, pred = dataset.root, int(dataset.cond_frames), int(dataset.pred_frames)
    if split == "test":
        clip_length = int(meta["test_clips"]["length"])
        if cond + pred > clip_length:
            raise ValueError(
                f"dataset.cond_frames + dataset.pred_frames = {cond} + {pred} = {cond + pred} frames, but the fixed "
                f"test clips of {root} have {clip_length} (srvp-prepare --test-clip-length): lower them"
            )
        return
    counts = meta["splits"].get(split, {})
    if split == "train":
        length, key = int(dataset.train_length), "dataset.train_length"
    elif dataset.get("val_length"):
        length, key = int(dataset.val_length), "dataset.val_length"
    else:
        length, key = cond + pred, "dataset.cond_frames + dataset.pred_frames"
    if any(frames >= length for frames in counts.values()):
        return
    without_validation = " or train without validation (trainer.val_every=null)" if split == "val" else ""
    if not counts:
        remedy = "prepare it with a positive --val-fraction" if split == "val" else "prepare it from more videos"
        raise ValueError(f"{root} has no {split} video: {remedy}{without_validation}")
    raise ValueError(
        f"{key} = {length} frames, but the longest {split} video of {root} has {max(counts.values())}: lower "
        f"{key}{without_validation}"
    )


def check_model_fits(dataset: DictConfig, config: SRVPConfig) -> None:
    """Refuse, before any clip is generated, a dataset section the checkpoint's model cannot run on: too few
    conditioning frames to infer y_1 and the content, no frame to predict, or frames of other channels."""
    cond, pred = int(dataset.cond_frames), int(dataset.pred_frames)
    needed = max(config.y1_frames, config.content_frames if config.use_content else 1)
    if cond < needed:
        raise ValueError(
            f"dataset.cond_frames={cond}: the checkpoint's model infers y_1 from {config.y1_frames} frames and its "
            f"content from {config.content_frames}: give dataset.cond_frames >= {needed}"
        )
    if pred < 1:
        raise ValueError(f"dataset.pred_frames={pred}: must be at least 1")
    if dataset.name in MNIST_DATASETS:
        stored, where = 1, dataset.name
    elif OmegaConf.is_missing(dataset, "root") or dataset.root is None:
        return  # build_dataset names the missing root
    else:
        stored, where = int(load_meta(dataset.root)["channels"]), dataset.root
    if stored != config.channels:
        wanted = "grey videos (srvp-prepare folder --grey)" if config.channels == 1 else "RGB videos (without --grey)"
        raise ValueError(
            f"the checkpoint's model takes {config.channels}-channel frames but {where} holds {stored}-channel "
            f"videos: evaluate it on {wanted}"
        )


def _check_channels(root: str, channels: int) -> None:
    """One line when a prepared folder's colour does not match the configured one (`folder`: --grey or not)."""
    stored = int(load_meta(root)["channels"])
    if stored != channels:
        raise ValueError(
            f"dataset.channels={channels} but {root} holds {stored}-channel videos: set dataset.channels={stored}"
        )


def _moving_mnist(dataset: DictConfig, split: str, seed: int, test_length: int, val_size: int | None) -> Dataset:
    """Moving MNIST: training/validation digits are a fixed 95/5 split of MNIST train; test uses MNIST test."""
    cache_dir = Path(dataset.cache_dir).expanduser()
    deterministic, num_digits = bool(dataset.deterministic), int(dataset.num_digits)
    if split == "test":
        if dataset.get("test_file"):
            return FixedClips(load_official_test_set(dataset.test_file, test_length))
        digits, _ = load_mnist("test", dataset.mnist_dir, cache_dir, dataset.verify_md5)
        name = f"{dataset.name}_test_{num_digits}digits_{dataset.test_size}x{test_length}.npy"
        clips = load_or_build_test_set(
            cache_dir / name, digits, int(dataset.test_size), test_length, deterministic, num_digits=num_digits
        )
        return FixedClips(clips)
    train_digits, val_digits = split_digits(load_mnist("train", dataset.mnist_dir, cache_dir, dataset.verify_md5)[0])
    if split == "val":
        return FixedClips(build_test_set(val_digits, val_size, test_length, deterministic, VALIDATION_SEED, num_digits))
    return StochasticMovingMNIST(
        train_digits, num_digits, int(dataset.train_length), deterministic, int(dataset.epoch_size), seed
    )
