"""The learning-rate schedule equals the official SRVP one, step for step."""

import pytest
import torch

from srvp.video_pred.trainer import WeightAverage, budget_step_counts, constant_then_linear_decay, with_warmup


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


def test_warmup_ramps_linearly_then_follows_the_schedule():
    def warmed(optimizer):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, with_warmup(constant_then_linear_decay(6, 4), 4))

    assert rates_used(warmed, 10) == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 0.75, 0.5, 0.25, 0.0])
    assert with_warmup(constant_then_linear_decay(6, 4), 0)(7) == constant_then_linear_decay(6, 4)(7)


@pytest.mark.parametrize(
    ("budget", "seconds", "steps", "decay", "done", "expected"),
    [
        (600, 0.1, 1200, 2000, 1200, (2250, 3750)),  # 6,000 steps split 3 : 5
        (600, 0.18, 1200, 2000, 1200, (1250, 2083)),  # 3,333 steps on a slower machine
        (10, 0.3, 150, 0, 0, (33, 0)),  # no decay asked, none given
        (10, 0.1, 150, 50, 150, (150, 0)),  # the budget is spent: stop at the step taken, at the full rate
        (1, 5.0, 6, 2, 0, (1, 0)),  # a step longer than the budget: one step
    ],
)
def test_a_time_budget_sets_step_counts_in_the_given_ratio(budget, seconds, steps, decay, done, expected):
    assert budget_step_counts(budget, seconds, steps, decay, done) == expected


def test_weight_average_follows_the_weights_at_its_decay_and_copies_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.9)
    start = [parameter.detach().clone() for parameter in average.model.parameters()]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    model.train()(torch.randn(5, 3))  # moves the BatchNorm running statistics
    # Step 1 moves by 1 - min(0.9, 2 / 11); step 1000 by 1 - 0.9.
    average.update(model, step=1)
    for averaged, before, current in zip(average.model.parameters(), start, model.parameters(), strict=True):
        torch.testing.assert_close(averaged, before + (1 - 2 / 11) * (current.detach() - before))
    moved = [parameter.clone() for parameter in average.model.parameters()]
    average.update(model, step=1000)
    for averaged, before, current in zip(average.model.parameters(), moved, model.parameters(), strict=True):
        torch.testing.assert_close(averaged, before + 0.1 * (current.detach() - before))
    for averaged, buffer in zip(average.model.buffers(), model.buffers(), strict=True):
        torch.testing.assert_close(averaged, buffer, rtol=0, atol=0)
    assert not any(parameter.requires_grad for parameter in average.model.parameters())
