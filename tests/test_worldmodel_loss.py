"""KL divergences against closed forms, the ELBO's composition and batch averaging, and a tiny overfit."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from srvp.worldmodel.distributions import (
    MIN_STD,
    Gaussian,
    balanced_kl,
    gaussian_nll,
    kl_divergence,
    kl_standard_normal,
)
from tests.worldmodel_testing import (
    freeze_posteriors,
    moving_squares,
    random_clips,
    tiny_model,
)


def random_gaussian(shape: tuple[int, ...], seed: int) -> Gaussian:
    generator = torch.Generator().manual_seed(seed)
    mean = 3 * torch.randn(shape, generator=generator, dtype=torch.float64)
    std = torch.exp(torch.randn(shape, generator=generator, dtype=torch.float64))
    return Gaussian(mean, std)


def normal(gaussian: Gaussian) -> D.Normal:
    return D.Normal(gaussian.mean, gaussian.std)


# ---------------------------------------------------------------- distributions
def test_kl_divergence_matches_torch_distributions() -> None:
    q, p = random_gaussian((6, 5), 0), random_gaussian((6, 5), 1)
    torch.testing.assert_close(
        kl_divergence(q, p).double(), D.kl_divergence(normal(q), normal(p)), rtol=1e-5, atol=1e-5
    )
    assert kl_divergence(q, p).shape == (6, 5)


def test_kl_standard_normal_matches_torch_distributions() -> None:
    q = random_gaussian((4, 7), 2)
    standard = D.Normal(torch.zeros(4, 7, dtype=torch.float64), torch.ones(4, 7, dtype=torch.float64))
    torch.testing.assert_close(
        kl_standard_normal(q).double(), D.kl_divergence(normal(q), standard), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "q_mean, q_std, p_mean, p_std", [(1.0, 2.0, 0.0, 1.0), (-0.5, 0.3, 2.0, 1.7), (0.0, 1.0, 0.0, 1.0)]
)
def test_kl_against_the_scalar_formula(q_mean: float, q_std: float, p_mean: float, p_std: float) -> None:
    expected = math.log(p_std / q_std) + (q_std**2 + (q_mean - p_mean) ** 2) / (2 * p_std**2) - 0.5
    q = Gaussian(torch.tensor([q_mean]), torch.tensor([q_std]))
    p = Gaussian(torch.tensor([p_mean]), torch.tensor([p_std]))
    assert kl_divergence(q, p).item() == pytest.approx(expected, abs=1e-6)
    if (p_mean, p_std) == (0.0, 1.0):
        assert kl_standard_normal(q).item() == pytest.approx(expected, abs=1e-6)


def test_kl_is_float32_under_half_precision_inputs() -> None:
    q = Gaussian(torch.zeros(3, dtype=torch.bfloat16), torch.ones(3, dtype=torch.bfloat16))
    assert kl_divergence(q, q).dtype == torch.float32 and torch.all(kl_divergence(q, q) == 0)
    assert kl_standard_normal(q).dtype == torch.float32


def test_gaussian_from_raw_and_rsample() -> None:
    params = torch.tensor([[1.0, -2.0, 0.5, -100.0]])
    gaussian = Gaussian.from_raw(params)
    torch.testing.assert_close(gaussian.mean, torch.tensor([[1.0, -2.0]]))
    expected_std = torch.nn.functional.softplus(torch.tensor([[0.5, -100.0]])) + MIN_STD
    torch.testing.assert_close(gaussian.std, expected_std)
    assert torch.all(gaussian.std > 0)
    wide = Gaussian(torch.full((20000,), 2.0), torch.full((20000,), 0.5))
    samples = wide.rsample(torch.Generator().manual_seed(0))
    assert samples.mean().item() == pytest.approx(2.0, abs=0.02)
    assert samples.std().item() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("variance", [1.0, 0.04, 0.5])
def test_gaussian_nll_is_the_negative_log_density(variance: float) -> None:
    target, mean = torch.rand(2, 3, 4), torch.rand(2, 3, 4)
    expected = -D.Normal(mean, math.sqrt(variance)).log_prob(target)
    torch.testing.assert_close(gaussian_nll(target, mean, variance), expected)


# ---------------------------------------------------------------- ELBO
def test_elbo_is_the_sum_of_its_independently_computed_parts() -> None:
    beta, beta_y, l2_weight, nu, head_weight, batch = 2.5, 0.6, 0.7, 0.3, 0.4, 3
    model = tiny_model(
        beta=beta, beta_y=beta_y, l2_weight=l2_weight, nu=nu, dt=0.5, heads={"reward": 2}, head_weight=head_weight
    )
    frames = random_clips(batch, 5)
    rewards = torch.randn(batch, 5, 2)
    torch.manual_seed(11)
    output = model.elbo(frames, head_targets={"reward": rewards})
    torch.manual_seed(11)
    with torch.no_grad():
        observation = model.observe(frames)
        reconstruction = model.decode(observation.states, observation.content, observation.skips)
        target = frames.double() / 255
        nll = -D.Normal(reconstruction.double(), math.sqrt(nu)).log_prob(target).sum() / batch
        kl_y1 = D.kl_divergence(normal(observation.q_y1), D.Normal(0.0, 1.0)).sum() / batch
        prior = model.prior_z(observation.states[:, :-1])
        kl_z = D.kl_divergence(normal(observation.q_z), normal(prior)).sum() / batch
        residuals = observation.rollout.residuals
        assert residuals.shape == (batch, 2 * 4, model.config.y_dim)
        residual_norm = residuals.pow(2).sum(-1).sqrt().sum() / batch
        heads = 0.5 * (model.predict_heads(observation.states)["reward"] - rewards).pow(2).sum() / batch
    torch.testing.assert_close(output.reconstruction, reconstruction)
    parts = output.parts
    expected = {"nll": nll, "kl_y1": kl_y1, "kl_z": kl_z, "residual_norm": residual_norm, "head_reward": heads}
    for name, value in expected.items():
        torch.testing.assert_close(parts[name].double(), value.double(), rtol=1e-5, atol=1e-4, msg=name)
        assert not parts[name].requires_grad
    # The official loss: nll + beta_y KL(q(y_1)) + beta_z KL(q(z)) + l2_res ||residuals||.
    total = nll + beta_y * kl_y1 + beta * kl_z + l2_weight * residual_norm + head_weight * heads
    torch.testing.assert_close(output.loss.double(), total.double(), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(parts["loss"], output.loss.detach())
    assert output.loss.requires_grad
    assert all(value > 0 for value in expected.values())


def test_bernoulli_nll_is_the_cross_entropy_of_the_decoded_frames() -> None:
    """likelihood=bernoulli: the NLL is the pixels' binary cross-entropy against the decoded frames (computed
    here from the probabilities, in float64), every other part of the loss is the Gaussian model's."""
    batch = 3
    frames = random_clips(batch, 5)
    losses = {}
    for likelihood in ("gaussian", "bernoulli"):
        torch.manual_seed(4)
        model = tiny_model(likelihood=likelihood, nu=0.3)
        torch.manual_seed(5)
        losses[likelihood] = model.elbo(frames)
    reconstruction = losses["bernoulli"].reconstruction.detach().double()
    target = frames.double() / 255
    cross_entropy = -(target * reconstruction.log() + (1 - target) * (1 - reconstruction).log()).sum() / batch
    torch.testing.assert_close(losses["bernoulli"].parts["nll"].double(), cross_entropy, rtol=1e-5, atol=1e-4)
    assert not torch.isclose(losses["bernoulli"].parts["nll"], losses["gaussian"].parts["nll"])
    for name in ("kl_y1", "kl_z", "residual_norm"):
        torch.testing.assert_close(losses["bernoulli"].parts[name], losses["gaussian"].parts[name], msg=name)


