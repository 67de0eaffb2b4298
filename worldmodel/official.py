"""Load checkpoints of the official SRVP implementation (github.com/edouardelasalles/srvp) into `SRVP`.

An official run directory holds `config.json` (the training arguments, `args.py`) and `model.pt` (a bare
`state_dict` of `StochasticLatentResidualVideoPredictor`; also `model_best.pt`, `model_<step>.pt`).
`load_official` rebuilds our `SRVPConfig` from those arguments and loads the renamed weights;
`python -m srvp.video_pred.convert_official --official model.pt --config config.json --out ours.pt` writes our
self-describing checkpoint, which `srvp-eval` evaluates like one of ours.

Hyper-parameters (official argument -> `SRVPConfig` field):
    nc -> channels, archi -> arch, skipco -> skip, nf -> filters, nhx -> code_dim, ny -> y_dim, nz -> z_dim,
    nh_inf -> inf_hidden, content_dim and lstm_hidden (the official model uses nh_inf for all three),
    nlayers_inf -> inf_layers, nh_res -> fwd_hidden, nlayers_res -> fwd_layers,
    nt_inf -> y1_frames and content_frames (one k for both), n_euler_steps -> dt = 1 / n_euler_steps,
    res_gain -> f_gain, obs_scale (a standard deviation) -> nu = obs_scale ** 2, beta_z -> beta,
    beta_y -> beta_y, l2_res -> l2_weight. nx must be 64. Missing optional arguments take the defaults of
    the official `args.py`.

Parameters and buffers (official name -> ours; the rest of each name is unchanged):
    encoder.conv.<i>.*         -> encoder.blocks.<i>.*   (same Sequential indices for DCGAN and VGG, the
    encoder.last_conv.*        -> encoder.head.*          VGG max-pools included; BatchNorm running stats)
    decoder.first_upconv.*     -> decoder.stem.*
    decoder.conv.<i>.*         -> decoder.blocks.<i>.*
    w_proj.0.*                 -> content_projection.0.*
    w_inf.0.*                  -> content_output.0.*
    q_y.module.<l>.<j>.*       -> q_y1.<2l>.*            (official MLP layer l is Sequential([ReLU,] Linear):
    p_z.module.<l>.<j>.*       -> prior.<2l>.*            j = 0 for l = 0 else 1; ours is one flat
    dynamics.module.<l>.<j>.*  -> transition.net.<2l>.*   Sequential Linear, ReLU, Linear, ...)
    inf_z.*                    -> posterior_lstm.*       (same LSTM weights; only the batch layout differs)
    q_z.*                      -> posterior_head.*
The renaming is exact with no re-ordering of any tensor because both implementations agree on:
the decoder input [w, y] (content first; `SRVP.decode` concatenates [content, states]); skip
connections concatenated as [h, skip] on channels, the lowest-resolution encoder block feeding the first
decoder block (the official encoder returns its block outputs reversed, our decoder indexes them from the
end); the q(y_1) input as the codes of frames 1..k concatenated in time order; the dynamics input [y, z];
mean then raw scale in every Gaussian head with std = softplus(raw) + 1e-8. Conversion fails with one
line naming every unmapped, missing or mis-shaped tensor; only `num_batches_tracked` counters (absent from
state dicts of PyTorch < 0.4.1, unused in evaluation) are filled with zeros when absent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from srvp.worldmodel.config import SRVPConfig
from srvp.worldmodel.model import SRVP

OFFICIAL_DEFAULTS: dict[str, Any] = {
    "nx": 64,
    "nhx": 128,
    "n_euler_steps": 1,
    "obs_scale": 1.0,
    "archi": "dcgan",
    "skipco": False,
    "nf": 64,
    "nh_res": 512,
    "nlayers_res": 4,
    "nh_inf": 256,
    "nlayers_inf": 3,
    "res_gain": 1.41,
    "beta_z": 1.0,
    "beta_y": 1.0,
    "l2_res": 1.0,
}
"""Defaults of the official `args.py` for the model arguments a config.json may lack."""

OFFICIAL_REQUIRED = ("nc", "ny", "nz", "nt_inf")
"""Model arguments without a default in the official `args.py`."""

PREFIX_RENAMES = (
    ("encoder.conv.", "encoder.blocks."),
    ("encoder.last_conv.", "encoder.head."),
    ("decoder.first_upconv.", "decoder.stem."),
    ("decoder.conv.", "decoder.blocks."),
    ("w_proj.", "content_projection."),
    ("w_inf.", "content_output."),
    ("inf_z.", "posterior_lstm."),
    ("q_z.", "posterior_head."),
)
"""Official module prefixes whose inner names are identical in our model."""

MLP_RENAMES = {"q_y": "q_y1", "p_z": "prior", "dynamics": "transition.net"}
"""Official `MLP` modules -> our flat `mlp` Sequentials."""

MLP_NAME = re.compile(r"^(q_y|p_z|dynamics)\.module\.(\d+)\.(\d+)\.(weight|bias)$")
"""Official MLP tensor: <mlp>.module.<layer>.<index in the layer's Sequential>.<weight|bias>."""


def official_name_to_ours(name: str) -> str | None:
    """Our name for an official parameter/buffer name, or None when no rule covers it."""
    match = MLP_NAME.match(name)
    if match:
        module, layer, inner, kind = match.group(1), int(match.group(2)), int(match.group(3)), match.group(4)
        # Official layer 0 is Sequential(Linear); layer l > 0 is Sequential(ReLU, Linear).
        if inner != (0 if layer == 0 else 1):
            return None
        return f"{MLP_RENAMES[module]}.{2 * layer}.{kind}"
    for official_prefix, our_prefix in PREFIX_RENAMES:
        if name.startswith(official_prefix):
            return our_prefix + name[len(official_prefix) :]
    return None


