"""Probing and decoding videos into uint8 RGB frames ``[T,H,W,3]``.

Decoding goes through PyAV (FFmpeg). Only the frames a sampler asks for are converted to RGB, decoding
stops after the last of them, and a target far ahead of the decoder is reached by seeking back to the
keyframe before it rather than decoding everything in between.

Frame ``i`` is the ``i``-th frame in presentation order, as a full decode numbers them. Decoding from the
start counts frames; after a seek the frame the decoder lands on has to be placed by its timestamp. When
the probe counted the stream's packets (Matroska/WebM and other containers without a frame count) their
timestamps give every frame's exact position; otherwise (MP4/MOV) frame ``i`` is assumed at
``start + i / fps`` (constant frame rate), which is exact for constant-rate videos and approximate after
a seek in a variable-rate MP4.

The container is recognised from the bytes, not the name: a Matroska file named ``.mp4`` decodes as Matroska, and
a still image (PNG, JPEG, ...) is refused whatever its name. Every failure caused by the file (missing, not a
video, a still image, no video stream, truncated, corrupt, empty,
absurd size, taking too long) raises :class:`~videoadapt.errors.VideoDecodeError` naming the file and
the reason. A stream that ends before the frames asked for is an error, never a padded clip.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from videoadapt.errors import VideoDecodeError

if TYPE_CHECKING:
    from videoadapt.data.sampling import Sampler

__all__ = [
    "DecodeStats",
    "VideoClip",
    "VideoInfo",
    "available_backends",
    "probe",
    "read_video",
    "reduced_size",
]

DEFAULT_MAX_PIXELS = 8192 * 8192
# Seek only when the next wanted frame is more than this many frames ahead: closer ones are cheaper to
# decode through than to reach by seeking back to a keyframe and decoding forward again.
SEEK_MIN_GAP = 32
# Counting packets of a stream that never ends (a corrupt file the demuxer keeps resyncing in) must stop
# somewhere even before the deadline: ten million frames is over 90 hours at 30 fps.
MAX_PACKETS = 10_000_000
# FFmpeg's error recognition while decoding. "aggressive" also flags what a sane encoder never writes,
# which catches garbage that would otherwise decode into silently wrong pixels; real footage from x264,
# x265, VP9, AV1, MPEG-4, MJPEG and FFV1 encoders decodes cleanly under it.
ERR_DETECT = "aggressive"
# Frame threads each hold about two decoded pictures (measured: 22 MB a thread at 3840x2160 yuv420p; 16 threads, the
# most FFmpeg starts on a large machine, took 430 MB); the thread count is cut so that they hold at most this much.
FRAME_THREAD_BYTES = 256 * 2**20
_ATTACHED_PIC = 0x400  # AV_DISPOSITION_ATTACHED_PIC


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a file's first video stream; ``duration`` is ``frames / fps``."""

    path: str
    frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DecodeStats:
    """What one :func:`read_video` call cost: packets demuxed, frames decoded and converted, seeks."""

    packets: int = 0
    decoded: int = 0
    converted: int = 0
    seeks: int = 0


@dataclass
class VideoClip:
    frames: np.ndarray  # uint8 [T,H,W,3] RGB
    indices: np.ndarray  # int64 [T] source frame indices
    timestamps: np.ndarray  # float64 [T] seconds since the first frame
    info: VideoInfo
    stats: DecodeStats = field(default_factory=DecodeStats)


def available_backends() -> list[str]:
    """Decoding backends usable here: ``"pyav"`` always, ``"torchcodec"`` when it is installed."""
    backends = ["pyav"]
    if importlib.util.find_spec("torchcodec") is not None:
        backends.append("torchcodec")
    return backends


