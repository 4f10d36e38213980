"""probe / read_video: real clips, seeking, repeated frames, and every kind of bad input."""

from __future__ import annotations

import json
import time
from pathlib import Path

import av
import numpy as np
import pytest

from videoadapt.cli import main
from videoadapt.data import video as video_module
from videoadapt.data.encode import write_video
from videoadapt.data.sampling import AllFrames, Dense, UniformSegments, sampler_from_spec
from videoadapt.data.video import VideoClip, VideoInfo, available_backends, probe, read_video
from videoadapt.errors import VideoDecodeError


def decode_all(path: str | Path) -> np.ndarray:
    """Reference: every frame straight from PyAV, independent of videoadapt's decoder."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


@pytest.fixture(scope="module")
def asl_reference(asl_clips):
    return {clip: decode_all(clip) for clip in asl_clips}


def encode(path: Path, frames: np.ndarray, fps: int = 30, keyint: int = 10, bframes: int = 0, **opts) -> Path:
    """H.264 (yuv420p) with a keyframe every ``keyint`` frames, so seeking has somewhere to land."""
    with av.open(str(path), "w", options=opts) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": str(keyint), "keyint_min": str(keyint), "sc_threshold": "0", "bf": str(bframes)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def moving_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Every frame different (a bar that moves and a colour that changes), so a wrong frame shows."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    t = np.arange(count)
    frames[..., 0] = (t * 3 % 256)[:, None, None]
    frames[..., 1] = (t * 7 % 256)[:, None, None]
    frames[t, (t // 2) % height, :, 2] = 255
    return frames


# -- real clips ----------------------------------------------------------------------------------------


def test_probe_asl_clips_matches_a_full_decode(asl_clips, asl_reference):
    for clip in asl_clips:
        info = probe(clip)
        assert info == VideoInfo(str(clip), len(asl_reference[clip]), 30.0, info.duration, 640, 480, "h264")
        assert 40 <= info.frames <= 120  # the clips are 1.5-3.7 s long
        assert info.duration == pytest.approx(info.frames / 30)
        assert probe(clip, count_frames=True) == info
        assert set(info.to_dict()) == {"path", "frames", "fps", "duration", "width", "height", "codec"}


def test_read_all_frames_is_byte_equal_to_a_full_decode(asl_clips, asl_reference):
    for clip in asl_clips:
        clip_data = read_video(clip)
        reference = asl_reference[clip]
        assert isinstance(clip_data, VideoClip)
        assert clip_data.frames.dtype == np.uint8 and clip_data.frames.shape == (len(reference), 480, 640, 3)
        assert np.array_equal(clip_data.frames, reference)
        assert clip_data.indices.dtype == np.int64 and np.array_equal(clip_data.indices, np.arange(len(reference)))
        assert clip_data.timestamps.dtype == np.float64 and clip_data.timestamps[0] == 0.0
        np.testing.assert_allclose(clip_data.timestamps, np.arange(len(reference)) / 30, atol=0.002)
        assert clip_data.info == probe(clip)


HANG_SECONDS = 30.0  # bad input must fail fast, not hang: a bound for a hang, not a speed target (loaded CI cores)

SPECS = ["uniform:8", "uniform:8:random", "dense:8x4", "dense:16x2:random", "fps:2", "timestamps:1.0,0.1,99"]


@pytest.mark.parametrize("spec", SPECS)
def test_sampled_frames_are_byte_equal_to_a_full_decode(asl_clips, asl_reference, spec):
    for clip in asl_clips:
        sampled = read_video(clip, sampler_from_spec(spec), rng=np.random.default_rng(3))
        expected = sampler_from_spec(spec).indices(len(asl_reference[clip]), 30.0, np.random.default_rng(3))
        assert np.array_equal(sampled.indices, expected)
        assert np.array_equal(sampled.frames, asl_reference[clip][expected])
        # Only the frames kept are converted to RGB, and decoding stops after the last one.
        assert sampled.stats.converted == len(np.unique(expected))
        assert sampled.stats.decoded <= expected.max() + 1


def test_random_samplers_are_deterministic_given_the_rng(asl_clips):
    sampler = UniformSegments(8, random_offset=True)
    a = read_video(asl_clips[0], sampler, rng=np.random.default_rng(5))
    b = read_video(asl_clips[0], sampler, rng=np.random.default_rng(5))
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.frames, b.frames)


def test_repeated_indices_decode_each_frame_once(asl_clips, asl_reference):
    clip = asl_clips[0]
    frames = len(asl_reference[clip])
    sampled = read_video(clip, UniformSegments(3 * frames))  # more segments than frames: every frame x3
    assert len(sampled.frames) == 3 * frames
    assert sampled.stats.converted == frames and sampled.stats.decoded == frames
    assert np.array_equal(sampled.frames, asl_reference[clip][sampled.indices])


def test_one_frame_video(tmp_path):
    frame = moving_frames(1)
    write_video(tmp_path / "one.mp4", frame, fps=25)
    info = probe(tmp_path / "one.mp4")
    assert (info.frames, info.fps, info.width, info.height) == (1, 25.0, 64, 48)
    clip = read_video(tmp_path / "one.mp4", Dense(8, 4))
    assert clip.frames.shape == (8, 48, 64, 3) and np.array_equal(clip.frames, np.repeat(frame, 8, 0))
    assert clip.stats.converted == 1


def test_raw_y4m_without_container_timestamps(tmp_path):
    # Three 4x4 grey frames in the raw YUV4MPEG format: no container index, a plain frame count.
    path = tmp_path / "raw.y4m"
    path.write_bytes(b"YUV4MPEG2 W4 H4 F30:1 Ip A1:1 C420jpeg\n" + (b"FRAME\n" + bytes([128]) * 24) * 3)
    clip = read_video(path, UniformSegments(6))
    assert clip.info.frames == 3 and clip.frames.shape == (6, 4, 4, 3)
    assert np.array_equal(clip.indices, [0, 0, 1, 1, 2, 2])


# -- seeking -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["mp4", "mkv"])
def long_video(request, tmp_path_factory):
    """600 frames (20 s at 30 fps) with a keyframe every 10 and B-frames; mp4 declares its frame count,
    mkv's is counted from packets, so both ways of placing a frame after a seek are covered."""
    path = tmp_path_factory.mktemp("long") / f"long.{request.param}"
    encode(path, moving_frames(600), keyint=10, bframes=2)
    return path, decode_all(path)


