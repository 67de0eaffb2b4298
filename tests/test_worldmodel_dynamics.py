"""Latent dynamics, variants and inference behaviour of SRVP, each checked against a hand computation."""

from __future__ import annotations

import pytest
import torch

from srvp.worldmodel import SRVP
from srvp.worldmodel.config import substeps
from tests.worldmodel_testing import (
    freeze_posteriors,
    random_clips,
    tiny_config,
    tiny_model,
)


def hand_residual(model: SRVP, state: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """f(y, drive) evaluated directly on the transition MLP."""
    return model.transition.net(torch.cat([state, drive], dim=-1))


# ---------------------------------------------------------------- Euler steps
@pytest.mark.parametrize("dt", [0.5, 1 / 3])
def test_fractional_dt_equals_hand_euler_steps_with_z_held(dt: float) -> None:
    model = tiny_model(dt=dt)
    batch, steps, per_frame = 3, 4, round(1 / dt)
    y1 = torch.randn(batch, model.config.y_dim)
    z = torch.randn(batch, steps, model.config.z_dim)
    with torch.no_grad():
        rollout = model.imagine(y1, steps, z=z)
        expected_states, expected_residuals, state = [y1], [], y1
        for step in range(steps):
            for _ in range(per_frame):
                residual = dt * hand_residual(model, state, z[:, step])
                state = state + residual
                expected_states.append(state)
                expected_residuals.append(residual)
    torch.testing.assert_close(rollout.states, torch.stack(expected_states, dim=1))
    torch.testing.assert_close(rollout.residuals, torch.stack(expected_residuals, dim=1))
    torch.testing.assert_close(rollout.frame_states, rollout.states[:, ::per_frame])
    assert rollout.frame_states.shape == (batch, steps + 1, model.config.y_dim)
    torch.testing.assert_close(rollout.z, z)
    assert rollout.prior is None


def test_half_step_differs_from_a_full_step() -> None:
    model = tiny_model()
    y1, z = torch.randn(2, 4), torch.randn(2, 3, 3)
    with torch.no_grad():
        full, half = model.imagine(y1, 3, dt=1.0, z=z), model.imagine(y1, 3, dt=0.5, z=z)
    assert not torch.allclose(full.frame_states[:, 1:], half.frame_states[:, 1:])


def test_prior_rollout_holds_z_over_substeps_and_reads_the_prior_at_frame_states() -> None:
    model = tiny_model(dt=0.25)
    y1 = torch.randn(2, 4)
    with torch.no_grad():
        rollout = model.imagine(y1, 3, generator=torch.Generator().manual_seed(1))
        replay = model.imagine(y1, 3, z=rollout.z)
        prior_at_frames = model.prior_z(rollout.frame_states[:, :-1])
    assert rollout.z.shape == (2, 3, 3)
    torch.testing.assert_close(replay.states, rollout.states)
    torch.testing.assert_close(rollout.prior.mean, prior_at_frames.mean)
    torch.testing.assert_close(rollout.prior.std, prior_at_frames.std)


def test_given_z_drives_the_first_steps_then_the_prior() -> None:
    model = tiny_model()
    y1, z = torch.randn(2, 4), torch.randn(2, 2, 3)
    with torch.no_grad():
        rollout = model.imagine(y1, 5, z=z, prior_mean=True)
        prior_mean = model.prior_z(rollout.frame_states[:, 2:-1]).mean
    torch.testing.assert_close(rollout.z[:, :2], z)
    torch.testing.assert_close(rollout.z[:, 2:], prior_mean)
    assert rollout.prior.mean.shape == (2, 3, 3)


def test_generator_makes_prior_sampling_reproducible() -> None:
    model = tiny_model()
    y1 = torch.randn(2, 4)
    with torch.no_grad():
        first = model.imagine(y1, 4, generator=torch.Generator().manual_seed(5)).states
        again = model.imagine(y1, 4, generator=torch.Generator().manual_seed(5)).states
        other = model.imagine(y1, 4, generator=torch.Generator().manual_seed(6)).states
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("dt", [0.4, 0.0, 2.0, -0.5, 0.3])
def test_invalid_dt_is_rejected(dt: float) -> None:
    with pytest.raises(ValueError, match="dt"):
        substeps(dt)
    with pytest.raises(ValueError, match="dt"):
        tiny_model().imagine(torch.zeros(1, 4), 2, dt=dt, z=torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="dt"):
        tiny_config(dt=dt)


@pytest.mark.parametrize("dt, count", [(1.0, 1), (0.5, 2), (1 / 3, 3), (0.25, 4), (0.1, 10)])
def test_substeps(dt: float, count: int) -> None:
    assert substeps(dt) == count


@pytest.mark.parametrize("kind", ["mlp", "gru"])
def test_fractional_dt_needs_the_residual_transition(kind: str) -> None:
    with pytest.raises(ValueError, match="dt"):
        tiny_config(transition=kind, dt=0.5)
    model = tiny_model(transition=kind)
    with pytest.raises(ValueError, match="dt"):
        model.imagine(torch.zeros(1, 4), 2, dt=0.5, z=torch.zeros(1, 2, 3))


# ---------------------------------------------------------------- transition variants
def test_mlp_transition_replaces_the_state() -> None:
    model = tiny_model(transition="mlp")
    y1, z = torch.randn(2, 4), torch.randn(2, 2, 3)
    with torch.no_grad():
        rollout = model.imagine(y1, 2, z=z)
        first = hand_residual(model, y1, z[:, 0])
        second = hand_residual(model, first, z[:, 1])
        parts = model.elbo(random_clips(2, 3)).parts
    torch.testing.assert_close(rollout.states, torch.stack([y1, first, second], dim=1))
    assert rollout.residuals is None
    assert parts["residual_norm"] == 0


def test_gru_transition_is_a_gru_cell_driven_by_z() -> None:
    model = tiny_model(transition="gru")
    y1, z = torch.randn(2, 4), torch.randn(2, 2, 3)
    with torch.no_grad():
        rollout = model.imagine(y1, 2, z=z)
        first = model.transition.cell(z[:, 0], y1)
        second = model.transition.cell(z[:, 1], first)
        parts = model.elbo(random_clips(2, 3)).parts
    assert isinstance(model.transition.cell, torch.nn.GRUCell)
    torch.testing.assert_close(rollout.states, torch.stack([y1, first, second], dim=1))
    assert rollout.residuals is None
    assert parts["residual_norm"] == 0 and parts["kl_z"] > 0


def test_deterministic_variant_has_no_z() -> None:
    model = tiny_model(stochastic=False)
    for name in ("posterior_lstm", "posterior_head", "prior"):
        assert not hasattr(model, name)
    assert model.transition.net[0].in_features == model.config.y_dim
    frames = random_clips(2, 4)
    with torch.no_grad():
        observation = model.observe(frames)
        parts = model.elbo(frames).parts
        y1 = torch.randn(2, 4)
        first, again = model.imagine(y1, 3), model.imagine(y1, 3)
    assert observation.q_z is None and observation.rollout.z is None
    assert parts["kl_z"] == 0
    assert first.z is None and first.prior is None
    torch.testing.assert_close(first.states, again.states)
    state = y1
    for _ in range(3):
        state = state + model.transition.net(state)
    torch.testing.assert_close(first.frame_states[:, -1], state)


def test_without_content_the_decoder_sees_y_only() -> None:
    model = tiny_model(use_content=False)
    assert not hasattr(model, "content_projection") and not hasattr(model, "content_output")
    assert model.decoder.stem[0].in_channels == model.config.y_dim
    frames = random_clips(2, 4)
    with torch.no_grad():
        observation = model.observe(frames)
        assert observation.content is None and observation.skips is None
        decoded = model.decode(observation.states, None, None)
        assert decoded.shape == (2, 4, 1, 64, 64)
        assert model.predict(frames[:, :3], 2).shape == (2, 1, 5, 1, 64, 64)


def test_with_content_the_decoder_sees_content_then_y() -> None:
    model = tiny_model()
    cfg = model.config
    assert model.decoder.stem[0].in_channels == cfg.content_dim + cfg.y_dim
    states, content = torch.randn(1, 2, cfg.y_dim), torch.randn(1, cfg.content_dim)
    with torch.no_grad():
        decoded = model.decode(states, content, None)
        direct = model.decoder(torch.cat([content.expand(2, -1), states[0]], dim=-1))
    torch.testing.assert_close(decoded[0], direct)


# ---------------------------------------------------------------- actions and heads
def test_actions_are_required_and_change_the_rollout() -> None:
    model = tiny_model(action_dim=2)
    assert model.transition.net[0].in_features == 4 + 3 + 2
    y1, z = torch.randn(2, 4), torch.randn(2, 3, 3)
    with pytest.raises(ValueError, match="actions"):
        model.imagine(y1, 3, z=z)
    with pytest.raises(ValueError, match="actions"):
        model.imagine(y1, 3, z=z, actions=torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="actions"):
        model.imagine(y1, 3, z=z, actions=torch.zeros(2, 3, 5))
    actions = torch.randn(2, 3, 2)
    with torch.no_grad():
        rollout = model.imagine(y1, 3, z=z, actions=actions)
        other = model.imagine(y1, 3, z=z, actions=actions + 1)
        by_hand = y1 + hand_residual(model, y1, torch.cat([z[:, 0], actions[:, 0]], dim=-1))
    torch.testing.assert_close(rollout.frame_states[:, 1], by_hand)
    assert not torch.allclose(rollout.states[:, 1:], other.states[:, 1:])


def test_actions_flow_through_elbo_and_predict() -> None:
    model = tiny_model(action_dim=2)
    frames, actions = random_clips(2, 4), torch.randn(2, 3, 2)
    with torch.no_grad():
        assert torch.isfinite(model.elbo(frames, actions=actions).loss)
        future_actions = torch.randn(2, 3 - 1 + 4, 2)
        torch.manual_seed(0)
        predicted = model.predict(frames[:, :3], 4, actions=future_actions)
        torch.manual_seed(0)
        changed = future_actions.clone()
        changed[:, -1] += 10
        other = model.predict(frames[:, :3], 4, actions=changed)
    assert predicted.shape == (2, 1, 7, 1, 64, 64)
    torch.testing.assert_close(predicted[:, :, :-1], other[:, :, :-1])
    assert not torch.allclose(predicted[:, :, -1], other[:, :, -1])
    with pytest.raises(ValueError, match="actions"):
        model.predict(frames[:, :3], 4, actions=future_actions[:, :-1])


def test_head_loss_masks_nan_targets_and_trains_the_head() -> None:
    model = tiny_model(heads={"reward": 1}, head_weight=0.5)
    frames = random_clips(2, 4)
    rewards = torch.randn(2, 4)
    rewards[:, 0] = float("nan")
    rewards[1, 2] = float("nan")
    torch.manual_seed(3)
    output = model.elbo(frames, head_targets={"reward": rewards})
    torch.manual_seed(3)
    states = model.observe(frames).states
    predicted = model.predict_heads(states)["reward"].squeeze(-1)
    seen = ~rewards.isnan()
    expected = 0.5 * ((predicted[seen] - rewards[seen]) ** 2).sum() / 2
    torch.testing.assert_close(output.parts["head_reward"], expected.detach())
    cfg = model.config
    parts = output.parts
    without_head = (
        parts["nll"] + cfg.beta_y * parts["kl_y1"] + cfg.beta * parts["kl_z"] + cfg.l2_weight * parts["residual_norm"]
    )
    torch.testing.assert_close(output.parts["loss"], without_head + 0.5 * expected.detach())

    output.loss.backward()
    gradients = [p.grad for p in model.heads.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in gradients)
    assert any(g.abs().sum() > 0 for g in gradients)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_nan_target_value_does_not_matter_but_a_seen_one_does() -> None:
    model = tiny_model(heads={"reward": 1})
    frames, rewards = random_clips(1, 3), torch.tensor([[float("nan"), 1.0, 2.0]])
    with torch.no_grad():
        torch.manual_seed(0)
        masked = model.elbo(frames, head_targets={"reward": rewards}).parts["head_reward"]
        torch.manual_seed(0)
        moved = model.elbo(frames, head_targets={"reward": rewards + torch.tensor([[0.0, 0.0, 3.0]])})
    assert torch.isfinite(masked) and masked > 0
    assert moved.parts["head_reward"] != masked


def test_unknown_head_target_is_named() -> None:
    model = tiny_model(heads={"reward": 1})
    with pytest.raises(ValueError, match="'value'"):
        model.elbo(random_clips(1, 3), head_targets={"value": torch.zeros(1, 3)})


# ---------------------------------------------------------------- content, skips, y_1 in eval and train modes
def test_content_is_permutation_invariant() -> None:
    model = tiny_model(content_frames=5)
    codes = torch.randn(3, 5, model.config.code_dim)
    with torch.no_grad():
        content = model.infer_content(codes)
        for seed in range(3):
            permutation = torch.randperm(5, generator=torch.Generator().manual_seed(seed))
            torch.testing.assert_close(model.infer_content(codes[:, permutation]), content)
        expected = model.content_output(model.content_projection(codes).sum(dim=1))
    torch.testing.assert_close(content, expected)
    assert not torch.allclose(model.infer_content(codes[:, :4]), content)


def test_eval_uses_the_last_frames_for_content_and_the_last_frame_for_skips() -> None:
    model = tiny_model(skip=True, y1_frames=2, content_frames=3)
    frames = random_clips(2, 8)
    with torch.no_grad():
        encoded = model.encode(frames)
        torch.manual_seed(0)
        base = model.observe(frames)
        expected_content = model.infer_content(encoded.codes[:, -3:])
        torch.testing.assert_close(base.content, expected_content)
        for observed, block in zip(base.skips, encoded.blocks, strict=True):
            torch.testing.assert_close(observed, block[:, -1])

        middle = frames.clone()
        middle[:, 3] = 255 - middle[:, 3]  # neither a y_1 frame nor a content frame
        torch.manual_seed(0)
        perturbed = model.observe(middle)
        torch.testing.assert_close(perturbed.content, base.content)
        for skip, base_skip in zip(perturbed.skips, base.skips, strict=True):
            torch.testing.assert_close(skip, base_skip)
        torch.testing.assert_close(perturbed.q_y1.mean, base.q_y1.mean)
        assert not torch.allclose(perturbed.q_z.mean[:, 2:], base.q_z.mean[:, 2:])

        first = frames.clone()
        first[:, 0] = 255 - first[:, 0]  # a y_1 frame only
        torch.manual_seed(0)
        changed_y1 = model.observe(first)
        torch.testing.assert_close(changed_y1.content, base.content)
        assert not torch.allclose(changed_y1.q_y1.mean, base.q_y1.mean)

        second_last = frames.clone()
        second_last[:, -2] = 255 - second_last[:, -2]  # a content frame, not the skip frame
        torch.manual_seed(0)
        changed_content = model.observe(second_last)
        assert not torch.allclose(changed_content.content, base.content)
        for skip, base_skip in zip(changed_content.skips, base.skips, strict=True):
            torch.testing.assert_close(skip, base_skip)


def test_train_mode_draws_distinct_random_content_frames() -> None:
    model = tiny_model(content_frames=3).train()
    picked = model._content_indices(64, 10, 3, torch.device("cpu"))
    assert picked.shape == (64, 3)
    assert all(len(set(row.tolist())) == 3 for row in picked)
    assert picked.min() >= 0 and picked.max() <= 9
    assert len({tuple(row.tolist()) for row in picked}) > 10
    with pytest.raises(ValueError, match="frames"):
        model._content_indices(1, 2, 3, torch.device("cpu"))


def test_train_mode_draws_the_skip_frame_uniformly_and_independently_of_the_content_frames() -> None:
    """As the official model: at training time the frame feeding the skips is uniform over the clip and drawn
    independently of the k content frames, so it is a content frame with probability k/T only."""
    model = tiny_model(skip=True, y1_frames=2, content_frames=3).train()
    batch, length = 4000, 6
    encoded = model.encode(random_clips(1, length))
    # Mark each frame's blocks with its index, so the chosen frame can be read back from the skips.
    blocks = [
        torch.arange(length, dtype=torch.float32).view(1, length, 1, 1, 1).expand(batch, -1, *b.shape[2:])
        for b in encoded.blocks
    ]
    torch.manual_seed(0)
    chosen = model._skip_frames(blocks)[0][:, 0, 0, 0].long()
    counts = torch.bincount(chosen, minlength=length).double() / batch
    torch.testing.assert_close(counts, torch.full((length,), 1 / length, dtype=torch.double), atol=0.03, rtol=0)
    # Through observe: the skip frame is one of the k = 3 content frames about k/T = 1/2 of the time (the old
    # choice, the last content frame, made it always one).
    content_frames = []
    pick_content = model._content_indices

    def recording(*args):
        content_frames.append(pick_content(*args))
        return content_frames[-1]

    model._content_indices = recording
    clips = random_clips(1, length).expand(400, -1, -1, -1, -1)
    observation = model.observe(clips)
    frames = model.encode(clips).blocks[-1]
    skip_frames = torch.stack(
        [(observation.skips[-1][i] == frames[i]).flatten(1).all(dim=1).nonzero()[0, 0] for i in range(400)]
    )
    among_content = (content_frames[0] == skip_frames[:, None]).any(dim=1).double().mean().item()
    assert 0.4 < among_content < 0.6
    model.eval()
    for block, skip in zip(model.encode(clips[:2]).blocks, model.observe(clips[:2]).skips, strict=True):
        torch.testing.assert_close(skip, block[:, -1])


def test_observe_samples_z_from_its_posterior() -> None:
    model = tiny_model()
    freeze_posteriors(model, z=False)
    frames = random_clips(16, 6)
    with torch.no_grad():
        torch.manual_seed(1)
        first = model.observe(frames)
        torch.manual_seed(2)
        second = model.observe(frames)
    torch.testing.assert_close(first.states[:, 0], second.states[:, 0])
    assert not torch.allclose(first.states[:, 1:], second.states[:, 1:])
    standardised = (first.rollout.z - first.q_z.mean) / first.q_z.std
    assert abs(standardised.mean().item()) < 0.2
    assert 0.8 < standardised.std().item() < 1.2


def test_too_short_clip_is_rejected() -> None:
    model = tiny_model(y1_frames=3, content_frames=2)
    with pytest.raises(ValueError, match="3 frames"):
        model.observe(random_clips(1, 2))


def test_y1_uses_only_the_first_frames() -> None:
    model = tiny_model(y1_frames=2)
    frames = random_clips(1, 5)
    late = frames.clone()
    late[:, 2:] = 0
    with torch.no_grad():
        torch.testing.assert_close(model.observe(late).q_y1.mean, model.observe(frames).q_y1.mean)


# ---------------------------------------------------------------- prediction
def test_predict_samples_differ_and_start_with_reconstructions() -> None:
    model = tiny_model()
    frames = random_clips(2, 3)
    with torch.no_grad():
        predicted = model.predict(frames, 4, num_samples=3)
    assert not torch.allclose(predicted[:, 0, 3:], predicted[:, 1, 3:])
    # Each sample re-infers y_1 from its posterior, so even the reconstructions differ between samples.
    assert not torch.allclose(predicted[:, 0, 0], predicted[:, 1, 0])


def test_predict_with_frozen_posteriors_and_prior_mean_is_deterministic() -> None:
    model = tiny_model()
    freeze_posteriors(model)
    with torch.no_grad():
        predicted = model.predict(random_clips(2, 3), 4, num_samples=3, prior_mean=True)
        sampled = model.predict(random_clips(2, 3), 4, num_samples=3)
    torch.testing.assert_close(predicted[:, 0], predicted[:, 2], atol=1e-5, rtol=0)
    torch.testing.assert_close(sampled[:, :, :3], predicted[:, :, :3], atol=1e-5, rtol=0)
    assert not torch.allclose(sampled[:, 0, 3:], sampled[:, 1, 3:])


def test_deterministic_model_samples_differ_only_through_y1() -> None:
    model = tiny_model(stochastic=False)
    frames = random_clips(2, 3)
    with torch.no_grad():
        free = model.predict(frames, 3, num_samples=2, prior_mean=True)
        freeze_posteriors(model)
        frozen = model.predict(frames, 3, num_samples=2, prior_mean=True)
    assert not torch.allclose(free[:, 0], free[:, 1])
    torch.testing.assert_close(frozen[:, 0], frozen[:, 1], atol=1e-5, rtol=0)


def test_all_substeps_contains_the_frame_predictions() -> None:
    model = tiny_model(skip=True)
    frames = random_clips(1, 3)
    with torch.no_grad():
        torch.manual_seed(7)
        per_frame = model.predict(frames, 3, num_samples=2, dt=0.5, cond_dt=0.5)
        torch.manual_seed(7)
        every_substep = model.predict(frames, 3, num_samples=2, dt=0.5, all_substeps=True, cond_dt=0.5)
    assert every_substep.shape[2] == 2 * (3 + 3 - 1) + 1
    torch.testing.assert_close(every_substep[:, :, ::2], per_frame)


def test_test_time_dt_changes_the_future_only() -> None:
    """As the official test code: the conditioning frames' states are inferred with the training step (here
    1), whatever step the future is predicted with."""
    model = tiny_model()
    frames = random_clips(1, 3)
    with torch.no_grad():
        for parameter in model.decoder.parameters():
            parameter.mul_(30)  # an untrained decoder paints 0.5 everywhere: make frames depend on states
        torch.manual_seed(3)
        training_step = model.predict(frames, 2, num_samples=2)
        torch.manual_seed(3)
        finer_future = model.predict(frames, 2, num_samples=2, dt=0.25)
        torch.manual_seed(3)
        finer_everything = model.predict(frames, 2, num_samples=2, dt=0.25, cond_dt=0.25)
    torch.testing.assert_close(finer_future[:, :, :3], training_step[:, :, :3])
    assert not torch.allclose(finer_future[:, :, 3:], training_step[:, :, 3:])
    assert not torch.allclose(finer_everything[:, :, :3], training_step[:, :, :3])


def test_predict_accepts_float_frames_like_uint8() -> None:
    model = tiny_model()
    frames = random_clips(1, 3)
    with torch.no_grad():
        torch.manual_seed(1)
        from_uint8 = model.predict(frames, 2)
        torch.manual_seed(1)
        from_float = model.predict(frames.float() / 255, 2)
    torch.testing.assert_close(from_uint8, from_float)


def test_imagine_without_details_keeps_only_the_frame_states() -> None:
    model = tiny_model(action_dim=2, dt=0.5)
    start = torch.randn(3, model.config.y_dim)
    actions = torch.rand(3, 4, 2)
    with torch.no_grad():
        full = model.imagine(start, 4, actions=actions, generator=torch.Generator().manual_seed(2))
        lean = model.imagine(start, 4, actions=actions, generator=torch.Generator().manual_seed(2), details=False)
    torch.testing.assert_close(lean.frame_states, full.frame_states, rtol=0, atol=0)
    assert full.states.shape[1] == 4 * 2 + 1 and full.residuals is not None and full.prior is not None
    assert (lean.states, lean.z, lean.prior, lean.residuals) == (None, None, None, None)