def test_bernoulli_gradient_does_not_vanish_on_a_faint_haze() -> None:
    """The reason for the option: on a black pixel decoded as a faint grey, the Gaussian's gradient on the logit
    carries the sigmoid's slope and nearly vanishes next to a mid-grey pixel's, the cross-entropy's does not."""
    logits = torch.tensor([-3.0, 0.0], requires_grad=True)  # a haze of sigmoid(-3) = 0.047, and mid-grey
    target = torch.zeros(2)
    gaussian_nll(target, torch.sigmoid(logits), 0.1).sum().backward()
    gaussian_ratio = (logits.grad[0] / logits.grad[1]).item()
    logits.grad = None
    torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum").backward()
    bernoulli_ratio = (logits.grad[0] / logits.grad[1]).item()
    assert gaussian_ratio < 0.2 and bernoulli_ratio > 2 * gaussian_ratio


@pytest.mark.parametrize("free_nats", [0.15, 1e4])  # some terms above and some below; all below
def test_free_nats_floor_each_kl_term_in_the_loss_but_not_the_logged_kl(free_nats: float) -> None:
    """free_nats = F: the loss holds max(KL, F) per clip for y_1 and per frame for z (PlaNet's free nats), the
    logged KLs stay the true ones, and a KL floored everywhere sends no gradient to the posteriors through it."""
    batch, length, beta, beta_y = 3, 5, 2.0, 0.5
    frames = random_clips(batch, length)
    model = tiny_model(beta=beta, beta_y=beta_y)
    torch.manual_seed(3)
    plain = model.elbo(frames)
    floored_model = tiny_model(beta=beta, beta_y=beta_y, free_nats=free_nats)
    floored_model.load_state_dict(model.state_dict())
    torch.manual_seed(3)
    floored = floored_model.elbo(frames)
    torch.manual_seed(3)
    with torch.no_grad():
        observation = model.observe(frames)
        kl_y1 = kl_standard_normal(observation.q_y1).sum(-1)
        kl_z = kl_divergence(observation.q_z, model.prior_z(observation.states[:, :-1])).sum(-1)
    for name in ("nll", "kl_y1", "kl_z", "residual_norm"):
        torch.testing.assert_close(floored.parts[name], plain.parts[name], msg=name)
    kl_terms = beta_y * (kl_y1.clamp(min=free_nats).sum() - kl_y1.sum()) + beta * (
        kl_z.clamp(min=free_nats).sum() - kl_z.sum()
    )
    torch.testing.assert_close(
        floored.loss.double(), plain.loss.double() + kl_terms.double() / batch, rtol=1e-6, atol=0
    )
    if free_nats > 1e3:  # every term is below the floor: the KLs give the prior no gradient at all
        floored.loss.backward()
        assert all(p.grad is None or not p.grad.any() for p in floored_model.prior.parameters())


