"""Run configs: as plain data (flattening, what a resumed run changed, config.yaml with its history), the checks
between sections that no schema can express, and hydra's own errors in one line."""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import os
import re
import sys
import typing
from collections.abc import Callable, Iterable, Mapping
from numbers import Integral
from pathlib import Path
from typing import Any

from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

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
    included, except a key absent on one side and null on the other: an optional setting a config written before
    it existed left unset), except keys under a prefix of `ignore` (bookkeeping such as run_dir or max_steps)."""
    old, new = flatten(saved), flatten(current)
    prefixes = tuple(ignore)
    return [
        f"{key}: {old.get(key, '(absent)')} -> {new.get(key, '(absent)')}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key) and not key.startswith(prefixes)
    ]


def moved_key(key: str, moved: Mapping[str, str]) -> tuple[str, str] | None:
    """When dotted `key` lies under a key that `moved` maps to its new place (old -> new): that old key and
    `key`'s spelling today (trainer.optimizer.lr -> ('trainer.optimizer', 'optimizer.lr')); else None."""
    for old, new in moved.items():
        if key == old or key.startswith(f"{old}."):
            return old, new + key[len(old) :]
    return None


def upgrade_saved_config(config: Mapping[str, Any], moved: Mapping[str, str]) -> dict[str, Any]:
    """A run config saved before keys moved (old -> new, both dotted), with each moved section at its new place,
    so that comparing it with today's config reports only what the user changed."""
    upgraded = copy.deepcopy(dict(config))
    for old, new in moved.items():
        *old_parents, old_name = old.split(".")
        *new_parents, new_name = new.split(".")
        source = upgraded
        for part in old_parents:
            source = source.get(part) if isinstance(source, dict) else None
        if not isinstance(source, dict) or old_name not in source:
            continue
        target = upgraded
        for part in new_parents:
            target = target.setdefault(part, {})
        target.setdefault(new_name, source.pop(old_name))
    return upgraded


def write_run_config(
    run_dir: Path, config_yaml: str, resumed_step: int | None, changes: list[str], step_name: str = "step"
) -> None:
    """Write run_dir/config.yaml. When a resumed run changed settings, first keep the config the steps so far ran
    with as config.until_step_<N>.yaml, so the run directory records what ran when, and print the changes
    ('settings changed from <step_name> N on ...')."""
    path, kept = run_dir / "config.yaml", None
    if resumed_step is not None and changes and path.exists():
        kept = path.replace(run_dir / f"config.until_step_{resumed_step}.yaml")
    atomic_write(path, lambda file: file.write(config_yaml.encode()))
    if changes:
        before = f"; the settings before it are in {kept.name}" if kept else ""
        print(f"settings changed from {step_name} {resumed_step} on (config.yaml{before}): " + "; ".join(changes))


def check_overlay(cfg: Mapping[str, Any], entry_point: str) -> None:
    """Refuse a debug/experiment overlay written for another entry point: each sets `overlay_for`, and e.g.
    `srvp-train debug=control_tiny` would otherwise start the full-size job with stray keys."""
    owner = cfg.get("overlay_for")
    if owner is not None and owner != entry_point:
        raise ValueError(f"overlay_for={owner}: the debug/experiment overlay given is for {owner}, not {entry_point}")


def check_integer(key: str, value: Any, minimum: int) -> int:
    """`value` of a section without a schema (the dataset's) as an integer of at least `minimum`; a one-line
    error naming `key` otherwise."""
    if not isinstance(value, Integral) or isinstance(value, bool):
        raise ValueError(f"{key}={value!r}: expected an integer")
    if value < minimum:
        raise ValueError(f"{key}={value}: must be at least {minimum}")
    return int(value)


def check_clip_length(key: str, length: Any, model: Any, section: str) -> None:
    """A clip of `length` frames (the setting `key`) must hold the frames the model (`section`: its y1_frames and
    content_frames) infers y_1 and w from, and at least one transition; one line naming the key otherwise."""
    needed = max(2, model.y1_frames, model.content_frames)
    if check_integer(key, length, 1) < needed:
        raise ValueError(
            f"{key}={length}: must be at least {needed} ({section}.y1_frames and {section}.content_frames frames, "
            "and at least 2)"
        )


