"""Frame samplers: which frame indices of a video to decode.

A sampler is a pure function of ``(num_frames, fps)`` (plus an ``rng`` for the random modes), so it
can be tested without decoding anything and the decoder only ever sees a list of indices. Indices are
int64 in ``[0, num_frames)``; they repeat when a video is shorter than what was asked, and the decoder
then decodes each distinct frame once.

Frame ``i`` is taken to be shown from ``i / fps`` to ``(i + 1) / fps`` seconds (constant frame rate,
first frame at 0 s), which is how :class:`AtFps` and :class:`AtTimestamps` turn seconds into indices. For a
variable-frame-rate video the decoder knows each frame's real time and passes them to the samplers that pick by
time (``indices_for_times``, through :func:`sample_by_time`); frame ``i`` is then shown from ``times[i]`` to
``times[i + 1]``. Samplers that pick by frame number (uniform segments, dense clips) are the same either way.

Specs for command lines (:func:`sampler_from_spec`)::

    uniform:8          8 TSN segments, middle frame of each
    uniform:8:random   8 TSN segments, a random frame of each
    dense:8x4          8 frames at stride 4, centred
    dense:8x4:random   the same at a random start
    dense:16           16 consecutive frames, centred
    all                every frame
    fps:2              resampled to 2 frames per second
    fps:2:max=32       the same, at most 32 frames
    timestamps:0.5,1   the frames nearest to 0.5 s and 1 s
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from videoadapt.errors import VideoadaptError

__all__ = [
    "AllFrames",
    "AtFps",
    "AtTimestamps",
    "Dense",
    "Sampler",
    "SamplerSpecError",
    "UniformSegments",
    "sample_by_time",
    "sampler_from_spec",
]


class SamplerSpecError(VideoadaptError, ValueError):
    """A sampler spec (``--sampler uniform:8``) that cannot be parsed; the CLI reports it in one line."""


@runtime_checkable
class Sampler(Protocol):
    def indices(self, num_frames: int, fps: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """int64 frame indices in ``[0, num_frames)`` to decode, in the order the clip should have them."""
        ...


def sample_by_time(
    sampler: Sampler, times: np.ndarray, fps: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Indices for a video whose frame ``i`` starts at ``times[i]`` seconds (sorted, ``times[0] == 0``).

    A sampler with an ``indices_for_times(times, fps, rng)`` method picks by those times; any other picks by
    frame number (``indices(len(times), fps, rng)``). ``fps`` is the mean rate, ``len(times) / duration``.
    """
    pick = getattr(sampler, "indices_for_times", None)
    if callable(pick):
        return np.asarray(pick(times, fps, rng), dtype=np.int64)
    return sampler.indices(len(times), fps, rng)


def _check_times(times: np.ndarray, fps: float) -> np.ndarray:
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    _check_video(len(times), fps)
    if np.any(np.diff(times) <= 0) or not np.all(np.isfinite(times)):
        raise ValueError("frame times must be finite and increasing")
    return times


def _check_video(num_frames: int, fps: float) -> None:
    if num_frames < 1:
        raise ValueError(f"cannot sample from a video with {num_frames} frames")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"frame rate must be positive and finite, got {fps}")


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    # No rng means the caller does not care about reproducibility; a fresh one avoids a shared hidden
    # global state.
    return rng if rng is not None else np.random.default_rng()