@pytest.mark.parametrize("spec", ["uniform:8", "uniform:8:random", "dense:8x2", "timestamps:19.9,0.1,10,5"])
def test_seeking_decodes_few_frames_of_a_long_video(long_video, spec):
    path, reference = long_video
    sampled = read_video(path, sampler_from_spec(spec), rng=np.random.default_rng(0))
    assert np.array_equal(sampled.frames, reference[sampled.indices])
    assert sampled.stats.seeks >= 1
    # Each target costs at most a keyframe interval (10) plus the decoder's lag: far below 600.
    assert sampled.stats.decoded < 150 and sampled.stats.packets < 150


def test_seeking_over_sparse_keyframes_stays_correct_and_bounded(tmp_path):
    # One keyframe only: the first useless seek turns seeking off instead of re-decoding per target.
    path = encode(tmp_path / "sparse.mkv", moving_frames(400), keyint=1000)
    reference = decode_all(path)
    sampled = read_video(path, UniformSegments(8))
    assert np.array_equal(sampled.frames, reference[sampled.indices])
    assert sampled.stats.seeks <= 2 and sampled.stats.decoded < 2 * 400


def test_backends():
    assert available_backends()[0] == "pyav"
    with pytest.raises(ValueError, match="backend"):
        read_video("whatever.mp4", backend="opencv")


def test_torchcodec_backend_agrees_with_pyav(asl_clips, asl_reference):
    pytest.importorskip("torchcodec")
    clip = asl_clips[0]
    sampled = read_video(clip, UniformSegments(8), backend="torchcodec")
    assert np.array_equal(sampled.frames, asl_reference[clip][sampled.indices])


# -- bad input -----------------------------------------------------------------------------------------


def lossless(path: Path, **opts) -> bytes:
    with av.open(str(path), "w", options=opts) as container:
        stream = container.add_stream("libx264rgb", rate=30)
        stream.height, stream.width, stream.pix_fmt = 48, 64, "rgb24"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        for frame in moving_frames(60):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path.read_bytes()


def garbage_in_the_middle(data: bytes) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, len(data) // 5, dtype=np.uint8).tobytes()
    start = len(data) * 2 // 5
    return data[:start] + noise + data[start + len(noise) :]


