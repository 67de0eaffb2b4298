"""SRVP: Stochastic Latent Residual Video Prediction as a reusable world model.

Frames are encoded into codes; a static content w (sum of k codes -> MLP) and optional encoder skips feed
the decoder; the dynamic state y_1 is inferred from the first k codes and moves by residual Euler steps
y_{t+dt} = y_t + dt f(y_t, z_{t+1}[, a_t]) with z from an LSTM posterior (training, filtering) or a learned
Gaussian prior on y_t (generation, imagination). Frames are decoded from (y_t, w) only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from einops import rearrange, repeat
from torch import nn
from torch.nn import functional as F

from srvp.worldmodel.config import SRVPConfig, substeps
from srvp.worldmodel.conv import build_decoder, build_encoder, init_conv_weights
from srvp.worldmodel.distributions import (
    Gaussian,
    at_least_float32,
    balanced_kl,
    gaussian_nll,
    kl_divergence,
    kl_standard_normal,
)
from srvp.worldmodel.transition import Transition, mlp


class Encoded(NamedTuple):
    """Per-frame codes (b t d) and encoder block outputs, each (b t ch h w), highest resolution first."""

    codes: torch.Tensor
    blocks: list[torch.Tensor]


class Rollout(NamedTuple):
    """Result of `imagine`: the latent trajectory and what produced it. Only `frame_states` is computed
    when `imagine` is asked for no details (planning); the other fields are then None."""

    frame_states: torch.Tensor
    """States at integer times, the start included: (b, steps + 1, ny)."""
    states: torch.Tensor | None
    """Every Euler state, the start included: (b, (steps * substeps) + 1, ny)."""
    z: torch.Tensor | None
    """z driving each frame transition: (b, steps, nz), None without z."""
    prior: Gaussian | None
    """Prior p(z_{t+1} | y_t) of the transitions sampled from the prior inside the rollout, else None."""
    residuals: torch.Tensor | None
    """dt * f of every Euler sub-step (b, steps * substeps, ny); None for non-residual transitions."""


class Observation(NamedTuple):
    """Latents inferred from observed frames (posterior): what the ELBO and predictions start from."""

    states: torch.Tensor
    """y at every observed frame (b t ny), z taken from the posterior."""
    content: torch.Tensor | None
    """w (b, content_dim) or None without content."""
    skips: list[torch.Tensor] | None
    """Encoder block outputs of one content frame per clip, each (s ch h w) with s = b, or s = b / n when
    the caller shares each clip's skips with its n samples (`predict`); None without skips."""
    q_y1: Gaussian
    """Posterior on y_1."""
    q_z: Gaussian | None
    """Posterior on z_2..z_t, (b, t-1, nz)."""
    rollout: Rollout


class ElboOutput(NamedTuple):
    """Loss to minimise (scalar), its parts as detached tensors for logging, and the reconstructions."""

    loss: torch.Tensor
    parts: dict[str, torch.Tensor]
    reconstruction: torch.Tensor


FRAME_SIZE = 64
"""Height and width of the frames every encoder/decoder family is built for."""


