"""Hyper-parameters of an SRVP world model, as one typed dataclass that hydra fills."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from numbers import Integral, Real
from typing import Any

ARCHITECTURES = ("dcgan", "vgg")
TRANSITIONS = ("residual", "mlp", "gru")


def _is_integer(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


FIELD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "bool": (lambda value: isinstance(value, bool), "true or false"),
    "int": (_is_integer, "an integer"),
    "float": (
        lambda value: isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value),
        "a finite number",
    ),
    "str": (lambda value: isinstance(value, str), "a string"),
    "dict[str, int]": (
        lambda value: (
            isinstance(value, dict) and all(isinstance(name, str) and _is_integer(size) for name, size in value.items())
        ),
        "a mapping of head names to integer sizes",
    ),
}
"""Declared type of an SRVPConfig field -> (check of a value, what the error says is expected)."""


@dataclass
class SRVPConfig:
    """Every hyper-parameter of the model (docs/model.md); defaults: the SM-MNIST values."""

    channels: int = 1
    """Channels of the frames (1 grey, 3 RGB); frames are 64x64."""
    arch: str = "dcgan"
    """Encoder/decoder family: 'dcgan' (Moving MNIST) or 'vgg' (KTH, Human3.6M, BAIR)."""
    skip: bool = False
    """Feed the decoder skip connections from every encoder block, computed on a content frame."""
    filters: int = 64
    """Filters of the first encoder convolution (doubled at each resolution)."""
    code_dim: int = 128
    """Size of the per-frame code h(x_t)."""
    y_dim: int = 20
    """Size of the dynamic latent state y."""
    z_dim: int = 20
    """Size of the stochastic auxiliary variable z."""
    content_dim: int = 256
    """Size of the static content variable w."""
    inf_hidden: int = 256
    """Width of the inference MLPs (q(y_1)) and of the content network."""
    inf_layers: int = 3
    """Linear layers of the q(y_1) MLP."""
    fwd_hidden: int = 512
    """Width of the forward-model MLPs (prior on z, transition f, extra heads)."""
    fwd_layers: int = 4
    """Linear layers of the forward-model MLPs."""
    lstm_hidden: int = 256
    """Hidden size of the LSTM giving q(z_t | x_1..t)."""
    y1_frames: int = 5
    """k: number of first frames whose codes infer y_1."""
    content_frames: int = 5
    """k: number of frames whose summed codes give the content w."""
    transition: str = "residual"
    """'residual' (y + dt f(y, z)), 'mlp' (y_next = f(y, z)) or 'gru' (y_next = GRU(z, y))."""
    stochastic: bool = True
    """Use the auxiliary variable z; False gives a deterministic transition."""
    use_content: bool = True
    """Use the content variable w; False decodes from y alone (classic state-space model)."""
    dt: float = 1.0
    """Training Euler step; 1/dt must be a positive integer (only the residual transition takes dt < 1).
    `from_dict` also reads a fraction such as '1/3'."""
    f_gain: float = 1.41
    """Gain of the orthogonal initialisation of the transition MLP."""
    likelihood: str = "gaussian"
    """Observation model of each pixel value in [0, 1]: 'gaussian' (the paper's: mean the decoded frame,
    variance nu) or 'bernoulli' (cross-entropy against the decoder's logits; nu unused). The Gaussian through a
    sigmoid barely sees a faint haze on a black background (its gradient carries the sigmoid's slope, which
    vanishes near 0), which SSIM punishes; the cross-entropy's does not vanish there."""
    nu: float = 1.0
    """Variance of the Gaussian observation model."""
    beta: float = 2.0
    """Weight of the KL on z."""
    beta_y: float = 1.0
    """Weight of the KL on y_1 (the official code's beta_y; 1 in every released run)."""
    output_mean: float = 0.0
    """Grey level in (0, 1) the decoded frames start at: the decoder's last convolution gets a learned bias
    initialised at its logit (e.g. the training frames' mean pixel, so that black-background frames start
    black rather than at sigmoid(0) = 0.5 everywhere). 0: no bias, the paper's decoder."""
    l2_weight: float = 1.0
    """lambda: weight of the L2 norm of the Euler residuals."""
    free_nats: float = 0.0
    """KL nats that cost nothing, per frame for z and per clip for y_1 (PlaNet's free nats): each KL term
    enters the loss as max(KL, free_nats), so the posterior is not pulled onto the prior before it carries that
    much. 0 is the paper's ELBO (control world models use it against latent collapse)."""
    kl_balance: float = 0.5
    """Share of the z KL's gradient that moves the prior, in (0, 1) (DreamerV2's KL balancing): the loss term
    is 2a KL(sg(q) || p) + 2(1 - a) KL(q || sg(p)), valued as KL(q || p). 0.5 is the plain KL, the paper's
    (and its code path is unchanged); 0.8 pulls the prior toward the posterior 4 times as hard as the posterior
    toward the prior, so the prior, which alone drives predictions, catches up faster."""
    action_dim: int = 0
    """Size of an action fed to the transition f(y_t, z_{t+1}, a_t); 0 for video prediction."""
    heads: dict[str, int] = field(default_factory=dict)
    """Extra MLP heads on y, name -> output size (e.g. {'reward': 1} for control)."""
    head_weight: float = 1.0
    """Weight of the heads' squared-error (unit-variance Gaussian) loss."""

    def validate(self) -> SRVPConfig:
        """Raise a one-line ValueError naming the first inconsistent field; return self."""
        self._check_types()
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"model.arch={self.arch!r}: expected one of {ARCHITECTURES}")
        if self.transition not in TRANSITIONS:
            raise ValueError(f"model.transition={self.transition!r}: expected one of {TRANSITIONS}")
        if self.channels not in (1, 3):
            raise ValueError(f"model.channels={self.channels}: expected 1 or 3")
        for name in (
            "filters",
            "code_dim",
            "y_dim",
            "content_dim",
            "inf_hidden",
            "fwd_hidden",
            "lstm_hidden",
            "y1_frames",
            "content_frames",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name}={getattr(self, name)}: must be a positive integer")
        if self.stochastic and self.z_dim < 1:
            raise ValueError(f"model.z_dim={self.z_dim}: must be positive when model.stochastic=true")
        if self.inf_layers < 1 or self.fwd_layers < 1:
            raise ValueError("model.inf_layers and model.fwd_layers must be at least 1")
        substeps(self.dt)
        if self.transition != "residual" and self.dt != 1:
            raise ValueError(f"model.dt={self.dt}: only the residual transition supports dt < 1")
        if self.transition == "gru" and not self.stochastic and self.action_dim == 0:
            raise ValueError("model.transition=gru needs an input: set model.stochastic=true or an action_dim")
        if self.skip and not self.use_content:
            raise ValueError("model.skip=true needs model.use_content=true (skips carry the content frames)")
        if not 0 <= self.output_mean < 1:
            raise ValueError(f"model.output_mean={self.output_mean}: expected a grey level in (0, 1), or 0 for none")
        if self.likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"model.likelihood={self.likelihood!r}: expected 'gaussian' or 'bernoulli'")
        if self.nu <= 0:
            raise ValueError(f"model.nu={self.nu}: the observation variance must be positive")
        for name in ("beta", "beta_y", "l2_weight", "head_weight", "free_nats"):
            if getattr(self, name) < 0:
                raise ValueError(f"model.{name}={getattr(self, name)}: a loss weight must be non-negative")
        if not 0 < self.kl_balance < 1:
            raise ValueError(f"model.kl_balance={self.kl_balance}: expected a share in (0, 1); 0.5 is the plain KL")
        if self.action_dim < 0:
            raise ValueError(f"model.action_dim={self.action_dim}: must be >= 0")
        for name, size in self.heads.items():
            if size < 1:
                raise ValueError(f"model.heads.{name}={size}: a head needs a positive output size")
        return self

    def _check_types(self) -> None:
        """Every field holds a value of its declared type: a bool is True or False (the string 'false' would
        be truthy), an int an integer, a float a finite number, heads a mapping of names to integer sizes."""
        for item in fields(self):
            value = getattr(self, item.name)
            check, expected = FIELD_TYPES[item.type]
            if not check(value):
                raise ValueError(f"model.{item.name}={value!r}: expected {expected}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (for checkpoints and logs)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SRVPConfig:
        """Build from plain data, rejecting unknown keys by name."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known keys: {sorted(known)}")
        converted = {key: (dict(value) if key == "heads" else value) for key, value in values.items()}
        if "dt" in converted:
            converted["dt"] = parse_step(converted["dt"])
        return cls(**converted).validate()


def parse_step(value: float | int | str) -> float:
    """An Euler step given as a number or as a fraction such as '1/3' (exact on a command line), as float."""
    try:
        return float(Fraction(str(value).strip()))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"dt={value!r}: expected a number or a fraction such as 1/3") from None


def substeps(dt: float) -> int:
    """Number of Euler sub-steps per frame for step `dt`; 1/dt must be a positive integer."""
    if dt <= 0 or dt > 1:
        raise ValueError(f"dt={dt}: must lie in (0, 1] with 1/dt an integer")
    count = round(1 / dt)
    if abs(count * dt - 1) > 1e-6:
        raise ValueError(f"dt={dt}: 1/dt must be an integer (e.g. 1, 0.5, 1/3)")
    return count
