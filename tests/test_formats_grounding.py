"""Grounding readers (Charades-STA, QVHighlights, ActivityNet Captions, VidSTG, HC-STVG) and prediction files:
hand-written fixtures, conversions checked against hand-computed numbers, every bad input named or skipped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from videoadapt.data.formats import load_task_data
from videoadapt.data.records import GroundingItem, Tube
from videoadapt.errors import InputFileError, UnsafePathError, VideoadaptError
from videoadapt.metrics.prediction_files import (
    check_prediction_ids,
    durations_of,
    read_moment_predictions,
    read_stvg_predictions,
    stvg_metric_input,
    stvg_metric_pair,
    stvg_tube_of,
    write_moment_predictions,
    write_stvg_predictions,
)
from videoadapt.metrics.st_grounding import st_grounding_metrics
from videoadapt.metrics.temporal_grounding import highlight_detection_metrics, qvhighlights_saliency_labels

# --- fixtures ---------------------------------------------------------------------------------------------------

CHARADES_LINES = [
    "AO8RW 0.0 6.9##a person is putting a book on a shelf.",
    "AO8RW 25.1 33.2##person begins to play on a phone.",  # overruns the 33.0 s video: clipped
    "",
    "Y6R7T 2.5 10.0##a person opens a door",
]


def charades(folder: Path, extra: list[str] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "charades_sta_train.txt").write_text("\n".join(CHARADES_LINES + list(extra)) + "\n")
    (folder / "Charades_v1_train.csv").write_text("id,subject,length\nAO8RW,HR43,33.0\nY6R7T,X,20.5\n")
    return folder


QVH_LINES = [
    {
        "qid": 8737,
        "query": "A family is playing basketball together.",
        "duration": 126,
        "vid": "bP5KfdFJzC4_660.0_810.0",
        "relevant_windows": [[0, 16], [120, 130]],
        "relevant_clip_ids": [0, 1, 60],
        "saliency_scores": [[4, 1, 1], [3, 3, 3], [0, 2, 4]],
    },
    {
        "qid": 9,
        "query": "A cat sleeps.",
        "duration": 150,
        "vid": "abc_0.0_150.0",
        "relevant_windows": [[2, 4]],
        "relevant_clip_ids": [1],
        "saliency_scores": [[1, 2, 3]],
    },
]


def qvh(folder: Path, extra: list = (), split: str = "train") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) if not isinstance(r, str) else r for r in [*QVH_LINES, *extra]]
    (folder / f"highlight_{split}_release.jsonl").write_text("\n".join(lines) + "\n")
    return folder


ANET = {
    "v_abc": {
        "duration": 82.73,
        "timestamps": [[0.83, 19.86], [17.37, 90.0]],
        "sentences": ["A young woman stands.", " The girl then dances. "],
    },
    "v_def": {"duration": 10.0, "timestamps": [[-1.0, 4.0]], "sentences": ["Someone waves."]},
}


def anet(folder: Path, extra: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.json").write_text(json.dumps({**ANET, **(extra or {})}))
    return folder


def vidstg_video(video_id: int, **changes: object) -> dict:
    video = {
        "video_id": video_id,
        "original_video_id": "2440175990",
        "video_path": "0000/2440175990.mp4",
        "frame_count": 100,
        "fps": 10.0,
        "width": 64,
        "height": 48,
        "start_frame": 0,
        "end_frame": 50,
        "tube_start_frame": 10,
        "tube_end_frame": 13,
        "target_id": 3,
        "caption": "a dog runs on the grass.",
        "qtype": "declarative",
    }
    video.update(changes)
    return video


VIDSTG_TRACKS = {
    "2440175990": {
        "3": {str(f): {"bbox": [f - 9, 2, 10, 20]} for f in (10, 11, 12)},
        "4": {"10": {"bbox": [60, 2, 10, 20]}, "11": {"bbox": [5, 5, 0, 20]}},  # outside the frame / zero width
        "5": {"10": {"bbox": [1, 2, 10, 20]}, "12": {"bbox": [1, 2, 10, 20]}},  # frame 11 has no box
    }
}


def vidstg(folder: Path, extra: list = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    videos = [
        vidstg_video(0),
        vidstg_video(1, end_frame=12, caption="what runs on the grass?", qtype="interrogative"),
        *extra,
    ]
    (folder / "train.json").write_text(json.dumps({"videos": videos, "trajectories": VIDSTG_TRACKS}))
    return folder


HCSTVG = {
    "10_abc.mp4": {
        "st_frame": 3,
        "ed_frame": 5,
        "st_time": 0.2,
        "ed_time": 0.5,
        "bbox": [[10, 20, 30, 40], [11, 20, 30, 40], [12, 21, 30, 40]],
        "img_num": 200,
        "width": 320,
        "height": 180,
        "caption": "The man in black walks to the door.",
    }
}


def hcstvg(folder: Path, extra: dict | None = None, name: str = "train.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps({**HCSTVG, **(extra or {})}))
    return folder


# --- readers: conversions by hand -------------------------------------------------------------------------------


def test_charades_sta(tmp_path: Path) -> None:
    video = tmp_path / "videos" / "Y6R7T.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"")
    data = load_task_data(f"charades_sta:{charades(tmp_path)}", "train", "temporal_grounding")
    assert [(i.query_id, i.video.video_id, i.duration, i.windows) for i in data.items] == [
        ("AO8RW_1", "AO8RW", 33.0, ((0.0, 6.9),)),
        ("AO8RW_2", "AO8RW", 33.0, ((25.1, 33.0),)),  # end clipped to the csv length (2D-TAN)
        ("Y6R7T_4", "Y6R7T", 20.5, ((2.5, 10.0),)),  # the blank line 3 keeps line numbers honest
    ]
    assert data.items[0].query == "a person is putting a book on a shelf"  # one trailing period dropped
    assert data.items[2].video.path == video and data.extra["clipped"] == 1
    assert data.items[0].saliency is None and data.items[0].tube is None
    with pytest.raises(InputFileError, match=r"line 2: video 'AO8RW': window \[25.1, 33.2\] s sticks out"):
        load_task_data(f"charades_sta:{tmp_path}", "train", "temporal_grounding", clip_spans="false")
    with pytest.raises(VideoadaptError, match="no validation split.*holdout"):
        load_task_data(f"charades_sta:{tmp_path}", "val", "temporal_grounding")
    # An explicit durations file (json) replaces Charades' csv.
    (tmp_path / "lengths.json").write_text(json.dumps({"AO8RW": 40.0, "Y6R7T": 12}))
    own = load_task_data(
        f"charades_sta:{tmp_path}", "train", "temporal_grounding", durations=str(tmp_path / "lengths.json")
    )
    assert own.items[1].windows == ((25.1, 33.2),) and own.items[2].duration == 12.0
    (tmp_path / "Charades_v1_train.csv").unlink()
    with pytest.raises(InputFileError, match="Charades_v1_train.csv: no such file"):
        load_task_data(f"charades_sta:{tmp_path}", "train", "temporal_grounding")


def test_qvhighlights_saliency_follows_moment_detr(tmp_path: Path) -> None:
    data = load_task_data(f"qvhighlights:{qvh(tmp_path)}", "train", "temporal_grounding")
    first = data.items[0]
    assert isinstance(first, GroundingItem)
    assert (first.query_id, first.video.video_id, first.duration, first.clip_length) == (
        "8737",
        "bP5KfdFJzC4_660.0_810.0",
        126.0,
        2.0,
    )
    assert first.windows == ((0.0, 16.0), (120.0, 126.0)) and data.extra["clipped"] == 1
    assert first.saliency == ((0, 2.0), (1, 3.0), (60, 2.0))  # mean of the three annotators
    raw = data.extra["saliency_annotators"]["8737"]
    assert raw == {"relevant_clip_ids": [0, 1, 60], "saliency_scores": [[4, 1, 1], [3, 3, 3], [0, 2, 4]]}
    # The kept rows give Moment-DETR's per-annotator label array: predicting clip 0 first hits annotator 1's 4.
    labels = qvhighlights_saliency_labels(first.duration, raw["relevant_clip_ids"], raw["saliency_scores"])
    assert labels.shape == (63, 3) and labels[60].tolist() == [0, 2, 4]
    scores = np.zeros(63)
    scores[0] = 1.0
    assert highlight_detection_metrics({"8737": scores}, {"8737": labels})["HIT@1"] == 100.0
    assert data.extra["unlabelled"] is False


def test_qvhighlights_test_split_without_labels(tmp_path: Path) -> None:
    unlabelled = [{k: v for k, v in r.items() if k in ("qid", "query", "duration", "vid")} for r in QVH_LINES]
    folder = tmp_path / "qvh"
    folder.mkdir()
    (folder / "highlight_test_release.jsonl").write_text("\n".join(json.dumps(r) for r in unlabelled))
    with pytest.raises(InputFileError, match="highlight_test_release.jsonl: no line has relevant_windows.*unlabelled"):
        load_task_data(f"qvhighlights:{folder}", "test", "temporal_grounding")
    data = load_task_data(f"qvhighlights:{folder}", "test", "temporal_grounding", unlabelled=True)
    assert [(i.query_id, i.windows, i.saliency) for i in data.items] == [("8737", (), None), ("9", (), None)]
    assert data.extra["unlabelled"] is True


def test_activitynet_captions(tmp_path: Path) -> None:
    video = tmp_path / "videos" / "abc.mp4"  # downloaded without the v_ prefix
    video.parent.mkdir(parents=True)
    video.write_bytes(b"")
    data = load_task_data(f"activitynet_captions:{anet(tmp_path)}", "train", "temporal_grounding")
    assert [(i.query_id, i.video.video_id, i.query, i.windows) for i in data.items] == [
        ("v_abc_0", "v_abc", "A young woman stands.", ((0.83, 19.86),)),
        ("v_abc_1", "v_abc", "The girl then dances.", ((17.37, 82.73),)),  # clipped to the duration
        ("v_def_0", "v_def", "Someone waves.", ((0.0, 4.0),)),  # clipped at 0, as 2D-TAN
    ]
    assert data.items[0].video.path == video and data.extra["clipped"] == 2
    (tmp_path / "train.json").rename(tmp_path / "val_1.json")
    assert len(load_task_data(f"activitynet_captions:{tmp_path}", "val", "temporal_grounding")) == 3


def test_vidstg_converts_tubedetr_layout(tmp_path: Path) -> None:
    video = tmp_path / "video" / "0000" / "2440175990.mp4"  # TubeDETR's folder: <vidstg>/video/<video_path>
    video.parent.mkdir(parents=True)
    video.write_bytes(b"")
    data = load_task_data(f"vidstg:{vidstg(tmp_path)}", "train", "st_grounding")
    first, second = data.items
    assert (first.query_id, first.video.video_id, first.query, first.duration) == (
        "0",
        "2440175990",
        "a dog runs on the grass.",
        10.0,
    )
    # temporal_gt [10, 13) end excluded -> frames 10, 11, 12; [x, y, w, h] -> (x, y, x + w, y + h)
    assert first.tube == Tube((10, 11, 12), ((1, 2, 11, 22), (2, 2, 12, 22), (3, 2, 13, 22)), 10.0, 64, 48)
    assert first.windows == ((1.0, 1.3),)  # 10 / 10 fps to (12 + 1) / 10 fps
    # The second sentence's used segment ends at frame 12 (excluded): its tube is cut to frames 10, 11.
    assert second.tube.frames == (10, 11) and second.windows == ((1.0, 1.2),)
    assert data.extra["segments"] == {"0": [0, 49], "1": [0, 11]} and data.extra["clipped"] == 1
    assert data.extra["sentence_types"] == {"0": "declarative", "1": "interrogative"}
    assert data.items[0].video.path == video and data.extra["missing_videos"]["count"] == 0


def test_hcstvg_v1_and_v2(tmp_path: Path) -> None:
    data = load_task_data(f"hcstvg:{hcstvg(tmp_path / 'v1')}", "train", "st_grounding")
    (item,) = data.items
    # st_frame 3 is 1-based: frames 2, 3, 4 (0-based); fps = 200 frames / 20 s = 10
    assert item.tube == Tube((2, 3, 4), ((10, 20, 40, 60), (11, 20, 41, 60), (12, 21, 42, 61)), 10.0, 320, 180)
    assert (item.query_id, item.video.video_id, item.duration) == ("10_abc", "10_abc", 20.0)
    assert item.windows == ((0.2, 0.5),)
    v2_entry = dict(HCSTVG["10_abc.mp4"])
    del v2_entry["width"], v2_entry["height"], v2_entry["caption"]
    v2_entry.update(img_size=[180, 320], English="The man walks.")
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "valv2.json").write_text(json.dumps({"5_x.mkv": v2_entry}))
    (v2,) = load_task_data(f"hcstvg:{tmp_path / 'v2'}", "val", "st_grounding").items
    assert v2.query == "The man walks." and v2.tube.width == 320 and v2.tube.height == 180
    with pytest.raises(VideoadaptError, match="v1 has no 'val' split"):
        load_task_data(f"hcstvg:{tmp_path / 'v1'}", "val", "st_grounding", version="v1")
    slow = load_task_data(f"hcstvg:{tmp_path / 'v1'}", "train", "st_grounding", clip_seconds="40")
    assert slow.items[0].tube.fps == 5.0 and slow.items[0].duration == 40.0


# --- bad input: named, or skipped and counted ---------------------------------------------------------------

BAD_CASES: list[tuple[str, str, Callable[[Path], Path], str, str]] = [
    # (id, spec name, builder with one extra bad item, file, error fragment)
    ("charades-reversed", "charades_sta", lambda p: charades(p, ["AO8RW 5 3##x"]), "charades_sta_train.txt",
     r"line 5: video 'AO8RW': window \[5, 3\] s is reversed or zero-length"),
    ("charades-zero", "charades_sta", lambda p: charades(p, ["AO8RW 3 3##x"]), "charades_sta_train.txt",
     "line 5: .*reversed or zero-length"),
    ("charades-outside", "charades_sta", lambda p: charades(p, ["AO8RW 40 45##x"]), "charades_sta_train.txt",
     r"line 5: .*window \[40, 45\] s lies outside the 33-second video"),
    ("charades-nan", "charades_sta", lambda p: charades(p, ["AO8RW nan 3##x"]), "charades_sta_train.txt",
     "line 5: .*not two finite numbers"),
    ("charades-malformed", "charades_sta", lambda p: charades(p, ["AO8RW 1##x"]), "charades_sta_train.txt",
     "line 5: expected 'VID start end##sentence'"),
    ("charades-no-length", "charades_sta", lambda p: charades(p, ["ZZZ 1 2##x"]), "charades_sta_train.txt",
     "line 5: video 'ZZZ' has no length in Charades_v1_train.csv"),
    ("charades-unsafe", "charades_sta", lambda p: charades(p, ["../x 1 2##x"]), "charades_sta_train.txt",
     "line 5: video '../x' has no length"),
    ("qvh-json", "qvhighlights", lambda p: qvh(p, ["{not json"]), "highlight_train_release.jsonl",
     "line 3: not valid JSON"),
    ("qvh-duplicate", "qvhighlights", lambda p: qvh(p, [QVH_LINES[1]]), "highlight_train_release.jsonl",
     r"line 3 \(qid 9\): qid 9 appears twice"),
    ("qvh-clip-id", "qvhighlights", lambda p: qvh(p, [{**QVH_LINES[0], "qid": 1, "relevant_clip_ids": [0, 1, 63]}]),
     "highlight_train_release.jsonl", r"line 3 \(qid 1\): relevant_clip_ids\[2\] 63 is not one of the 63"),
    ("qvh-score", "qvhighlights", lambda p: qvh(p, [{**QVH_LINES[1], "qid": 2, "saliency_scores": [[5, 1, 1]]}]),
     "highlight_train_release.jsonl", r"line 3 \(qid 2\): saliency_scores\[0\] \[5, 1, 1\] is not a list of scores"),
    ("qvh-rows", "qvhighlights", lambda p: qvh(p, [{**QVH_LINES[1], "qid": 2, "saliency_scores": []}]),
     "highlight_train_release.jsonl", r"line 3 \(qid 2\): 1 relevant_clip_ids but 0 rows"),
    ("qvh-reversed", "qvhighlights", lambda p: qvh(p, [{**QVH_LINES[1], "qid": 2, "relevant_windows": [[8, 4]]}]),
     "highlight_train_release.jsonl", r"line 3 \(qid 2\): relevant_windows\[0\]: window \[8, 4\] s is reversed"),
    ("qvh-outside", "qvhighlights", lambda p: qvh(p, [{**QVH_LINES[1], "qid": 2, "relevant_windows": [[150, 160]]}]),
     "highlight_train_release.jsonl", r"line 3 .*\[150, 160\] s lies outside the 150-second video"),
    ("qvh-unlabelled-line", "qvhighlights",
     lambda p: qvh(p, [{k: v for k, v in QVH_LINES[1].items() if k != "relevant_windows"} | {"qid": 2}]),
     "highlight_train_release.jsonl", r"line 3 \(qid 2\): relevant_windows is missing or empty"),
    ("anet-lengths", "activitynet_captions",
     lambda p: anet(p, {"v_x": {"duration": 5, "timestamps": [[0, 1]], "sentences": []}}), "train.json",
     "video 'v_x': needs 'timestamps' and 'sentences' lists of the same length"),
    ("anet-reversed", "activitynet_captions",
     lambda p: anet(p, {"v_x": {"duration": 5, "timestamps": [[3, 1]], "sentences": ["s"]}}), "train.json",
     r"video 'v_x' sentence 0: window \[3, 1\] s is reversed"),
    ("anet-before", "activitynet_captions",
     lambda p: anet(p, {"v_x": {"duration": 5, "timestamps": [[-3, -1]], "sentences": ["s"]}}), "train.json",
     r"video 'v_x' sentence 0: window \[-3, -1\] s lies outside the 5-second video"),
    ("anet-duration", "activitynet_captions",
     lambda p: anet(p, {"v_x": {"duration": 0, "timestamps": [[0, 1]], "sentences": ["s"]}}), "train.json",
     "video 'v_x': duration 0 is not a positive number"),
    ("anet-unsafe", "activitynet_captions",
     lambda p: anet(p, {"/etc/x": {"duration": 5, "timestamps": [[0, 1]], "sentences": ["s"]}}), "train.json",
     "video '/etc/x': video path '/etc/x' is absolute"),
    ("vidstg-no-tube", "vidstg", lambda p: vidstg(p, [vidstg_video(2, target_id=9)]), "train.json",
     r"videos\[2\] \(video_id 2\): target 9 has no trajectory \(a sentence with no tube\)"),
    ("vidstg-gap", "vidstg", lambda p: vidstg(p, [vidstg_video(2, target_id=5)]), "train.json",
     r"videos\[2\] \(video_id 2\): frame 11 of the tube has no box for target 5"),
    ("vidstg-box-outside", "vidstg", lambda p: vidstg(p, [vidstg_video(2, target_id=4, tube_end_frame=11)]),
     "train.json", r"videos\[2\] .*: frame 10: box \[60.0, 2.0, 70.0, 22.0\] .* is not inside the 64x48 frame"),
    ("vidstg-box-size", "vidstg",
     lambda p: vidstg(p, [vidstg_video(2, target_id=4, tube_start_frame=11, tube_end_frame=12)]), "train.json",
     r"videos\[2\] .*: frame 11: box \[5.0, 5.0, 5.0, 25.0\] .* has no positive size"),
    ("vidstg-reversed", "vidstg", lambda p: vidstg(p, [vidstg_video(2, tube_end_frame=10)]), "train.json",
     r"videos\[2\] .*: tube \[10, 10\) is reversed or empty"),
    ("vidstg-outside-segment", "vidstg", lambda p: vidstg(p, [vidstg_video(2, start_frame=20)]), "train.json",
     r"videos\[2\] .*: tube \[10, 13\) lies outside the used segment \[20, 50\)"),
    ("vidstg-segment-past-video", "vidstg", lambda p: vidstg(p, [vidstg_video(2, end_frame=101)]), "train.json",
     r"videos\[2\] .*: used segment \[0, 101\) is not inside the video's 100 frames"),
    ("vidstg-duplicate", "vidstg", lambda p: vidstg(p, [vidstg_video(1)]), "train.json",
     r"videos\[2\] \(video_id 1\): missing or repeated video_id"),
    ("vidstg-unsafe", "vidstg", lambda p: vidstg(p, [vidstg_video(2, video_path="../../x.mp4")]), "train.json",
     r"videos\[2\] .*: video path '../../x' has a '..' step"),
    ("hcstvg-no-boxes", "hcstvg", lambda p: hcstvg(p, {"b.mp4": {**HCSTVG["10_abc.mp4"], "bbox": []}}), "train.json",
     "video 'b.mp4': no boxes: a sentence with no tube"),
    ("hcstvg-zero-based", "hcstvg", lambda p: hcstvg(p, {"b.mp4": {**HCSTVG["10_abc.mp4"], "st_frame": 0}}),
     "train.json", "video 'b.mp4': st_frame 0 is not a 1-based frame number"),
    ("hcstvg-past-end", "hcstvg", lambda p: hcstvg(p, {"b.mp4": {**HCSTVG["10_abc.mp4"], "st_frame": 199}}),
     "train.json", r"video 'b.mp4': tube frame 200 \(0-based\) is past the video's 200 frames"),
    ("hcstvg-box-size", "hcstvg",
     lambda p: hcstvg(p, {"b.mp4": {**HCSTVG["10_abc.mp4"], "bbox": [[10, 20, -3, 40]]}}), "train.json",
     "video 'b.mp4': frame 2: box .* has no positive size"),
    ("hcstvg-box-outside", "hcstvg",
     lambda p: hcstvg(p, {"b.mp4": {**HCSTVG["10_abc.mp4"], "bbox": [[300, 20, 30, 40]]}}), "train.json",
     r"video 'b.mp4': frame 2: box \[300.0, 20.0, 330.0, 60.0\] .* is not inside the 320x180 frame"),
    ("hcstvg-nan", "hcstvg",
     lambda p: hcstvg(p, {"b.mp4": {**HCSTVG["10_abc.mp4"], "bbox": [[float("nan"), 20, 3, 40]]}}), "train.json",
     r"video 'b.mp4': bbox\[0\]: box .* is not four finite numbers"),
]  # fmt: skip

GOOD_COUNTS = {"charades_sta": 3, "qvhighlights": 2, "activitynet_captions": 3, "vidstg": 2, "hcstvg": 1}
TASKS = {"vidstg": "st_grounding", "hcstvg": "st_grounding"}


@pytest.mark.parametrize(
    ("name", "build", "file", "message"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)  # noqa: E501
def test_bad_items_are_named_or_skipped(tmp_path: Path, name: str, build, file: str, message: str) -> None:
    folder = build(tmp_path / "data")
    task = TASKS.get(name, "temporal_grounding")
    with pytest.raises(InputFileError, match=rf"{file}: {message}") as raised:
        load_task_data(f"{name}:{folder}", "train", task)
    assert "skip_bad=True" in str(raised.value)
    data = load_task_data(f"{name}:{folder}", "train", task, skip_bad=True)
    assert len(data) == GOOD_COUNTS[name]
    assert data.extra["skipped"]["count"] == 1 and data.extra["skipped"]["reasons"][0].startswith(file)


def test_unsafe_paths_raise_unsafe_path_error(tmp_path: Path) -> None:
    folder = anet(tmp_path, {"/etc/x": {"duration": 5, "timestamps": [[0, 1]], "sentences": ["s"]}})
    with pytest.raises(UnsafePathError):
        load_task_data(f"activitynet_captions:{folder}", "train", "temporal_grounding")


def test_broken_files_are_errors_naming_them(tmp_path: Path) -> None:
    (tmp_path / "train.json").write_text("[1, 2]")
    with pytest.raises(InputFileError, match="train.json: expected a json object with a 'videos' list"):
        load_task_data(f"vidstg:{tmp_path}", "train", "st_grounding")
    with pytest.raises(InputFileError, match="train.json: expected a json object"):
        load_task_data(f"hcstvg:{tmp_path}", "train", "st_grounding")
    with pytest.raises(InputFileError, match="train.json: expected a json object"):
        load_task_data(f"activitynet_captions:{tmp_path}", "train", "temporal_grounding")
    with pytest.raises(VideoadaptError, match="provides task.*st_grounding.*not 'temporal_grounding'"):
        load_task_data(f"vidstg:{tmp_path}", "train", "temporal_grounding")


# --- prediction files ---------------------------------------------------------------------------------------


def test_moment_predictions_round_trip(tmp_path: Path) -> None:
    predictions = {
        "8737": {"query": "q", "vid": "v", "windows": [(0.0, 16.0, 0.9), (100.0, 120.0, 0.5)], "saliency": [0.1, 0.7]},
        "a1": {"query": None, "vid": None, "windows": None, "saliency": [1.0]},
    }
    file = tmp_path / "preds.jsonl"
    write_moment_predictions(file, predictions)
    first = json.loads(file.read_text().splitlines()[0])
    assert first["qid"] == 8737 and first["pred_relevant_windows"][0] == [0.0, 16.0, 0.9]  # int qid, as QVHighlights
    assert read_moment_predictions(file) == predictions


MOMENT_ERRORS = [
    ("{oops", "line 1: not valid JSON"),
    ('{"query": "q"}', "line 1: not a json object with a 'qid'"),
    ('{"qid": 1, "query": "q"}', r"line 1 \(qid 1\): needs pred_relevant_windows or pred_saliency_scores"),
    ('{"qid": 1, "pred_relevant_windows": [[5, 3, 1]]}', r"line 1 \(qid 1\): .*\[5, 3, 1\] is reversed or zero"),
    ('{"qid": 1, "pred_relevant_windows": [[3, 3, 1]]}', r"line 1 \(qid 1\): .*\[3, 3, 1\] is reversed or zero-length"),
    ('{"qid": 1, "pred_relevant_windows": [[-1, 3, 1]]}', r"line 1 .*\[-1, 3, 1\] is outside the video \[0, \.\.\.\)"),
    ('{"qid": 1, "pred_relevant_windows": [[1, 3]]}', r"line 1 .*\[1, 3\] is not \[start, end, score\]"),
    ('{"qid": 1, "pred_relevant_windows": [[NaN, 3, 1]]}', "line 1 .*has a non-finite or non-number value"),
    (
        '{"qid": 1, "pred_saliency_scores": [1, Infinity]}',
        r"line 1 \(qid 1\): pred_saliency_scores is not a non-empty list",
    ),
    ('{"qid": 1, "pred_saliency_scores": [1]}\n{"qid": "1", "pred_saliency_scores": [1]}', "line 2.*appears twice"),
    ("", "no predictions"),
]


@pytest.mark.parametrize(("text", "message"), MOMENT_ERRORS)
def test_moment_prediction_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "preds.jsonl"
    file.write_text(text)
    with pytest.raises(InputFileError, match=rf"preds.jsonl: {message}"):
        read_moment_predictions(file)


def test_moment_windows_checked_against_durations(tmp_path: Path) -> None:
    data = load_task_data(f"qvhighlights:{qvh(tmp_path / 'qvh')}", "train", "temporal_grounding")
    file = tmp_path / "preds.jsonl"
    file.write_text('{"qid": 9, "pred_relevant_windows": [[140, 151, 0.5]]}\n')
    assert read_moment_predictions(file)["9"]["windows"] == [(140.0, 151.0, 0.5)]  # no durations: not checked
    with pytest.raises(InputFileError, match=r"line 1 \(qid 9\): .*outside the video \[0, 150\] s"):
        read_moment_predictions(file, durations_of(data.items))
    with pytest.raises(InputFileError, match=r"query '9': .*outside the video \[0, 150\] s"):
        write_moment_predictions(file, {"9": {"windows": [(140, 151, 0.5)]}}, durations_of(data.items))
    assert check_prediction_ids(read_moment_predictions(file), data.items, file) == {
        "missing": 1,
        "examples": ["8737"],
    }
    file.write_text('{"qid": 7, "pred_saliency_scores": [1]}\n')
    with pytest.raises(InputFileError, match=r"preds.jsonl: 1 query id\(s\) not in the ground truth: '7'"):
        check_prediction_ids(read_moment_predictions(file), data.items, file)


def test_stvg_predictions_round_trip_and_score(tmp_path: Path) -> None:
    data = load_task_data(f"vidstg:{vidstg(tmp_path / 'vidstg')}", "train", "st_grounding")
    # A perfect prediction for every item, written in our format and read back.
    predictions = {
        i.query_id: {
            "span": (i.tube.frames[0], i.tube.frames[-1]),
            "boxes": dict(zip(i.tube.frames, i.tube.boxes, strict=True)),
        }
        for i in data.items
    }
    file = tmp_path / "stvg.json"
    write_stvg_predictions(file, predictions)
    assert json.loads(file.read_text())["0"] == {
        "span": [10, 12],
        "boxes": {"10": [1.0, 2.0, 11.0, 22.0], "11": [2.0, 2.0, 12.0, 22.0], "12": [3.0, 2.0, 13.0, 22.0]},
    }
    read = read_stvg_predictions(file)
    assert read == predictions
    assert stvg_metric_input(read["0"])["end"] == 13  # inclusive last frame 12 -> half-open end 13
    assert check_prediction_ids(read, data.items, file) == {"missing": 0, "examples": []}
    pairs = {i.query_id: stvg_metric_pair(read[i.query_id], stvg_tube_of(i)) for i in data.items}
    metrics = st_grounding_metrics({q: p for q, (p, _) in pairs.items()}, {q: g for q, (_, g) in pairs.items()})
    assert metrics["m_tIoU"] == 100.0 and metrics["m_vIoU"] == 100.0


STVG_ERRORS = [
    ("{oops", "not valid JSON"),
    ('{"q": {"span": [1, 2], "boxes": {}}, "q": {"span": [1, 2], "boxes": {}}}', "key 'q' appears twice"),
    ('{"q": {"span": [1, 2], "boxes": {"1": [0, 0, 1, 1], "1": [0, 0, 1, 1]}}}', "key '1' appears twice"),
    ('{"q": {"boxes": {}}}', "query 'q': needs 'span' and 'boxes'"),
    ('{"q": {"span": [5, 2], "boxes": {}}}', r"query 'q': span \[5, 2\] is negative or reversed"),
    ('{"q": {"span": [-1, 2], "boxes": {}}}', r"query 'q': span \[-1, 2\] is negative or reversed"),
    ('{"q": {"span": [1.5, 2], "boxes": {}}}', r"query 'q': span \[1.5, 2\] is not \[first_frame, last_frame\]"),
    ('{"q": {"span": [1, 2], "boxes": {"x": [0, 0, 1, 1]}}}', "query 'q': box key 'x' is not a frame number"),
    ('{"q": {"span": [1, 2], "boxes": {"1": [5, 0, 5, 1]}}}', "query 'q': frame 1: box .* has no positive size"),
    ('{"q": {"span": [1, 2], "boxes": {"1": [0, 0, NaN, 1]}}}', "query 'q': frame 1: box .* not four finite numbers"),
    ("[]", "expected a non-empty json object"),
]


@pytest.mark.parametrize(("text", "message"), STVG_ERRORS)
def test_stvg_prediction_errors_name_file_and_query(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "stvg.json"
    file.write_text(text)
    with pytest.raises(InputFileError, match=rf"stvg.json: {message}"):
        read_stvg_predictions(file)