def check_required(cfg: DictConfig) -> None:
    """Refuse a config with required values (`???`) left unset, naming them in one line, before anything runs
    (read later, each would end in an omegaconf traceback)."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ValueError(f"{', '.join(missing)} required but not given: add {missing[0]}=... to the command")


EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
"""Declared type of a schema field -> what a one-line error says the value should have been."""


def _expected(error: OmegaConfBaseException) -> str | None:
    """What the schema field `error` is about expects ('an integer', 'a number or null'), when it says."""
    if not dataclasses.is_dataclass(error.object_type) or error.key is None:
        return None
    declared = typing.get_type_hints(error.object_type).get(str(error.key))
    kinds = [kind for kind in typing.get_args(declared) or (declared,) if kind is not type(None)]
    if len(kinds) != 1 or kinds[0] not in EXPECTED:
        return None
    return EXPECTED[kinds[0]] + (" or null" if type(None) in typing.get_args(declared) else "")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)


def hydra_error(error: HydraException, moved: Mapping[str, str]) -> str:
    """One line for an error hydra raised while composing the config (from an override or a YAML file) or
    instantiating a node: a value of the wrong type (`loop.batch_size='two': expected an integer`), an unknown key
    with the settings there are, a moved key with its new place (old -> new in `moved`), an unknown group option
    with the options there are; otherwise hydra's first line and its cause's."""
    text, cause = str(error), error.__cause__
    if not isinstance(cause, OmegaConfBaseException):
        cause = None
    written = re.search(r"full_key: (\S+)", text)
    key = cause.full_key if cause is not None and cause.full_key else written.group(1) if written else None
    if isinstance(error, OverrideParseException):
        return f"{error.override}: {_first_line(text)}"
    if key is None:
        options = re.search(r"Available options in '([^']+)':\n((?:\t.*\n?)+)", text)
        if options:
            names = ", ".join(line.strip() for line in options.group(2).splitlines())
            return f"{_first_line(text)} (options in {options.group(1)}: {names})"
        return _first_line(text) + (f": {_first_line(str(error.__cause__))}" if error.__cause__ is not None else "")
    override = re.search(r"use \+(\S+?)=(\S*)", text)
    value = override.group(2) if override else None
    key = override.group(1) if override else key
    given = key if value is None else f"{key}={value}"
    source = re.match(r"In '([^']+)': ", text)  # a YAML file of the config, rather than the command line
    where = f"{source.group(1)}: " if source else ""
    renamed = moved_key(key, moved)
    if renamed is not None:
        old, new = renamed
        if value is None:  # a key in a YAML file
            return f"{where}{key} is now {new}"
        return f"{given}: {old} is now {moved[old]}: write {new}={value}"
    if isinstance(cause, ValidationError) and _expected(cause):
        return f"{where}{cause.full_key}={cause.value!r}: expected {_expected(cause)}"
    if isinstance(cause, ConfigKeyError | ConfigAttributeError):
        parent, _, name = cause.full_key.rpartition(".")
        if dataclasses.is_dataclass(cause.object_type):
            known = ", ".join(item.name for item in dataclasses.fields(cause.object_type))
            return f"{where}{given}: no setting {cause.full_key} (the settings of {parent or 'the config'}: {known})"
        return f"{where}{given}: {parent or 'the config'} has no key {name} (add one with +{given})"
    detail = cause.msg if cause is not None else text.partition("\n")[2]
    return f"{where}{given}: {_first_line(detail)}"


def foreign_overlay(arguments: list[str], entry_point: str) -> str | None:
    """`check_overlay`'s error for a debug=/experiment= overlay of srvp's configs named in `arguments` and written
    for another entry point, else None: composing it fails on the keys it adds, an error that hides this cause."""
    for argument in arguments:
        group, _, name = argument.lstrip("+").partition("=")
        path = importlib.resources.files("srvp.configs") / group / f"{name}.yaml"
        if group in ("debug", "experiment") and name and path.is_file():
            try:
                check_overlay(OmegaConf.create(path.read_text()), entry_point)
            except ValueError as error:
                return str(error)
    return None


def run_hydra_main(program: str, hydra_main: Callable[[], Any], moved: Mapping[str, str] | None = None) -> None:
    """Call `hydra_main` (a `@hydra.main` function) with the errors hydra raises itself (composing the config,
    parsing an override, instantiating a `_target_`) ending in the one line `<program>: error: ...`, exit status
    1, like every other user error of the entry points. HYDRA_FULL_ERROR=1 keeps hydra's full report."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        hydra_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # hydra then raises its errors instead of printing them itself
    try:
        hydra_main()
    except HydraException as error:
        reason = foreign_overlay(sys.argv[1:], program) or hydra_error(error, moved or {})
        sys.exit(f"{program}: error: {reason}")
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)
