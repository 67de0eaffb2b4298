"""Headless OpenGL selection for MuJoCo: pick EGL or OSMesa before dm_control is imported.

MuJoCo and dm_control read the `MUJOCO_GL` environment variable once, when their rendering modules are
imported, so `configure_mujoco_gl` must run before the first `import dm_control`; `srvp.envs.dmc` calls it just
before its lazy import. A value the user has set is always kept: this module only fills the gap on
machines without a display, where the default (GLFW) would fail.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping, Sequence

# Backends in order of preference with the shared libraries that prove each is installed: EGL renders on
# the GPU when there is one (and through Mesa's software driver otherwise), OSMesa always on the CPU.
GL_LIBRARIES: dict[str, tuple[str, ...]] = {
    "egl": ("libEGL.so.1",),
    "osmesa": ("libOSMesa.so", "libOSMesa.so.8", "libOSMesa.so.6"),
}

MUJOCO_BACKENDS = ("egl", "osmesa", "glfw")
"""The values of MUJOCO_GL that MuJoCo's Python bindings accept."""

# Debian/Ubuntu packages that provide each backend, named in the error message.
DEBIAN_PACKAGES: dict[str, str] = {"egl": "libegl1 libgl1-mesa-dri", "osmesa": "libosmesa6"}


def _loads(library: str) -> bool:
    """Whether the dynamic loader can open `library` in this process."""
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def probe_gl_backend(libraries: Mapping[str, Sequence[str]] = GL_LIBRARIES) -> str:
    """Return the first backend of `libraries` (name -> candidate library files) whose library loads.

    Raises RuntimeError naming every library tried and the Debian packages to install when none loads.
    """
    for backend, candidates in libraries.items():
        if any(_loads(library) for library in candidates):
            return backend
    tried = ", ".join(library for candidates in libraries.values() for library in candidates)
    packages = " or ".join(f"{DEBIAN_PACKAGES.get(backend, backend)} ({backend})" for backend in libraries)
    raise RuntimeError(
        f"headless MuJoCo rendering needs EGL or OSMesa but none of {tried} can be loaded: install the "
        f"Debian packages {packages}, or set MUJOCO_GL yourself"
    )


def configure_mujoco_gl(libraries: Mapping[str, Sequence[str]] = GL_LIBRARIES) -> str:
    """Return the MuJoCo GL backend to use, setting `MUJOCO_GL` to a working one if the user has not set it.

    A user-set `MUJOCO_GL` (e.g. `glfw` on a desktop) is kept; it must name a MuJoCo backend, and EGL or
    OSMesa must have their library, otherwise one line says what is wrong (rather than a traceback from deep
    inside dm_control's import).
    """
    user_choice = os.environ.get("MUJOCO_GL")
    if user_choice:
        if user_choice not in MUJOCO_BACKENDS:
            raise ValueError(
                f"MUJOCO_GL={user_choice!r}: MuJoCo renders with one of {MUJOCO_BACKENDS}; unset it to "
                "pick EGL or OSMesa automatically"
            )
        if user_choice in libraries:
            probe_gl_backend({user_choice: libraries[user_choice]})  # its library must load, else one clear line
        return user_choice
    backend = probe_gl_backend(libraries)
    os.environ["MUJOCO_GL"] = backend
    return backend
