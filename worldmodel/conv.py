"""Frame encoders and decoders for 64x64 frames: DCGAN and VGG16-style, with optional skip connections.

Encoders map a frame to a code in [-1, 1]^code_dim and return the output of each resolution block
(highest resolution first); decoders mirror them and, with skips, concatenate the matching encoder block
output on channels before each block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(
    conv: nn.Module, out_channels: int, norm: bool = True, activation: nn.Module | None = None
) -> nn.Sequential:
    """conv -> BatchNorm -> activation (LeakyReLU 0.2 by default), the building block of both families."""
    layers = [conv]
    if norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(activation if activation is not None else nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def conv3x3(in_channels: int, out_channels: int) -> nn.Sequential:
    """VGG block unit: 3x3 'same' convolution without bias, BatchNorm, LeakyReLU."""
    return conv_block(nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False), out_channels)


class FrameEncoder(nn.Module):
    """Encoder: a list of resolution blocks then a head giving the code (tanh)."""

    def __init__(self, blocks: list[nn.Module], head: nn.Module, code_dim: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.code_dim = code_dim

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """frames (n c h w) -> code (n d), block outputs (highest resolution first)."""
        hidden = frames
        block_outputs = []
        for block in self.blocks:
            hidden = block(hidden)
            block_outputs.append(hidden)
        return self.head(hidden).flatten(1), block_outputs


class FrameDecoder(nn.Module):
    """Decoder: a stem from the latent vector, then blocks that optionally take skips; sigmoid output.

    With skips, each block's input is [h, skip] on channels. Every skip is shared by consecutive latents
    (all frames of a clip, all samples of a test clip), and VGG blocks start with a 3x3 convolution of a
    nearest x2 upsampled input. `factorised` (default) exploits both without changing the function: a
    block's first convolution is linear in its input, so it is computed as conv(h) + conv(skip) with the
    skip term once per skip instead of once per latent, and upsample-then-3x3-conv as the equal stride-2
    4x4 transposed convolution on the low-resolution input (16 instead of 36 multiply-adds per input pixel
    and channel pair). On the KTH model this removes about a third of the decoder's arithmetic, in
    training and in sampling. `factorised = False` runs the literal concatenation (the reference of the
    equality tests and the benchmark baseline). The module tree, so the parameter names, is the same.
    """

    factorised: bool = True

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], skip: bool) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.skip = skip

    def output_layer(self) -> nn.Module:
        """The last convolution, whose output the sigmoid turns into pixels."""
        return leaf_layers(self.blocks[-1])[-1]

    def forward(self, latent: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        """latent (n d), skips [(s ch h w)] (encoder block outputs, highest resolution first) -> frames
        (n c h w) in [0, 1]. s divides n: skip i serves latents i * n/s to (i + 1) * n/s - 1."""
        return torch.sigmoid(self.logits(latent, skips))

    def logits(self, latent: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The frames before the sigmoid (n c h w): what a Bernoulli likelihood reads, saturation-free."""
        if self.skip != (skips is not None):
            raise ValueError(f"decoder built with skip={self.skip} was given skips={skips is not None}")
        if skips is not None and latent.shape[0] % skips[0].shape[0]:
            raise ValueError(f"{skips[0].shape[0]} skips cannot be shared by {latent.shape[0]} latents")
        block_skips = [None] * len(self.blocks) if skips is None else skips[::-1]
        if not self.factorised:
            hidden = self.stem(latent[:, :, None, None])
            for block, skip in zip(self.blocks, block_skips, strict=True):
                if skip is not None:
                    skip = skip.repeat_interleave(hidden.shape[0] // skip.shape[0], dim=0)
                    hidden = torch.cat([hidden, skip], dim=1)
                hidden = block(hidden)
            return hidden
        hidden, upsample_pending = run_deferring_upsampling(leaf_layers(self.stem), latent[:, :, None, None])
        for block, skip in zip(self.blocks, block_skips, strict=True):
            entry, *rest = leaf_layers(block)
            hidden = entry_convolution(entry, hidden, skip, upsample_pending)
            hidden, upsample_pending = run_deferring_upsampling(rest, hidden)
        if upsample_pending:
            hidden = F.interpolate(hidden, scale_factor=2, mode="nearest")
        return hidden


def leaf_layers(module: nn.Module) -> list[nn.Module]:
    """The layers of a chain of (nested) Sequentials, in execution order."""
    return [layer for layer in module.modules() if not isinstance(layer, nn.Sequential)]


def is_nearest_x2(layer: nn.Module) -> bool:
    """Whether `layer` is the decoders' nearest-neighbour x2 upsampling."""
    return (
        isinstance(layer, nn.Upsample)
        and layer.mode == "nearest"
        and layer.size is None
        and layer.scale_factor in (2, 2.0, (2, 2), (2.0, 2.0))
    )


def run_deferring_upsampling(layers: list[nn.Module], hidden: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Run `layers`, except a final nearest x2 upsampling, left to the next block's first convolution;
    returns the output and whether that upsampling is still due."""
    if layers and is_nearest_x2(layers[-1]):
        *layers, _ = layers
        pending = True
    else:
        pending = False
    for layer in layers:
        hidden = layer(hidden)
    return hidden, pending


def folds_upsampling(conv: nn.Module) -> bool:
    """Whether `conv` is a 3x3 'same' convolution, which `upsampled_conv3x3_as_transposed` applies to."""
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def upsampled_conv3x3_as_transposed(weight: torch.Tensor) -> torch.Tensor:
    """Weight (o i 3 3) of a 3x3 'same' convolution of a nearest x2 upsampled input -> weight (i o 4 4) of
    the stride-2, padding-1 transposed convolution of the input itself that computes the same output.

    Along each axis, output pixel 2j sees input pixels j-1 (tap w0) and j (taps w1 + w2), output pixel
    2j+1 sees j (w0 + w1) and j+1 (w2); the transposed kernel holds these sums at offsets 3, 1, 2, 0.
    """
    for axis in (-1, -2):
        w0, w1, w2 = weight.unbind(axis)
        weight = torch.stack([w2, w1 + w2, w0 + w1, w0], dim=axis)
    return weight.transpose(0, 1)


def convolve(
    conv: nn.Conv2d | nn.ConvTranspose2d, inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """`conv`'s operation with another weight (a slice of its input channels) and bias."""
    if isinstance(conv, nn.ConvTranspose2d):
        return F.conv_transpose2d(
            inputs, weight, bias, conv.stride, conv.padding, conv.output_padding, conv.groups, conv.dilation
        )
    return F.conv2d(inputs, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def entry_convolution(conv: nn.Module, hidden: torch.Tensor, skip: torch.Tensor | None, upsample: bool) -> torch.Tensor:
    """`conv` of [nearest_x2(hidden) if `upsample`, skip shared by consecutive rows of hidden], computed
    as the sum of the convolutions of both parts (see `FrameDecoder`)."""
    fold = upsample and folds_upsampling(conv)
    if upsample and not fold:
        hidden = F.interpolate(hidden, scale_factor=2, mode="nearest")
    if skip is None and not fold:
        return conv(hidden)
    if not isinstance(conv, nn.Conv2d | nn.ConvTranspose2d) or conv.padding_mode != "zeros":
        raise ValueError(f"a skip can only enter a decoder block through a zero-padded convolution, not {conv}")
    channel_axis = 0 if isinstance(conv, nn.ConvTranspose2d) else 1
    hidden_weight, skip_weight = conv.weight.split(
        [hidden.shape[1], conv.weight.shape[channel_axis] - hidden.shape[1]], dim=channel_axis
    )
    if fold:
        output = F.conv_transpose2d(hidden, upsampled_conv3x3_as_transposed(hidden_weight), conv.bias, 2, 1)
    else:
        output = convolve(conv, hidden, hidden_weight, conv.bias)
    if skip is not None:
        skip_term = convolve(conv, skip, skip_weight, None)
        # In place on the (n c h w) output keeps its memory format (channels-last stays channels-last).
        output.unflatten(0, (skip.shape[0], -1)).add_(skip_term.unsqueeze(1))
    return output


def dcgan_encoder(channels: int, code_dim: int, filters: int = 64) -> FrameEncoder:
    """DCGAN discriminator trunk: four 4x4 stride-2 convolutions (64 -> 4 pixels), then a 4x4 valid conv."""
    widths = [filters, filters * 2, filters * 4, filters * 8]
    blocks = []
    in_channels = channels
    for index, width in enumerate(widths):
        conv = nn.Conv2d(in_channels, width, 4, 2, 1, bias=False)
        blocks.append(conv_block(conv, width, norm=index > 0))
        in_channels = width
    head = conv_block(nn.Conv2d(in_channels, code_dim, 4, 1, 0, bias=False), code_dim, activation=nn.Tanh())
    return FrameEncoder(blocks, head, code_dim)


def with_bias(conv: nn.ConvTranspose2d, bias: bool) -> nn.ConvTranspose2d:
    """`conv` (built without bias) with a zero bias added when `bias`: added after construction, so that
    the random numbers drawn to build the model, hence every other initial weight, stay the same."""
    if bias:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
    return conv


def dcgan_decoder(
    channels: int, latent_dim: int, filters: int = 64, skip: bool = False, output_bias: bool = False
) -> FrameDecoder:
    """DCGAN generator mirroring `dcgan_encoder` (4 -> 64 pixels by 4x4 stride-2 transposed convs); with
    `output_bias`, the last convolution has a bias (the paper's has none)."""
    coef = 2 if skip else 1
    stem = conv_block(nn.ConvTranspose2d(latent_dim, filters * 8, 4, 1, 0, bias=False), filters * 8)
    widths = [filters * 8, filters * 4, filters * 2, filters]
    blocks: list[nn.Module] = [
        conv_block(nn.ConvTranspose2d(width * coef, width // 2, 4, 2, 1, bias=False), width // 2)
        for width in widths[:-1]
    ]
    blocks.append(with_bias(nn.ConvTranspose2d(filters * coef, channels, 4, 2, 1, bias=False), output_bias))
    return FrameDecoder(stem, blocks, skip)


VGG_STAGES = ((1, 2), (2, 2), (4, 3), (8, 3))
"""VGG16 stages of the 64x64 encoder as (width multiplier of `filters`, number of 3x3 convolutions)."""


def vgg_encoder(channels: int, code_dim: int, filters: int = 64) -> FrameEncoder:
    """VGG16-style encoder: 3x3 conv stages 2x64, 2x128, 3x256, 3x512 with 2x2 max-pooling between."""
    blocks = []
    in_channels = channels
    for stage, (multiplier, depth) in enumerate(VGG_STAGES):
        width = filters * multiplier
        layers: list[nn.Module] = [nn.MaxPool2d(2)] if stage > 0 else []
        for _ in range(depth):
            layers.append(conv3x3(in_channels, width))
            in_channels = width
        blocks.append(nn.Sequential(*layers))
    head = nn.Sequential(
        nn.MaxPool2d(2),
        conv_block(nn.Conv2d(in_channels, code_dim, 4, 1, 0, bias=False), code_dim, activation=nn.Tanh()),
    )
    return FrameEncoder(blocks, head, code_dim)


def vgg_decoder(
    channels: int, latent_dim: int, filters: int = 64, skip: bool = False, output_bias: bool = False
) -> FrameDecoder:
    """Mirror of `vgg_encoder` with nearest x2 upsampling; the last stage ends in a 3x3 conv to `channels`
    (with a bias when `output_bias`; the paper's has none)."""
    coef = 2 if skip else 1
    stem = nn.Sequential(
        conv_block(nn.ConvTranspose2d(latent_dim, filters * 8, 4, 1, 0, bias=False), filters * 8),
        nn.Upsample(scale_factor=2, mode="nearest"),
    )
    blocks: list[nn.Module] = []
    for stage, (multiplier, depth) in enumerate(reversed(VGG_STAGES)):
        width = filters * multiplier
        is_last = stage == len(VGG_STAGES) - 1
        out_width = width if is_last else filters * VGG_STAGES[len(VGG_STAGES) - 2 - stage][0]
        layers: list[nn.Module] = []
        in_channels = width * coef
        for _ in range(depth - 1):
            layers.append(conv3x3(in_channels, width))
            in_channels = width
        if is_last:
            layers.append(with_bias(nn.ConvTranspose2d(in_channels, channels, 3, 1, 1, bias=False), output_bias))
        else:
            layers += [conv3x3(in_channels, out_width), nn.Upsample(scale_factor=2, mode="nearest")]
        blocks.append(nn.Sequential(*layers))
    return FrameDecoder(stem, blocks, skip)


def build_encoder(arch: str, channels: int, code_dim: int, filters: int) -> FrameEncoder:
    """Encoder of family `arch` ('dcgan' or 'vgg')."""
    return {"dcgan": dcgan_encoder, "vgg": vgg_encoder}[arch](channels, code_dim, filters)


def build_decoder(
    arch: str, channels: int, latent_dim: int, filters: int, skip: bool, output_bias: bool = False
) -> FrameDecoder:
    """Decoder of family `arch` ('dcgan' or 'vgg'), its last convolution with a bias when `output_bias`."""
    return {"dcgan": dcgan_decoder, "vgg": vgg_decoder}[arch](channels, latent_dim, filters, skip, output_bias)


def init_conv_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), biases 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
