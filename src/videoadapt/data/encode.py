"""Writing videos. The default is lossless H.264 in RGB (libx264rgb, crf 0), so that a video written and read back
is byte-identical to the frames that were written (SynthWorld's on-disk copy equals its in-memory stream)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(path: str | Path, frames: np.ndarray, fps: float, lossless: bool = True) -> None:
    """Write uint8 RGB ``frames`` ``[T,H,W,3]`` to ``path`` (container from the suffix, e.g. ``.mp4``).

    ``lossless=False`` writes ordinary yuv420p H.264 (smaller, plays everywhere, not bit-exact; needs even sizes).
    """
    frames = np.ascontiguousarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 [T,H,W,3] with T > 0, got {frames.dtype} {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary name and rename, so an interrupted write never leaves a half video under the real name.
    partial = path.with_name(path.name + ".partial")
    with av.open(str(partial), mode="w", format=_container_format(path)) as container:
        stream = container.add_stream(
            "libx264rgb" if lossless else "libx264", rate=Fraction(fps).limit_denominator(1001)
        )
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "rgb24" if lossless else "yuv420p"
        stream.options = {"crf": "0" if lossless else "18", "preset": "ultrafast" if lossless else "medium"}
        stream.thread_count = 1  # deterministic output, and generation is parallelised per video instead
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    partial.replace(path)


def _container_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {"mkv": "matroska", "mp4": "mp4", "mov": "mov", "avi": "avi", "webm": "webm"}.get(suffix, suffix or "mp4")
