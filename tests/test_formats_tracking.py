"""TAO json and MOTChallenge readers on tiny hand-written files: items, conventions and bad input."""

from __future__ import annotations

import copy
import json

import pytest

from videoadapt.data.formats import load_task_data
from videoadapt.data.records import TrackingItem
from videoadapt.errors import InputFileError, VideoadaptError

TAO = {
    "videos": [
        {"id": 1, "name": "val/YFCC/v_a", "width": 64, "height": 48},
        {"id": 2, "name": "val/YFCC/v_b", "width": 64, "height": 48, "fps": 10, "num_frames": 40},
    ],
    "images": [
        {"id": 11, "video_id": 1, "frame_index": 0},
        {"id": 12, "video_id": 1, "frame_index": 30},
        {"id": 21, "video_id": 2, "frame_index": 5},
    ],
    "annotations": [
        {"id": 1, "image_id": 11, "video_id": 1, "track_id": 7, "category_id": 3, "bbox": [1, 2, 10, 20]},
        {"id": 2, "image_id": 12, "video_id": 1, "track_id": 7, "category_id": 3, "bbox": [3, 2, 10, 20]},
        {"id": 3, "image_id": 11, "video_id": 1, "track_id": 8, "category_id": 5, "bbox": [30, 5, 8, 8]},
        {"id": 4, "image_id": 21, "video_id": 2, "track_id": 9, "category_id": 5, "bbox": [0, 0, 4, 4]},
    ],
    "tracks": [{"id": 7, "category_id": 3, "video_id": 1}],
    "categories": [
        {"id": 5, "name": "bus", "frequency": "c"},
        {"id": 3, "name": "aardvark", "frequency": "r"},
        {"id": 9, "name": "cat", "frequency": "f"},
    ],
}


def write_tao(tmp_path, document):
    (tmp_path / "validation.json").write_text(json.dumps(document))
    return f"tao:{tmp_path}"


def test_tao_reads_videos_tracks_and_the_rare_split(tmp_path):
    data = load_task_data(write_tao(tmp_path, TAO), "val", "tracking")
    assert data.task == "tracking" and len(data) == 2
    assert data.classes == ["aardvark", "bus", "cat"]  # category-id order
    assert data.extra["novel_categories"] == ["aardvark"]  # LVIS rare
    assert data.extra["category_ids"] == {"bus": 5, "aardvark": 3, "cat": 9}
    first, second = data.items
    assert isinstance(first, TrackingItem)
    assert first.video.video_id == "val/YFCC/v_a"
    assert first.num_frames == 31 and first.fps == 30.0 and (first.width, first.height) == (64, 48)
    assert first.annotated_frames == (0, 30)
    seven, eight = first.tracks
    assert (seven.track_id, seven.category, seven.frames) == (7, "aardvark", (0, 30))
    assert seven.boxes == ((1.0, 2.0, 11.0, 22.0), (3.0, 2.0, 13.0, 22.0))  # xywh -> xyxy, no +1
    assert (eight.category, eight.frames) == ("bus", (0,))
    assert second.num_frames == 40 and second.fps == 10.0 and second.annotated_frames == (5,)
    # A named novel split instead of the rare one.
    named = load_task_data(f"tao:{tmp_path}", "val", "tracking", novel="bus,cat")
    assert named.extra["novel_categories"] == ["bus", "cat"]
    with pytest.raises(VideoadaptError, match="'dog' are not categories"):
        load_task_data(f"tao:{tmp_path}", "val", "tracking", novel="dog")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["annotations"][3].update(track_id=7, category_id=3), "track_id 7 is already used in video 1"),
        (lambda d: d["annotations"][3].update(image_id=99), "image_id 99 is not an image"),
        (lambda d: d["annotations"][3].update(video_id=1), "is a frame of video 2, not of video_id 1"),
        (lambda d: d["annotations"][3].update(category_id=42), "unknown category_id 42"),
        (lambda d: d["annotations"][1].update(image_id=11), "track 7 has a second box on frame 0"),
        (lambda d: d["annotations"][1].update(category_id=5), "differs from its track's 3"),
        (lambda d: d["annotations"][3].update(bbox=[0, 0, 0, 4]), "no positive size"),
    ],
)
def test_tao_bad_annotations_are_named_or_skipped(tmp_path, change, message):
    document = copy.deepcopy(TAO)
    change(document)
    spec = write_tao(tmp_path, document)
    with pytest.raises(InputFileError, match=message) as error:
        load_task_data(spec, "val", "tracking")
    assert "validation.json" in str(error.value) and "annotations[" in str(error.value)
    data = load_task_data(spec, "val", "tracking", skip_bad=True)
    assert data.extra["skipped"]["count"] == 1


