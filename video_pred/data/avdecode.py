"""Frame decoding of raw video files (AVI, MP4, MKV, WebM, MOV, GIF) through PyAV, with truncation detection.

ffmpeg decoders often stop quietly at the end of a truncated file; comparing the decoded count with the
frame count the container header announces turns that into an error, so a cut download is skipped and
reported rather than stored short.
"""

from __future__ import annotations

from srvp.common.extras import require_extra

require_extra("video", "decoding videos (srvp.video_pred.data.avdecode)")

from collections.abc import Iterator
from typing import BinaryIO

import av
import numpy as np


def iter_frames(file: str | BinaryIO) -> Iterator[av.VideoFrame]:
    """Yield every decoded frame of the first video stream, in presentation order (timestamps in `frame.pts`).

    Raises ValueError when the file holds no video stream, no frame, or fewer frames than its header says.
    """
    with av.open(file, mode="r") as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        announced = stream.frames  # 0 when the container does not record it
        decoded = 0
        for frame in container.decode(stream):
            yield frame
            decoded += 1
    if decoded == 0:
        raise ValueError("no decodable frame")
    if announced and decoded < announced:
        raise ValueError(f"truncated: decoded {decoded} of the {announced} frames its header announces")


def iter_rgb_frames(file: str | BinaryIO, every: int = 1) -> Iterator[np.ndarray]:
    """Yield every `every`-th frame (0, every, 2 every, ...) of the first video stream as uint8 (H, W, 3) RGB.

    Raises ValueError as `iter_frames` does.
    """
    for index, frame in enumerate(iter_frames(file)):
        if index % every == 0:
            yield frame.to_ndarray(format="rgb24")
