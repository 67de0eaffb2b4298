"""Shared test settings: one torch thread per test process (the suite runs one xdist worker per core), and
absl's logging handler kept off pytest's capture files."""

import sys

import pytest
import torch

torch.set_num_threads(1)


def keep_absl_off_the_capture_files() -> None:
    """absl (imported with dm_control) makes a logging handler on the sys.stderr of its import: in a test
    process, one of pytest's capture files. Its close() closes that stream whenever it is no longer sys.stderr,
    and logging.config.dictConfig (hydra's job logging, run by every in-process entry point) closes all
    handlers: under capsys that closed the global capture file, and every later test of that worker errored
    with "I/O operation on closed file". The handler writes to the process's own stderr instead, which absl
    never closes."""
    try:
        import absl.logging
    except ImportError:  # srvp[control] not installed: no absl
        return
    absl.logging.get_absl_handler().python_handler.stream = sys.__stderr__


keep_absl_off_the_capture_files()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
