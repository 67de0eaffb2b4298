"""SRVPConfig: every inconsistency is a one-line ValueError naming the field; plain-data round trip."""

from __future__ import annotations

import pytest

from srvp.worldmodel import SRVP, SRVPConfig
from srvp.worldmodel.config import parse_step
from tests.worldmodel_testing import tiny_config


@pytest.mark.parametrize(
    "overrides, culprit",
    [
        ({"arch": "resnet"}, "model.arch"),
        ({"transition": "lstm"}, "model.transition"),
        ({"channels": 2}, "model.channels"),
        ({"filters": 0}, "model.filters"),
        ({"y_dim": 0}, "model.y_dim"),
        ({"code_dim": -1}, "model.code_dim"),
        ({"content_frames": 0}, "model.content_frames"),
        ({"y1_frames": 0}, "model.y1_frames"),
        ({"z_dim": 0}, "model.z_dim"),
        ({"fwd_layers": 0}, "model.inf_layers and model.fwd_layers"),
        ({"dt": 0.4}, "dt=0.4"),
        ({"dt": 0.0}, "dt=0.0"),
        ({"dt": 2.0}, "dt=2.0"),
        ({"transition": "mlp", "dt": 0.5}, "model.dt"),
        ({"transition": "gru", "dt": 0.5}, "model.dt"),
        ({"transition": "gru", "stochastic": False}, "model.transition=gru"),
        ({"skip": True, "use_content": False}, "model.skip"),
        ({"nu": 0.0}, "model.nu"),
        ({"likelihood": "laplace"}, "model.likelihood='laplace'"),
        ({"beta": -1.0}, "model.beta"),
        ({"l2_weight": -0.1}, "model.l2_weight=-0.1"),
        ({"beta_y": -0.5}, "model.beta_y=-0.5"),
        ({"output_mean": 1.0}, "model.output_mean=1.0"),
        ({"output_mean": -0.1}, "model.output_mean=-0.1"),
        ({"action_dim": -1}, "model.action_dim"),
        ({"heads": {"reward": 0}}, "model.heads.reward"),
    ],
)
def test_validate_names_the_culprit(overrides: dict, culprit: str) -> None:
    with pytest.raises(ValueError) as caught:
        tiny_config(**overrides)
    message = str(caught.value)
    assert culprit in message and "\n" not in message
    with pytest.raises(ValueError):
        SRVP(SRVPConfig(**overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"stochastic": False, "z_dim": 0},
        {"transition": "gru", "stochastic": False, "action_dim": 2},
        {"arch": "vgg", "channels": 3, "skip": True, "dt": 0.5},
        {"use_content": False},
        {"dt": 1 / 3},
        {"heads": {"reward": 1, "done": 2}},
        {"likelihood": "bernoulli"},
    ],
)
def test_consistent_configs_validate(overrides: dict) -> None:
    config = tiny_config(**overrides)
    assert config.validate() is config


def test_defaults_are_the_sm_mnist_setting() -> None:
    config = SRVPConfig().validate()
    assert (config.channels, config.arch, config.skip, config.y_dim, config.z_dim, config.code_dim) == (
        1,
        "dcgan",
        False,
        20,
        20,
        128,
    )
    assert (config.y1_frames, config.content_frames, config.dt, config.nu) == (5, 5, 1.0, 1.0)
    widths = (config.inf_hidden, config.fwd_hidden, config.lstm_hidden, config.content_dim)
    assert widths == (256, 512, 256, 256)
    assert (config.inf_layers, config.fwd_layers, config.f_gain, config.l2_weight) == (3, 4, 1.41, 1.0)


def test_dict_round_trip() -> None:
    config = tiny_config(arch="vgg", skip=True, heads={"reward": 1}, action_dim=3, dt=0.5)
    values = config.to_dict()
    assert values["heads"] == {"reward": 1} and values["arch"] == "vgg"
    assert SRVPConfig.from_dict(values) == config
    values["heads"]["reward"] = 7
    assert config.heads == {"reward": 1}


def test_from_dict_rejects_unknown_keys_by_name() -> None:
    values = tiny_config().to_dict()
    values["hidden_size"] = 3
    values["zz_dim"] = 1
    with pytest.raises(ValueError, match=r"\['hidden_size', 'zz_dim'\]"):
        SRVPConfig.from_dict(values)


def test_from_dict_validates() -> None:
    values = tiny_config().to_dict()
    values["arch"] = "unet"
    with pytest.raises(ValueError, match="model.arch"):
        SRVPConfig.from_dict(values)


def test_from_dict_accepts_a_partial_dict() -> None:
    assert SRVPConfig.from_dict({"y_dim": 50, "z_dim": 50}).y_dim == 50


def test_steps_are_numbers_or_fractions() -> None:
    assert parse_step(0.5) == 0.5 and parse_step(1) == 1.0
    assert parse_step("1/3") == pytest.approx(1 / 3, abs=1e-15) and parse_step(" 1/4 ") == 0.25
    for bad in ("a/b", "1/0", ""):
        with pytest.raises(ValueError, match="dt="):
            parse_step(bad)
    assert SRVPConfig.from_dict({"dt": "1/3"}).dt == pytest.approx(1 / 3, abs=1e-15)


@pytest.mark.parametrize(
    "field, value",
    [
        ("skip", "false"),
        ("use_content", "false"),
        ("stochastic", 0),
        ("filters", 8.0),
        ("y_dim", True),
        ("arch", 3),
        ("dt", "0.5"),
        ("nu", float("nan")),
        ("beta", float("inf")),
        ("heads", {"reward": "1"}),
        ("heads", [("reward", 1)]),
    ],
)
def test_every_field_is_validated_by_type(field: str, value: object) -> None:
    """A string 'false' would be truthy and build a model with skips; a NaN weight passes every comparison."""
    with pytest.raises(ValueError, match=f"model.{field}=") as caught:
        tiny_config(**{field: value})
    assert "\n" not in str(caught.value)


def test_from_dict_validates_types() -> None:
    for field in ("skip", "use_content", "stochastic"):
        with pytest.raises(ValueError, match=f"model.{field}='false'"):
            SRVPConfig.from_dict({**tiny_config().to_dict(), field: "false"})
