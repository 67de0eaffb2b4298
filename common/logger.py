"""Run logging: TensorBoard scalars, hyper-parameters and videos, plus a metrics.jsonl a script can read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from srvp.common.configs import flatten
from srvp.common.files import atomic_write


class RunLogger:
    """Writes `prefix/name` scalars to TensorBoard and one JSON line per logged step to metrics.jsonl.

    On resume (`resume_step`, or `rewind` before the first write), the lines of steps after the checkpoint are
    dropped and TensorBoard hides its events after that step, so the logs match the resumed run. The TensorBoard
    files are opened at the first write.
    """

    def __init__(self, run_dir: str | Path, *, enabled: bool = True, resume_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.enabled = enabled
        self._writer: SummaryWriter | None = None
        self._purge_step: int | None = None
        if resume_step is not None:
            self.rewind(resume_step)

    def rewind(self, step: int) -> None:
        """Drop what was logged after `step` (a resumed run logs it again from there)."""
        if self._writer is not None:
            raise RuntimeError("RunLogger.rewind must come before the first write")
        self._purge_step = step
        if not self.metrics_path.exists():
            return
        kept = [
            line for line in self.metrics_path.read_text().splitlines() if line and json.loads(line)["step"] <= step
        ]
        atomic_write(self.metrics_path, lambda file: file.write("".join(f"{line}\n" for line in kept).encode()))

    @property
    def writer(self) -> SummaryWriter | None:
        """The TensorBoard writer (opened now if it was not yet), or None when TensorBoard is off."""
        if self.enabled and self._writer is None:
            self._writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self._purge_step)
        return self._writer

    def scalars(self, step: int, prefix: str, values: dict[str, float]) -> None:
        """Log `values` under `prefix/` at `step`."""
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{prefix}/{name}", value, step)
        with self.metrics_path.open("a") as file:
            file.write(json.dumps({"step": step, **{f"{prefix}/{k}": v for k, v in values.items()}}) + "\n")

    def video(self, step: int, tag: str, video: np.ndarray, fps: int = 4) -> None:
        """Log a uint8 video (t h w 3) as an animated GIF, which TensorBoard's image tab plays."""
        if self.writer is None:
            return
        gif = iio.imwrite("<bytes>", video, extension=".gif", duration=1000 / fps, loop=0)
        image = Summary.Image(height=video.shape[1], width=video.shape[2], colorspace=3, encoded_image_string=gif)
        self.writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def hparams(self, config: dict[str, Any], metrics: dict[str, float]) -> None:
        """Hyper-parameter table row: the run config flattened to dotted keys, with final metrics."""
        if self.writer is not None:
            params = {
                key: value if isinstance(value, int | float | str | bool) else str(value)
                for key, value in flatten(config).items()
            }
            self.writer.add_hparams(params, {f"hparams/{k}": v for k, v in metrics.items()}, run_name="hparams")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
