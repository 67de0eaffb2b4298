"""Run configs as plain data: flattening, what a resumed run changed, and config.yaml with its history."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from common.files import atomic_write


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
