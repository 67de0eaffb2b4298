"""The learning-rate schedule equals the official SRVP one, step for step."""

import pytest
import torch

from srvp.video_pred.trainer import constant_then_linear_decay


def rates_used(make_scheduler, total_steps: int, steps_scheduler=lambda step: True) -> list[float]:
    """The learning rate each of `total_steps` optimiser steps runs with (factor of the base rate 1)."""
    parameter = torch.nn.Parameter(torch.zeros(()))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = make_scheduler(optimizer)
    used = []
    for step in range(1, total_steps + 1):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if steps_scheduler(step):
            scheduler.step()
    return used


def ours(burnin: int, decay: int):
    return lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, constant_then_linear_decay(burnin, decay))


def test_official_factors_with_burnin_6_and_4_decay_steps():
    # Official train.py: LambdaLR(lambda i: max(0, (n - i) / n)) stepped after step itr when itr >= burnin:
    # steps 1..6 at the full rate, then 3/4, 2/4, 1/4 and 0 at the last step.
    assert rates_used(ours(6, 4), 10) == pytest.approx([1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25, 0.0])


@pytest.mark.parametrize(("burnin", "decay"), [(0, 5), (3, 1), (7, 10), (5, 0)])
def test_equals_the_official_scheduler(burnin, decay):
    total = burnin + decay
    if decay == 0:
        assert rates_used(ours(burnin, decay), total) == [1.0] * total
        return

    def official(optimizer):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: max(0, (decay - i) / decay))

    expected = rates_used(official, total, steps_scheduler=lambda step: step >= burnin)
    assert rates_used(ours(burnin, decay), total) == pytest.approx(expected)
    # The last step runs at 0, except without burn-in, where the official loop's first decay comes after step 1.
    assert expected[-1] == (1 / decay if burnin == 0 else 0.0)
