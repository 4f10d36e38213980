"""The YouTube-VIS / LV-VIS reader, its frame-folder source, the result json and `score --task segmentation`, on
tiny hand-written files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from videoadapt.commands.score import score_files
from videoadapt.data.formats import load_task_data
from videoadapt.data.masks import decode_mask, encode_mask
from videoadapt.data.sampling import UniformSegments
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.metrics import segmentation_files as sf
from videoadapt.metrics.video_segmentation import VideoInstance, vis_metrics

H, W = 6, 8


def _mask(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


SQUARE, BAR = _mask(1, 1, 4, 4), _mask(0, 5, 2, 8)


def _document() -> dict:
    square = encode_mask(SQUARE)
    polygon = [[5.0, 0.0, 8.0, 0.0, 8.0, 2.0, 5.0, 2.0]]  # the bar, as a polygon
    return {
        "videos": [
            {
                "id": 7,
                "file_names": ["v7/00000.jpg", "v7/00005.jpg", "v7/00010.jpg"],
                "length": 3,
                "width": W,
                "height": H,
            },
            {"id": 9, "file_names": ["v9/00000.jpg", "v9/00005.jpg"], "length": 2, "width": W, "height": H},
        ],
        "categories": [
            {"id": 2, "name": "dog", "partition": "novel"},
            {"id": 1, "name": "cat", "partition": "base"},
        ],
        "annotations": [
            {"id": 11, "video_id": 7, "category_id": 1, "iscrowd": 0, "segmentations": [square, square, None]},
            {"id": 12, "video_id": 7, "category_id": 2, "iscrowd": 0, "segmentations": [None, polygon, polygon]},
            {"id": 13, "video_id": 9, "category_id": 1, "iscrowd": 1, "segmentations": [square, None]},
        ],
    }


def _write(folder: Path, document: dict, name: str = "val.json", frames: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(document))
    if frames:
        from PIL import Image

        for video in document["videos"]:
            for k, name in enumerate(video["file_names"]):
                target = folder / "val" / "JPEGImages" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((H, W, 3), 40 * k, dtype=np.uint8)).save(target)
    return path


def test_reads_videos_objects_masks_and_the_novel_partition(tmp_path: Path) -> None:
    _write(tmp_path, _document(), frames=True)
    data = load_task_data(f"youtube_vis:{tmp_path}", "val", "segmentation")
    assert data.task == "segmentation" and data.classes == ["cat", "dog"]  # id order
    assert data.extra["novel_categories"] == ["dog"]
    assert data.extra["video_ids"] == {"7": 7, "9": 9} and data.extra["category_ids"] == {"cat": 1, "dog": 2}
    first, second = data.items
    assert (first.video.video_id, first.num_frames, first.width, first.height, first.fps) == ("7", 3, W, H, 6.0)
    cat, dog = first.tracks
    assert (cat.track_id, cat.category, cat.frames, cat.iscrowd) == (11, "cat", (0, 1), False)
    assert cat.boxes[0] == (1.0, 1.0, 4.0, 4.0)
    assert np.array_equal(decode_mask(cat.masks[0]), SQUARE)
    assert dog.frames == (1, 2) and decode_mask(dog.masks[0]).sum() == BAR.sum()
    assert second.tracks[0].iscrowd
    # The frame folders: a sampler picks frames of the listed files, read with PIL.
    frames = data.source.frames(first.video, UniformSegments(2))
    assert frames.shape == (2, H, W, 3) and frames.dtype == np.uint8
    assert data.source.frames(first.video).shape[0] == 3
    # The novel option wins over the partition field.
    assert load_task_data(f"youtube_vis:{tmp_path}", "val", "segmentation", novel="cat").extra["novel_categories"] == [
        "cat"
    ]


def test_a_missing_frame_file_is_named(tmp_path: Path) -> None:
    data = load_task_data(f"youtube_vis:{_write(tmp_path, _document())}", "val", "segmentation")
    with pytest.raises(InputFileError, match="00000.jpg.*frame 0 of video '7' is missing"):
        data.source.frames(data.items[0].video)


def _broken(change) -> dict:
    document = _document()
    change(document)
    return document


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["annotations"][0].update(category_id=5),
            r"annotations\[0\] \(video_id 7\): unknown category_id 5",
        ),
        (lambda d: d["annotations"][0].update(video_id=4), r"annotations\[0\].*unknown video_id 4"),
        (
            lambda d: d["annotations"][0]["segmentations"].append(None),
            r"annotations\[0\].*'segmentations' has 4 entries; the video has 3 frames",
        ),
        (
            lambda d: d["annotations"][0]["segmentations"].__setitem__(0, encode_mask(np.zeros((5, 5), bool))),
            r"annotations\[0\].*frame 0: a mask of size \[5, 5\]",
        ),
        (
            lambda d: d["annotations"][0]["segmentations"].__setitem__(0, {"size": [H, W], "counts": "@@@"}),
            r"annotations\[0\].*frame 0: the RLE does not decode",
        ),
        (lambda d: d["annotations"][1]["segmentations"].__setitem__(1, [[1.0, 2.0]]), r"annotations\[1\].*polygon"),
        (lambda d: d["videos"][0].update(length=4), r"videos\[0\] \(id 7\): length 4 differs"),
        (lambda d: d["videos"][1].update(file_names=["../x.jpg", "y.jpg"]), r"videos\[1\].*'\.\.'"),
        (
            lambda d: d["annotations"][2].update(id=11, video_id=7, segmentations=[None] * 3),
            r"track id 11 is used twice",
        ),
    ],
)
def test_bad_annotations_name_the_file_and_item(tmp_path: Path, change, message: str) -> None:
    path = _write(tmp_path, _broken(change))
    with pytest.raises(InputFileError, match=message) as caught:
        load_task_data(f"youtube_vis:{path}", "val", "segmentation")
    assert str(path) in str(caught.value)


def test_skip_bad_drops_and_counts_the_whole_video(tmp_path: Path) -> None:
    path = _write(tmp_path, _broken(lambda d: d["annotations"][1].update(category_id=5)))
    data = load_task_data(f"youtube_vis:{path}", "val", "segmentation", skip_bad=True)
    assert [i.video.video_id for i in data.items] == ["9"]
    assert data.extra["skipped"]["count"] == 1


def test_bad_categories_and_options(tmp_path: Path) -> None:
    path = _write(tmp_path, _broken(lambda d: d["categories"][0].update(partition="rare")))
    with pytest.raises(InputFileError, match="partition 'rare'"):
        load_task_data(f"youtube_vis:{path}", "val", "segmentation")
    path = _write(tmp_path, _document())
    with pytest.raises(InputFileError, match=r"novel categories \['cow'\]"):
        load_task_data(f"youtube_vis:{path}", "val", "segmentation", novel="cow")
    with pytest.raises(VideoadaptError, match="provides task"):
        load_task_data(f"youtube_vis:{path}", "val", "recognition")


# --- result files and the score command ---------------------------------------------------------------------


def _perfect(data) -> dict[str, list[VideoInstance]]:
    return {
        item.video.video_id: [
            VideoInstance(t.category, 0.9, dict(zip(t.frames, t.masks, strict=True)))
            for t in item.tracks
            if not t.iscrowd
        ]
        for item in data.items
    }


def test_results_written_read_back_and_scored(tmp_path: Path) -> None:
    gt = _write(tmp_path, _document())
    data = sf.read_vis_ground_truth(gt)
    predictions = _perfect(data)
    results = sf.vis_results(predictions, data.items, data.extra["category_ids"], data.extra["video_ids"])
    assert {(r["video_id"], r["category_id"]) for r in results} == {(7, 1), (7, 2)}
    assert results[0]["segmentations"][2] is None and len(results[0]["segmentations"]) == 3
    pred = tmp_path / "results.json"
    sf.write_vis_results(pred, results)
    ids = {v: k for k, v in data.extra["category_ids"].items()}
    back = sf.read_vis_results(pred, data.items, ids, data.extra["video_ids"])
    assert back == {k: v for k, v in predictions.items()}
    out = score_files("segmentation", pred, gt)
    assert out["metrics"]["ap"] == pytest.approx(100.0)
    assert out["metrics"]["ap_novel"] == pytest.approx(100.0) and out["counts"]["novel_categories"] == 1
    assert out["metrics"] == pytest.approx(vis_metrics(data.items, back, data.classes, ["dog"]), nan_ok=True)


@pytest.mark.parametrize("text", ["[]", "", "  \n"])
def test_an_empty_prediction_file_scores_zero(tmp_path: Path, text: str) -> None:
    gt = _write(tmp_path, _document())
    pred = tmp_path / "results.json"
    pred.write_text(text)
    out = score_files("segmentation", pred, gt)
    assert out["metrics"]["ap"] == 0.0 and out["metrics"]["ar10"] == 0.0 and out["counts"]["predictions"] == 0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"video_id": 8, "category_id": 1, "score": 0.5, "segmentations": [None] * 3}, "unknown video_id 8"),
        ({"video_id": 7, "category_id": 4, "score": 0.5, "segmentations": [None] * 3}, "unknown category_id 4"),
        ({"video_id": 7, "category_id": 1, "score": "high", "segmentations": [None] * 3}, "score 'high'"),
        (
            {"video_id": 7, "category_id": 1, "score": 0.5, "segmentations": [None] * 2},
            "2 segmentations for video 7 of 3",
        ),
        (
            {
                "video_id": 7,
                "category_id": 1,
                "score": 0.5,
                "segmentations": [encode_mask(np.ones((3, 3), bool)), None, None],
            },
            r"frame 0: a mask of size \[3, 3\]",
        ),
        (
            {
                "video_id": 7,
                "category_id": 1,
                "score": 0.5,
                "segmentations": [{"size": [H, W], "counts": "~~"}, None, None],
            },
            "frame 0: the RLE does not decode",
        ),
        ({"video_id": 7, "score": 0.5}, "needs video_id, category_id, score and segmentations"),
    ],
)
def test_bad_results_name_the_file_and_entry(tmp_path: Path, entry: dict, message: str) -> None:
    gt = _write(tmp_path, _document())
    pred = tmp_path / "results.json"
    good = {"video_id": 9, "category_id": 1, "score": 0.3, "segmentations": [None, None]}
    pred.write_text(json.dumps([good, entry]))
    with pytest.raises(InputFileError, match=f"entry 1: .*{message}") as caught:
        score_files("segmentation", pred, gt)
    assert "results.json" in str(caught.value)
    skipped = score_files("segmentation", pred, gt, skip_bad=True)
    assert skipped["skipped"] == 1 and skipped["counts"]["predictions"] == 1


def test_results_must_be_a_list(tmp_path: Path) -> None:
    gt = _write(tmp_path, _document())
    pred = tmp_path / "results.json"
    pred.write_text('{"video_id": 7}')
    with pytest.raises(InputFileError, match="expected a json list"):
        score_files("segmentation", pred, gt)
