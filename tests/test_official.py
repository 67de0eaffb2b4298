"""Conversion of official SRVP checkpoints (edouardelasalles/srvp): names, shapes and numerics.

`official_layout` rebuilds the official module tree from its architecture facts (attribute names, layer
order, shapes; docs/model.md) so its state_dict has the official names and shapes, and its forward
functions below follow the official computation order (skips reversed, [h, skip], [w, y], [y, z]).
Random weights converted into our model must give the same codes, posteriors, prior, residual and frames.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from srvp.video_pred.convert_official import dataset_section, main
from srvp.worldmodel.checkpoint import load_model
from srvp.worldmodel.config import SRVPConfig
from srvp.worldmodel.model import SRVP
from srvp.worldmodel.official import (
    config_from_official_args,
    convert_official_state_dict,
    load_official,
    official_name_to_ours,
)

SMALL_ARGS = {
    "nx": 64,
    "nf": 4,
    "nhx": 16,
    "ny": 5,
    "nz": 3,
    "nt_inf": 2,
    "nh_inf": 24,
    "nlayers_inf": 3,
    "nh_res": 20,
    "nlayers_res": 4,
    "n_euler_steps": 2,
    "obs_scale": 0.2,
    "res_gain": 1.2,
    "beta_z": 1.0,
    "l2_res": 1.0,
}
"""Official training arguments with small sizes (the conversion is generic in every size)."""

CASES = {
    "dcgan_nc1": {"archi": "dcgan", "nc": 1, "skipco": False},
    "dcgan_nc1_skip": {"archi": "dcgan", "nc": 1, "skipco": True},
    "vgg_nc3_skip": {"archi": "vgg", "nc": 3, "skipco": True},
}


def block(conv: nn.Module, norm: bool = True, activation: nn.Module | None = None) -> nn.Sequential:
    """Official make_conv_block: conv, [BatchNorm], activation."""
    layers = [conv] + ([nn.BatchNorm2d(conv.out_channels)] if norm else [])
    return nn.Sequential(*layers, activation if activation is not None else nn.LeakyReLU(0.2))


def conv3(fan_in: int, fan_out: int) -> nn.Sequential:
    return block(nn.Conv2d(fan_in, fan_out, 3, 1, 1, bias=False))


def official_mlp(fan_in: int, hidden: int, fan_out: int, layers: int) -> nn.Module:
    """Official MLP: attribute `module`; layer 0 = Sequential(Linear), layer l > 0 = (ReLU, Linear)."""
    container = nn.Module()
    dims = [fan_in] + [hidden] * (layers - 1) + [fan_out]
    container.module = nn.Sequential(
        *[
            nn.Sequential(*([nn.ReLU()] if index else []), nn.Linear(dims[index], dims[index + 1]))
            for index in range(layers)
        ]
    )
    return container


def official_layout(args: dict) -> nn.Module:
    """The official StochasticLatentResidualVideoPredictor module tree (names, shapes, order)."""
    nc, nf, nhx, ny, nz, nh_inf = args["nc"], args["nf"], args["nhx"], args["ny"], args["nz"], args["nh_inf"]
    coef = 2 if args["skipco"] else 1
    pool = nn.MaxPool2d(2, 2)
    up = nn.Upsample(scale_factor=2, mode="nearest")
    root, encoder, decoder = nn.Module(), nn.Module(), nn.Module()
    if args["archi"] == "dcgan":
        encoder.conv = nn.ModuleList(
            [
                block(nn.Conv2d(nc, nf, 4, 2, 1, bias=False), norm=False),
                block(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False)),
                block(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False)),
                block(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False)),
            ]
        )
        encoder.last_conv = block(nn.Conv2d(nf * 8, nhx, 4, 1, 0, bias=False), activation=nn.Tanh())
        decoder.first_upconv = block(nn.ConvTranspose2d(nh_inf + ny, nf * 8, 4, 1, 0, bias=False))
        decoder.conv = nn.ModuleList(
            [
                block(nn.ConvTranspose2d(nf * 8 * coef, nf * 4, 4, 2, 1, bias=False)),
                block(nn.ConvTranspose2d(nf * 4 * coef, nf * 2, 4, 2, 1, bias=False)),
                block(nn.ConvTranspose2d(nf * 2 * coef, nf, 4, 2, 1, bias=False)),
                nn.ConvTranspose2d(nf * coef, nc, 4, 2, 1, bias=False),
            ]
        )
    else:
        encoder.conv = nn.ModuleList(
            [
                nn.Sequential(conv3(nc, nf), conv3(nf, nf)),
                nn.Sequential(pool, conv3(nf, nf * 2), conv3(nf * 2, nf * 2)),
                nn.Sequential(pool, conv3(nf * 2, nf * 4), conv3(nf * 4, nf * 4), conv3(nf * 4, nf * 4)),
                nn.Sequential(pool, conv3(nf * 4, nf * 8), conv3(nf * 8, nf * 8), conv3(nf * 8, nf * 8)),
            ]
        )
        head = block(nn.Conv2d(nf * 8, nhx, 4, 1, 0, bias=False), activation=nn.Tanh())
        encoder.last_conv = nn.Sequential(pool, head)
        stem = block(nn.ConvTranspose2d(nh_inf + ny, nf * 8, 4, 1, 0, bias=False))
        decoder.first_upconv = nn.Sequential(stem, up)
        decoder.conv = nn.ModuleList(
            [
                nn.Sequential(conv3(nf * 8 * coef, nf * 8), conv3(nf * 8, nf * 8), conv3(nf * 8, nf * 4), up),
                nn.Sequential(conv3(nf * 4 * coef, nf * 4), conv3(nf * 4, nf * 4), conv3(nf * 4, nf * 2), up),
                nn.Sequential(conv3(nf * 2 * coef, nf * 2), conv3(nf * 2, nf), up),
                nn.Sequential(conv3(nf * coef, nf), nn.ConvTranspose2d(nf, nc, 3, 1, 1, bias=False)),
            ]
        )
    root.encoder, root.decoder = encoder, decoder
    root.w_proj = nn.Sequential(nn.Linear(nhx, nh_inf), nn.ReLU())
    root.w_inf = nn.Sequential(nn.Linear(nh_inf, nh_inf), nn.Tanh())
    root.q_y = official_mlp(nhx * args["nt_inf"], nh_inf, ny * 2, args["nlayers_inf"])
    root.inf_z = nn.LSTM(nhx, nh_inf, 1)
    root.q_z = nn.Linear(nh_inf, nz * 2)
    root.p_z = official_mlp(ny, args["nh_res"], nz * 2, args["nlayers_res"])
    root.dynamics = official_mlp(ny + nz, args["nh_res"], ny, args["nlayers_res"])
    return root


def randomise(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Fill every parameter and BatchNorm statistic with random values; return the state_dict."""
    generator = torch.Generator().manual_seed(seed)
    state = module.state_dict()
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            tensor.fill_(7)
        elif name.endswith("running_var"):
            tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
        else:
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.2)
    return state


