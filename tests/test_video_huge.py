"""Huge and long videos (issue 19, item 5): frames shrunk while decoding, bounded decoder memory, containers whose
header lies about the frame count or the duration, variable frame rates, a long clip. Small generated clips only;
the 4K figure is benchmarks/video_memory.py's."""

from __future__ import annotations

import struct
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

from videoadapt.data import video as video_module
from videoadapt.data.records import ClassificationItem, FileSource, TaskData, VideoRef, source_frames
from videoadapt.data.sampling import AtFps, AtTimestamps, UniformSegments
from videoadapt.data.transforms import CLIP_SETTINGS, ProcessorSettings, decode_short_side, preprocess
from videoadapt.data.video import probe, read_video, reduced_size
from videoadapt.errors import VideoDecodeError


def decode_all(path: Path) -> np.ndarray:
    """Reference: every frame straight from PyAV, independent of videoadapt's decoder."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def frames_of(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Every frame different (a level that changes and a bar that moves), so a wrong frame shows."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    t = np.arange(count)
    frames[..., 0] = (t * 5 % 256)[:, None, None]
    frames[..., 1] = (t * 11 % 256)[:, None, None]
    frames[t, (t // 2) % height, :, 2] = 255
    return frames


def encode(
    path: Path,
    frames: np.ndarray,
    *,
    fps: int = 10,
    keyint: int = 10,
    pts_ms: list[int] | None = None,
    codec: str = "libx264",
    container_format: str | None = None,
) -> Path:
    """Encode ``frames``; with ``pts_ms`` each frame gets that timestamp in milliseconds (variable frame rate)."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"g": str(keyint), "keyint_min": str(keyint), "sc_threshold": "0", "bf": "0"}
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


# -- frames shrunk while decoding ---------------------------------------------------------------------------------


def test_reduced_size_keeps_the_aspect_and_leaves_small_frames_alone():
    assert reduced_size(2160, 3840, 896) == (896, 1593)
    assert reduced_size(3840, 2160, 896) == (1593, 896)  # portrait
    assert reduced_size(480, 640, 720) == (480, 640)  # within the limit: untouched
    assert reduced_size(480, 640, None) == (480, 640)
    with pytest.raises(ValueError, match="max_short_side"):
        reduced_size(480, 640, 0)


def test_max_short_side_shrinks_large_frames_while_decoding(tmp_path):
    path = encode(tmp_path / "wide.mp4", frames_of(24, 180, 320))
    full = read_video(path, UniformSegments(4))
    small = read_video(path, UniformSegments(4), max_short_side=45)
    assert small.frames.shape == (4, 45, 80, 3) and small.frames.dtype == np.uint8
    assert np.array_equal(small.indices, full.indices) and np.array_equal(small.timestamps, full.timestamps)
    # The same pictures: a 4x4 box average of the full frames is within a few levels of FFmpeg's area scaling.
    boxed = full.frames.reshape(4, 45, 4, 80, 4, 3).mean(axis=(2, 4))
    assert np.abs(small.frames.astype(float) - boxed).mean() < 3
    assert small.info == full.info  # the video's own size is still reported


def test_videos_within_the_limit_decode_exactly_as_before(tmp_path):
    path = encode(tmp_path / "small.mp4", frames_of(24, 180, 320))
    for sampler in (UniformSegments(8), None):
        assert np.array_equal(read_video(path, sampler, max_short_side=180).frames, read_video(path, sampler).frames)
    assert decode_short_side(ProcessorSettings(64, (0.5,) * 3, (0.25,) * 3)) == 720  # 720p and below: untouched
    assert decode_short_side(CLIP_SETTINGS) == 896


def test_no_full_size_rgb_frame_is_made_when_shrinking(tmp_path):
    """numpy reports its buffers to tracemalloc: shrinking must never allocate one full-size RGB frame."""
    path = encode(tmp_path / "hd.mp4", frames_of(16, 720, 1280), keyint=4)
    full_frame = 720 * 1280 * 3
    tracemalloc.start()
    try:
        read_video(path, UniformSegments(8), max_short_side=72)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < full_frame // 2, f"peak {peak} bytes traced; one full-size RGB frame is {full_frame}"


def test_preprocessing_a_shrunk_frame_is_close_to_preprocessing_the_full_one(tmp_path):
    path = encode(tmp_path / "hd.mp4", frames_of(4, 720, 1280), keyint=4)
    settings = ProcessorSettings(64, (0.5,) * 3, (0.25,) * 3)
    full = preprocess(read_video(path, AtTimestamps((0.1,))).frames, settings)
    shrunk = preprocess(read_video(path, AtTimestamps((0.1,)), max_short_side=256).frames, settings)
    levels = ((shrunk - full) * 0.25 * 255).abs()
    assert levels.mean() < 1.5 and levels.max() <= 8