def probe(
    path: str | Path,
    *,
    count_frames: bool = False,
    max_seconds: float = 60.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> VideoInfo:
    """Frame count, frame rate, size and codec of the first video stream of ``path``, without decoding.

    The frame count comes from the container when it records one (MP4, MOV) and otherwise from counting
    the stream's packets (Matroska/WebM, raw formats), which demuxes but does not decode. ``count_frames``
    decodes the whole stream instead: slower, but it is the count a full decode gives and it checks that
    every frame decodes.
    """
    deadline = _Deadline(path, max_seconds)
    with _open_video(path) as (container, stream):
        info, _ = _probe_open(path, container, stream, deadline, count_frames, max_pixels)
    return info


def read_video(
    path: str | Path,
    sampler: Sampler | None = None,
    *,
    rng: np.random.Generator | None = None,
    backend: str = "pyav",
    max_seconds: float = 60.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_short_side: int | None = None,
) -> VideoClip:
    """Decode the frames ``sampler`` picks from ``path`` (all frames when ``sampler`` is None).

    Each distinct frame is decoded once even when the sampler repeats it. ``max_seconds`` bounds the
    wall-clock time of the whole call (probe included) and ``max_pixels`` the declared frame size; both
    fail with :class:`VideoDecodeError`, as does every problem with the file.

    ``max_short_side``: frames whose shorter side is longer are scaled down (aspect ratio kept, see
    :func:`reduced_size`) by FFmpeg's scaler in the same step that converts them to RGB, so a 4K frame never
    exists as a full-size RGB array; smaller frames are returned exactly as without it.
    """
    if backend not in available_backends():
        known = "pyav, torchcodec (when installed)"
        raise ValueError(f"video backend {backend!r} is unknown or not installed; backends: {known}")
    deadline = _Deadline(path, max_seconds)
    with _open_video(path) as (container, stream):
        info, pts_table = _probe_open(path, container, stream, deadline, False, max_pixels)
        time_base = float(stream.time_base) if stream.time_base is not None else 0.0
    from videoadapt.data.sampling import AllFrames, sample_by_time

    if sampler is None:
        sampler = AllFrames()
    times = _frame_times(pts_table, time_base)
    if times is not None:  # variable frame rate: samplers that pick by time get each frame's real time
        picked = sample_by_time(sampler, times, info.fps, rng)
    else:
        picked = sampler.indices(info.frames, info.fps, rng)
    indices = np.asarray(picked, dtype=np.int64).reshape(-1)
    if len(indices) and (indices.min() < 0 or indices.max() >= info.frames):
        raise ValueError(f"{sampler!r} returned indices outside [0, {info.frames}) for {path}")
    targets, inverse = np.unique(indices, return_inverse=True)
    stats = DecodeStats()
    size = reduced_size(info.height, info.width, max_short_side)
    if not len(targets):
        frames, times = np.zeros((0, *size, 3), np.uint8), np.zeros(0, np.float64)
    elif backend == "torchcodec":
        frames, times = _decode_torchcodec(path, targets, size)
    else:
        try:
            frames, times = _decode_targets(path, info, pts_table, targets, size, deadline, stats, allow_seek=True)
        except _Restart:
            frames, times = _decode_targets(path, info, pts_table, targets, size, deadline, stats, allow_seek=False)
    if not np.array_equal(indices, targets):  # repeats or an unsorted order: expand; else skip the copy
        frames, times = frames[inverse], times[inverse]
    return VideoClip(frames=frames, indices=indices, timestamps=times, info=info, stats=stats)


def reduced_size(height: int, width: int, max_short_side: int | None) -> tuple[int, int]:
    """``(height, width)`` of a frame whose shorter side is brought down to ``max_short_side`` (None: no limit).

    The aspect ratio is kept, the longer side rounded to the nearest pixel; a frame already within the limit
    keeps its size.
    """
    if max_short_side is None or min(height, width) <= max_short_side:
        return height, width
    if max_short_side < 1:
        raise ValueError(f"max_short_side must be >= 1, got {max_short_side}")
    if height <= width:
        return max_short_side, max(1, round(width * max_short_side / height))
    return max(1, round(height * max_short_side / width)), max_short_side


class _Deadline:
    def __init__(self, path: str | Path, seconds: float) -> None:
        self.path, self.seconds = path, seconds
        self.end = time.monotonic() + seconds

    def check(self, doing: str) -> None:
        if time.monotonic() > self.end:
            raise VideoDecodeError(self.path, f"gave up {doing} after max_seconds={self.seconds:g}")


@contextmanager
def _decode_errors(path: str | Path, doing: str) -> Iterator[None]:
    """FFmpeg's and the OS's errors as VideoDecodeError naming the file, the step and ffmpeg's message."""
    try:
        yield
    except (av.error.FFmpegError, OSError) as error:
        # PyAV's str() repeats the file name and an errno; strerror is ffmpeg's own text.
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise VideoDecodeError(path, f"{doing} failed: {reason}") from error


@contextmanager
def _open_video(path: str | Path) -> Iterator[tuple[Any, Any]]:
    p = Path(path)
    if not p.exists():
        # A clip a reader did not find carries what was looked for (formats.common.MissingVideoPath): its path is
        # only a guess at a name, which the message should not present as the file that is missing.
        looked_for = getattr(path, "missing_reason", None)
        if looked_for:
            raise VideoDecodeError(getattr(path, "missing_dir", None) or p.parent, looked_for)
        raise VideoDecodeError(path, "no such file")
    if p.is_dir():
        raise VideoDecodeError(path, "is a directory, not a video file")
    with _decode_errors(path, "opening"):
        container = av.open(str(p), mode="r", metadata_errors="ignore")
    try:
        # FFmpeg reads a still image (a PNG or JPEG, whatever its name) as a one-frame video through an image
        # demuxer; a photo among the videos is a data error, not a clip to repeat for every sampled frame.
        demuxer = str(getattr(container.format, "name", ""))
        if demuxer.endswith("_pipe") or demuxer in ("image2", "image2pipe"):
            raise VideoDecodeError(path, f"is a still image ({demuxer.removesuffix('_pipe')}), not a video")
        # Cover art in audio files (MP3, FLAC, M4A) is a one-picture "video" stream; it is not a video.
        videos = [s for s in container.streams.video if not int(getattr(s, "disposition", 0)) & _ATTACHED_PIC]
        if not videos:
            kinds = [s.type if s not in container.streams.video else "cover art" for s in container.streams]
            raise VideoDecodeError(path, f"no video stream (streams: {', '.join(sorted(set(kinds))) or 'none'})")
        yield container, videos[0]
    finally:
        container.close()


def _frame_rate(stream: Any) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return None


def _declared_end(container: Any, stream: Any) -> float | None:
    """Where the container says the video stream ends, in seconds, or None when it does not say."""
    if stream.duration is not None and stream.time_base is not None:
        return float(((stream.start_time or 0) + stream.duration) * stream.time_base)
    # Matroska writes the track's end time as a tag; ffmpeg does not turn it into stream.duration.
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d*)?)", tag.strip()) if tag else None
    if match:
        h, m, s = match.groups()
        return int(h) * 3600 + int(m) * 60 + float(s)
    # The container's duration spans all streams, so it only describes the video when the video is alone.
    # It is read as an end time, the smaller reading when the stream starts late: errs towards accepting.
    if len(container.streams) == 1 and container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    return None


