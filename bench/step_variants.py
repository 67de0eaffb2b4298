"""One SRVP optimisation step (forward, backward, optimiser) under the Trainer's speed switches, as a unit
that benchmarks and the fast-path test run side by side with the plain eager float32 step.

The switches are those of `configs/trainer/default.yaml`: channels-last convolutions, the fused (CUDA) or
foreach (CPU) Adam update, torch.compile of the loss and bf16 autocast, plus the factorised decoder the
Trainer always uses. With every switch off this is the straightforward eager float32 implementation of the
same model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from srvp.common.optimisation import build_model, build_optimizer, optimisation_step
from srvp.worldmodel import SRVPConfig
from srvp.worldmodel.model import ElboOutput


@dataclass(frozen=True)
class StepOptions:
    """Speed switches of a training step; all off is the eager float32 baseline."""

    channels_last: bool = False
    """Channels-last memory format for the convolution weights (and so their activations)."""
    fused_optimizer: bool = False
    """Adam with `fused=True` on CUDA, `foreach=True` on CPU."""
    compile: bool = False
    """torch.compile the loss."""
    compile_backend: str = "inductor"
    """torch.compile's backend: inductor (generated kernels), or aot_eager to check the traced graph cheaply."""
    bf16: bool = False
    """bf16 autocast for forward and backward (weights and optimiser stay float32)."""
    factorised_decoder: bool = False
    """The decoder's shared-skip and folded-upsampling convolutions (`FrameDecoder.factorised`, on in the
    Trainer); off, the literal concatenation of the skips with the upsampled input."""
    cudnn_benchmark: bool = False
    """Let cuDNN time its convolution algorithms once per shape and keep the fastest (on in the Trainer on
    CUDA; no effect elsewhere)."""

    def label(self) -> str:
        names = [name for name, on in vars(self).items() if on is True]
        return "+".join(names) if names else "eager fp32"


class TrainStep:
    """A model, its Adam optimiser and the step function, built by the Trainer's own functions."""

    def __init__(self, model_config: SRVPConfig, options: StepOptions, device: torch.device, lr: float = 3e-4) -> None:
        self.options, self.device = options, device
        self.model = build_model(model_config, device, options.channels_last)
        self.model.decoder.factorised = options.factorised_decoder
        adam = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": lr}
        self.optimizer = build_optimizer(adam, self.model, device, options.fused_optimizer)
        self.loss_fn = torch.compile(self.model, backend=options.compile_backend) if options.compile else self.model
        self.precision = "bf16" if options.bf16 else "fp32"

    def __call__(self, batch: torch.Tensor) -> ElboOutput:
        """One update on uint8 clips (b t c h w); returns the ELBO output (no host synchronisation)."""
        # A process-wide switch: set for each step, so variants timed side by side each run with their own.
        torch.backends.cudnn.benchmark = self.options.cudnn_benchmark
        return optimisation_step(self.loss_fn, self.optimizer, batch, precision=self.precision)