def _names(names: Sequence[str], limit: int = 12) -> str:
    """A bounded, sorted list of names for a one-line error."""
    names = sorted(names)
    more = f" ... (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor], config: SRVPConfig) -> dict[str, torch.Tensor]:
    """Rename an official SRVP state_dict into ours for a model built from `config`.

    Raises a one-line ValueError listing official tensors no rule maps, tensors our model needs but the
    official dict lacks, and tensors whose shapes disagree (a config that does not match the weights).
    """
    return _rename_checked(state_dict, SRVP(config).state_dict())


def _rename_checked(
    state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """`convert_official_state_dict` against the state_dict `expected` of the target model."""
    converted: dict[str, torch.Tensor] = {}
    unmapped = []
    for name, tensor in state_dict.items():
        ours = official_name_to_ours(name)
        if ours is None or ours not in expected:
            unmapped.append(name)
        else:
            converted[ours] = tensor
    missing = [name for name in expected if name not in converted]
    for name in missing:
        if name.endswith("num_batches_tracked"):
            converted[name] = torch.zeros_like(expected[name])
    missing = [name for name in missing if not name.endswith("num_batches_tracked")]
    mis_shaped = [
        f"{name} {tuple(tensor.shape)} vs {tuple(expected[name].shape)}"
        for name, tensor in converted.items()
        if tensor.shape != expected[name].shape
    ]
    problems = []
    if unmapped:
        problems.append(f"unmapped official tensors: {_names(unmapped)}")
    if missing:
        problems.append(f"missing tensors (ours): {_names(missing)}")
    if mis_shaped:
        problems.append(f"shape mismatches (official vs ours): {_names(mis_shaped)}")
    if problems:
        raise ValueError("official SRVP state_dict does not match the config: " + "; ".join(problems))
    return {name: converted[name] for name in expected}


def config_from_official_args(args: Mapping[str, Any]) -> SRVPConfig:
    """Our `SRVPConfig` from the official run's training arguments (config.json), see the module docstring."""
    missing = [name for name in OFFICIAL_REQUIRED if name not in args]
    if missing:
        raise ValueError(f"official config lacks the required model arguments {missing}")
    values = {**OFFICIAL_DEFAULTS, **{key: value for key, value in args.items() if value is not None}}
    if values["nx"] != 64:
        raise ValueError(f"official config nx={values['nx']}: only 64x64 frames are supported")
    if not isinstance(values["skipco"], bool):
        raise ValueError(f"official config skipco={values['skipco']!r}: expected true or false")
    euler_steps = int(values["n_euler_steps"])
    if euler_steps < 1:
        raise ValueError(f"official config n_euler_steps={euler_steps}: must be a positive integer")
    hidden = int(values["nh_inf"])
    return SRVPConfig(
        channels=int(values["nc"]),
        arch=str(values["archi"]),
        skip=values["skipco"],
        filters=int(values["nf"]),
        code_dim=int(values["nhx"]),
        y_dim=int(values["ny"]),
        z_dim=int(values["nz"]),
        content_dim=hidden,
        inf_hidden=hidden,
        lstm_hidden=hidden,
        inf_layers=int(values["nlayers_inf"]),
        fwd_hidden=int(values["nh_res"]),
        fwd_layers=int(values["nlayers_res"]),
        y1_frames=int(values["nt_inf"]),
        content_frames=int(values["nt_inf"]),
        dt=1.0 / euler_steps,
        f_gain=float(values["res_gain"]),
        nu=float(values["obs_scale"]) ** 2,
        beta=float(values["beta_z"]),
        beta_y=float(values["beta_y"]),
        l2_weight=float(values["l2_res"]),
    ).validate()


def read_official_args(config_path: str | Path) -> dict[str, Any]:
    """The training arguments stored in an official run's config.json."""
    config_path = Path(config_path)
    if not config_path.is_file():
        raise FileNotFoundError(f"official config not found: {config_path}")
    try:
        args = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"official config {config_path} is not valid JSON: {error}") from error
    if not isinstance(args, dict):
        raise ValueError(f"official config {config_path} must hold a JSON object of training arguments")
    return args


def read_official_state_dict(weights_path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict stored in an official model.pt (read with weights_only=True)."""
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"official weights not found: {weights_path}")
    try:
        state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:
        message = f"official weights {weights_path} are corrupt or not a state_dict: {error}"
        raise RuntimeError(message) from error
    if not isinstance(state_dict, Mapping) or not all(torch.is_tensor(t) for t in state_dict.values()):
        raise RuntimeError(f"official weights {weights_path} do not hold a state_dict of tensors")
    return dict(state_dict)


def load_official(weights_path: str | Path, config: str | Path | Mapping[str, Any]) -> SRVP:
    """Our `SRVP` (eval mode, CPU) holding an official checkpoint; `config` is the run's config.json path
    or its arguments as a mapping."""
    args = config if isinstance(config, Mapping) else read_official_args(config)
    model_config = config_from_official_args(args)
    model = SRVP(model_config)
    model.load_state_dict(_rename_checked(read_official_state_dict(weights_path), model.state_dict()))
    return model.eval()
