"""Run configs as plain data: flattening, what a resumed run changed, and config.yaml with its history."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from srvp.common.files import atomic_write


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {"a.b.c": leaf}; an empty mapping is a leaf."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(saved: Mapping[str, Any], current: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """'key: saved -> current' for every leaf that differs between two run configs (added or removed keys
    included), except keys under a prefix of `ignore` (bookkeeping such as run_dir or max_steps)."""
    old, new = flatten(saved), flatten(current)
    prefixes = tuple(ignore)
    return [
        f"{key}: {old.get(key, '(absent)')} -> {new.get(key, '(absent)')}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key) and not key.startswith(prefixes)
    ]


def write_run_config(run_dir: Path, config_yaml: str, resumed_step: int | None, changes: list[str]) -> Path | None:
    """Write run_dir/config.yaml; when a resumed run changed settings, first keep the config the steps so far
    ran with as config.until_step_<N>.yaml (returned), so the run directory records what ran when."""
    path, kept = run_dir / "config.yaml", None
    if resumed_step is not None and changes and path.exists():
        kept = path.replace(run_dir / f"config.until_step_{resumed_step}.yaml")
    atomic_write(path, lambda file: file.write(config_yaml.encode()))
    return kept


def check_overlay(cfg: Mapping[str, Any], entry_point: str) -> None:
    """Refuse a debug/experiment overlay written for another entry point: each sets `overlay_for`, and e.g.
    `srvp-train debug=control_tiny` would otherwise start the full-size job with stray keys."""
    owner = cfg.get("overlay_for")
    if owner is not None and owner != entry_point:
        raise ValueError(f"overlay_for={owner}: the debug/experiment overlay given is for {owner}, not {entry_point}")


def read_number(cfg: Mapping[str, Any], key: str, kind: type = int, minimum: float | None = None) -> Any:
    """The value at dotted `key` of `cfg` as `kind` (int or float), at least `minimum`; a one-line error
    naming the key otherwise (a raw `int('abc')` error would not say which setting was wrong)."""
    value: Any = cfg
    for part in key.split("."):
        value = value[part]
    try:
        if isinstance(value, bool) or value is None:
            raise ValueError
        number = kind(value)
        if kind is int and number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"{key}={value!r}: expected {'an integer' if kind is int else 'a number'}") from None
    if minimum is not None and not number >= minimum:
        raise ValueError(f"{key}={value!r}: must be at least {minimum}")
    return number


def check_clip_length(cfg: Mapping[str, Any], key: str, model: str) -> None:
    """The clip length at dotted `key` must hold the frames y_1 and w are inferred from (model section
    `model`'s y1_frames and content_frames) and at least one transition; one line naming the key otherwise."""
    needed = max(2, int(cfg[model]["y1_frames"]), int(cfg[model]["content_frames"]))
    if read_number(cfg, key, int) < needed:
        raise ValueError(
            f"{key}={read_number(cfg, key, int)}: must be at least {needed} ({model}.y1_frames and "
            f"{model}.content_frames frames, and at least 2)"
        )


def check_required(cfg: DictConfig) -> None:
    """Refuse a config with required values (`???`) left unset, naming them in one line, before anything runs
    (read later, each would end in an omegaconf traceback). A `???` in a node with a `_target_` is an argument
    given at instantiation (e.g. the planner's action_dim), not one the user gives."""

    def given_at_instantiation(key: str) -> bool:
        parent = OmegaConf.select(cfg, key.rpartition(".")[0]) if "." in key else cfg
        return isinstance(parent, DictConfig) and "_target_" in parent

    missing = sorted(key for key in OmegaConf.missing_keys(cfg) if not given_at_instantiation(key))
    if missing:
        raise ValueError(f"{', '.join(missing)} required but not given: add {missing[0]}=... to the command")
