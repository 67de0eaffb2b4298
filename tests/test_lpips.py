"""LPIPS without torchvision: equal to the lpips package given the same trunk, and clear load errors."""

from __future__ import annotations

import importlib
import sys
import types
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from video_pred.metrics import lpips as our_lpips


def _fake_torchvision(trunk_state: dict[str, torch.Tensor]) -> types.ModuleType:
    """A `torchvision` stand-in whose `models.alexnet(...)` carries OUR trunk module with `trunk_state`."""

    def alexnet(*args, **kwargs) -> types.SimpleNamespace:
        features = our_lpips.alexnet_features()
        features.load_state_dict(trunk_state)
        return types.SimpleNamespace(features=features)

    torchvision = types.ModuleType("torchvision")
    torchvision.models = types.ModuleType("torchvision.models")
    torchvision.models.alexnet = alexnet
    return torchvision


@pytest.fixture
def forget_lpips_package(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Import the real lpips package afresh in this test and drop it (and any fake torchvision) afterwards."""
    for name in [name for name in sys.modules if name == "lpips" or name.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [name for name in sys.modules if name == "lpips" or name.startswith("lpips.")]:
        del sys.modules[name]


def _ours_with_reference_weights(reference: torch.nn.Module) -> our_lpips.LPIPS:
    """Our LPIPS holding the reference model's trunk and linear weights (lpips keys mapped to ours)."""
    ours = our_lpips.LPIPS()
    # lpips keeps torchvision's feature indices inside its slices: `slice2.3.weight` is `features.3.weight`.
    ours.features.load_state_dict({key.split(".", 1)[1]: value for key, value in reference.net.state_dict().items()})
    ours.lins.load_state_dict({f"{index}.weight": reference.lins[index].model[1].weight for index in range(5)})
    return ours


def _assert_same_distances(reference: torch.nn.Module, ours: our_lpips.LPIPS) -> None:
    for channels in (3, 1):
        pred, truth = torch.rand(2, 4, channels, 64, 64).unbind(0)
        expected = reference(pred.expand(-1, 3, -1, -1), truth.expand(-1, 3, -1, -1), normalize=True).flatten()
        torch.testing.assert_close(ours(pred, truth), expected, rtol=1e-5, atol=1e-6)
        assert bool((expected > 0).all())


def test_lpips_equals_package_with_fake_torchvision(monkeypatch, forget_lpips_package) -> None:
    trunk = our_lpips.alexnet_features()  # random weights, shared by both implementations
    monkeypatch.setitem(sys.modules, "torchvision", _fake_torchvision(trunk.state_dict()))
    lpips = importlib.import_module("lpips")
    reference = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    ours = _ours_with_reference_weights(reference)
    torch.testing.assert_close(ours.features.state_dict(), trunk.state_dict())
    _assert_same_distances(reference, ours)


def test_lpips_equals_package_with_real_torchvision(forget_lpips_package) -> None:
    try:
        importlib.import_module("torchvision")
    except Exception as error:  # torchvision may be absent or fail to import beside a CPU-only torch
        pytest.skip(f"torchvision does not import here: {type(error).__name__}: {error}")
    lpips = importlib.import_module("lpips")
    reference = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    _assert_same_distances(reference, _ours_with_reference_weights(reference))


def _torchvision_checkpoint(path: Path) -> None:
    """Write a checkpoint laid out as torchvision's AlexNet file (features + classifier), random weights."""
    state = {f"features.{key}": value for key, value in our_lpips.alexnet_features().state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(4096, 9216)
    torch.save(state, path)


def test_load_lpips_reads_trunk_and_package_lin_weights(tmp_path: Path) -> None:
    _torchvision_checkpoint(tmp_path / "alexnet.pth")
    model = our_lpips.load_lpips("cpu", trunk_path=tmp_path / "alexnet.pth")
    lin_state = torch.load(our_lpips._lpips_lin_path(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.lins[2].weight, lin_state["lin2.model.1.weight"])
    images = torch.rand(2, 1, 64, 64)
    assert model(images, images).abs().max() < 1e-6
    assert not any(parameter.requires_grad for parameter in model.parameters())


def test_load_lpips_errors_name_the_culprit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        our_lpips.load_lpips(trunk_path=tmp_path / "missing.pth")
    (tmp_path / "corrupt.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="corrupt.pth"):
        our_lpips.load_lpips(trunk_path=tmp_path / "corrupt.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(RuntimeError, match="other.pth is not an AlexNet checkpoint"):
        our_lpips.load_lpips(trunk_path=tmp_path / "other.pth")

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="downloading .*alexnet-owt-7be5be79.pth failed") as error:
        our_lpips.load_lpips()
    assert "\n" not in str(error.value)


def test_lpips_rejects_mismatched_shapes() -> None:
    model = our_lpips.LPIPS()
    with pytest.raises(ValueError, match="pred shape"):
        model(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 32, 64))
    with pytest.raises(ValueError, match="expected images"):
        model(torch.rand(2, 2, 64, 64), torch.rand(2, 2, 64, 64))