def _probe_open(
    path: str | Path, container: Any, stream: Any, deadline: _Deadline, count_frames: bool, max_pixels: int
) -> tuple[VideoInfo, np.ndarray | None]:
    """The stream's VideoInfo, plus the sorted timestamps of all its frames when they were counted."""
    codec = stream.codec_context
    if codec is None:  # PyAV leaves it unset when FFmpeg has no decoder for the stream's codec
        raise VideoDecodeError(path, "no decoder for the video stream's codec (unknown or damaged header)")
    width, height = int(codec.width or 0), int(codec.height or 0)
    if width <= 0 or height <= 0:
        raise VideoDecodeError(path, f"video stream has no frame size ({width}x{height})")
    if width * height > max_pixels:
        raise VideoDecodeError(path, f"declared frame size {width}x{height} exceeds max_pixels={max_pixels}")
    fps = _frame_rate(stream)
    frames = int(stream.frames or 0)
    pts_table = None
    if count_frames or frames <= 0 or _header_in_doubt(stream, frames):
        # Read before demuxing: FFmpeg revises the stream's start time from the packets it meets (6 s late on a
        # healthy 1 fps Matroska hour), which would read as a stream that falls short of its declared end.
        declared = _declared_end(container, stream)
        frames, pts = _count(path, container, stream, deadline, decode=count_frames)
        if frames <= 0:
            raise VideoDecodeError(path, "video stream has no frames")
        if pts is not None and fps is not None and stream.time_base is not None:
            _check_complete(path, stream, fps, pts, declared)
            # Distinct timestamps number the frames exactly; duplicates would make the numbering ambiguous.
            pts_table = pts if len(pts) == frames and np.all(np.diff(pts) > 0) else None
            if pts_table is not None and not _regular(pts_table):
                # Variable frame rate: the declared rate is FFmpeg's guess from the first frames; the mean rate
                # over the whole stream makes frames / fps its real length.
                fps = _mean_rate(pts_table, float(stream.time_base))
    if frames <= 0:
        raise VideoDecodeError(path, "video stream has no frames")
    if fps is None:
        # No rate in the headers: spread the frames over the container's duration.
        if not (container.duration and container.duration > 0):
            raise VideoDecodeError(path, "cannot tell the frame rate (none declared, no duration)")
        fps = frames / (container.duration / 1_000_000)
    info = VideoInfo(
        path=str(path),
        frames=frames,
        fps=fps,
        duration=frames / fps,
        width=width,
        height=height,
        codec=str(codec.name),
    )
    return info, pts_table


