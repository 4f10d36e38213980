"""Frame samplers as pure functions of (num_frames, fps): no decoding here."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videoadapt.data.sampling import (
    AllFrames,
    AtFps,
    AtTimestamps,
    Dense,
    Sampler,
    SamplerSpecError,
    UniformSegments,
    sampler_from_spec,
)
from videoadapt.errors import VideoadaptError


def idx(sampler: Sampler, n: int, fps: float = 30.0, seed: int | None = None) -> list[int]:
    rng = None if seed is None else np.random.default_rng(seed)
    out = sampler.indices(n, fps, rng)
    assert out.dtype == np.int64 and out.ndim == 1
    return out.tolist()


# -- UniformSegments ---------------------------------------------------------------------------------


def test_uniform_takes_the_middle_of_each_segment():
    # 77 frames in 8 segments of 9.625: middles at 4.8, 14.4, ..., 72.2
    assert idx(UniformSegments(8), 77) == [4, 14, 24, 33, 43, 52, 62, 72]
    assert idx(UniformSegments(4), 8) == [1, 3, 5, 7]
    assert idx(UniformSegments(1), 10) == [5]


def test_uniform_short_video_repeats_frames_in_order():
    assert idx(UniformSegments(8), 3) == [0, 0, 0, 1, 1, 2, 2, 2]
    assert idx(UniformSegments(8), 1) == [0] * 8
    assert idx(UniformSegments(8, random_offset=True), 1, seed=0) == [0] * 8


@pytest.mark.parametrize("n", [8, 9, 77, 1000])
def test_uniform_random_picks_one_frame_inside_each_segment(n):
    segments = 8
    picks = np.array([idx(UniformSegments(segments, random_offset=True), n, seed=s) for s in range(50)])
    for k in range(segments):
        lo, hi = k * n / segments, (k + 1) * n / segments
        assert np.all((picks[:, k] >= np.floor(lo)) & (picks[:, k] < hi))
    assert np.all(np.diff(picks, axis=1) >= 0)
    if n >= 2 * segments:  # segments longer than one frame: the draw varies
        assert len({tuple(p) for p in picks}) > 1


def test_uniform_random_is_deterministic_given_the_rng():
    sampler = UniformSegments(8, random_offset=True)
    assert idx(sampler, 300, seed=7) == idx(sampler, 300, seed=7)
    assert idx(sampler, 300, seed=7) != idx(sampler, 300, seed=8)


def test_uniform_random_with_short_video_stays_in_range():
    for seed in range(20):
        out = idx(UniformSegments(8, random_offset=True), 3, seed=seed)
        assert out == sorted(out) and set(out) <= {0, 1, 2}


# -- Dense -------------------------------------------------------------------------------------------


def test_dense_is_centred():
    # span (8 - 1) * 4 + 1 = 29 frames; slack 77 - 29 = 48 -> start 24
    assert idx(Dense(8, 4), 77) == list(range(24, 53, 4))
    assert idx(Dense(3), 10) == [3, 4, 5]
    assert idx(Dense(10), 10) == list(range(10))


def test_dense_random_start_stays_inside_and_is_deterministic():
    starts = {idx(Dense(8, 4, random_start=True), 77, seed=s)[0] for s in range(200)}
    assert min(starts) >= 0 and max(starts) <= 77 - 29 and len(starts) > 10
    assert idx(Dense(8, 4, random_start=True), 77, seed=3) == idx(Dense(8, 4, random_start=True), 77, seed=3)


def test_dense_short_video_clamps_to_the_last_frame():
    assert idx(Dense(8, 4), 10) == [0, 4, 8, 9, 9, 9, 9, 9]
    assert idx(Dense(8, 4, random_start=True), 10, seed=0) == [0, 4, 8, 9, 9, 9, 9, 9]
    assert idx(Dense(4), 1) == [0, 0, 0, 0]


# -- AllFrames, AtFps, AtTimestamps ------------------------------------------------------------------


def test_all_frames():
    assert idx(AllFrames(), 5) == [0, 1, 2, 3, 4]
    assert idx(AllFrames(), 1) == [0]


def test_fps_resamples_down_and_up():
    # 77 frames at 30 fps last 2.567 s: 2 fps gives t = 0, 0.5, ..., 2.5
    assert idx(AtFps(2), 77) == [0, 15, 30, 45, 60, 75]
    assert idx(AtFps(30), 77) == list(range(77))  # own rate: every frame once
    assert idx(AtFps(60), 3) == [0, 0, 1, 1, 2, 2]  # double rate repeats each frame
    assert idx(AtFps(2), 60) == [0, 15, 30, 45]  # t = 2.0 s is the end, not a frame
    assert idx(AtFps(1), 1) == [0]
    assert idx(AtFps(10), 30, fps=25.0) == [0, 2, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27]


def test_fps_max_frames_spreads_over_the_whole_video():
    assert idx(AtFps(30, max_frames=4), 100) == [0, 25, 50, 75]
    assert idx(AtFps(2, max_frames=10), 77) == [0, 15, 30, 45, 60, 75]  # under the cap: unchanged


def test_timestamps_pick_the_nearest_frame_in_the_given_order():
    assert idx(AtTimestamps((1.0, 0.0, 0.5)), 77) == [30, 0, 15]
    assert idx(AtTimestamps((0.016,)), 77) == [0]  # 0.48 frames -> frame 0
    assert idx(AtTimestamps((1 / 60,)), 77) == [1]  # exactly half way rounds up
    assert idx(AtTimestamps((100.0,)), 77) == [76]  # past the end: the last frame is nearest
    assert idx(AtTimestamps((0.5, 0.5)), 1) == [0, 0]


def test_timestamps_validation():
    assert AtTimestamps([0.5, 1]).seconds == (0.5, 1.0)  # lists become hashable tuples
    for bad in [(), (-1.0,), (float("nan"),), (float("inf"),)]:
        with pytest.raises(ValueError):
            AtTimestamps(bad)


# -- arguments, specs, protocol ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: UniformSegments(0),
        lambda: Dense(0),
        lambda: Dense(4, stride=0),
        lambda: AtFps(0),
        lambda: AtFps(float("inf")),
        lambda: AtFps(2, max_frames=0),
    ],
)
def test_bad_sampler_arguments(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("sampler", [UniformSegments(4), Dense(4), AllFrames(), AtFps(2), AtTimestamps((0,))])
def test_bad_videos_are_rejected(sampler):
    with pytest.raises(ValueError, match="frames"):
        sampler.indices(0, 30.0)
    with pytest.raises(ValueError, match="frame rate"):
        sampler.indices(10, 0.0)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("uniform:8", UniformSegments(8)),
        ("uniform:8:random", UniformSegments(8, random_offset=True)),
        ("dense:8x4", Dense(8, 4)),
        ("dense:16", Dense(16)),
        ("dense:8x2:random", Dense(8, 2, random_start=True)),
        ("all", AllFrames()),
        ("fps:2", AtFps(2.0)),
        ("fps:0.5:max=32", AtFps(0.5, max_frames=32)),
        ("timestamps:0.5,1.0", AtTimestamps((0.5, 1.0))),
        ("  Uniform:3 ", UniformSegments(3)),
    ],
)
def test_specs(spec, expected):
    sampler = sampler_from_spec(spec)
    assert sampler == expected
    assert isinstance(sampler, Sampler)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "uniform",
        "uniform:x",
        "uniform:0",
        "uniform:8:shuffle",
        "dense:8y4",
        "dense:",
        "all:3",
        "fps:2:min=3",
        "fps:-1",
        "timestamps:",
        "timestamps:a,b",
        "nope:1",
    ],
)
def test_bad_specs_raise_one_error_type(spec):
    with pytest.raises(SamplerSpecError, match="sampler spec") as caught:
        sampler_from_spec(spec)
    # The CLI shows VideoadaptError as a one-line error; callers may also catch ValueError.
    assert isinstance(caught.value, VideoadaptError) and isinstance(caught.value, ValueError)


SAMPLERS = st.one_of(
    st.builds(UniformSegments, st.integers(1, 40), st.booleans()),
    st.builds(Dense, st.integers(1, 40), st.integers(1, 8), st.booleans()),
    st.just(AllFrames()),
    st.builds(AtFps, st.floats(0.1, 120), st.one_of(st.none(), st.integers(1, 64))),
    st.builds(AtTimestamps, st.lists(st.floats(0, 1000), min_size=1, max_size=10).map(tuple)),
)


@settings(max_examples=300, deadline=None)
@given(sampler=SAMPLERS, n=st.integers(1, 5000), fps=st.floats(1, 240), seed=st.integers(0, 2**32 - 1))
def test_every_sampler_returns_valid_indices(sampler, n, fps, seed):
    out = sampler.indices(n, fps, np.random.default_rng(seed))
    assert out.dtype == np.int64 and out.ndim == 1 and len(out) > 0
    assert out.min() >= 0 and out.max() < n
    if isinstance(sampler, (UniformSegments, Dense)):
        assert len(out) == (sampler.num_segments if isinstance(sampler, UniformSegments) else sampler.num_frames)
    if not isinstance(sampler, AtTimestamps):  # timestamps keep the caller's order
        assert np.all(np.diff(out) >= 0)
    assert np.array_equal(out, sampler.indices(n, fps, np.random.default_rng(seed)))