def test_tao_video_without_frames_and_unreadable_file(tmp_path):
    document = copy.deepcopy(TAO)
    document["videos"].append({"id": 3, "name": "val/YFCC/v_c", "width": 64, "height": 48})
    spec = write_tao(tmp_path, document)
    with pytest.raises(InputFileError, match=r"videos\[2\] \('val/YFCC/v_c'\): no image"):
        load_task_data(spec, "val", "tracking")
    assert len(load_task_data(spec, "val", "tracking", skip_bad=True)) == 2
    (tmp_path / "validation.json").write_text("{]")
    with pytest.raises(InputFileError, match="not valid JSON"):
        load_task_data(spec, "val", "tracking")
    with pytest.raises(VideoadaptError, match="provides task"):
        load_task_data(spec, "val", "recognition")


SEQINFO = "[Sequence]\nname=MOT17-02\nimDir=img1\nframeRate=30\nseqLength=5\nimWidth=100\nimHeight=80\nimExt=.jpg\n"
GT = """1,1,10,20,5,10,1,1,1.0
2,1,12,20,5,10,1,1,0.9
1,2,-3,0,6,8,1,1,0.5
3,2,0,0,6,8,0,1,0.5
2,3,50,50,10,10,1,3,1.0
"""


def write_mot(tmp_path, gt=GT, seqinfo=SEQINFO):
    sequence = tmp_path / "train" / "MOT17-02"
    (sequence / "gt").mkdir(parents=True, exist_ok=True)
    (sequence / "seqinfo.ini").write_text(seqinfo)
    (sequence / "gt" / "gt.txt").write_text(gt)
    return f"mot:{tmp_path}"


def test_mot_reads_sequences_with_its_conventions(tmp_path):
    data = load_task_data(write_mot(tmp_path), "train", "tracking")
    assert data.classes == ["pedestrian"] and data.extra["novel_categories"] == []
    (seq,) = data.items
    assert seq.video.video_id == "MOT17-02" and seq.num_frames == 5 and seq.fps == 30.0
    assert (seq.width, seq.height) == (100, 80) and seq.annotated_frames is None
    one, two = seq.tracks  # the car (class 3) is not a pedestrian; the conf-0 row is not considered
    assert one.frames == (0, 1) and one.boxes[0] == (10.0, 20.0, 15.0, 30.0)  # 1-based frames, xywh -> xyxy
    assert two.frames == (0,) and two.boxes[0] == (-3.0, 0.0, 3.0, 8.0)  # may stick out of the image
    both = load_task_data(f"mot:{tmp_path}", "train", "tracking", classes="pedestrian,car", novel="car")
    assert both.classes == ["pedestrian", "car"] and both.extra["novel_categories"] == ["car"]
    assert [t.category for t in both.items[0].tracks] == ["pedestrian", "pedestrian", "car"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("9,1,10,20,5,10,1,1,1.0", "frame 9 is not a frame of the sequence's 5"),
        ("0,4,10,20,5,10,1,1,1.0", "frame 0 is not a frame"),
        ("2,5,10,20,5,10,1,77,1.0", "unknown class id '77'"),
        ("1,1,10,20,5,10,1,1,1.0", "track 1 has a second box on frame 0"),
        ("2,2,x,20,5,10,1,1,1.0", "not all numbers"),
        ("2,2,1", "3 fields"),
        ("4,2,1,1,0,10,1,1,1.0", "no positive size"),
    ],
)
def test_mot_bad_rows_are_named_or_skipped(tmp_path, row, message):
    spec = write_mot(tmp_path, GT + row + "\n")
    with pytest.raises(InputFileError, match=message) as error:
        load_task_data(spec, "train", "tracking")
    assert "gt.txt" in str(error.value) and "line 6" in str(error.value)
    assert load_task_data(spec, "train", "tracking", skip_bad=True).extra["skipped"]["count"] == 1


def test_mot_bad_seqinfo_and_options(tmp_path):
    spec = write_mot(tmp_path, seqinfo="[Sequence]\nname=x\nseqLength=five\n")
    with pytest.raises(InputFileError, match="seqinfo.ini"):
        load_task_data(spec, "train", "tracking")
    spec = write_mot(tmp_path)
    with pytest.raises(VideoadaptError, match="unknown class"):
        load_task_data(spec, "train", "tracking", classes="unicorn")