def test_the_training_path_asks_for_the_models_size(tmp_path, monkeypatch):
    """BatchBuilder (training, evaluation, the predictor's clips) decodes through source_frames with the bound."""
    from videoadapt.model.batches import BatchBuilder
    from videoadapt.tasks import build_task

    path = encode(tmp_path / "clip.mp4", frames_of(20, 48, 64))
    asked: list[int | None] = []
    real = video_module.read_video

    def spy(*args, **kwargs):
        asked.append(kwargs.get("max_short_side"))
        return real(*args, **kwargs)

    monkeypatch.setattr(video_module, "read_video", spy)
    item = ClassificationItem(VideoRef("clip", path), 0)
    data = TaskData("recognition", "test", [item], FileSource(), "test", classes=["a", "b"])
    settings = ProcessorSettings(32, (0.5,) * 3, (0.25,) * 3)
    builder = BatchBuilder(data, build_task("recognition"), settings, UniformSegments(4), train=False)
    clip, frames = builder.clip(0, 0)
    assert asked == [decode_short_side(settings)] and tuple(clip.shape) == (4, 3, 32, 32)
    assert frames.tolist() == UniformSegments(4).indices(20, 25.0).tolist()  # the frames decoded, recorded


def test_sources_without_the_bound_still_work():
    class Plain:  # a source written before the bound existed (tests, in-memory data)
        def frames(self, ref, sampler=None):
            return np.zeros((2, 8, 8, 3), np.uint8)

    assert source_frames(Plain(), VideoRef("v"), None, 720).shape == (2, 8, 8, 3)


def test_frame_threads_are_capped_by_the_memory_they_hold(monkeypatch):
    monkeypatch.setattr(video_module.os, "cpu_count", lambda: 64)  # a large machine: FFmpeg would start 16
    codec = SimpleNamespace(width=3840, height=2160, thread_count=0)
    stream = SimpleNamespace(codec_context=codec, thread_type=None)
    video_module._set_threads(stream, frame_threads=True)
    assert stream.thread_type == "AUTO" and codec.thread_count == 10  # 256 MB / (2 x 12.4 MB)
    small = SimpleNamespace(codec_context=SimpleNamespace(width=640, height=480, thread_count=0), thread_type=None)
    video_module._set_threads(small, frame_threads=True)
    assert small.codec_context.thread_count == 0  # small frames: FFmpeg's own choice
    video_module._set_threads(small, frame_threads=False)
    assert small.thread_type == "SLICE"


# -- containers whose header lies ------------------------------------------------------------------------------