@pytest.mark.parametrize("prior_share", [0.5, 0.8, 0.1])
def test_balanced_kl_keeps_the_value_and_splits_the_gradient(prior_share: float) -> None:
    """KL balancing: the KL's value, the prior's gradient times 2 share, the posterior's times 2 (1 - share)."""
    leaves = [tensor.clone().requires_grad_() for tensor in (*random_gaussian((4, 3), 5), *random_gaussian((4, 3), 6))]
    q, p = Gaussian(*leaves[:2]), Gaussian(*leaves[2:])
    kl = kl_divergence(q, p)
    plain = torch.autograd.grad(kl.sum(), leaves, retain_graph=True)
    balanced = balanced_kl(q, p, prior_share)
    torch.testing.assert_close(balanced, kl)
    shared = torch.autograd.grad(balanced.sum(), leaves)
    weights = [2 * (1 - prior_share)] * 2 + [2 * prior_share] * 2
    for weight, got, expected in zip(weights, shared, plain, strict=True):
        torch.testing.assert_close(got, weight * expected)


def test_kl_balance_changes_the_gradient_not_the_loss() -> None:
    """model.kl_balance = 0.8: the same loss and logged parts as the plain KL; the prior's gradient differs."""
    frames = random_clips(2, 5)
    model = tiny_model()
    balanced_model = tiny_model(kl_balance=0.8)
    balanced_model.load_state_dict(model.state_dict())
    outputs = []
    for each in (model, balanced_model):
        torch.manual_seed(4)
        outputs.append(each.elbo(frames))
        outputs[-1].loss.backward()
    for name, value in outputs[0].parts.items():
        torch.testing.assert_close(outputs[1].parts[name], value, msg=name)
    prior_grads = [torch.cat([p.grad.flatten() for p in each.prior.parameters()]) for each in (model, balanced_model)]
    torch.testing.assert_close(prior_grads[1], 1.6 * prior_grads[0], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="kl_balance"):
        tiny_model(kl_balance=1.0)