def _count(
    path: str | Path, container: Any, stream: Any, deadline: _Deadline, decode: bool
) -> tuple[int, np.ndarray | None]:
    """Count the stream's packets (or decoded frames); also their sorted timestamps when all have one."""
    count, pts_list, all_pts = 0, [], True
    doing = "decoding" if decode else "counting packets"
    if decode:
        _set_threads(stream, frame_threads=True)  # every frame is wanted, so frame threads never decode in vain
        stream.codec_context.options = {"err_detect": ERR_DETECT}
    with _decode_errors(path, doing):
        for packet in container.demux(stream):
            deadline.check(doing)
            if count > MAX_PACKETS:
                raise VideoDecodeError(path, f"more than {MAX_PACKETS} packets; not a sane video stream")
            if decode:
                items = packet.decode()
                for frame in items:
                    if frame.is_corrupt:
                        raise VideoDecodeError(path, f"frame {count} is corrupt (the decoder reported errors)")
            else:
                items = [packet] if packet.size else []  # the empty packet at the end only flushes
            for item in items:
                count += 1
                if item.pts is None:
                    all_pts = False
                elif all_pts:
                    pts_list.append(item.pts)
    return count, (np.sort(np.asarray(pts_list, dtype=np.int64)) if all_pts and pts_list else None)


def _check_complete(path: str | Path, stream: Any, fps: float, pts: np.ndarray, declared: float | None) -> None:
    """Counted frames must reach the end the container declares and fill the time they span.

    A cut-off Matroska file demuxes cleanly up to the cut, and one with garbage in the middle resyncs
    after it, so a bare count looks like a shorter, healthy video; the timestamps give both away. The
    tolerances admit a dropped frame or two of real camera footage, not a missing stretch.
    """
    seconds = float(stream.time_base)
    count = len(pts)
    span = round(float(pts[-1] - pts[0]) * seconds * fps) + 1
    # Only a stream at a constant rate tells a missing stretch by its timestamps: in a variable-rate one a long
    # interval is as likely a pause of the camera or the screen recorder.
    if _regular(pts) and span - count > max(1, 0.01 * span):
        raise VideoDecodeError(
            path,
            f"{count} frames over the time of {span} at {fps:g} fps: part of the stream is missing (corrupt file)",
        )
    end = float(pts[-1]) * seconds + 1 / fps
    if declared is not None and end < declared - 1.5 / fps - 0.001 * declared:
        raise VideoDecodeError(
            path,
            f"stream ends at {end:.3f} s after {count} frames but the container declares {declared:.3f} s "
            "(truncated or corrupt file)",
        )