@dataclass(frozen=True)
class UniformSegments(Sampler):
    """TSN sampling: split the video into ``num_segments`` equal segments and take one frame from each.

    The middle frame of each segment (evaluation), or a uniformly random frame of each segment when
    ``random_offset`` (training). Indices are sorted; with fewer frames than segments, segments are
    shorter than a frame and neighbouring segments share frames (3 frames, 8 segments: 0 0 0 1 1 2 2 2).
    """

    num_segments: int
    random_offset: bool = False

    def __post_init__(self) -> None:
        if self.num_segments < 1:
            raise ValueError(f"num_segments must be >= 1, got {self.num_segments}")

    def indices(self, num_frames: int, fps: float, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_video(num_frames, fps)
        # Integer arithmetic: segment k spans [k*n/K, (k+1)*n/K), and float edges could round across a frame.
        n, k = num_frames, np.arange(self.num_segments, dtype=np.int64)
        segments = self.num_segments
        if not self.random_offset:
            out = ((2 * k + 1) * n) // (2 * segments)
        else:
            # Segment k owns the frames whose start time lies in it: ceil(k*n/K) .. ceil((k+1)*n/K) - 1. A
            # segment shorter than a frame owns none and falls back to the frame it starts in.
            low = -((-k * n) // segments)
            high = -((-(k + 1) * n) // segments)
            empty = high <= low
            low = np.where(empty, (k * n) // segments, low)
            high = np.where(empty, low + 1, high)
            out = _rng(rng).integers(low, high)
        return np.clip(out, 0, num_frames - 1).astype(np.int64)


@dataclass(frozen=True)
class Dense(Sampler):
    """A clip of ``num_frames`` frames ``stride`` apart, centred in the video (or at a random start).

    A video shorter than the clip's span (``(num_frames - 1) * stride + 1``) gives a clip that starts at
    frame 0 and repeats the last frame for the indices past the end ("clamp"): frames stay in time order
    at the asked stride for as long as the video lasts, rather than jumping back to the start as looping
    would.
    """

    num_frames: int
    stride: int = 1
    random_start: bool = False

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.stride < 1:
            raise ValueError(f"num_frames and stride must be >= 1, got {self.num_frames} and {self.stride}")

    def indices(self, num_frames: int, fps: float, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_video(num_frames, fps)
        span = (self.num_frames - 1) * self.stride + 1
        slack = num_frames - span
        if slack <= 0:
            start = 0
        elif self.random_start:
            start = int(_rng(rng).integers(0, slack + 1))
        else:
            start = slack // 2
        out = start + np.arange(self.num_frames, dtype=np.int64) * self.stride
        return np.minimum(out, num_frames - 1)


@dataclass(frozen=True)
class AllFrames(Sampler):
    """Every frame, in order."""

    def indices(self, num_frames: int, fps: float, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_video(num_frames, fps)
        return np.arange(num_frames, dtype=np.int64)


# Frame times are k / rate; a product that should land exactly on an integer may come out a hair below it.
_EPS = 1e-9


@dataclass(frozen=True)
class AtFps(Sampler):
    """The video resampled to ``fps`` frames per second: the frame on screen at 0, 1/fps, 2/fps, ... seconds.

    Above the video's own rate frames repeat. With ``max_frames``, a video that would give more frames
    is sampled at ``max_frames`` evenly spaced times over its whole length instead (a lower rate that
    still covers the video, rather than a cut-off prefix).
    """

    fps: float
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"fps must be positive and finite, got {self.fps}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")

    def indices(self, num_frames: int, fps: float, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_video(num_frames, fps)
        # Times k / self.fps that fall before the end of the video, num_frames / fps.
        count = max(1, math.ceil(num_frames * self.fps / fps - _EPS))
        if self.max_frames is not None and count > self.max_frames:
            k = np.arange(self.max_frames, dtype=np.float64)
            out = np.floor(k * num_frames / self.max_frames + _EPS)
        else:
            k = np.arange(count, dtype=np.float64)
            out = np.floor(k * fps / self.fps + _EPS)
        return np.clip(out, 0, num_frames - 1).astype(np.int64)

    def indices_for_times(self, times: np.ndarray, fps: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """The frame on screen at each sampling time, given every frame's start time (variable frame rate).

        The video lasts ``len(times) / fps`` (``fps`` is the mean rate); with ``max_frames`` the times are spread
        evenly over that length, as :meth:`indices` spreads them over the frames.
        """
        times = _check_times(times, fps)
        duration = len(times) / fps
        count = max(1, math.ceil(duration * self.fps - _EPS))
        if self.max_frames is not None and count > self.max_frames:
            at = np.arange(self.max_frames, dtype=np.float64) * duration / self.max_frames
        else:
            at = np.arange(count, dtype=np.float64) / self.fps
        out = np.searchsorted(times, at + _EPS, side="right") - 1  # the last frame started by then
        return np.clip(out, 0, len(times) - 1).astype(np.int64)


@dataclass(frozen=True)
class AtTimestamps(Sampler):
    """The frame nearest to each of ``seconds`` (frame ``i`` at ``i / fps``), in the order given.

    Times past the end give the last frame, as it is the nearest one.
    """

    seconds: tuple[float, ...]

    def __post_init__(self) -> None:
        # Accept any sequence but store a tuple, so the dataclass stays hashable.
        object.__setattr__(self, "seconds", tuple(float(s) for s in self.seconds))
        if not self.seconds:
            raise ValueError("timestamps must not be empty")
        bad = [s for s in self.seconds if not (s >= 0 and math.isfinite(s))]
        if bad:
            raise ValueError(f"timestamps must be finite and >= 0, got {bad}")

    def indices(self, num_frames: int, fps: float, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_video(num_frames, fps)
        # floor(x + 0.5) rounds halves up; np.rint would round them to even.
        out = np.floor(np.asarray(self.seconds, dtype=np.float64) * fps + 0.5)
        return np.clip(out, 0, num_frames - 1).astype(np.int64)

    def indices_for_times(self, times: np.ndarray, fps: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """The frame whose start time is nearest to each of ``seconds`` (ties to the later), variable frame rate."""
        times = _check_times(times, fps)
        at = np.asarray(self.seconds, dtype=np.float64)
        after = np.clip(np.searchsorted(times, at, side="left"), 0, len(times) - 1)
        before = np.clip(after - 1, 0, len(times) - 1)
        # As floor(x + 0.5) does on the grid: the earlier frame only when strictly nearer.
        nearer_before = (at - times[before]) < (times[after] - at)
        return np.where(nearer_before, before, after).astype(np.int64)


def sampler_from_spec(spec: str) -> Sampler:
    """Parse a command-line sampler spec (see the module docstring), e.g. ``"uniform:8"``, ``"dense:8x4"``."""
    try:
        return _parse_spec(spec.strip())
    except (ValueError, TypeError) as error:
        if isinstance(error, SamplerSpecError):
            raise
        raise SamplerSpecError(f"bad sampler spec {spec!r}: {error}") from None


def _parse_spec(spec: str) -> Sampler:
    name, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    name = name.lower()
    if name == "all" and not parts:
        return AllFrames()
    if name == "uniform" and len(parts) in (1, 2):
        return UniformSegments(int(parts[0]), random_offset=_random_flag(parts[1:]))
    if name == "dense" and len(parts) in (1, 2):
        count, _, stride = parts[0].lower().partition("x")
        return Dense(int(count), int(stride) if stride else 1, random_start=_random_flag(parts[1:]))
    if name == "fps" and len(parts) in (1, 2):
        max_frames = None
        if len(parts) == 2:
            key, _, value = parts[1].partition("=")
            if key != "max" or not value:
                raise ValueError(f"expected max=N after the rate, got {parts[1]!r}")
            max_frames = int(value)
        return AtFps(float(parts[0]), max_frames)
    if name == "timestamps" and len(parts) == 1:
        return AtTimestamps(tuple(float(s) for s in parts[0].split(",") if s.strip()))
    raise SamplerSpecError(
        f"bad sampler spec {spec!r}; expected one of uniform:N[:random], dense:N[xSTRIDE][:random], all, "
        "fps:RATE[:max=N], timestamps:T1,T2,..."
    )


def _random_flag(parts: list[str]) -> bool:
    if not parts:
        return False
    if parts[0] != "random":
        raise ValueError(f"expected 'random', got {parts[0]!r}")
    return True
