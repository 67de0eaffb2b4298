"""Inputs a new user gives the newest surfaces (own videos, any gymnasium env, the Python API): each is either
used correctly or refused in one line naming the culprit, before any work starts where it can be."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from srvp.agents.world_model import EpisodeFilter, build_world_model
from tests.worldmodel_testing import TINY, random_clips, tiny_model

CPU = torch.device("cpu")


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


# ------------------------------------------------------------------------------------------ the Python API
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_frames_are_refused_before_they_touch_the_model(bad):
    """One NaN pixel in training mode would make the loss NaN and write NaN into every BatchNorm statistic."""
    model = tiny_model().train()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    frames = random_clips(2, 4).float() / 255
    frames[1, 2, 0, 10, 20] = bad
    with pytest.raises(ValueError, match="NaN" if bad != bad else "must lie in") as error:
        model.elbo(frames)
    one_line(error)
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name
    with pytest.raises(ValueError, match="NaN" if bad != bad else "must lie in"):
        model.eval().predict(frames[:, :3], 2)


def test_numpy_and_float64_frames_are_taken_as_the_model_takes_tensors():
    """What numpy gives (float64 arrays, uint8 arrays) is converted, not refused from inside torch."""
    model = tiny_model()
    clips = random_clips(2, 4)
    torch.manual_seed(0)
    expected = model.predict(clips[:, :3], 2)
    for given in (clips.numpy(), clips.numpy() / 255.0, clips.double() / 255):
        torch.manual_seed(0)
        assert torch.allclose(model.predict(given[:, :3], 2), expected, atol=1e-6)
    torch.manual_seed(0)
    loss = model.elbo(clips).loss
    torch.manual_seed(0)
    assert torch.allclose(model.elbo(clips.numpy() / 255.0).loss, loss)
    with pytest.raises(TypeError, match="frames must be a torch.Tensor or a numpy array, got list") as error:
        model.encode(clips.tolist())
    one_line(error)


def test_actions_must_match_the_model_exactly():
    """A scalar, a 1-element or a wrongly batched action is refused, never broadcast; a model without actions
    refuses them rather than ignoring them."""
    model = build_world_model(TINY, action_dim=2).eval()
    start = torch.zeros(3, model.config.y_dim)
    for shape in [(3, 4, 1), (3, 4), (1, 4, 2), (3, 2, 2)]:
        with pytest.raises(ValueError, match=r"actions of shape \(3, >= 4, 2\) expected") as error:
            model.imagine(start, 4, actions=torch.zeros(shape))
        assert f"got {shape}" in one_line(error)
    assert model.imagine(start, 4, actions=np.zeros((3, 4, 2))).frame_states.shape == (3, 5, model.config.y_dim)
    with pytest.raises(ValueError, match=r"model.action_dim=0") as error:
        tiny_model().predict(random_clips(1, 3), 2, actions=torch.zeros(1, 4, 2))
    one_line(error)


@pytest.mark.parametrize("action", [torch.tensor(0.5), torch.tensor([0.5]), torch.zeros(3), torch.zeros(1, 2)])
def test_episode_filter_refuses_an_action_of_another_shape(action):
    model = build_world_model(TINY, action_dim=2).eval()
    frames = random_clips(1, 2)[0]
    episode_filter = EpisodeFilter(model, context=4, device=CPU)
    episode_filter.reset(frames[0])
    with pytest.raises(
        ValueError, match=re.escape(f"action of shape {tuple(action.shape)}, but the model takes actions of shape (2,)")
    ) as error:
        episode_filter.step(action, frames[1])
    one_line(error)
    episode_filter.step(np.array([0.5, -0.5]), frames[1].numpy())
    assert episode_filter.state().shape == (1, model.config.y_dim)


def test_episode_filter_needs_the_model_in_eval_mode():
    model = build_world_model(TINY, action_dim=2)
    episode_filter = EpisodeFilter(model, context=4, device=CPU)
    with pytest.raises(RuntimeError, match=r"call model.eval\(\) first") as error:
        episode_filter.reset(random_clips(1, 1)[0, 0])
    one_line(error)