def lying_avi(tmp_path: Path, declared: int, frames: int = 60) -> Path:
    """An AVI whose main and stream headers declare ``declared`` frames; its index lists the real ``frames``."""
    honest = encode(tmp_path / "honest.avi", frames_of(frames), codec="mpeg4", container_format="avi")
    data = bytearray(honest.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    struct.pack_into("<I", data, avih + 8 + 16, declared)  # dwTotalFrames
    struct.pack_into("<I", data, strh + 8 + 32, declared)  # dwLength
    path = tmp_path / f"declares_{declared}.avi"
    path.write_bytes(bytes(data))
    return path


def test_avi_declaring_fewer_frames_is_sampled_over_all_its_frames(tmp_path):
    path = lying_avi(tmp_path, declared=30)
    reference = decode_all(path)
    assert len(reference) == 60
    clip = read_video(path, UniformSegments(8))
    assert clip.info.frames == 60  # counted, not the header's 30
    assert np.array_equal(clip.indices, UniformSegments(8).indices(60, 10.0))  # across the whole clip
    assert np.array_equal(clip.frames, reference[clip.indices])


def test_avi_declaring_more_frames_fails_clearly_and_quickly(tmp_path):
    path = lying_avi(tmp_path, declared=120)
    began = time.monotonic()
    with pytest.raises(VideoDecodeError, match=r"declares_120\.avi: .*after 60 frames.*declares 12\.000 s"):
        read_video(path, UniformSegments(8))
    assert time.monotonic() - began < 30  # a hang, not a speed target


def mkv_with_duration_tag(tmp_path: Path, tag: str) -> Path:
    """A Matroska file whose track DURATION tag (and segment duration) reads ``tag`` instead of 00:00:06.0..."""
    honest = encode(tmp_path / "honest.mkv", frames_of(60))
    data = honest.read_bytes()
    real = b"00:00:06.000000000"
    assert real in data
    path = tmp_path / f"tag_{tag[6:8]}.mkv"
    path.write_bytes(data.replace(real, tag.encode()))
    return path


def test_matroska_declaring_a_longer_duration_fails_clearly(tmp_path):
    path = mkv_with_duration_tag(tmp_path, "00:00:19.000000000")
    with pytest.raises(VideoDecodeError, match=r"tag_19\.mkv: stream ends at 6\.000 s .*declares 19\.000 s"):
        read_video(path, UniformSegments(8))


def test_matroska_declaring_a_shorter_duration_decodes_every_frame(tmp_path):
    path = mkv_with_duration_tag(tmp_path, "00:00:02.000000000")
    clip = read_video(path, UniformSegments(8))
    assert clip.info.frames == 60
    assert np.array_equal(clip.frames, decode_all(path)[clip.indices])


def test_mp4_with_rewritten_durations_samples_the_right_frames(tmp_path):
    honest = encode(tmp_path / "honest.mp4", frames_of(60))
    data = bytearray(honest.read_bytes())
    for box, offset in ((b"mvhd", 16), (b"mdhd", 16)):  # version 0: the 32-bit duration after times and scale
        at = data.find(box) + 4 + offset
        struct.pack_into(">I", data, at, struct.unpack_from(">I", data, at)[0] // 3)
    path = tmp_path / "short_header.mp4"
    path.write_bytes(bytes(data))
    clip = read_video(path, UniformSegments(8))
    assert clip.info.frames == 60 and clip.info.fps == 10.0
    assert np.array_equal(clip.frames, decode_all(path)[clip.indices])


# -- variable frame rate -------------------------------------------------------------------------------------------

# 20 fps for 6 s, then 4 fps for 20 s, then 10 fps for 20 s: 120 + 80 + 200 frames over 46 s.
VFR_PTS = [50 * i for i in range(120)] + [6000 + 250 * i for i in range(80)] + [26000 + 100 * i for i in range(200)]


@pytest.fixture(params=["mkv", "mp4"])
def vfr_clip(request, tmp_path) -> Path:
    return encode(tmp_path / f"vfr.{request.param}", frames_of(len(VFR_PTS)), fps=10, keyint=8, pts_ms=VFR_PTS)


def test_variable_rate_clip_samples_exact_frames_with_seeks(vfr_clip):
    reference = decode_all(vfr_clip)
    assert len(reference) == len(VFR_PTS)
    clip = read_video(vfr_clip, UniformSegments(8))
    assert clip.stats.seeks > 0  # frames reached by seeking are placed by their real timestamps
    assert np.array_equal(clip.frames, reference[clip.indices])
    np.testing.assert_allclose(clip.timestamps, np.asarray(VFR_PTS)[clip.indices] / 1000, atol=1e-3)
    info = probe(vfr_clip)
    assert info.frames == len(VFR_PTS)
    assert info.duration == pytest.approx(46, abs=0.3)  # the mean rate, not the first frames' 20 fps


def test_variable_rate_clip_is_sampled_by_timestamp(vfr_clip):
    times = np.asarray(VFR_PTS) / 1000
    clip = read_video(vfr_clip, AtTimestamps((1.0, 10.0, 10.1, 30.0)))
    # The frame starting nearest to each time: 1.0 s is frame 20 (20 fps), 10.0 s frame 136 (4 fps from 6 s).
    assert clip.indices.tolist() == [20, 136, 136, 240]
    np.testing.assert_allclose(clip.timestamps, times[clip.indices], atol=1e-3)
    clip = read_video(vfr_clip, AtFps(1.0))
    expected = [int(np.searchsorted(times, t + 1e-9, side="right") - 1) for t in range(len(clip.indices))]
    assert clip.indices.tolist() == expected and len(clip.indices) == 46  # one frame a second over 46 s
    assert np.array_equal(clip.frames, decode_all(vfr_clip)[clip.indices])


# -- long videos --------------------------------------------------------------------------------------------------


def test_an_hour_long_clip_decodes_only_near_the_sampled_frames(tmp_path):
    """One hour at 1 fps (3600 frames, a keyframe a minute), Matroska: the probe counts packets, sampling seeks."""
    path = tmp_path / "hour.mkv"
    frames = np.repeat(frames_of(60, 16, 16), 60, axis=0)  # a new picture a minute
    encode(path, frames, fps=1, keyint=60)
    began = time.monotonic()
    clip = read_video(path, UniformSegments(8))
    assert time.monotonic() - began < 30  # a hang; the decoded count is the real check
    assert clip.info.frames == 3600 and clip.info.duration == 3600
    assert clip.stats.seeks >= 7 and clip.stats.decoded <= 8 * 60
    assert np.array_equal(clip.frames, decode_all(path)[clip.indices])


def test_a_file_source_subclass_without_the_bound_still_works(tmp_path):
    class Counting(FileSource):  # overrides frames() the way sources written before the bound did
        def frames(self, ref, sampler=None):
            return super().frames(ref, sampler)

    path = encode(tmp_path / "clip.mp4", frames_of(8, 48, 64))
    assert source_frames(Counting(), VideoRef("clip", path), UniformSegments(2), 16).shape == (2, 48, 64, 3)
    assert source_frames(FileSource(), VideoRef("clip", path), UniformSegments(2), 16).shape == (2, 16, 21, 3)


def test_frames_from_another_backend_are_shrunk_by_the_same_scaler(tmp_path):
    """torchcodec (not installed here) returns full-size RGB; _shrink_rgb brings it to the asked size."""
    path = encode(tmp_path / "wide.mp4", frames_of(8, 180, 320))
    full = read_video(path, UniformSegments(2))
    shrunk = video_module._shrink_rgb(full.frames, (45, 80))
    assert shrunk.shape == (2, 45, 80, 3) and shrunk.dtype == np.uint8
    from_yuv = read_video(path, UniformSegments(2), max_short_side=45).frames
    assert np.abs(shrunk.astype(int) - from_yuv).mean() < 2  # RGB vs YUV source: within a level or two
    assert video_module._shrink_rgb(full.frames, (180, 320)) is full.frames