def make_bad(kind: str, tmp: Path) -> tuple[Path, str]:
    """A broken file of the given kind, and a pattern the error's reason must match."""
    if kind == "missing":
        return tmp / "nothing-here.mp4", "no such file"
    if kind == "directory":
        (tmp / "folder.mp4").mkdir()
        return tmp / "folder.mp4", "directory"
    if kind == "text named mp4":
        (tmp / "notes.mp4").write_text("hello, this is not a video\n" * 20)
        return tmp / "notes.mp4", "Invalid data found"
    if kind == "audio only":
        with av.open(str(tmp / "sound.mkv"), "w") as container:
            stream = container.add_stream("pcm_s16le", rate=8000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
            frame.sample_rate = 8000
            for packet in [*stream.encode(frame), *stream.encode()]:
                container.mux(packet)
        return tmp / "sound.mkv", "no video stream"
    if kind == "cover art only":
        with av.open(str(tmp / "song.flac"), "w") as container:
            audio = container.add_stream("flac", rate=8000)
            cover = container.add_stream("mjpeg", rate=1)
            cover.width, cover.height, cover.pix_fmt = 32, 32, "yuvj420p"
            cover.disposition = av.stream.Disposition.attached_pic
            picture = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
            sound.sample_rate = 8000
            for packet in [*cover.encode(picture), *cover.encode(), *audio.encode(sound), *audio.encode()]:
                container.mux(packet)
        return tmp / "song.flac", r"no video stream \(streams: audio, cover art\)"
    if kind == "empty mp4":
        with av.open(str(tmp / "empty.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=30)
            stream.width = stream.height = 64
            container.start_encoding()
        return tmp / "empty.mp4", "no video stream"
    if kind == "zero frames":
        (tmp / "zero.y4m").write_bytes(b"YUV4MPEG2 W64 H48 F30:1 Ip A1:1 C420jpeg\n")
        return tmp / "zero.y4m", "no frames"
    if kind == "absurd size (ffmpeg refuses)":
        header = b"YUV4MPEG2 W100000 H100000 F30:1 Ip A1:1 C420jpeg\nFRAME\n"
        (tmp / "huge.y4m").write_bytes(header + bytes(1000))
        return tmp / "huge.y4m", "opening failed"
    if kind == "absurd size (over max_pixels)":
        (tmp / "big.y4m").write_bytes(b"YUV4MPEG2 W16000 H16000 F30:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
        return tmp / "big.y4m", "16000x16000 exceeds max_pixels"
    suffix = kind.split()[-1]
    data = lossless(tmp / f"good.{suffix}")
    bad = tmp / f"{kind.replace(' ', '-')}.{suffix}"
    if kind.startswith("truncated"):
        bad.write_bytes(data[: len(data) // 2])
        return bad, "Invalid data|truncated|stream ended"
    bad.write_bytes(garbage_in_the_middle(data))
    return bad, "corrupt|missing|Invalid data|failed"


BAD_KINDS = [
    "missing",
    "directory",
    "text named mp4",
    "audio only",
    "cover art only",
    "empty mp4",
    "zero frames",
    "absurd size (ffmpeg refuses)",
    "absurd size (over max_pixels)",
    "truncated mp4",
    "truncated mkv",
    "garbage mp4",
    "garbage mkv",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_raises_decode_error_quickly(tmp_path, kind):
    path, reason = make_bad(kind, tmp_path)
    for sampler in (None, UniformSegments(8)):
        began = time.monotonic()
        with pytest.raises(VideoDecodeError, match=reason) as caught:
            read_video(path, sampler)
        assert time.monotonic() - began < HANG_SECONDS
        assert caught.value.path == str(path) and str(path) in str(caught.value)


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_fails_the_probe_command(tmp_path, kind, capsys):
    path, reason = make_bad(kind, tmp_path)
    began = time.monotonic()
    # --count-frames decodes the stream, so corruption inside it shows too; a plain probe reads headers.
    assert main(["probe", "--count-frames", str(path)]) == 2
    assert time.monotonic() - began < HANG_SECONDS
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(path) in captured.err and captured.err.startswith("videoadapt probe: error:")


def test_stream_that_ends_early_is_an_error_not_a_padded_clip(tmp_path):
    # faststart puts the frame index first, so a cut file still declares all 60 frames.
    data = lossless(tmp_path / "indexed.mp4", movflags="faststart")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    assert probe(cut).frames == 60
    with pytest.raises(VideoDecodeError, match=r"stream ended after \d+ of 60 frames"):
        read_video(cut, AllFrames())


def test_ffmpeg_errors_carry_ffmpeg_message(tmp_path):
    path, _ = make_bad("text named mp4", tmp_path)
    with pytest.raises(VideoDecodeError) as caught:
        probe(path)
    assert caught.value.reason == "opening failed: Invalid data found when processing input"
    assert isinstance(caught.value.__cause__, av.error.FFmpegError)


def test_wall_clock_deadline(asl_clips):
    with pytest.raises(VideoDecodeError, match="max_seconds"):
        read_video(asl_clips[0], max_seconds=0.0)


def test_packet_cap_when_counting(asl_clips, monkeypatch):
    monkeypatch.setattr(video_module, "MAX_PACKETS", 5)
    with pytest.raises(VideoDecodeError, match="more than 5 packets"):
        probe(asl_clips[0])


# -- the probe command ---------------------------------------------------------------------------------


def test_probe_command_json(asl_clips, capsys):
    assert main(["probe", "--json", str(asl_clips[0])]) == 0
    single = json.loads(capsys.readouterr().out)
    assert single == probe(asl_clips[0]).to_dict()
    assert main(["probe", "--json", "--count-frames", *map(str, asl_clips)]) == 0
    several = json.loads(capsys.readouterr().out)
    assert [row["path"] for row in several] == [str(c) for c in asl_clips]
    assert all(row["fps"] == 30.0 and (row["width"], row["height"]) == (640, 480) for row in several)


def test_probe_command_table(asl_clips, capsys):
    assert main(["probe", str(asl_clips[0])]) == 0
    out = capsys.readouterr().out
    info = probe(asl_clips[0])
    for text in ("frames", "fps", "duration", "codec", str(info.frames), "640", "480", "h264"):
        assert text in out
