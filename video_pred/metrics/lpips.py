"""LPIPS (Zhang et al., 2018), v0.1 with an AlexNet trunk, without torchvision.

The trunk is an AlexNet `features` stack whose state_dict keys and shapes equal torchvision's
`alexnet().features`, so the official ImageNet checkpoint loads into it unchanged. The calibrated
linear weights are read from the installed `lpips` package's weight file, located without importing
`lpips` (its import pulls torchvision, which cannot import beside a CPU-only torch build).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import Tensor, nn

ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
LPIPS_LIN_FILE = Path("weights") / "v0.1" / "alex.pth"

# Indices, inside the AlexNet features stack, of the five ReLU outputs LPIPS compares.
_TAPPED_RELUS = (1, 4, 7, 9, 11)
_TAPPED_CHANNELS = (64, 192, 384, 256, 256)
# Per-channel shift and scale LPIPS applies to [-1, 1] inputs (ImageNet statistics in that range).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# Added to feature norms before dividing, as LPIPS does, so all-zero features stay finite.
_NORM_EPS = 1e-10


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
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("LPIPS: the lpips package is not installed; run `pip install --no-deps lpips==0.1.4`")
    path = Path(next(iter(spec.submodule_search_locations))) / LPIPS_LIN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS: linear weights not found at {path}; reinstall lpips==0.1.4")
    return path


def _load_tensor_dict(path: Path, what: str) -> dict[str, Tensor]:
    """torch.load a state dict of tensors (weights only), with a one-line error naming a bad file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise RuntimeError(f"LPIPS: cannot read {what} from {path}: {type(error).__name__}: {error}") from None
    if not isinstance(state, dict):
        raise RuntimeError(f"LPIPS: {what} file {path} does not hold a state dict")
    return state


def _alexnet_checkpoint(trunk_path: str | os.PathLike | None) -> dict[str, Tensor]:
    """torchvision AlexNet ImageNet state dict: from `trunk_path`, else the torch hub cache or a download."""
    if trunk_path is not None:
        path = Path(trunk_path)
        if not path.is_file():
            raise FileNotFoundError(f"LPIPS: AlexNet trunk weights not found at {path}")
        return _load_tensor_dict(path, "AlexNet trunk weights")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    if cached.is_file():
        return _load_tensor_dict(cached, "AlexNet trunk weights")
    try:
        return torch.hub.load_state_dict_from_url(ALEXNET_URL, map_location="cpu", check_hash=True)
    except Exception as error:
        raise RuntimeError(
            f"LPIPS: AlexNet weights are not at {cached} and downloading {ALEXNET_URL} failed "
            f"({type(error).__name__}: {error}); download that file there or pass trunk_path"
        ) from None


def load_lpips(device: str | torch.device = "cpu", trunk_path: str | os.PathLike | None = None) -> LPIPS:
    """LPIPS v0.1 (AlexNet) with ImageNet trunk weights and the lpips package's calibrated linear weights.

    `trunk_path` is a torchvision AlexNet checkpoint (alexnet-owt-7be5be79.pth); without it the torch hub
    cache is read, and the file is downloaded there when missing.
    """
    model = LPIPS()
    checkpoint = _alexnet_checkpoint(trunk_path)
    trunk_state = {key.removeprefix("features."): value for key, value in checkpoint.items()
                   if key.startswith("features.")}
    try:
        model.features.load_state_dict(trunk_state)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise RuntimeError(f"LPIPS: {trunk_path or ALEXNET_FILE} is not an AlexNet checkpoint: {first_line}") from None
    lin_path = _lpips_lin_path()
    lin_state = _load_tensor_dict(lin_path, "LPIPS linear weights")
    # The lpips package stores each linear layer as `lin{i}.model.1.weight` (after a dropout at index 0).
    try:
        model.lins.load_state_dict({f"{index}.weight": lin_state[f"lin{index}.model.1.weight"]
                                    for index in range(len(_TAPPED_CHANNELS))})
    except (KeyError, RuntimeError) as error:
        raise RuntimeError(f"LPIPS: unexpected linear weights in {lin_path}: {error}") from None
    return model.to(device)
