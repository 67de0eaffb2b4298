"""Console scripts: each imports its entry point only when run, so a missing optional extra (srvp[control],
srvp[video]) ends in the one line that names what to install, not in an import traceback."""

from __future__ import annotations

import importlib
import sys


def _run(program: str, module: str) -> None:
    """Import `module` and call its `main`; an ImportError while importing it is one line naming `program`."""
    try:
        entry = importlib.import_module(module)
    except ImportError as error:
        sys.exit(f"{program}: error: {str(error).splitlines()[0]}")
    entry.main()


def train() -> None:
    _run("srvp-train", "srvp.video_pred.train")


def evaluate() -> None:
    _run("srvp-eval", "srvp.video_pred.evaluate")


def prepare() -> None:
    _run("srvp-prepare", "srvp.video_pred.prepare")


def figures() -> None:
    _run("srvp-figures", "srvp.video_pred.figures")


def control() -> None:
    _run("srvp-control", "srvp.agents.train")
