"""Shared test settings: one torch thread per test process (the suite runs one xdist worker per core)."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