def to_unit_float(frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 frames in [0, 255] -> `dtype` (the model's floating dtype) in [0, 1]; float frames, checked to be
    finite and to lie in [0, 1], are passed through (a float frame in [0, 255] or [-1, 1] would silently train on
    a wrong scale, and one NaN pixel would make the loss NaN and write NaN into every BatchNorm running
    statistic). The check costs one host synchronisation, for float frames only: uint8 frames cannot be out of
    range."""
    if frames.dtype == torch.uint8:
        return frames.to(dtype).div_(255)
    if not frames.is_floating_point():
        raise ValueError(f"frames must be uint8 in [0, 255] or float in [0, 1], got {frames.dtype}")
    low, high = torch.aminmax(frames)
    # NaN propagates through aminmax and fails both comparisons, so one test covers NaN, inf and the range.
    if not bool((low >= 0) & (high <= 1)):
        if frames.isnan().any():
            raise ValueError(f"float frames hold {int(frames.isnan().sum())} NaN values: frames must lie in [0, 1]")
        raise ValueError(f"float frames must lie in [0, 1], got values in [{low.item():.4g}, {high.item():.4g}]")
    return frames


class SRVP(nn.Module):
    """The SRVP model; `SRVPConfig` selects architecture, variant and ELBO weights."""

    def __init__(self, config: SRVPConfig) -> None:
        super().__init__()
        self.config = config.validate()
        cfg = config
        self.encoder = build_encoder(cfg.arch, cfg.channels, cfg.code_dim, cfg.filters)
        latent_dim = cfg.y_dim + (cfg.content_dim if cfg.use_content else 0)
        self.decoder = build_decoder(cfg.arch, cfg.channels, latent_dim, cfg.filters, cfg.skip, cfg.output_mean > 0)
        if cfg.use_content:
            # Permutation invariant: a per-frame projection, a sum over frames, then the output layer.
            self.content_projection = nn.Sequential(nn.Linear(cfg.code_dim, cfg.content_dim), nn.ReLU(inplace=True))
            self.content_output = nn.Sequential(nn.Linear(cfg.content_dim, cfg.content_dim), nn.Tanh())
        self.q_y1 = mlp(cfg.code_dim * cfg.y1_frames, cfg.inf_hidden, 2 * cfg.y_dim, cfg.inf_layers)
        if cfg.stochastic:
            self.posterior_lstm = nn.LSTM(cfg.code_dim, cfg.lstm_hidden, num_layers=1, batch_first=True)
            self.posterior_head = nn.Linear(cfg.lstm_hidden, 2 * cfg.z_dim)
            self.prior = mlp(cfg.y_dim, cfg.fwd_hidden, 2 * cfg.z_dim, cfg.fwd_layers)
        drive_dim = (cfg.z_dim if cfg.stochastic else 0) + cfg.action_dim
        self.transition = Transition(cfg.transition, cfg.y_dim, drive_dim, cfg.fwd_hidden, cfg.fwd_layers, cfg.f_gain)
        self.heads = nn.ModuleDict(
            {name: mlp(cfg.y_dim, cfg.fwd_hidden, size, cfg.fwd_layers) for name, size in cfg.heads.items()}
        )
        self.encoder.apply(init_conv_weights)
        self.decoder.apply(init_conv_weights)
        if cfg.output_mean > 0:
            # The decoded frames start at this grey level everywhere instead of sigmoid(0) = 0.5.
            nn.init.constant_(self.decoder.output_layer().bias, float(np.log(cfg.output_mean / (1 - cfg.output_mean))))

    # ------------------------------------------------------------------ inputs
    def as_input(self, values: torch.Tensor | np.ndarray, name: str = "frames") -> torch.Tensor:
        """A tensor or numpy array of frames or actions as a tensor on the model's device; float values in the
        model's floating dtype (numpy gives float64), uint8 frames as they are (scaled by `to_unit_float`).

        A tensor on another device is refused rather than copied (a copy per call would hide a slow loop)."""
        parameter = next(self.parameters())
        if isinstance(values, np.ndarray):
            values = torch.from_numpy(np.ascontiguousarray(values)).to(parameter.device)
        elif not isinstance(values, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or a numpy array, got {type(values).__name__}")
        if values.device != parameter.device:
            raise ValueError(
                f"{name} are on {values.device} but the model is on {parameter.device}: move them with .to(device)"
            )
        if values.is_floating_point() and values.dtype != parameter.dtype:
            values = values.to(parameter.dtype)
        return values

    # ------------------------------------------------------------------ perception
    def encode(self, frames: torch.Tensor) -> Encoded:
        """frames (b t c h w), uint8 or float in [0, 1] -> codes (b t d) and per-frame encoder blocks."""
        frames = self.as_input(frames)
        expected = (self.config.channels, FRAME_SIZE, FRAME_SIZE)
        if frames.ndim != 5 or tuple(frames.shape[2:]) != expected:
            raise ValueError(
                f"frames of shape (b, t, {', '.join(map(str, expected))}) expected, got {tuple(frames.shape)}"
            )
        batch = frames.shape[0]
        unit = to_unit_float(frames, next(self.parameters()).dtype)
        codes, blocks = self.encoder(rearrange(unit, "b t c h w -> (b t) c h w"))
        codes = rearrange(codes, "(b t) d -> b t d", b=batch)
        blocks = [rearrange(block, "(b t) c h w -> b t c h w", b=batch) for block in blocks]
        return Encoded(codes, blocks)

    def infer_content(self, content_codes: torch.Tensor) -> torch.Tensor:
        """codes of the k content frames (b k d) -> w (b, content_dim); invariant to their order."""
        return self.content_output(self.content_projection(content_codes).sum(dim=1))

    def infer_y1(self, first_codes: torch.Tensor) -> Gaussian:
        """codes of the first k frames (b k d) -> q(y_1)."""
        return Gaussian.from_raw(self.q_y1(rearrange(first_codes, "b k d -> b (k d)")))

    def posterior_z(self, codes: torch.Tensor) -> Gaussian:
        """q(z_t | x_1..t) for t = 2..T from the LSTM over all codes (b t d) -> (b, t-1, nz)."""
        hidden, _ = self.posterior_lstm(codes)
        return Gaussian.from_raw(self.posterior_head(hidden[:, 1:]))

    def prior_z(self, states: torch.Tensor) -> Gaussian:
        """p(z_{t+1} | y_t) for states (..., ny)."""
        return Gaussian.from_raw(self.prior(states))

    def predict_heads(self, states: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra heads on states (..., ny) -> {name: (..., size)}."""
        return {name: head(states) for name, head in self.heads.items()}

    # ------------------------------------------------------------------ dynamics
    def imagine(
        self,
        start: torch.Tensor,
        steps: int,
        dt: float | None = None,
        z: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
        prior_mean: bool = False,
        generator: torch.Generator | None = None,
        details: bool = True,
    ) -> Rollout:
        """Roll any state `start` (b ny) (y_1, a filtered y_t, ...) forward `steps` frames with Euler step dt
        (1/dt integer).

        z (b m nz), m <= steps, drives the first m transitions (posterior samples); later ones draw z from
        the prior on the current state (its mean if `prior_mean`). z is held over the sub-steps of a frame.
        actions (b steps na) are fed to the transition when the model takes actions. Without `details`, only
        the frame states are kept (no sub-step states, z, prior or residuals: what planning needs).
        """
        cfg = self.config
        dt = cfg.dt if dt is None else dt
        per_frame = substeps(dt)
        if cfg.transition != "residual" and per_frame != 1:
            raise ValueError(f"dt={dt}: the {cfg.transition} transition only supports dt=1")
        if actions is not None and not cfg.action_dim:
            raise ValueError("actions were given to a model that takes none (model.action_dim=0)")
        if cfg.action_dim:
            if actions is not None and not isinstance(actions, torch.Tensor):
                actions = self.as_input(actions, "actions")
            # Exact sizes: a (b, t, 1) action would otherwise broadcast over every action dimension.
            batch = start.shape[0]
            if (
                actions is None
                or actions.ndim != 3
                or actions.shape[0] != batch
                or actions.shape[1] < steps
                or actions.shape[2] != cfg.action_dim
            ):
                shape = None if actions is None else tuple(actions.shape)
                raise ValueError(
                    f"actions of shape ({batch}, >= {steps}, {cfg.action_dim}) expected (model.action_dim="
                    f"{cfg.action_dim}), got {shape}"
                )
        given = 0 if z is None else z.shape[1]
        state = start
        states, frame_states, residuals, z_used, prior_params = [start], [start], [], [], []
        for step in range(steps):
            drive = []
            if cfg.stochastic:
                if step < given:
                    z_step = z[:, step]
                else:
                    prior = self.prior(state)
                    if details:
                        prior_params.append(prior)
                    gaussian = Gaussian.from_raw(prior)
                    z_step = gaussian.mean if prior_mean else gaussian.rsample(generator)
                if details:
                    z_used.append(z_step)
                drive.append(z_step)
            if cfg.action_dim:
                drive.append(actions[:, step].to(state.dtype))
            drive_input = torch.cat(drive, dim=-1) if len(drive) > 1 else (drive[0] if drive else None)
            for _ in range(per_frame):
                state, residual = self.transition(state, drive_input, dt)
                if details:
                    states.append(state)
                    if residual is not None:
                        residuals.append(residual)
            frame_states.append(state)
        return Rollout(
            frame_states=torch.stack(frame_states, dim=1),
            states=torch.stack(states, dim=1) if details else None,
            z=torch.stack(z_used, dim=1) if z_used else None,
            prior=Gaussian.from_raw(torch.stack(prior_params, dim=1)) if prior_params else None,
            residuals=torch.stack(residuals, dim=1) if residuals else None,
        )

    # ------------------------------------------------------------------ decoding
    def decode(
        self, states: torch.Tensor, content: torch.Tensor | None, skips: list[torch.Tensor] | None
    ) -> torch.Tensor:
        """states (b t ny), content (b dw), skips [(s ch h w)] -> frames (b t c h w) in [0, 1].

        s divides b: each skip serves b/s consecutive sequences (the samples of one clip in `predict`); the
        decoder computes a skip's contribution once for all the frames it serves."""
        return torch.sigmoid(self.decode_logits(states, content, skips))

    def decode_logits(
        self, states: torch.Tensor, content: torch.Tensor | None, skips: list[torch.Tensor] | None
    ) -> torch.Tensor:
        """`decode` before its sigmoid (b t c h w): the Bernoulli likelihood reads these."""
        batch, length = states.shape[:2]
        latent = states
        if content is not None:
            latent = torch.cat([repeat(content, "b d -> b t d", t=length).to(states.dtype), states], dim=-1)
        logits = self.decoder.logits(rearrange(latent, "b t d -> (b t) d"), skips)
        return rearrange(logits, "(b t) c h w -> b t c h w", b=batch)

    # ------------------------------------------------------------------ inference
    def _content_indices(self, batch: int, length: int, count: int, device: torch.device) -> torch.Tensor:
        """Training: `count` distinct frames drawn uniformly per clip; otherwise the last `count` frames."""
        if count > length:
            raise ValueError(f"{count} content/y1 frames requested but clips have only {length} frames")
        if self.training:
            return torch.rand(batch, length, device=device).argsort(dim=1)[:, :count]
        return torch.arange(length - count, length, device=device).expand(batch, count)

    def _skip_frames(self, blocks: list[torch.Tensor]) -> list[torch.Tensor]:
        """Encoder blocks (b t ch h w) of the frame each clip takes its skips from, each (b ch h w).

        Training: one frame per clip drawn uniformly, independently of the content frames (as the official
        code draws it); otherwise the last frame (the last conditioning frame at test time)."""
        batch, length = blocks[0].shape[:2]
        device = blocks[0].device
        rows = torch.arange(batch, device=device)
        if self.training:
            frames = torch.randint(length, (batch,), device=device)
        else:
            frames = torch.full((batch,), length - 1, device=device)
        return [block[rows, frames] for block in blocks]

    def observe_content(
        self, encoded: Encoded, skips: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor | None, list[torch.Tensor] | None]:
        """What the decoder takes from observed frames besides the states: content w (b, content_dim) from k of
        their codes and the skips of one of them, each drawn as `observe` draws them; skips the caller gives
        are kept. w is None for a model without content, the skips None for one without skips."""
        cfg = self.config
        codes = encoded.codes
        batch, length = codes.shape[:2]
        if cfg.skip and skips is None:
            skips = self._skip_frames(encoded.blocks)
        content = None
        if cfg.use_content:
            picked = self._content_indices(batch, length, cfg.content_frames, codes.device)
            rows = torch.arange(batch, device=codes.device)
            content = self.infer_content(codes[rows[:, None], picked])
        return content, skips

    def observe(
        self,
        frames: torch.Tensor | None,
        actions: torch.Tensor | None = None,
        dt: float | None = None,
        encoded: Encoded | None = None,
        skips: list[torch.Tensor] | None = None,
    ) -> Observation:
        """Infer the latents of observed frames (b t c h w): y_1 and z from their posteriors (sampled),
        w from k frames (random at training, last k otherwise), skips from one frame (random at training and
        independent of the k, the last otherwise) unless the caller gives them (`predict` selects them before
        expanding samples). `frames` may be None when `encoded` gives their encoding (as `predict` does)."""
        cfg = self.config
        if encoded is None:
            if frames is None:
                raise ValueError("observe needs frames or their encoding")
            encoded = self.encode(frames)
        codes = encoded.codes
        length = codes.shape[1]
        if length < cfg.y1_frames:
            raise ValueError(f"y_1 is inferred from {cfg.y1_frames} frames but only {length} were given")
        content, skips = self.observe_content(encoded, skips)
        q_y1 = self.infer_y1(codes[:, : cfg.y1_frames])
        q_z = z = None
        if cfg.stochastic and length > 1:
            q_z = self.posterior_z(codes)
            z = q_z.rsample()
        rollout = self.imagine(q_y1.rsample(), length - 1, dt, z=z, actions=actions)
        return Observation(rollout.frame_states, content, skips, q_y1, q_z, rollout)

    # ------------------------------------------------------------------ training objective
    def elbo(
        self,
        frames: torch.Tensor,
        actions: torch.Tensor | None = None,
        head_targets: dict[str, torch.Tensor] | None = None,
        dt: float | None = None,
    ) -> ElboOutput:
        """Negative ELBO of clips (b t c h w) plus lambda * residual norms and the heads' losses.

        Sums over frames, channels, pixels, latent dimensions and sub-steps, then averages over the batch
        (as the paper and the official code do). head_targets {name: (b t [size])} align with frames;
        NaN entries are masked out (e.g. no reward before the first action).
        """
        cfg = self.config
        frames = self.as_input(frames)
        # The encoder reads the frames as given: uint8 frames are scaled without a range check, so a training step
        # on uint8 clips never synchronises with the host (a float copy passed on would be range-checked again).
        observation = self.observe(None, actions, dt, encoded=self.encode(frames))
        target = to_unit_float(frames, next(self.parameters()).dtype)
        batch = target.shape[0]
        logits = self.decode_logits(observation.states, observation.content, observation.skips)
        reconstruction = torch.sigmoid(logits)
        if cfg.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(at_least_float32(logits), target, reduction="sum") / batch
        else:
            nll = gaussian_nll(target, reconstruction, cfg.nu).sum() / batch
        kl_y1_terms = kl_standard_normal(observation.q_y1)
        kl_y1 = kl_y1_terms.sum() / batch
        kl_y1_loss = self._with_free_nats(kl_y1_terms, kl_y1)
        zero = nll.new_zeros(())
        kl_z = kl_z_loss = zero
        if observation.q_z is not None:
            prior = self.prior_z(observation.states[:, :-1])
            if cfg.kl_balance == 0.5:
                kl_z_terms = kl_divergence(observation.q_z, prior)
            else:  # the same values, the gradient shared otherwise between prior and posterior
                kl_z_terms = balanced_kl(observation.q_z, prior, cfg.kl_balance)
            kl_z = kl_z_terms.sum() / batch
            kl_z_loss = self._with_free_nats(kl_z_terms, kl_z)
        residual_norm = zero
        if observation.rollout.residuals is not None:
            residual_norm = at_least_float32(observation.rollout.residuals).norm(dim=-1).sum() / batch
        loss = nll + cfg.beta_y * kl_y1_loss + cfg.beta * kl_z_loss + cfg.l2_weight * residual_norm
        parts = {"nll": nll, "kl_y1": kl_y1, "kl_z": kl_z, "residual_norm": residual_norm}
        if head_targets:
            predictions = self.predict_heads(observation.states)
            for name, values in head_targets.items():
                if name not in predictions:
                    raise ValueError(f"head target {name!r} has no head; model heads: {sorted(predictions)}")
                predicted = at_least_float32(predictions[name])
                if values.numel() != predicted.numel():
                    raise ValueError(
                        f"head target {name!r} of shape {tuple(values.shape)} does not match the frames: "
                        f"expected {tuple(predicted.shape)}"
                    )
                values = values.to(predicted.dtype).reshape(predicted.shape)
                mask = ~values.isnan()
                head_loss = 0.5 * ((predicted - values.nan_to_num()) ** 2 * mask).sum() / batch
                parts[f"head_{name}"] = head_loss
                loss = loss + cfg.head_weight * head_loss
        parts = {name: value.detach() for name, value in parts.items()}
        parts["loss"] = loss.detach()
        return ElboOutput(loss, parts, reconstruction)

    def _with_free_nats(self, kl_terms: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
        """A KL as it enters the loss, from its elementwise terms (b [t] n) and their sum over all but the batch,
        averaged over it (`kl`): with free nats, the batch mean of the sum over clips (y_1) or frames (z) of
        max(KL summed over the latent's dimensions, free_nats); without, `kl` itself (the paper's ELBO)."""
        if self.config.free_nats == 0:
            return kl
        return kl_terms.sum(dim=-1).clamp(min=self.config.free_nats).sum() / kl_terms.shape[0]

    def forward(
        self,
        frames: torch.Tensor,
        actions: torch.Tensor | None = None,
        head_targets: dict[str, torch.Tensor] | None = None,
        dt: float | None = None,
    ) -> ElboOutput:
        """The training objective (`elbo`), so DistributedDataParallel and torch.compile wrap it."""
        return self.elbo(frames, actions, head_targets, dt)

    # ------------------------------------------------------------------ generation
    def predict(
        self,
        cond_frames: torch.Tensor,
        horizon: int,
        num_samples: int = 1,
        dt: float | None = None,
        actions: torch.Tensor | None = None,
        prior_mean: bool = False,
        all_substeps: bool = False,
        cond_dt: float | None = None,
    ) -> torch.Tensor:
        """Sample futures of conditioning clips (b k c h w).

        Each sample re-infers y_1 and z_2..z_k from their posteriors, then draws z from the prior for
        `horizon` more frames with Euler step `dt`. The conditioning frames' states are inferred with
        `cond_dt`, by default the training step (as the official code: only the future changes frame rate).
        Returns (b, num_samples, k + horizon, c, h, w): reconstructions of the conditioning frames then
        predictions; with `all_substeps`, every Euler state is decoded ((k - 1) / cond_dt + horizon / dt + 1
        frames), for frame-rate up-sampling. Skips come from one frame per clip
        (the last conditioning frame in eval mode), shared by its samples.
        """
        cfg = self.config
        if num_samples < 1 or horizon < 0:
            raise ValueError(f"predict needs num_samples >= 1 and horizon >= 0, got {num_samples} and {horizon}")
        batch, cond_length = cond_frames.shape[:2]
        encoded = self.encode(cond_frames)
        # One skip per clip, shared by its samples (never copied num_samples times: gigabytes for VGG models at
        # 100 samples, and the decoder computes a shared skip's contribution once).
        skips = self._skip_frames(encoded.blocks) if cfg.skip else None
        expanded = Encoded(repeat(encoded.codes, "b t d -> (b n) t d", n=num_samples), [])
        cond_actions = future_actions = None
        if actions is not None:
            actions = repeat(actions, "b t a -> (b n) t a", n=num_samples)
            cond_actions, future_actions = actions[:, : cond_length - 1], actions[:, cond_length - 1 :]
        observation = self.observe(None, cond_actions, cond_dt, encoded=expanded, skips=skips)
        future = self.imagine(observation.states[:, -1], horizon, dt, actions=future_actions, prior_mean=prior_mean)
        if all_substeps:
            states = torch.cat([observation.rollout.states, future.states[:, 1:]], dim=1)
        else:
            states = torch.cat([observation.states, future.frame_states[:, 1:]], dim=1)
        frames = self.decode(states, observation.content, observation.skips).clamp_(0, 1)
        return rearrange(frames, "(b n) t c h w -> b n t c h w", b=batch)

    # ------------------------------------------------------------------ reporting
    def parameter_counts(self) -> dict[str, int]:
        """Number of parameters of each part, and the total."""
        counts = {name: sum(p.numel() for p in child.parameters()) for name, child in self.named_children()}
        counts = {name: count for name, count in counts.items() if count}
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    def extra_repr(self) -> str:
        counts = self.parameter_counts()
        return "parameters: " + ", ".join(f"{name}={count:,}" for name, count in counts.items())
