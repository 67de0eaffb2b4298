"""Optional parts of srvp and the packages each needs: a missing one is a one-line error saying what to install."""

from __future__ import annotations

import importlib.util
import sys

EXTRAS = {
    "video": ("av", "google_crc32c"),
    "control": ("gymnasium", "dm_control", "mujoco"),
}
"""Extra of the `srvp` distribution -> the modules it installs (PyAV and CRC32C; gymnasium, dm_control, MuJoCo)."""


def _installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (dm_control must not load before the GL backend
    is chosen)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def require_extra(extra: str, part: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise a one-line ImportError naming the missing modules and `pip install 'srvp[extra]'` when `part`
    (e.g. 'srvp.envs') is used without the packages of `extra` (or only `modules` of them, those it imports)."""
    missing = [module for module in modules or EXTRAS[extra] if not _installed(module)]
    if missing:
        raise ImportError(f"{part} needs {', '.join(missing)}: pip install 'srvp[{extra}]'")


def installed(extra: str) -> bool:
    """Whether every package of `extra` is installed (checked without importing them)."""
    return all(_installed(module) for module in EXTRAS[extra])
