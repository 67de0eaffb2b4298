"""Shapes of every part of SRVP, and the architectures checked against docs/model.md literally."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from srvp.worldmodel import SRVP, SRVPConfig
from srvp.worldmodel.conv import dcgan_decoder, dcgan_encoder, vgg_decoder, vgg_encoder
from tests.worldmodel_testing import (
    random_clips,
    tiny_model,
)

BLOCK_SHAPES = {
    # (channels as a multiple of `filters`, resolution) of each encoder block, highest resolution first.
    "dcgan": [(1, 32), (2, 16), (4, 8), (8, 4)],
    "vgg": [(1, 64), (2, 32), (4, 16), (8, 8)],
}


@pytest.mark.parametrize("arch", ["dcgan", "vgg"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("skip", [False, True])
def test_every_output_shape(arch: str, channels: int, skip: bool) -> None:
    model = tiny_model(arch=arch, channels=channels, skip=skip, dt=0.5)
    cfg = model.config
    batch, length = 2, 4
    frames = random_clips(batch, length, channels)
    with torch.no_grad():
        encoded = model.encode(frames)
        assert encoded.codes.shape == (batch, length, cfg.code_dim)
        assert encoded.codes.abs().max() <= 1
        assert [tuple(block.shape) for block in encoded.blocks] == [
            (
                batch,
                length,
                cfg.filters * multiple,
                size,
                size,
            )
            for multiple, size in BLOCK_SHAPES[arch]
        ]

        observation = model.observe(frames)
        assert observation.states.shape == (batch, length, cfg.y_dim)
        assert observation.content.shape == (batch, cfg.content_dim)
        assert observation.q_y1.mean.shape == observation.q_y1.std.shape == (batch, cfg.y_dim)
        assert observation.q_z.mean.shape == (batch, length - 1, cfg.z_dim)
        assert observation.rollout.states.shape == (batch, 2 * (length - 1) + 1, cfg.y_dim)
        assert observation.rollout.residuals.shape == (batch, 2 * (length - 1), cfg.y_dim)
        if skip:
            assert [tuple(s.shape) for s in observation.skips] == [
                tuple(b.shape[:1] + b.shape[2:]) for b in encoded.blocks
            ]
        else:
            assert observation.skips is None

        decoded = model.decode(observation.states, observation.content, observation.skips)
        assert decoded.shape == (batch, length, channels, 64, 64)
        assert decoded.dtype == torch.float32
        assert 0 <= decoded.min() and decoded.max() <= 1

        output = model.elbo(frames)
        assert output.reconstruction.shape == (batch, length, channels, 64, 64)
        assert set(output.parts) == {"nll", "kl_y1", "kl_z", "residual_norm", "loss"}
        assert all(value.shape == () and torch.isfinite(value) for value in output.parts.values())
        assert output.loss.shape == ()

        horizon, samples = 3, 2
        predicted = model.predict(frames[:, :3], horizon, num_samples=samples)
        assert predicted.shape == (batch, samples, 3 + horizon, channels, 64, 64)
        assert 0 <= predicted.min() and predicted.max() <= 1
        every_substep = model.predict(frames[:, :3], horizon, num_samples=samples, all_substeps=True)
        assert every_substep.shape == (batch, samples, int((3 + horizon - 1) / 0.5) + 1, channels, 64, 64)


@pytest.mark.parametrize("dt, expected", [(1.0, 5 + 4), (1 / 3, 3 * (5 + 4 - 1) + 1)])
def test_all_substeps_length(dt: float, expected: int) -> None:
    model = tiny_model()
    with torch.no_grad():
        predicted = model.predict(random_clips(1, 5), 4, dt=dt, all_substeps=True, cond_dt=dt)
    assert predicted.shape[2] == expected


def test_parameter_counts_cover_every_parameter() -> None:
    model = tiny_model(heads={"reward": 1}, action_dim=2)
    counts = model.parameter_counts()
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert sum(count for name, count in counts.items() if name != "total") == counts["total"]
    assert {"encoder", "decoder", "q_y1", "posterior_lstm", "posterior_head", "prior", "transition", "heads"} <= set(
        counts
    )
    assert counts["encoder"] == sum(p.numel() for p in model.encoder.parameters())
    assert "parameters:" in repr(model)


# ---------------------------------------------------------------- architectures, literally (docs/model.md)
def layers_of(module: nn.Module) -> list[nn.Module]:
    """Leaf modules in forward order (our blocks are Sequentials, so registration order is call order)."""
    return [layer for layer in module.modules() if not list(layer.children())]


def describe(layer: nn.Module) -> tuple:
    """A compact, comparable description of one leaf layer."""
    if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
        return (
            type(layer).__name__,
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size[0],
            layer.stride[0],
            layer.padding[0],
            layer.bias is not None,
        )
    if isinstance(layer, nn.BatchNorm2d):
        return ("BN", layer.num_features)
    if isinstance(layer, nn.LeakyReLU):
        return ("LeakyReLU", layer.negative_slope)
    if isinstance(layer, nn.MaxPool2d):
        return ("MaxPool", layer.kernel_size, layer.stride)
    if isinstance(layer, nn.Upsample):
        return ("Upsample", layer.scale_factor, layer.mode)
    return (type(layer).__name__,)


def conv(kind: str, fan_in: int, fan_out: int, kernel: int, stride: int, padding: int) -> list[tuple]:
    return [(kind, fan_in, fan_out, kernel, stride, padding, False)]


def block(
    fan_in: int,
    fan_out: int,
    kernel: int = 3,
    stride: int = 1,
    padding: int = 1,
    kind: str = "Conv2d",
    norm: bool = True,
) -> list[tuple]:
    """conv (no bias) -> BatchNorm -> LeakyReLU(0.2)."""
    return (
        conv(kind, fan_in, fan_out, kernel, stride, padding)
        + ([("BN", fan_out)] if norm else [])
        + [("LeakyReLU", 0.2)]
    )


POOL = [("MaxPool", 2, 2)]
UP = [("Upsample", 2.0, "nearest")]


def test_dcgan_encoder_is_literal() -> None:
    nc, nf = 3, 64
    expected = (
        block(nc, nf, 4, 2, 1, norm=False)
        + block(nf, 2 * nf, 4, 2, 1)
        + block(2 * nf, 4 * nf, 4, 2, 1)
        + block(4 * nf, 8 * nf, 4, 2, 1)
        + conv("Conv2d", 8 * nf, 128, 4, 1, 0)
        + [("BN", 128), ("Tanh",)]
    )
    assert [describe(layer) for layer in layers_of(dcgan_encoder(nc, 128, nf))] == expected


def test_vgg_encoder_is_literal() -> None:
    nc, nf = 1, 64
    expected = (
        block(nc, nf)
        + block(nf, nf)
        + POOL
        + block(nf, 2 * nf)
        + block(2 * nf, 2 * nf)
        + POOL
        + block(2 * nf, 4 * nf)
        + block(4 * nf, 4 * nf)
        + block(4 * nf, 4 * nf)
        + POOL
        + block(4 * nf, 8 * nf)
        + block(8 * nf, 8 * nf)
        + block(8 * nf, 8 * nf)
        + POOL
        + conv("Conv2d", 8 * nf, 128, 4, 1, 0)
        + [("BN", 128), ("Tanh",)]
    )
    assert [describe(layer) for layer in layers_of(vgg_encoder(nc, 128, nf))] == expected


@pytest.mark.parametrize("skip", [False, True])
def test_dcgan_decoder_mirrors_the_encoder(skip: bool) -> None:
    nc, nf, latent, coef = 1, 64, 256 + 20, 2 if skip else 1
    tconv = "ConvTranspose2d"
    expected = (
        block(latent, 8 * nf, 4, 1, 0, kind=tconv)
        + block(8 * nf * coef, 4 * nf, 4, 2, 1, kind=tconv)
        + block(4 * nf * coef, 2 * nf, 4, 2, 1, kind=tconv)
        + block(2 * nf * coef, nf, 4, 2, 1, kind=tconv)
        + conv(tconv, nf * coef, nc, 4, 2, 1)
    )
    assert [describe(layer) for layer in layers_of(dcgan_decoder(nc, latent, nf, skip))] == expected


@pytest.mark.parametrize("skip", [False, True])
def test_vgg_decoder_mirrors_the_encoder(skip: bool) -> None:
    nc, nf, latent, coef = 3, 64, 256 + 50, 2 if skip else 1
    expected = (
        block(latent, 8 * nf, 4, 1, 0, kind="ConvTranspose2d")
        + UP
        + block(8 * nf * coef, 8 * nf)
        + block(8 * nf, 8 * nf)
        + block(8 * nf, 4 * nf)
        + UP
        + block(4 * nf * coef, 4 * nf)
        + block(4 * nf, 4 * nf)
        + block(4 * nf, 2 * nf)
        + UP
        + block(2 * nf * coef, 2 * nf)
        + block(2 * nf, nf)
        + UP
        + block(nf * coef, nf)
        + conv("ConvTranspose2d", nf, nc, 3, 1, 1)
    )
    assert [describe(layer) for layer in layers_of(vgg_decoder(nc, latent, nf, skip))] == expected


def test_decoder_ends_in_a_sigmoid() -> None:
    decoder = dcgan_decoder(1, 8, 8)
    latent = torch.randn(2, 8)
    last_conv = decoder.blocks[-1]
    captured = []
    last_conv.register_forward_hook(lambda module, inputs, output: captured.append(output))
    output = decoder.eval()(latent)
    torch.testing.assert_close(output, torch.sigmoid(captured[0]))


@pytest.mark.parametrize("arch", ["dcgan", "vgg"])
@pytest.mark.parametrize("skip", [False, True])
def test_output_mean_starts_the_decoded_frames_at_that_grey(arch: str, skip: bool) -> None:
    # The paper's decoder has no output bias and starts at sigmoid(0) = 0.5 on every pixel; output_mean adds a
    # learned bias at its logit, changes no other parameter and consumes no random numbers.
    frames = random_clips(2, 3)
    torch.manual_seed(0)
    paper = tiny_model(arch=arch, skip=skip)
    torch.manual_seed(0)
    black = tiny_model(arch=arch, skip=skip, output_mean=0.025)
    added = set(black.state_dict()) - set(paper.state_dict())
    bias = black.decoder.output_layer().bias
    assert added == {name for name, parameter in black.named_parameters() if parameter is bias}
    assert set(paper.state_dict()) <= set(black.state_dict())
    for name, tensor in paper.state_dict().items():
        torch.testing.assert_close(black.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    with torch.no_grad():
        assert paper.predict(frames, 2).mean().item() == pytest.approx(0.5, abs=0.05)
        assert black.predict(frames, 2).mean().item() == pytest.approx(0.025, abs=0.01)
    black.train().elbo(frames).loss.backward()
    assert bias.grad is not None and bias.grad.abs().sum() > 0


def test_paper_sizes_dcgan_mnist() -> None:
    """SM-MNIST settings: 1 channel, y = z = 20, k = 5, code 128, content 256, LSTM 256, MLP widths."""
    model = SRVP(SRVPConfig()).eval()
    assert model.q_y1[0].in_features == 5 * 128 and model.q_y1[-1].out_features == 2 * 20
    assert [layer.out_features for layer in model.q_y1 if isinstance(layer, nn.Linear)] == [256, 256, 40]
    assert (model.posterior_lstm.input_size, model.posterior_lstm.hidden_size) == (128, 256)
    assert model.posterior_lstm.num_layers == 1
    assert (model.posterior_head.in_features, model.posterior_head.out_features) == (256, 40)
    prior_linears = [layer for layer in model.prior if isinstance(layer, nn.Linear)]
    assert [layer.out_features for layer in prior_linears] == [512, 512, 512, 40]
    transition_linears = [layer for layer in model.transition.net if isinstance(layer, nn.Linear)]
    assert transition_linears[0].in_features == 40
    assert [layer.out_features for layer in transition_linears] == [512, 512, 512, 20]
    assert (model.content_projection[0].in_features, model.content_projection[0].out_features) == (128, 256)
    assert isinstance(model.content_projection[1], nn.ReLU)
    assert (model.content_output[0].in_features, model.content_output[0].out_features) == (256, 256)
    assert isinstance(model.content_output[1], nn.Tanh)
    frames = random_clips(1, 6)
    with torch.no_grad():
        encoded = model.encode(frames)
        assert encoded.codes.shape == (1, 6, 128)
        assert model.predict(frames[:, :5], 2).shape == (1, 1, 7, 1, 64, 64)


def test_paper_sizes_vgg_rgb_with_skips() -> None:
    """BAIR settings: 3 channels, VGG with skips, y = z = 50, k = 2."""
    model = SRVP(
        SRVPConfig(arch="vgg", channels=3, skip=True, y_dim=50, z_dim=50, y1_frames=2, content_frames=2, dt=0.5, nu=0.5)
    ).eval()
    frames = random_clips(1, 3, channels=3)
    with torch.no_grad():
        output = model.elbo(frames)
    assert output.reconstruction.shape == (1, 3, 3, 64, 64)
    assert [tuple(block.shape[2:]) for block in model.encode(frames[:, :1]).blocks] == [
        (64, 64, 64),
        (128, 32, 32),
        (256, 16, 16),
        (512, 8, 8),
    ]


# ---------------------------------------------------------------- initialisation
def test_conv_and_batchnorm_initialisation() -> None:
    model = SRVP(SRVPConfig())
    big_conv = model.encoder.blocks[3][0]
    assert big_conv.weight.numel() == 256 * 512 * 16
    assert abs(big_conv.weight.std().item() - 0.02) < 0.0005
    assert abs(big_conv.weight.mean().item()) < 0.0005
    for part in (model.encoder, model.decoder):
        for layer in part.modules():
            if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
                assert layer.weight.std().item() == pytest.approx(0.02, rel=0.25), layer
    batchnorms = [layer for layer in model.modules() if isinstance(layer, nn.BatchNorm2d)]
    batchnorm_weights = torch.cat([layer.weight for layer in batchnorms])
    batchnorm_biases = torch.cat([layer.bias for layer in batchnorms])
    assert batchnorm_weights.numel() > 1000
    assert batchnorm_weights.mean().item() == pytest.approx(1.0, abs=0.003)
    assert batchnorm_weights.std().item() == pytest.approx(0.02, rel=0.15)
    assert torch.all(batchnorm_biases == 0)


@pytest.mark.parametrize("gain", [1.2, 1.41])
def test_transition_is_orthogonal_with_gain(gain: float) -> None:
    model = tiny_model(f_gain=gain, fwd_hidden=32)
    for layer in model.transition.net:
        if isinstance(layer, nn.Linear):
            weight = layer.weight
            small_side = min(weight.shape)
            gram = weight @ weight.T if weight.shape[0] == small_side else weight.T @ weight
            torch.testing.assert_close(gram, gain**2 * torch.eye(small_side), atol=1e-4, rtol=0)
            assert torch.all(layer.bias == 0)


@pytest.mark.parametrize("shape", [(2, 6, 1, 32, 32), (2, 6, 3, 64, 64), (6, 1, 64, 64)])
def test_frames_of_the_wrong_shape_are_named(shape):
    model = tiny_model()
    with pytest.raises(ValueError, match=r"frames of shape \(b, t, 1, 64, 64\) expected"):
        model.encode(torch.rand(shape))


def test_head_target_of_the_wrong_shape_is_named():
    model = tiny_model(heads={"reward": 1})
    with pytest.raises(ValueError, match="head target 'reward'"):
        model.elbo(random_clips(2, 6), head_targets={"reward": torch.zeros(2, 5)})


@pytest.mark.parametrize("training", [False, True])
def test_observe_content_draws_what_observe_decodes_with(training):
    """The content w and skips alone (what a caller with its own states decodes with) are observe's, drawn
    from the same random numbers in training mode."""
    model = tiny_model(skip=True).train(training)
    encoded = model.encode(random_clips(3, 6))
    torch.manual_seed(1)
    observation = model.observe(None, encoded=encoded)
    torch.manual_seed(1)
    content, skips = model.observe_content(encoded)
    torch.testing.assert_close(content, observation.content, rtol=0, atol=0)
    for skip, observed in zip(skips, observation.skips, strict=True):
        torch.testing.assert_close(skip, observed, rtol=0, atol=0)
