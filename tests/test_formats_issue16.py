"""Issue 16: a csv starting with a byte order mark, one Kinetics-style csv holding every split, and the message for
a clip that was not found (what was looked for, not a guessed ``.mp4`` name)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from videoadapt.data.formats import load_task_data
from videoadapt.data.formats.common import Problems, VideoIndex, read_csv
from videoadapt.data.video import read_video
from videoadapt.errors import InputFileError, VideoDecodeError

HEADER = "label,youtube_id,time_start,time_end,split\n"
ROWS = [
    ("abseiling", "aaaaaaaaaaa", "train"),
    ("zumba", "bbbbbbbbbbb", "train"),
    ("zumba", "ccccccccccc", "test"),
    ("abseiling", "ddddddddddd", "validate"),
]


def _csv(path: Path, rows=ROWS, bom: bool = False) -> Path:
    text = HEADER + "".join(f"{label},{vid},0,10,{split}\n" for label, vid, split in rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def test_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path: Path) -> None:
    file = _csv(tmp_path / "train.csv", bom=True)
    rows = read_csv(file, ("label", "youtube_id"))
    assert rows[0][1]["label"] == "abseiling"
    data = load_task_data(f"kinetics:{file}", "train", "recognition", video_dir=str(tmp_path))
    assert data.classes == ["abseiling", "zumba"] and len(data.items) == 2


def test_one_csv_for_every_split_keeps_the_requested_split(tmp_path: Path) -> None:
    file = _csv(tmp_path / "all.csv")
    spec = f"kinetics:{file}"
    train = load_task_data(spec, "train", "recognition", video_dir=str(tmp_path))
    test = load_task_data(spec, "test", "recognition", video_dir=str(tmp_path))
    val = load_task_data(spec, "val", "recognition", video_dir=str(tmp_path))  # "validate" counts as val
    assert [i.video.video_id[:11] for i in train.items] == ["aaaaaaaaaaa", "bbbbbbbbbbb"]
    assert [i.video.video_id[:11] for i in test.items] == ["ccccccccccc"]
    assert [i.video.video_id[:11] for i in val.items] == ["ddddddddddd"]
    assert train.classes == test.classes == val.classes == ["abseiling", "zumba"]  # from the train rows
    assert test.items[0].label == 1


def test_a_split_with_no_rows_in_the_split_column_is_an_error_naming_the_file(tmp_path: Path) -> None:
    file = _csv(tmp_path / "all.csv", rows=ROWS[:2])
    with pytest.raises(InputFileError, match=r"all\.csv: no rows of split 'test'.*train 2"):
        load_task_data(f"kinetics:{file}", "test", "recognition", video_dir=str(tmp_path))


def test_csv_without_split_column_is_read_whole(tmp_path: Path) -> None:
    file = tmp_path / "mine.csv"
    file.write_text("label,youtube_id,time_start,time_end\nzumba,aaaaaaaaaaa,0,10\n", encoding="utf-8")
    data = load_task_data(f"kinetics:{file}", "test", "recognition", video_dir=str(tmp_path))
    assert len(data.items) == 1


def test_nextqa_csv_with_a_split_column(tmp_path: Path) -> None:
    file = tmp_path / "all.csv"
    head = "video,question,answer,qid,a0,a1,a2,a3,a4,split\n"
    file.write_text(head + "v1,why,0,1,a,b,c,d,e,train\nv2,how,1,2,a,b,c,d,e,test\n", encoding="utf-8")
    test = load_task_data(f"nextqa:{file}", "test", "qa", video_dir=str(tmp_path))
    assert [i.video.video_id for i in test.items] == ["v2"]
    with pytest.raises(InputFileError, match="no rows of split 'val'"):
        load_task_data(f"nextqa:{file}", "val", "qa", video_dir=str(tmp_path))


@pytest.mark.parametrize("ext", [".mkv", ".webm", ".avi", ".mov", ".MP4"])
def test_video_index_finds_every_container(tmp_path: Path, ext: str) -> None:
    clip = tmp_path / "sub" / f"abc{ext}"
    clip.parent.mkdir()
    clip.write_bytes(b"")
    index = VideoIndex(tmp_path)
    assert index.find("abc") == clip and index.path_for("abc", False, Problems(False), "x", "row 1") == clip


def test_missing_clip_error_says_what_was_looked_for(tmp_path: Path) -> None:
    index = VideoIndex(tmp_path / "clips")
    (tmp_path / "clips").mkdir()
    guess = index.path_for("abc", False, Problems(False), "x.csv", "row 2")
    assert guess == tmp_path / "clips" / "abc.mp4" and index.missing == 1  # the conventional path, as before
    for path in (guess, pickle.loads(pickle.dumps(guess))):
        with pytest.raises(VideoDecodeError) as caught:
            read_video(path)
        message = str(caught.value)
        assert "abc.mp4" not in message
        assert "no video file for id 'abc' under" in message
        assert "looked for abc.*" in message and "mp4, webm, mkv, avi, mov" in message
    with pytest.raises(VideoDecodeError, match="no such file"):  # a path that was not guessed: as before
        read_video(tmp_path / "given.mp4")


def test_a_row_without_a_split_value_belongs_to_no_split(tmp_path):
    """Among rows that name their split, one that names none is a bad row (or a counted skip), never a row of
    every split: it would otherwise be trained on and tested on at once."""
    from videoadapt.data.formats.common import Problems, rows_of_split
    from videoadapt.errors import InputFileError

    rows = [(2, {"split": "train"}), (3, {"split": "test"}), (4, {"split": ""})]
    with pytest.raises(InputFileError, match="row 4: no split value"):
        rows_of_split(tmp_path / "all.csv", rows, "test", Problems(False))
    skipping = Problems(True)
    assert rows_of_split(tmp_path / "all.csv", rows, "test", skipping) == [(3, {"split": "test"})]
    assert skipping.summary()["count"] == 1