def official_encode(official: nn.Module, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Official encoder forward: block outputs collected then reversed (lowest resolution first)."""
    hidden, skips = frames, []
    for layer in official.encoder.conv:
        hidden = layer(hidden)
        skips.append(hidden)
    return official.encoder.last_conv(hidden).flatten(1), skips[::-1]


def official_decode(official: nn.Module, w: torch.Tensor, y: torch.Tensor, skips: list | None) -> torch.Tensor:
    """Official decoder forward on input [w, y]: skip i concatenated as [h, skip_i] before block i."""
    hidden = official.decoder.first_upconv(torch.cat([w, y], 1)[:, :, None, None])
    for index, layer in enumerate(official.decoder.conv):
        if skips is not None:
            hidden = torch.cat([hidden, skips[index]], 1)
        hidden = layer(hidden)
    return torch.sigmoid(hidden)


@pytest.fixture(params=list(CASES))
def converted(request: pytest.FixtureRequest) -> tuple[dict, nn.Module, dict, SRVP]:
    """(official args, official-layout module in eval mode, its state_dict, our converted model)."""
    args = {**SMALL_ARGS, **CASES[request.param]}
    official = official_layout(args).eval()
    state = randomise(official, seed=len(request.param))
    config = config_from_official_args(args)
    ours = SRVP(config)
    ours.load_state_dict(convert_official_state_dict(state, config), strict=True)
    return args, official, state, ours.eval()


def test_every_official_tensor_lands_in_its_place(converted: tuple) -> None:
    args, _, state, ours = converted
    our_state = ours.state_dict()
    assert len(our_state) == len(state)
    for name, tensor in state.items():
        assert torch.equal(our_state[official_name_to_ours(name)], tensor), name
    assert torch.equal(our_state["transition.net.0.weight"], state["dynamics.module.0.0.weight"])
    assert torch.equal(our_state["transition.net.6.bias"], state["dynamics.module.3.1.bias"])
    assert torch.equal(our_state["q_y1.4.weight"], state["q_y.module.2.1.weight"])
    assert torch.equal(our_state["posterior_lstm.weight_hh_l0"], state["inf_z.weight_hh_l0"])
    assert torch.equal(
        our_state["decoder.stem.0.1.running_var" if args["archi"] == "vgg" else "decoder.stem.1.running_var"],
        state[
            "decoder.first_upconv.0.1.running_var" if args["archi"] == "vgg" else "decoder.first_upconv.1.running_var"
        ],
    )


@torch.no_grad()
def test_converted_model_computes_what_the_official_one_does(converted: tuple) -> None:
    args, official, _, ours = converted
    k = args["nt_inf"]
    frames = torch.rand(2, 4, args["nc"], 64, 64)
    flat = frames.flatten(0, 1)
    official_codes, official_skips = official_encode(official, flat)
    encoded = ours.encode(frames)
    torch.testing.assert_close(encoded.codes.flatten(0, 1), official_codes)
    codes_tb = official_codes.view(2, 4, -1).transpose(0, 1)  # official layout (t b d)

    # q(y_1): MLP on the first k codes, concatenated in time order.
    official_q_y = official.q_y.module(codes_tb[:k].permute(1, 0, 2).reshape(2, -1))
    torch.testing.assert_close(ours.infer_y1(encoded.codes[:, :k]).mean, official_q_y.chunk(2, -1)[0])
    # w from the last k codes.
    official_w = official.w_inf(official.w_proj(codes_tb[-k:]).sum(0))
    torch.testing.assert_close(ours.infer_content(encoded.codes[:, -k:]), official_w)
    # q(z_t) from the LSTM output at t = 2..T.
    official_q_z = official.q_z(official.inf_z(codes_tb)[0][1:]).transpose(0, 1)
    q_z = ours.posterior_z(encoded.codes)
    torch.testing.assert_close(q_z.mean, official_q_z.chunk(2, -1)[0])
    torch.testing.assert_close(q_z.std, nn.functional.softplus(official_q_z.chunk(2, -1)[1]) + 1e-8)
    # Prior and one Euler step y + dt f([y, z]).
    y, z, dt = torch.randn(2, args["ny"]), torch.randn(2, args["nz"]), 1 / args["n_euler_steps"]
    torch.testing.assert_close(ours.prior_z(y).mean, official.p_z.module(y).chunk(2, -1)[0])
    next_y, _ = ours.transition(y, z, dt)
    torch.testing.assert_close(next_y, y + dt * official.dynamics.module(torch.cat([y, z], 1)))
    # Decoding [w, y] with skips from the last frame.
    last_frame_skips = None
    our_skips = None
    if args["skipco"]:
        last_frame_skips = [skip.view(2, 4, *skip.shape[1:])[:, -1] for skip in official_skips]
        our_skips = [block[:, -1] for block in encoded.blocks]
    states = torch.randn(2, 3, args["ny"])
    decoded = ours.decode(states, official_w, our_skips)
    expected = torch.stack([official_decode(official, official_w, states[:, t], last_frame_skips) for t in range(3)], 1)
    torch.testing.assert_close(decoded, expected)


def test_official_mlp_layering_matches_our_mlp() -> None:
    from srvp.worldmodel.transition import mlp

    official = official_mlp(6, 10, 4, 4)
    state = randomise(official, seed=3)
    ours = mlp(6, 10, 4, 4)
    ours.load_state_dict(
        {
            official_name_to_ours(f"dynamics.{name}").removeprefix("transition.net."): value
            for name, value in state.items()
        }
    )
    inputs = torch.randn(5, 6)
    torch.testing.assert_close(ours(inputs), official.module(inputs))


def test_hyper_parameters_follow_the_official_arguments() -> None:
    config = config_from_official_args({**SMALL_ARGS, **CASES["vgg_nc3_skip"], "n_euler_steps": 3})
    assert (config.arch, config.channels, config.skip, config.filters) == ("vgg", 3, True, 4)
    assert (config.y_dim, config.z_dim, config.code_dim) == (5, 3, 16)
    assert config.content_dim == config.inf_hidden == config.lstm_hidden == 24
    assert config.y1_frames == config.content_frames == 2
    assert config.dt == pytest.approx(1 / 3)
    assert config.nu == pytest.approx(0.04)
    assert config.f_gain == 1.2
    defaults = config_from_official_args({"nc": 1, "ny": 20, "nz": 20, "nt_inf": 5})
    assert defaults == SRVPConfig(f_gain=1.41, beta=1.0, beta_y=1.0)
    # The official loss weights KL(q(y_1)) by beta_y: it travels into our config, not dropped.
    assert config_from_official_args({"nc": 1, "ny": 20, "nz": 20, "nt_inf": 5, "beta_y": 0.5}).beta_y == 0.5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ny": None}, "required model arguments"),
        ({"nx": 128}, "nx=128"),
        ({"archi": "resnet"}, "arch"),
        ({"skipco": "yes"}, "skipco"),
    ],
)
def test_bad_official_arguments_are_named(change: dict, message: str) -> None:
    args = {**SMALL_ARGS, **CASES["dcgan_nc1"], **change}
    args = {key: value for key, value in args.items() if value is not None}
    with pytest.raises(ValueError, match=message):
        config_from_official_args(args)


def test_unmapped_missing_and_mis_shaped_tensors_are_listed() -> None:
    args = {**SMALL_ARGS, **CASES["dcgan_nc1"]}
    state = randomise(official_layout(args), seed=0)
    config = config_from_official_args(args)
    extra = {**state, "decoder.extra.weight": torch.zeros(1), "q_y.module.1.0.weight": torch.zeros(1)}
    unmapped = r"unmapped official tensors: decoder.extra.weight, q_y.module.1.0.weight"
    with pytest.raises(ValueError, match=unmapped):
        convert_official_state_dict(extra, config)
    lacking = {name: value for name, value in state.items() if not name.startswith("q_z.")}
    missing = r"missing tensors \(ours\): posterior_head.bias, posterior_head.weight"
    with pytest.raises(ValueError, match=missing):
        convert_official_state_dict(lacking, config)
    wrong = config_from_official_args({**args, "ny": 6})
    with pytest.raises(ValueError, match=r"shape mismatches .*transition.net.0.weight"):
        convert_official_state_dict(state, wrong)
    old_torch = {name: value for name, value in state.items() if not name.endswith("num_batches_tracked")}
    converted = convert_official_state_dict(old_torch, config)
    assert int(converted["encoder.blocks.1.1.num_batches_tracked"]) == 0


def test_cli_writes_an_evaluable_checkpoint(tmp_path, capsys) -> None:
    args = {
        **SMALL_ARGS,
        **CASES["dcgan_nc1_skip"],
        "dataset": "kth",
        "nt_cond": 10,
        "seq_len_test": 40,
        "beta_y": 1.0,
        "data_dir": "/data/kth",
    }
    state = randomise(official_layout(args), seed=1)
    torch.save(state, tmp_path / "model.pt")
    (tmp_path / "config.json").write_text(json.dumps(args))
    main(
        [
            "--official",
            str(tmp_path / "model.pt"),
            "--config",
            str(tmp_path / "config.json"),
            "--out",
            str(tmp_path / "ours.pt"),
        ]
    )
    assert capsys.readouterr().out.strip() == str(tmp_path / "ours.pt")
    model, payload = load_model(tmp_path / "ours.pt")
    assert payload["config"]["dataset"] == {"name": "kth", "cond_frames": 10}
    assert payload["config"]["official"]["args"]["nt_inf"] == 2
    assert torch.equal(model.state_dict()["decoder.blocks.3.weight"], state["decoder.conv.3.weight"])
    direct = load_official(tmp_path / "model.pt", tmp_path / "config.json")
    assert torch.equal(direct.state_dict()["prior.6.weight"], state["p_z.module.3.1.weight"])


def merged_pred_frames(section: dict) -> int:
    """The predicted length srvp-eval uses for a converted checkpoint's dataset section."""
    from srvp.video_pred.data import dataset_section as evaluation_section

    return evaluation_section(section, {})["pred_frames"]


def test_dataset_section_names_our_benchmark() -> None:
    moving_mnist = {"dataset": "smmnist", "deterministic": True, "ndigits": 2, "nt_cond": 5, "seq_len_test": 100}
    assert dataset_section(moving_mnist) == {
        "name": "mmnist_deterministic",
        "num_digits": 2,
        "deterministic": True,
        "cond_frames": 5,
    }
    assert dataset_section({"dataset": "human", "nt_cond": 8}) == {"name": "human36m", "cond_frames": 8}
    # seq_len_test is the official validation length (30 for KTH): the test protocol's 10 + 30 frames come
    # from our dataset config, not from it.
    kth = dataset_section({"dataset": "kth", "nt_cond": 10, "seq_len_test": 30})
    assert "pred_frames" not in kth and merged_pred_frames(kth) == 30


def test_cli_reports_bad_files_in_one_line(tmp_path, capsys) -> None:
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.pt").write_bytes(b"garbage")
    for weights, config, message in [
        ("absent.pt", "config.json", "not valid JSON"),
        ("model.pt", "absent.json", "official config not found"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(
                [
                    "--official",
                    str(tmp_path / weights),
                    "--config",
                    str(tmp_path / config),
                    "--out",
                    str(tmp_path / "ours.pt"),
                ]
            )
        assert exit_info.value.code == 1
        error = capsys.readouterr().err.strip()
        assert message in error and "\n" not in error
    (tmp_path / "config.json").write_text(json.dumps({**SMALL_ARGS, **CASES["dcgan_nc1"]}))
    with pytest.raises(RuntimeError, match="corrupt or not a state_dict"):
        load_official(tmp_path / "model.pt", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="official weights not found"):
        load_official(tmp_path / "absent.pt", tmp_path / "config.json")
    assert not (tmp_path / "ours.pt").exists()