def _set_threads(stream: Any, frame_threads: bool) -> None:
    """Slice threads, or frame and slice threads ("AUTO") with as many frame threads as FRAME_THREAD_BYTES allows."""
    if not frame_threads:
        stream.thread_type = "SLICE"  # slice threads share one picture: no memory beyond a single decode
        return
    stream.thread_type = "AUTO"
    codec = stream.codec_context
    picture = int(codec.width or 0) * int(codec.height or 0) * 3 // 2  # a yuv420p picture
    if picture > 0:
        limit = max(1, FRAME_THREAD_BYTES // (2 * picture))
        if limit < 16:  # below FFmpeg's own cap: pin the count (0 would let FFmpeg pick one per core)
            codec.thread_count = min(limit, (os.cpu_count() or 1) + 1)


def _header_in_doubt(stream: Any, frames: int) -> bool:
    """Whether the frame count or the frame rate in the header cannot be trusted, so the packets must be counted.

    The container's index lists every packet (MP4, AVI): a count that disagrees with it is the header lying (an
    AVI header is rewritten by hand or by a tool that cut the file). An average rate unlike the base rate is a
    variable-rate MP4, whose frames can only be placed by their timestamps. Counting demuxes the file once.
    """
    try:
        indexed = len(stream.index_entries)
    except (AttributeError, av.error.FFmpegError):  # an older PyAV without the index
        indexed = 0
    if indexed > 1 and indexed != frames:
        return True
    average, base = stream.average_rate, stream.base_rate
    if average and base and average > 0 and base > 0:
        return abs(float(average) / float(base) - 1) > 0.01
    return False


def _regular(pts: np.ndarray) -> bool:
    """Whether sorted timestamps are evenly spaced: nine in ten intervals within 10% (or 1 tick) of the median.

    Camera footage with a dropped frame is regular; 29.97 fps in milliseconds (33, 34, 33, ...) is regular.
    """
    steps = np.diff(pts)
    if len(steps) < 2:
        return True
    median = float(np.median(steps))
    close = np.abs(steps - median) <= max(1.0, 0.1 * median)
    return bool(close.mean() >= 0.9)


def _mean_rate(pts: np.ndarray, seconds: float) -> float:
    """Frames per second over a variable-rate stream, the last frame shown for the median interval."""
    steps = np.diff(pts)
    last = float(np.median(steps)) if len(steps) else 1.0
    return len(pts) / ((float(pts[-1] - pts[0]) + last) * seconds)


def _frame_times(pts_table: np.ndarray | None, time_base: float) -> np.ndarray | None:
    """Seconds from the first frame to each frame when the stream is not evenly spaced, else None."""
    if pts_table is None or _regular(pts_table):
        return None
    return (pts_table - pts_table[0]).astype(np.float64) * time_base


class _Restart(Exception):
    """A seek could not be placed or overshot its target; decode again from the start without seeking."""


def _decode_targets(
    path: str | Path,
    info: VideoInfo,
    pts_table: np.ndarray | None,
    targets: np.ndarray,
    size: tuple[int, int],
    deadline: _Deadline,
    stats: DecodeStats,
    allow_seek: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode the frames at the sorted, distinct ``targets`` in one forward pass, seeking over long gaps.

    Wanted frames are converted to RGB at ``size`` (height, width); a smaller size is scaled by FFmpeg in the
    same pass (area averaging, which is what shrinking wants), never through a full-size RGB copy.
    """
    wanted = len(targets)
    out = np.empty((wanted, *size, 3), np.uint8)
    height, width = size
    scale = (height, width) != (info.height, info.width)
    times = np.empty(wanted, np.float64)
    # A seek that helps never goes behind what was decoded and one that does not turns seeking off, so a
    # healthy file needs at most about two passes over its packets.
    packet_budget = 4 * info.frames + 1000
    with _open_video(path) as (container, stream), _decode_errors(path, "decoding"):
        # Frame threads decode ahead of what is asked, which pays when most frames are wanted and wastes
        # work when a few sparse ones are; slice threads never decode a frame that is not reached.
        sparse = wanted * 4 < info.frames
        _set_threads(stream, frame_threads=not sparse)
        # A picture no other frame references (most B-frames) need not be decoded unless it is wanted.
        # Only with the timestamp table, which still numbers the frames that follow a skipped one, and
        # without frame threads, which would apply the switch to packets already in flight.
        skip_unwanted = sparse and pts_table is not None
        wanted_set = set(targets.tolist())
        codec_context = stream.codec_context
        stream.codec_context.options = {"err_detect": ERR_DETECT}
        time_base = stream.time_base
        seconds = float(time_base) if time_base is not None else 0.0
        start = int(pts_table[0]) if pts_table is not None else stream.start_time
        # After a seek the landing frame is placed by its timestamp, which needs a table or a grid.
        can_seek = allow_seek and seconds > 0 and start is not None
        reformatter = VideoReformatter()  # one swscale context for the clip; to_ndarray builds one per frame
        k = 0  # next target to fill
        position = -1  # index of the frame decoded last
        landing_for: int | None = None  # target of a seek whose first frame is still to come
        last_seek = -1  # target of the latest seek
        packets = container.demux(stream)
        while k < wanted:
            # Never a second seek for the same target: a keyframe more than SEEK_MIN_GAP before it (a long keyframe
            # interval) is where that seek lands again, which would read as seeking going backwards.
            if can_seek and landing_for is None and targets[k] - position > SEEK_MIN_GAP and targets[k] != last_seek:
                landing_for = last_seek = int(targets[k])
                if pts_table is not None:
                    offset = int(pts_table[landing_for])
                else:  # half a frame early, so a rounded container timestamp still lands at or before it
                    offset = start + math.floor((landing_for - 0.5) / info.fps / seconds)
                container.seek(max(offset, start), stream=stream, backward=True, any_frame=False)
                stats.seeks += 1
                packets = container.demux(stream)
            packet = next(packets, None)
            if packet is None:
                break
            stats.packets += 1
            if stats.packets > packet_budget:
                raise VideoDecodeError(path, f"read over {packet_budget} packets for {info.frames} frames")
            deadline.check("decoding")
            if skip_unwanted and packet.pts is not None:
                i = int(np.searchsorted(pts_table, packet.pts))
                is_wanted = i < len(pts_table) and pts_table[i] == packet.pts and i in wanted_set
                codec_context.skip_frame = "DEFAULT" if is_wanted else "NONREF"
            for frame in packet.decode():
                stats.decoded += 1
                if start is None and frame.pts is not None:
                    start = frame.pts  # no declared start: the first frame (never after a seek) is at 0
                index = _frame_index(frame.pts, position, landing_for, pts_table, start, seconds * info.fps)
                if frame.is_corrupt:
                    # Just after a seek, pictures before the target may reference frames from before the
                    # seek point (open GOP): broken by the seek, not in the file, and never kept.
                    if index < last_seek:
                        continue
                    raise VideoDecodeError(path, f"frame {index} is corrupt (the decoder reported errors)")
                if landing_for is not None:
                    if index > landing_for:
                        raise _Restart
                    if index <= position:
                        # The keyframe before the target was at or behind us: keyframes are sparse, and
                        # more seeks would only re-decode frames already passed.
                        can_seek = False
                    landing_for = None
                position = index
                if index > targets[k]:
                    raise VideoDecodeError(
                        path, f"frame {targets[k]} is missing from the decoded stream (next is {index})"
                    )
                if index == targets[k]:
                    if scale:
                        rgb = reformatter.reformat(
                            frame, width=width, height=height, format="rgb24", interpolation="AREA"
                        )
                    else:
                        rgb = reformatter.reformat(frame, format="rgb24")
                    out[k] = rgb.to_ndarray()
                    stats.converted += 1
                    if frame.pts is not None and start is not None and seconds:
                        times[k] = (frame.pts - start) * seconds
                    else:
                        times[k] = index / info.fps
                    k += 1
                if k == wanted:
                    break
                if can_seek and targets[k] - position > SEEK_MIN_GAP and targets[k] != last_seek:
                    break  # leave this packet's remaining frames: the seek at the top of the loop skips them
    if k < wanted:
        raise VideoDecodeError(
            path, f"stream ended after {position + 1} of {info.frames} frames (wanted frame {targets[k]})"
        )
    return out, times


def _frame_index(
    pts: int | None,
    position: int,
    landing_for: int | None,
    pts_table: np.ndarray | None,
    start: int | None,
    frames_per_tick: float,
) -> int:
    """The frame's index: its place in the timestamp table, its grid slot after a seek, else the next one."""
    if pts is not None and pts_table is not None:
        i = int(np.searchsorted(pts_table, pts))
        if i < len(pts_table) and pts_table[i] == pts:
            return i
    elif pts is not None and landing_for is not None and start is not None:
        return round((pts - start) * frames_per_tick)
    if landing_for is not None:
        raise _Restart  # a frame after a seek that cannot be placed
    return position + 1


def _decode_torchcodec(path: str | Path, targets: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The same frames through torchcodec (only when installed). It cannot be interrupted: no deadline.

    torchcodec returns full-size frames; a smaller ``size`` is reached afterwards with the same FFmpeg scaler,
    from RGB rather than from the decoder's YUV (within a level or two of the PyAV path).
    """
    from torchcodec.decoders import VideoDecoder

    try:
        decoder = VideoDecoder(str(path), dimension_order="NHWC", seek_mode="exact")
        batch = decoder.get_frames_at(indices=[int(i) for i in targets])
    except (RuntimeError, ValueError, IndexError) as error:
        raise VideoDecodeError(path, f"torchcodec failed: {error}") from error
    first = decoder.metadata.begin_stream_seconds or 0.0
    return _shrink_rgb(batch.data.numpy(), size), batch.pts_seconds.double().numpy() - float(first)


def _shrink_rgb(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB frames ``[T,H,W,3]`` at ``size`` (height, width) through FFmpeg's area scaling, as the PyAV path."""
    if frames.shape[1:3] == size:
        return frames
    height, width = size
    out = np.empty((len(frames), height, width, 3), np.uint8)
    for i, frame in enumerate(frames):
        rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        out[i] = rgb.reformat(width=width, height=height, interpolation="AREA").to_ndarray()
    return out
