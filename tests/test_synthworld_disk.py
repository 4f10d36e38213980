"""SynthWorld on disk: the written layout round-trips to the in-memory stream; the `synth` CLI reports it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from videoadapt.cli import main
from videoadapt.data.synthworld import SPLITS, SynthWorld, SynthWorldConfig
from videoadapt.data.synthworld.disk import (
    TASK_COUNTS,
    annotation_path,
    load_split,
    read_annotations,
    summarise,
    write_synthworld,
)
from videoadapt.errors import InputFileError

CONFIG = SynthWorldConfig(seed=11, size=48, frames=10, fps=5.0)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthworld")
    write_synthworld(root, CONFIG, 20)
    return root


def test_layout_and_info(written):
    for split, n in SynthWorld(CONFIG).split_sizes(20).items():
        doc = read_annotations(written, split)
        assert doc["info"]["split"] == split and doc["info"]["config"] == CONFIG.to_dict()
        assert doc["info"]["videos"] == n == len(doc["videos"])
        assert "actions" in doc["vocabulary"] and "partners" in doc["vocabulary"]
        for ann in doc["videos"]:
            assert (written / ann["file"]).is_file()
            assert ann["file"] == f"videos/{split}/{ann['id']}.mp4"
        assert sorted(p.name for p in (written / "videos" / split).glob("*.mp4")) == sorted(
            Path(a["file"]).name for a in doc["videos"]
        )
    assert not list(written.rglob("*.partial"))


def test_disk_round_trip_equals_the_in_memory_stream(written):
    world = SynthWorld(CONFIG)
    for split, n in world.split_sizes(20).items():
        loaded = list(load_split(written, split))
        assert len(loaded) == n
        for from_disk, in_memory in zip(loaded, world.videos(split, n), strict=True):
            assert from_disk.frames.dtype == np.uint8
            assert np.array_equal(from_disk.frames, in_memory.frames), from_disk.id
            assert from_disk.to_annotation() == in_memory.to_annotation()


def test_parallel_writing_gives_identical_files(written, tmp_path):
    write_synthworld(tmp_path, CONFIG, 20, workers=2)
    for path in sorted(p for p in written.rglob("*") if p.is_file()):
        twin = tmp_path / path.relative_to(written)
        assert twin.read_bytes() == path.read_bytes(), path.relative_to(written)


def test_masks_are_coco_rle_with_fortran_order(written):
    ann = read_annotations(written, "train")["videos"][0]
    track = ann["tracks"][0]
    h, w = ann["height"], ann["width"]
    for rle, box in zip(track["masks"], track["boxes"], strict=True):
        assert rle["size"] == [h, w] and sum(rle["counts"]) == h * w
        if box is not None:
            # The first run of ones starts at the top-most pixel of the left-most column: x1 * h + (first row).
            x1 = int(box[0])
            assert rle["counts"][0] >= x1 * h and rle["counts"][0] < (x1 + 1) * h


def test_rewriting_with_fewer_videos_removes_stale_files(tmp_path):
    write_synthworld(tmp_path, CONFIG, 10)
    write_synthworld(tmp_path, CONFIG, 5)
    assert len(list((tmp_path / "videos" / "train").glob("*.mp4"))) == 5
    assert len(read_annotations(tmp_path, "train")["videos"]) == 5


def test_missing_split_is_an_input_error(tmp_path):
    with pytest.raises(InputFileError, match="annotation"):
        read_annotations(tmp_path, "train")


def test_cli_json_output_matches_the_files(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        ["synth", "--out", str(out), "--videos", "10", "--seed", "2", "--size", "48", "--frames", "8", "--json"]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["seed"] == 2 and summary["config"]["frames"] == 8
    files = {split: read_annotations(out, split)["videos"] for split in SPLITS}
    assert summary["splits"] == summarise(files)["splits"]
    assert summary["actions"] == summarise(files)["actions"]
    assert sum(c["videos"] for c in summary["splits"].values()) == 10
    for split in SPLITS:
        assert set(summary["splits"][split]) == set(TASK_COUNTS)
        assert summary["splits"][split]["videos"] == len(list((out / "videos" / split).glob("*.mp4")))
        assert annotation_path(out, split).is_file()


def test_cli_table_and_bad_arguments(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "t"), "--videos", "3", "--size", "32", "--frames", "8"]) == 0
    printed = capsys.readouterr().out
    assert "temporal grounding" in printed and "move_left" in printed
    assert main(["synth", "--out", str(tmp_path / "bad"), "--videos", "3", "--frames", "2"]) == 2
    assert "frames" in capsys.readouterr().err
