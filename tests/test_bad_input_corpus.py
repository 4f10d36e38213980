"""The bad-input corpus (issue 7): every kind of broken input a run over videos from the wild meets, built here in
``tmp_path``, and what each produces. The table is docs/video-io.md's "Bad-input corpus" (checked below).

For each case: an error of the given type whose message names the file and contains the reason; with skip_bad
(``--skip-bad``) for the cases that concern one item, a counted skip whose listed reason says the same; every case
within a bounded time (an alarm catches hangs); and nothing half-written: a failing run leaves no new file behind,
except a feature cache's resumable parts (never its manifest, which marks a cache finished).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import bad_inputs as bad
from videoadapt.cli import main
from videoadapt.data.records import ClassificationItem, FileSource, TaskData, VideoRef
from videoadapt.data.sampling import UniformSegments
from videoadapt.data.video import read_video
from videoadapt.errors import InputFileError, UnsafePathError, VideoadaptError, VideoDecodeError
from videoadapt.foundation.feature_cache import FeatureCache, NonFiniteFeaturesError, extract_features

DOCS = Path(__file__).parent.parent / "docs" / "video-io.md"
SECONDS = 30.0  # per case: catches a hang, not a speed target (the cases take milliseconds to about a second)
HANG = 60  # the alarm: a hang fails the test instead of stopping the suite


# --- videos: read_video -----------------------------------------------------------------------------------------

VIDEO_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated mp4": (bad.truncated_mp4, "opening failed: Invalid data found when processing input"),
    # Read whole, the decoder meets the cut packet; sampled, the stream ends before the frames asked for.
    "truncated mp4, index first": (
        bad.truncated_indexed_mp4,
        "decoding failed: Invalid data found | stream ended after 30 of 60 frames",
    ),
    "text renamed .mp4": (bad.text_as_mp4, "opening failed: Invalid data found when processing input"),
    "PNG renamed .mp4": (bad.png_as_mp4, "is a still image (png), not a video"),
    "zero-frame video (y4m header only)": (bad.zero_frame_y4m, "video stream has no frames"),
    "zero-frame mp4 (no packets)": (bad.zero_frame_mp4, "no video stream"),
    "huge declared size": (bad.huge_declared_size, "declared frame size 16000x16000 exceeds max_pixels"),
    "absurd declared size": (bad.absurd_declared_size, "opening failed"),
}
# Inputs that look wrong but are videos: the container is recognised from the bytes, not the name.
GOOD_VIDEO_CASES: dict[str, tuple[Callable[[Path], Path], int]] = {
    "mkv renamed .mp4": (bad.mkv_as_mp4, 47),
    "avi renamed .mkv": (bad.avi_as_mkv, 6),
    "one-frame video": (bad.one_frame_mp4, 1),
}


@pytest.mark.parametrize("case", list(VIDEO_CASES))
def test_bad_video(case: str, tmp_path: Path) -> None:
    build, reason = VIDEO_CASES[case]
    path = build(tmp_path)
    for sampler in (None, UniformSegments(8)):
        began = time.monotonic()
        with bad.alarm(HANG), pytest.raises(VideoDecodeError) as caught:
            read_video(path, sampler)
        assert time.monotonic() - began < SECONDS
        assert caught.value.path == str(path), str(caught.value)
        assert any(r in caught.value.reason for r in reason.split(" | ")), str(caught.value)


@pytest.mark.parametrize("case", list(GOOD_VIDEO_CASES))
def test_mislabelled_but_valid_video(case: str, tmp_path: Path) -> None:
    build, count = GOOD_VIDEO_CASES[case]
    with bad.alarm(HANG):
        clip = read_video(build(tmp_path), UniformSegments(8))
    assert clip.info.frames == count and clip.frames.shape[0] == 8  # a one-frame video gives frame 0 eight times
    assert np.array_equal(clip.indices, np.sort(clip.indices))


# --- annotation files, score inputs, feature caches: one table ---------------------------------------------------


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], tuple[bad.Run, Path]]
    error: type[Exception]
    reason: str  # in the error message, and in the listed skip reason with skip_bad
    names: str  # the file the message must name
    skippable: bool  # one bad item: skip_bad skips and counts it; else the whole file is unusable
    may_write: tuple[str, ...] = ()  # files a failing run may leave (a cache's resumable parts)


SSV2_TRAIN = "something-something-v2-train.json"
SSV2_LABELS = "something-something-v2-labels.json"
SYNTH = "annotations/train.json"
OUTSIDE_FRAME = "is not inside the 32x32 frame with x1 < x2 and y1 < y2"


def _msvd_escape(root: Path) -> None:
    bad.append_line("AllVideoDescriptions.txt", "../../eat a caption for a path")(root)
    bad.append_line("train_list.txt", "../../eat")(root)


def _msvd_json(edit: Callable[[Path], None]) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        (root / "AllVideoDescriptions.txt").unlink()
        (root / "captions.json").write_text(json.dumps({"eat": ["a caption"], "milk": ["another"]}))
        edit(root)

    return change


CASES: dict[str, Case] = {
    # non-UTF-8 and malformed annotation files, for every reader of JSON (and the csv/text ones)
    **{
        f"non-UTF-8 {name} {file.rsplit('/', 1)[-1]}": Case(
            bad.reader(name, split, task, edit(bad.non_utf8(file)) if edit else bad.non_utf8(file)),
            InputFileError,
            "cannot read annotation file: 'utf-8' codec can't decode",
            file.rsplit("/", 1)[-1],
            False,
        )
        for name, split, task, file, edit in [
            ("ssv2", "train", "recognition", SSV2_TRAIN, None),
            ("msrvtt", "val", "captioning", "MSRVTT_data.json", None),
            ("msrvtt_qa", "test", "qa", "test_qa.json", None),
            ("msvd_qa", "train", "qa", "train_qa.json", None),
            ("nextqa", "train", "qa", "map_vid_vidorID.json", None),
            ("msvd", "train", "captioning", "captions.json", _msvd_json),
            ("synthworld", "train", "recognition", SYNTH, None),
            ("kinetics", "val", "recognition", "val.csv", None),
        ]
    },
    **{
        f"malformed JSON {name} {file.rsplit('/', 1)[-1]}": Case(
            bad.reader(name, split, task, edit(bad.malformed_json(file)) if edit else bad.malformed_json(file)),
            InputFileError,
            "not valid JSON",
            file.rsplit("/", 1)[-1],
            False,
        )
        for name, split, task, file, edit in [
            ("ssv2", "train", "recognition", SSV2_LABELS, None),
            ("msrvtt", "val", "captioning", "MSRVTT_data.json", None),
            ("msrvtt_qa", "test", "qa", "train_qa.json", None),
            ("msvd_qa", "train", "qa", "train_qa.json", None),
            ("nextqa", "train", "qa", "map_vid_vidorID.json", None),
            ("msvd", "train", "captioning", "captions.json", _msvd_json),
            ("synthworld", "train", "recognition", SYNTH, None),
        ]
    },
    "JSON nested too deeply": Case(
        bad.reader("ssv2", "train", "recognition", bad.write_bytes(SSV2_TRAIN, b"[" * 100_000)),
        InputFileError,
        "not usable JSON: nested too deeply",
        SSV2_TRAIN,
        False,
    ),
    "JSON integer of 5000 digits": Case(
        bad.reader("ssv2", "train", "recognition", bad.write_bytes(SSV2_LABELS, b'{"a": ' + b"9" * 5000 + b"}")),
        InputFileError,
        "not usable JSON: Exceeds the limit",
        SSV2_LABELS,
        False,
    ),
    "csv field over the size limit": Case(
        bad.reader("kinetics", "val", "recognition", bad.append_line("val.csv", "zumba," + "x" * 200_000 + ",1,2")),
        InputFileError,
        "not valid csv: field larger than field limit",
        "val.csv",
        False,
    ),
    # ground truth that cannot be true
    "box outside the frame": Case(
        bad.reader("synthworld", "train", "recognition", bad.synth_video(bad.set_box([0, 0, 40, 10]))),
        InputFileError,
        OUTSIDE_FRAME,
        "train.json",
        True,
    ),
    "inverted box": Case(
        bad.reader("synthworld", "train", "recognition", bad.synth_video(bad.set_box([10, 5, 4, 9]))),
        InputFileError,
        OUTSIDE_FRAME,
        "train.json",
        True,
    ),
    "inverted event span": Case(
        bad.reader("synthworld", "train", "recognition", bad.synth_video(bad.set_event(start_frame=6, end_frame=2))),
        InputFileError,
        "frame span [6, 2] is not 0 <= start <= end < 8 (negative or inverted)",
        "train.json",
        True,
    ),
    "negative event time": Case(
        bad.reader("synthworld", "train", "recognition", bad.synth_video(bad.set_event(start_s=-0.5))),
        InputFileError,
        "time span [-0.5,",
        "train.json",
        True,
    ),
    "negative Kinetics span": Case(
        bad.reader("kinetics", "val", "recognition", bad.append_line("val.csv", "zumba,abcdefghijk,-5,10,val,0")),
        InputFileError,
        "row 3: time span [-5, 10] s is not 0 <= time_start < time_end",
        "val.csv",
        True,
    ),
    "inverted Kinetics span": Case(
        bad.reader("kinetics", "val", "recognition", bad.append_line("val.csv", "zumba,abcdefghijk,20,10,val,0")),
        InputFileError,
        "row 3: time span [20, 10] s",
        "val.csv",
        True,
    ),
    # paths in annotation files that leave the data set
    "path escape: kinetics youtube_id": Case(
        bad.reader("kinetics", "val", "recognition", bad.append_line("val.csv", "zumba,../../../etc/passwd,1,11,val")),
        UnsafePathError,
        "row 3: video path '../../../etc/passwd_000001_000011' has a '..' step",
        "val.csv",
        True,
    ),
    "path escape: ssv2 id": Case(
        bad.reader("ssv2", "train", "recognition", bad.edit_json(SSV2_TRAIN, lambda d: d[0].update(id="/etc/passwd"))),
        UnsafePathError,
        "item 0 (id '/etc/passwd'): video path '/etc/passwd' is absolute",
        SSV2_TRAIN,
        True,
    ),
    "path escape: msrvtt video_id": Case(
        bad.reader(
            "msrvtt", "test", "retrieval", bad.append_line("MSRVTT_JSFUSION_test.csv", "r1,msr3,../../x,a sentence")
        ),
        UnsafePathError,
        "video '../../x': video path '../../x' has a '..' step",
        "MSRVTT_JSFUSION_test.csv",
        True,
    ),
    "path escape: msrvtt_mc vid_key": Case(
        bad.reader("msrvtt_mc", "test", "qa", bad.append_line("MSR_MC_test.csv", "mc2\t/etc/x\ta\tb\tc\td\te\t0")),
        UnsafePathError,
        "row 4: video path '/etc/x' is absolute",
        "MSR_MC_test.csv",
        True,
    ),
    "path escape: msrvtt_qa video file": Case(
        bad.reader(
            "msrvtt_qa",
            "test",
            "qa",
            bad.edit_json("test_qa.json", lambda d: d[0].update(video="../../clip.mp4")),
        ),
        UnsafePathError,
        "item 0: video path '../../clip.mp4' has a '..' step",
        "test_qa.json",
        True,
    ),
    "path escape: msvd_qa mapping": Case(
        bad.reader("msvd_qa", "train", "qa", bad.replace_text("youtube_mapping.txt", "eat vid1", "../eat vid1")),
        UnsafePathError,
        "item 0 of train_qa.json (video_id 1): video path '../eat' has a '..' step",
        "youtube_mapping.txt",
        True,
    ),
    "path escape: nextqa map": Case(
        bad.reader(
            "nextqa",
            "train",
            "qa",
            bad.edit_json("map_vid_vidorID.json", lambda d: d.update({"4010069381": "../../../home/eat"})),
        ),
        UnsafePathError,
        "video '4010069381' (row 2 of train.csv): video path '../../../home/eat' has a '..' step",
        "map_vid_vidorID.json",
        True,
    ),
    "path escape: msvd list": Case(
        bad.reader("msvd", "train", "captioning", _msvd_escape),
        UnsafePathError,
        "video '../../eat': video path '../../eat' has a '..' step",
        "train_list.txt",
        True,
    ),
    "path escape: synthworld absolute file": Case(
        bad.reader("synthworld", "train", "recognition", bad.synth_video(lambda v: v.update(file="/etc/passwd"))),
        UnsafePathError,
        "video path '/etc/passwd' is absolute",
        "train.json",
        True,
    ),
    "path escape: synthworld '..' file": Case(
        bad.reader("synthworld", "train", "recognition", bad.synth_video(lambda v: v.update(file="../x.mp4"))),
        UnsafePathError,
        "video path '../x.mp4' has a '..' step",
        "train.json",
        True,
    ),
    "path escape: synthworld symlink": Case(
        bad.reader("synthworld", "train", "recognition", bad.symlink_out),
        UnsafePathError,
        "outside.mp4, outside",
        "train.json",
        True,
    ),
    # videoadapt score
    "prediction with unknown ids": Case(
        bad.scoring("recognition", bad.unknown_prediction_ids),
        InputFileError,
        "'vid_zz'",
        "recognition_pred.json",
        True,
    ),
    "prediction not UTF-8": Case(
        bad.scoring("recognition", bad.prediction_bytes(b'{"scores": {"caf\xe9": [1]}}')),
        InputFileError,
        "cannot read prediction JSON: 'utf-8' codec can't decode",
        "recognition_pred.json",
        False,
    ),
    "prediction malformed JSON": Case(
        bad.scoring("qa_choice", bad.prediction_bytes(b'{"answers": {"q1": 1,')),
        InputFileError,
        "cannot read prediction JSON",
        "qa_choice_pred.json",
        False,
    ),
}


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def check_case(case: Case, tmp_path: Path) -> None:
    run, root = case.build(tmp_path)
    before = _files(tmp_path)
    began = time.monotonic()
    with bad.alarm(HANG), pytest.raises(case.error) as caught:
        run(False)
    assert time.monotonic() - began < SECONDS
    message = str(caught.value)
    assert case.reason in message, message
    assert case.names in message, f"the error does not name {case.names}: {message}"
    if isinstance(caught.value, InputFileError):
        assert Path(caught.value.path).name == Path(case.names).name
    # Nothing half-written: only a cache's resumable parts may appear, never a manifest.
    changed = {p for p, stat in _files(tmp_path).items() if before.get(p) != stat}
    allowed = {p for p in changed if any(Path(p).match(pattern) for pattern in case.may_write)}
    assert changed == allowed and not any(p.endswith("manifest.json") for p in changed), changed - allowed
    if case.skippable:
        with bad.alarm(HANG):
            count, reasons = run(True)
        assert count >= 1 and case.reason in reasons, reasons
    else:
        with bad.alarm(HANG), pytest.raises(case.error):
            run(True)  # a file that cannot be read at all is an error even when skipping bad items


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, tmp_path: Path) -> None:
    check_case(CASES[name], tmp_path)


# --- feature caches ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ilfm():
    from videoadapt.foundation.hf import from_architecture

    return from_architecture("clip-tiny").eval()


class NaNFor:
    """Wraps ``ilfm.encode_frames`` so that the features of the videos in ``ids`` come out NaN."""

    def __init__(self, ilfm, order: list[str], ids: set[str]) -> None:
        self.original, self.order, self.ids = ilfm.encode_frames, order, ids

    def __call__(self, video, all_layers=False):
        features = self.original(video, all_layers=all_layers)
        for position, video_id in enumerate(self.order[: len(video)]):
            if video_id in self.ids:
                features.embeds[position, 0, 0] = float("nan")
        del self.order[: len(video)]
        return features


class OrderedSource(FileSource):
    """FileSource that tells a NaNFor which videos are in the next batch (they are encoded in decode order)."""

    def __init__(self, spy: list[str]) -> None:
        self.spy = spy

    def frames(self, ref, sampler=None):
        self.spy.append(ref.video_id)
        return super().frames(ref, sampler)


def video_data(folder: Path, builders: dict[str, Callable[[Path], Path]], spy: list[str] | None = None) -> TaskData:
    items = []
    for video_id, build in builders.items():
        sub = folder / video_id
        sub.mkdir()
        items.append(ClassificationItem(VideoRef(video_id, build(sub)), 0))
    source = OrderedSource(spy) if spy is not None else FileSource()
    return TaskData("recognition", "train", items, source, str(folder))


CACHE_FILES = ("cache/layout.json", "cache/*.npy", "cache/rows/writer-*.jsonl")


def cache_cases(ilfm) -> dict[str, Case]:
    def good(n: int) -> dict[str, Callable[[Path], Path]]:
        return {f"v{i}": bad.one_frame_mp4 for i in range(n)}

    def undecodable(folder: Path) -> tuple[bad.Run, Path]:
        data = video_data(folder, {**good(2), "cut": bad.truncated_mp4, "photo": bad.png_as_mp4})

        def run(skip_bad: bool) -> tuple[int, str]:
            cache = extract_features(ilfm, data, "uniform:2", folder / "cache", skip_bad=skip_bad, progress=False)
            return cache.run_stats["skipped"], " | ".join(f"{k}: {v}" for k, v in cache.skipped.items())

        return run, folder

    def nan_at_extraction(folder: Path) -> tuple[bad.Run, Path]:
        spy: list[str] = []
        data = video_data(folder, good(4), spy)

        def run(skip_bad: bool) -> tuple[int, str]:
            spy.clear()
            ilfm.encode_frames = NaNFor(ilfm, spy, {"v2"})
            try:
                cache = extract_features(
                    ilfm, data, "uniform:2", folder / "cache", skip_bad=skip_bad, progress=False, decode_workers=0
                )
            finally:
                del ilfm.encode_frames
            assert "v2" not in cache and len(cache) == 3
            return cache.run_stats["skipped"], " | ".join(f"{k}: {v}" for k, v in cache.skipped.items())

        return run, folder

    def finished_cache(folder: Path) -> FeatureCache:
        return extract_features(ilfm, video_data(folder, good(4)), "uniform:2", folder / "cache", progress=False)

    def nan_at_read(folder: Path) -> tuple[bad.Run, Path]:
        cache = finished_cache(folder)
        embeds = np.load(folder / "cache" / "embeds.npy", mmap_mode="r+")
        embeds[2, 1, 3] = np.nan
        embeds.flush()
        del embeds

        def run(skip_bad: bool) -> tuple[int, str]:
            FeatureCache.open(cache.directory).get(cache.video_ids)
            return 0, ""

        return run, folder

    def missing_shard(folder: Path) -> tuple[bad.Run, Path]:
        cache = finished_cache(folder)
        (folder / "cache" / "patches.npy").unlink()

        def run(skip_bad: bool) -> tuple[int, str]:
            FeatureCache.open(cache.directory)
            return 0, ""

        return run, folder

    return {
        "videos that do not decode, in extract": Case(
            undecodable, VideoadaptError, "cannot be read: VideoDecodeError", "truncated.mp4", True, CACHE_FILES
        ),
        "NaN features at extraction": Case(
            nan_at_extraction,
            VideoadaptError,
            "gave non-finite features (NaN or inf) from the backbone; not stored",
            "v2",
            True,
            CACHE_FILES,
        ),
        "NaN in a cached row, at read": Case(
            nan_at_read, NonFiniteFeaturesError, "embeds.npy: row 2 (video 'v2') holds NaN", "embeds.npy", False
        ),
        "missing cache shard": Case(
            missing_shard,
            InputFileError,
            "feature cache array missing (deleted, or not copied with the cache); extract the cache again",
            "patches.npy",
            False,
        ),
    }


CACHE_CASE_NAMES = ["videos that do not decode, in extract", "NaN features at extraction"]
CACHE_CASE_NAMES += ["NaN in a cached row, at read", "missing cache shard"]


@pytest.mark.parametrize("name", CACHE_CASE_NAMES)
def test_bad_cache_input(name: str, ilfm, tmp_path: Path) -> None:
    check_case(cache_cases(ilfm)[name], tmp_path)


def test_nan_rows_are_refused_by_write(ilfm, tmp_path: Path) -> None:
    cache = extract_features(ilfm, video_data(tmp_path, {"v0": bad.one_frame_mp4}), "uniform:2", tmp_path / "c")
    writable = FeatureCache.create(
        tmp_path / "w", key=cache.key, video_ids=["a", "b"], frames=2, dims=cache.dims, meta={}
    )
    features = cache.get(["v0", "v0"])
    features.cls[1, 0, 0] = float("inf")
    with pytest.raises(NonFiniteFeaturesError, match=r"video\(s\) 'b' hold NaN or infinity; nothing was written"):
        writable.write(["a", "b"], features)
    assert writable.completed() == set()


# --- the CLI: one line on stderr, nothing on stdout ------------------------------------------------------------


def test_score_cli_unknown_ids_fails_or_lists_the_skip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, folder = bad.scoring("recognition", bad.unknown_prediction_ids)(tmp_path)
    args = ["score", "--task", "recognition", "--json"]
    args += ["--pred", str(folder / "recognition_pred.json"), "--gt", str(folder / "recognition_gt.json")]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and "recognition_pred.json" in err and "(first: 'vid_zz')" in err
    assert main([*args, "--skip-bad"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["skipped"] == 1 and result["skipped_by_reason"] == {"unknown_id": 1}
    assert result["skipped_examples"] == [{"item": "video 'vid_zz'", "reason": "not in recognition_gt.json"}]


# --- the docs' table lists every case -----------------------------------------------------------------------------


def test_docs_table_lists_every_case() -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("### Bad-input corpus") :]
    rows = {m.group(1) for m in re.finditer(r"^\| ([^|]+?) \|", section, re.MULTILINE)}
    names = set(VIDEO_CASES) | set(GOOD_VIDEO_CASES) | set(CASES) | set(CACHE_CASE_NAMES)
    missing = sorted(n for n in names if n not in rows)
    assert not missing, f"docs/video-io.md's corpus table lacks {missing}"