def test_elbo_averages_over_the_batch_and_sums_over_time() -> None:
    model = tiny_model()
    freeze_posteriors(model)  # sampling no longer matters, so clips can be compared one by one
    first, second = random_clips(1, 4, seed=1), random_clips(1, 4, seed=2)
    with torch.no_grad():
        alone = [model.elbo(clip).parts for clip in (first, second)]
        twice = model.elbo(torch.cat([first, first])).parts
        pair = model.elbo(torch.cat([first, second])).parts
        shorter = model.elbo(first[:, :3]).parts
    for name in ("nll", "kl_y1", "kl_z", "residual_norm", "loss"):
        torch.testing.assert_close(twice[name], alone[0][name], rtol=1e-4, atol=1e-3, msg=name)
        torch.testing.assert_close(pair[name], (alone[0][name] + alone[1][name]) / 2, rtol=1e-4, atol=1e-3, msg=name)
    # Summed over frames (not averaged): one frame fewer lowers the NLL by about a frame's worth.
    pixels = 64 * 64
    assert shorter["nll"] < alone[0]["nll"] - 0.5 * math.log(2 * math.pi) * pixels * 0.9


def test_nll_scales_with_the_variance_as_the_gaussian_formula_says() -> None:
    model = tiny_model()
    frames = random_clips(2, 3)
    outputs = {}
    for nu in (1.0, 0.25):
        model.config.nu = nu
        torch.manual_seed(0)
        with torch.no_grad():
            outputs[nu] = model.elbo(frames)
    reconstruction = outputs[1.0].reconstruction
    torch.testing.assert_close(outputs[0.25].reconstruction, reconstruction)
    squared_error = (frames.float() / 255 - reconstruction).pow(2).sum().item() / 2
    pixels_per_clip = 3 * 64 * 64
    assert outputs[1.0].parts["nll"].item() == pytest.approx(
        0.5 * squared_error + 0.5 * pixels_per_clip * math.log(2 * math.pi), rel=1e-5
    )
    assert outputs[0.25].parts["nll"].item() == pytest.approx(
        2 * squared_error + 0.5 * pixels_per_clip * math.log(2 * math.pi * 0.25), rel=1e-5
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uint8_and_unit_float_frames_give_the_same_elbo(dtype: torch.dtype) -> None:
    """uint8 clips take the model's dtype: a float64 model (the precision of the equality checks against the
    official code) takes them too."""
    model = tiny_model().to(dtype)
    frames = random_clips(2, 3)
    with torch.no_grad():
        torch.manual_seed(4)
        from_uint8 = model.elbo(frames).loss
        torch.manual_seed(4)
        from_float = model.elbo(frames.to(dtype) / 255).loss
    assert from_uint8.dtype == dtype
    torch.testing.assert_close(from_uint8, from_float)


def test_a_training_step_on_uint8_frames_never_checks_their_range(monkeypatch) -> None:
    """The float frames' range check (aminmax, then a Python `if`: a host synchronisation on GPU) runs for float
    input only; uint8 clips, what every training loop feeds, go through the ELBO and its backward without it."""
    checks = []
    aminmax = torch.aminmax
    monkeypatch.setattr(torch, "aminmax", lambda *args, **kwargs: checks.append(1) or aminmax(*args, **kwargs))
    model = tiny_model(skip=True).train()
    model.elbo(random_clips(2, 3)).loss.backward()
    assert checks == []
    model.elbo(random_clips(2, 3).float() / 255)
    assert checks, "the range check of float frames was not counted: the test would pass vacuously"


def test_every_trainable_part_receives_a_gradient() -> None:
    model = tiny_model(skip=True, heads={"reward": 1}).train()
    model.elbo(random_clips(2, 4), head_targets={"reward": torch.randn(2, 4)}).loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_loss_decreases_on_a_tiny_overfit_batch() -> None:
    """30 Adam steps on 3 clips of a moving square (the brief's 4 x 6 frames and 80 steps at lr 1e-3 take
    four times longer for the same conclusion): the reconstruction error must at least halve."""
    model = tiny_model().train()
    frames = moving_squares(3, 4)
    target = frames.float() / 255
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses, errors = [], []
    for _ in range(30):
        output = model.elbo(frames)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
        errors.append((output.reconstruction.detach() - target).pow(2).mean().item())
    assert all(math.isfinite(loss) for loss in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 1000
    assert sum(errors[-3:]) / 3 < 0.5 * errors[0]
