"""Dataset readers: every format reads its official layout into the right items and vocabularies, SynthWorld in
memory and on disk agree, and bad input fails naming the file and the item (or is skipped and counted)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from videoadapt.data.formats import format_names, load_task_data
from videoadapt.data.records import CaptionItem, ClassificationItem, FileSource, QAItem
from videoadapt.data.sampling import UniformSegments
from videoadapt.data.synthworld import ACTIONS, ANSWER_VOCAB, partner
from videoadapt.data.synthworld.disk import write_synthworld
from videoadapt.data.synthworld.world import SynthWorldConfig
from videoadapt.errors import InputFileError, VideoadaptError

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
ASL = Path(__file__).parent / "fixtures" / "asl"


def spec(name: str, folder: str | Path | None = None) -> str:
    return f"{name}:{folder if folder is not None else FIXTURES / name}"


# --- entry point ----------------------------------------------------------------------------------------------


def test_format_names_and_spec_errors() -> None:
    assert set(format_names()) >= {
        "kinetics",
        "ssv2",
        "msrvtt",
        "msrvtt_mc",
        "msrvtt_qa",
        "msvd_qa",
        "nextqa",
        "msvd",
        "synthworld",
    }
    with pytest.raises(VideoadaptError, match="unknown data format 'ucf'.*kinetics:PATH"):
        load_task_data("ucf:/x", "train", "recognition")
    with pytest.raises(VideoadaptError, match="needs a path"):
        load_task_data("kinetics", "train", "recognition")
    with pytest.raises(VideoadaptError, match="provides task.*recognition.*not 'captioning'"):
        load_task_data(spec("kinetics"), "train", "captioning")
    with pytest.raises(VideoadaptError, match="does not take option.*colour"):
        load_task_data(spec("kinetics"), "train", "recognition", colour=1)
    with pytest.raises(VideoadaptError, match="splits train, val, test, not 'dev'"):
        load_task_data(spec("nextqa"), "dev", "qa")


# --- benchmarks -----------------------------------------------------------------------------------------------


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_kinetics(tmp_path: Path) -> None:
    # Path resolution only: the CVDF layout (flat per split) and the downloader's (one folder per class).
    flat = _touch(tmp_path / "train" / "0347ZoDXyP0_000014_000024.mp4")
    per_class = _touch(tmp_path / "air drumming" / "--nQbRBEz2s_000104_000114.mkv")
    data = load_task_data(spec("kinetics"), "train", "recognition", video_dir=str(tmp_path))
    assert data.classes == ["abseiling", "air drumming", "zumba"]
    assert [i.label for i in data.items] == [0, 1, 0, 2]
    first = data.items[0]
    assert isinstance(first, ClassificationItem)
    assert (first.video.video_id, first.video.path, first.video.start_s, first.video.end_s) == (
        "0347ZoDXyP0_000014_000024",
        flat,
        14.0,
        24.0,
    )
    assert data.items[1].video.path == per_class
    assert data.extra["missing_videos"]["count"] == 2  # kept with their expected path
    assert data.items[2].video.path == tmp_path / "035LtPeUFTE_000007_000017.mp4"
    dropped = load_task_data(spec("kinetics"), "train", "recognition", video_dir=str(tmp_path), skip_missing="true")
    assert len(dropped) == 2
    # val uses the train csv's classes, so indices agree across splits
    val = load_task_data(spec("kinetics"), "val", "recognition", video_dir=str(tmp_path))
    assert val.classes == data.classes and val.items[0].label == 1


def test_ssv2_decodes_through_file_source() -> None:
    data = load_task_data(spec("ssv2"), "train", "recognition", video_dir=str(ASL))
    assert data.classes == [
        "Approaching something with your camera",
        "Putting something into something",
        "Pushing something from left to right",
    ]
    assert [(i.video.video_id, i.label) for i in data.items] == [("eat", 1), ("milk", 2)]
    assert data.items[0].video.path == ASL / "eat.mkv"  # any container is found by the clip's id
    assert isinstance(data.source, FileSource)
    frames = data.source.frames(data.items[0].video, UniformSegments(2))
    assert frames.shape == (2, 480, 640, 3) and frames.dtype == np.uint8
    val = load_task_data(spec("ssv2"), "val", "recognition", video_dir=str(ASL))
    assert [i.label for i in val.items] == [0]
    with pytest.raises(InputFileError, match=r"something-something-v2-test.json: item 0 \(id 'eat'\): no 'template'"):
        load_task_data(spec("ssv2"), "test", "recognition", video_dir=str(ASL))


def test_msrvtt_protocols() -> None:
    train = load_task_data(spec("msrvtt"), "train", "retrieval", video_dir=str(ASL))
    assert [i.video.video_id for i in train.items] == ["eat", "milk"]
    assert train.items[0].captions == ("a person signs eat", "someone brings a hand to the mouth")
    assert train.extra["protocol"] == "1k-A" and train.extra["missing_videos"]["count"] == 0
    test = load_task_data(spec("msrvtt"), "test", "retrieval", video_dir=str(ASL))
    assert [(i.video.video_id, i.captions) for i in test.items] == [("thanks", ("a hand moves away from the chin",))]
    assert test.origin.endswith("MSRVTT_JSFUSION_test.csv")
    # 1k-A has no validation split: its val would be the test set (what CLIP4Clip validated on).
    with pytest.raises(VideoadaptError, match="1k-A has no validation split.*holdout"):
        load_task_data(spec("msrvtt"), "val", "retrieval", video_dir=str(ASL))
    held = load_task_data(spec("msrvtt"), "holdout", "retrieval", video_dir=str(ASL), holdout_fraction=0.5)
    assert len(held.items) == 1 and held.items[0].video.video_id in ("eat", "milk")
    # captioning: the json's own splits, every caption
    for split, video in (("train", "eat"), ("val", "milk"), ("test", "thanks")):
        cap = load_task_data(spec("msrvtt"), split, "captioning", video_dir=str(ASL))
        assert [i.video.video_id for i in cap.items] == [video] and len(cap.items[0].captions) == 2
        assert isinstance(cap.items[0], CaptionItem) and cap.extra["protocol"] == "official"


def test_msrvtt_mc() -> None:
    data = load_task_data(spec("msrvtt_mc"), "test", "qa")
    assert len(data) == 2 and data.answers is None
    first, second = data.items
    assert isinstance(first, QAItem) and first.multiple_choice
    assert (first.question_id, first.video.video_id, first.question) == ("mc0", "video7020", "")
    assert first.answer_index == 0 and first.answer == "a family is having conversation"
    assert second.answer_index == 4 and second.answer == second.candidates[4] == "a band plays on stage"
    assert len(first.candidates) == 5
    assert first.video.path.name == "video7020.mp4" and data.extra["missing_videos"]["count"] == 2
    with pytest.raises(VideoadaptError, match="splits test"):
        load_task_data(spec("msrvtt_mc"), "train", "qa")


def test_msrvtt_qa_vocabulary_and_out_of_vocabulary() -> None:
    train = load_task_data(spec("msrvtt_qa"), "train", "qa", answers=2)
    assert train.answers == ["man", "car"]  # most frequent first, ties alphabetical
    assert [(i.question_id, i.video.video_id, i.answer) for i in train.items] == [
        ("0", "video0", "man"),
        ("1", "video0", "man"),
        ("2", "video1", "car"),
    ]
    assert train.extra["out_of_vocabulary"] == {"count": 2, "dropped": True}
    test = load_task_data(spec("msrvtt_qa"), "test", "qa", answers="2")
    assert test.answers == ["man", "car"]  # from the train file, whatever split is read
    assert [i.answer for i in test.items] == ["car", "piano"]  # piano kept: it counts as wrong
    assert test.extra["out_of_vocabulary"] == {"count": 1, "dropped": False}
    assert not test.items[0].multiple_choice and test.items[0].video.video_id == "video7010"


def test_msvd_qa_maps_youtube_names() -> None:
    data = load_task_data(spec("msvd_qa"), "train", "qa", video_dir=str(ASL))
    assert data.answers == ["sign", "woman"]
    assert [(i.video.video_id, i.video.path) for i in data.items] == [
        ("eat", ASL / "eat.mkv"),
        ("milk", ASL / "milk.mkv"),
        ("thanks", ASL / "thanks.mkv"),
    ]
    assert load_task_data(spec("msvd_qa"), "test", "qa", video_dir=str(ASL)).items[0].question_id == "30"


def test_nextqa() -> None:
    data = load_task_data(spec("nextqa"), "train", "qa", video_dir=str(ASL))
    assert [i.question_id for i in data.items] == ["4010069381_6", "4010069381_7", "2435100235_3"]
    first = data.items[0]
    assert first.candidates[0] == "roll the handle" and first.answer_index == 0 and first.answer == "roll the handle"
    assert data.items[2].answer == "to sign a word"
    assert first.video.video_id == "4010069381" and first.video.path == ASL / "eat.mkv"  # via the map
    assert data.extra["question_types"] == ["CH", "TN", "CW"]
    assert [v.video_id for v in data.videos()] == ["4010069381", "2435100235"]


def test_msvd_captions(tmp_path: Path) -> None:
    data = load_task_data(spec("msvd"), "train", "captioning", video_dir=str(ASL))
    assert [(i.video.video_id, len(i.captions)) for i in data.items] == [("eat", 2), ("milk", 1)]
    assert data.items[0].captions[0] == "a woman signs eat"
    test = load_task_data(spec("msvd"), "test", "retrieval", video_dir=str(ASL))
    assert test.items[0].captions == ("a woman signs thanks", "a person says thank you in sign language")
    # CLIP4Clip's pickle is refused with a hint; the json form is read.
    folder = tmp_path / "msvd"
    folder.mkdir()
    (folder / "raw-captions.pkl").write_bytes(b"not loaded")
    (folder / "train_list.txt").write_text("eat\n")
    with pytest.raises(InputFileError, match="pickle.*captions.json"):
        load_task_data(spec("msvd", folder), "train", "captioning")
    (folder / "captions.json").write_text(json.dumps({"eat": ["a woman signs eat"]}))
    assert load_task_data(spec("msvd", folder), "train", "captioning").items[0].captions == ("a woman signs eat",)


# --- SynthWorld -----------------------------------------------------------------------------------------------

SYNTH = {"seed": 3, "videos": 10, "size": 32, "frames": 8}


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthworld")
    write_synthworld(root, SynthWorldConfig(seed=3, size=32, frames=8), 10)
    return root


@pytest.mark.parametrize(
    ("task", "options"),
    [("recognition", {}), ("retrieval", {}), ("captioning", {}), ("qa", {}), ("qa", {"qa": "open_ended"})],
)
def test_synth_memory_and_disk_agree(synth_dir: Path, task: str, options: dict) -> None:
    memory = load_task_data("synth", "train", task, **SYNTH, **options)
    disk = load_task_data(f"synth:{synth_dir}", "train", task, **options)
    strip = [_without_path(i) for i in disk.items]
    assert [_without_path(i) for i in memory.items] == strip
    assert memory.classes == disk.classes and memory.answers == disk.answers
    assert memory.extra["novel"] == disk.extra["novel"] and len(memory.extra["novel"]) == len(memory)
    assert all(i.video.path is None for i in memory.items)
    assert disk.items[0].video.path == synth_dir / "videos" / "train" / "train_000000.mp4"
    if task == "recognition":
        assert memory.classes == list(ACTIONS)
        assert memory.extra["reversal_pairs"] == disk.extra["reversal_pairs"]
        for i, j in memory.extra["reversal_pairs"]:
            assert partner(ACTIONS[i]) == ACTIONS[j]
        assert memory.extra["reversal_partner"][ACTIONS.index("bounce")] == ACTIONS.index("bounce")
    if task == "qa" and options:
        assert memory.answers == list(ANSWER_VOCAB) and memory.items[0].question_id.endswith("/oe0")
    if task == "qa" and not options:
        assert memory.items[0].question_id == "train_000000/mc0" and len(memory.items[0].candidates) == 5


def test_synth_split_fractions_add_training_videos_and_keep_the_others() -> None:
    """More training videos through split_fractions leave validation and test exactly as they were; the option
    also comes as a string list from the command line (--data-option split_fractions=[2,1,1])."""
    base = {**SYNTH, "videos": 12}  # 10 / 1 / 1
    more = {**SYNTH, "videos": 16, "split_fractions": "[14, 1, 1]"}  # 14 / 1 / 1
    for split in ("val", "test"):
        assert (
            load_task_data("synth", split, "retrieval", **more).items
            == load_task_data("synth", split, "retrieval", **base).items
        )
    train = load_task_data("synth", "train", "retrieval", **more)
    assert len(train) == 14 and train.items[:10] == load_task_data("synth", "train", "retrieval", **base).items
    assert "split_fractions=14/1/1" in train.origin
    with pytest.raises(VideoadaptError, match="split_fractions must be 3 non-negative numbers"):
        load_task_data("synth", "train", "retrieval", **{**SYNTH, "split_fractions": [1, 1]})
    with pytest.raises(VideoadaptError, match="is not a JSON list"):
        load_task_data("synth", "train", "retrieval", **{**SYNTH, "split_fractions": "[1, 1"})


def _without_path(item: object) -> object:
    from dataclasses import replace

    return replace(item, video=replace(item.video, path=None))


def test_synth_frames_agree(synth_dir: Path) -> None:
    memory = load_task_data("synth", "val", "recognition", **SYNTH)
    disk = load_task_data(f"synth:{synth_dir}", "val", "recognition")
    sampler = UniformSegments(4)
    for a, b in zip(memory.items, disk.items, strict=True):
        assert np.array_equal(memory.source.frames(a.video, sampler), disk.source.frames(b.video, sampler))
    assert memory.source.frames(memory.items[0].video).shape == (8, 32, 32, 3)


def test_synth_errors(tmp_path: Path) -> None:
    with pytest.raises(VideoadaptError, match="split 'test' is empty"):
        load_task_data("synth", "test", "recognition", videos=5)
    with pytest.raises(VideoadaptError, match="qa must be one of"):
        load_task_data("synth", "train", "qa", videos=5, qa="yes_no")
    with pytest.raises(InputFileError, match="no such SynthWorld folder"):
        load_task_data(f"synth:{tmp_path / 'none'}", "train", "recognition")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.json").write_text('{"videos": [{"id": "train_000000", "file": "x.mp4"}]}')
    with pytest.raises(InputFileError, match=r"train.json: video 0 \('train_000000'\): malformed"):
        load_task_data(f"synth:{tmp_path}", "train", "recognition")


# --- bad input --------------------------------------------------------------------------------------------------


def _copy(name: str, tmp_path: Path) -> Path:
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    return folder


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def _label_outside(folder: Path) -> None:
    # A val label the train csv never has.
    _append(folder / "val.csv", "juggling fire,abcdefghijk,1,11,val,0\n")


def _time_not_number(folder: Path) -> None:
    _append(folder / "val.csv", "zumba,abcdefghijk,one,11,val,0\n")


def _nextqa_bad_answer(folder: Path) -> None:
    _append(folder / "val.csv", "7771651040,120,640,480,what,x,2,DO,a,b,c,d,e\n")


def _msrvtt_no_captions(folder: Path) -> None:
    data = json.loads((folder / "MSRVTT_data.json").read_text())
    data["videos"].append({"video_id": "video9", "split": "test", "url": "", "id": 9})
    (folder / "MSRVTT_data.json").write_text(json.dumps(data))


def _mc_missing_candidate(folder: Path) -> None:
    _append(folder / "MSR_MC_test.csv", "mc2\tmsr7022\tonly one\n")


@pytest.mark.parametrize(
    ("name", "split", "task", "breaker", "file", "where", "kept"),
    [
        ("kinetics", "val", "recognition", _label_outside, "val.csv", "row 3: label 'juggling fire'", 1),
        ("kinetics", "val", "recognition", _time_not_number, "val.csv", "row 3: time_start", 1),
        ("nextqa", "val", "qa", _nextqa_bad_answer, "val.csv", "row 3: answer 'x'", 1),
        ("msrvtt", "test", "captioning", _msrvtt_no_captions, "MSRVTT_data.json", "video 'video9'", 1),
        ("msrvtt_mc", "test", "qa", _mc_missing_candidate, "MSR_MC_test.csv", "row 4: missing", 2),
    ],
)
def test_bad_items_name_file_and_item_or_are_skipped(
    tmp_path: Path, name: str, split: str, task: str, breaker: object, file: str, where: str, kept: int
) -> None:
    folder = _copy(name, tmp_path)
    breaker(folder)
    with pytest.raises(InputFileError) as error:
        load_task_data(spec(name, folder), split, task)
    assert error.value.path.endswith(file) and where in str(error.value)
    data = load_task_data(spec(name, folder), split, task, skip_bad=True)
    assert len(data) == kept
    assert data.extra["skipped"]["count"] == 1 and where in data.extra["skipped"]["reasons"][0]


def test_unreadable_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file or folder"):
        load_task_data(spec("kinetics", tmp_path / "absent"), "train", "recognition")
    with pytest.raises(InputFileError, match=r"no NExT-QA train csv in this folder \(looked for train.csv\)"):
        load_task_data(spec("nextqa", tmp_path), "train", "qa")
    folder = _copy("ssv2", tmp_path)
    (folder / "something-something-v2-train.json").write_text("[{")
    with pytest.raises(InputFileError, match="something-something-v2-train.json: not valid JSON"):
        load_task_data(spec("ssv2", folder), "train", "recognition")
    (folder / "something-something-v2-labels.json").unlink()
    with pytest.raises(InputFileError, match="something-something-v2-labels.json: no such annotation file"):
        load_task_data(spec("ssv2", folder), "val", "recognition")
    # An empty split (header only), and one emptied by skipping, name the file.
    kinetics = _copy("kinetics", tmp_path)
    (kinetics / "val.csv").write_text("label,youtube_id,time_start,time_end,split\n")
    with pytest.raises(InputFileError, match=r"val.csv: split 'val' of task recognition has no items"):
        load_task_data(spec("kinetics", kinetics), "val", "recognition")
    (kinetics / "val.csv").write_text("label,youtube_id,time_start,time_end,split\nswimming,x,1,2,val\n")
    with pytest.raises(InputFileError, match=r"has no items \(1 bad item\(s\) skipped\)"):
        load_task_data(spec("kinetics", kinetics), "val", "recognition", skip_bad=True)
    with pytest.raises(InputFileError, match="csv header lacks column.*youtube_id"):
        (kinetics / "val.csv").write_text("label,id\nswimming,x\n")
        load_task_data(spec("kinetics", kinetics), "val", "recognition")
