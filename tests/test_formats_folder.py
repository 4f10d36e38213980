"""``folder:DIR``: one's own videos with a small table per task (issue 16, item 1). The clips are the real ASL
fixtures (CC-BY-4.0, tests/fixtures/asl/NOTICE.md) linked under other names, or empty files where only the reader
runs (it never decodes)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from videoadapt.cli import main
from videoadapt.data.encode import write_video
from videoadapt.data.formats import load_task_data
from videoadapt.data.formats.folder import make_split
from videoadapt.data.sampling import sampler_from_spec
from videoadapt.errors import EmptySplitError, InputFileError, UnsafePathError, VideoadaptError

WORDS = ("eat", "milk", "thanks")


def _asl_folder(root: Path, asl_clips: list[Path], per_word: int = 3, split: dict[str, str] | None = None) -> Path:
    """``per_word`` links to each ASL clip (``eat_1.mkv``, …) and a ``labels.csv`` naming them without extension."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["video,label" + (",split" if split else "")]
    for clip, word in zip(asl_clips, WORDS, strict=True):
        for i in range(1, per_word + 1):
            name = f"{word}_{i}"
            (root / f"{name}.mkv").symlink_to(clip)
            lines.append(f"{name},{word}" + (f",{split[name]}" if split else ""))
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _empty_videos(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def _labels(root: Path, rows: list[str], header: str = "video,label") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return root


def _split_ids(spec: str, task: str = "recognition", **options) -> dict[str, list[str]]:
    return {
        s: [i.video.video_id for i in load_task_data(spec, s, task, **options).items] for s in ("train", "val", "test")
    }


# --- recognition --------------------------------------------------------------------------------------------------


def test_labels_with_a_split_column_decode_real_clips(tmp_path, asl_clips):
    split = {f"{w}_{i}": s for w in WORDS for i, s in zip((1, 2, 3), ("train", "val", "test"), strict=True)}
    root = _asl_folder(tmp_path / "mine", asl_clips, split=split)
    train = load_task_data(f"folder:{root}", "train", "recognition")
    assert [i.video.video_id for i in train.items] == ["eat_1.mkv", "milk_1.mkv", "thanks_1.mkv"]
    assert train.classes == ["eat", "milk", "thanks"] and [i.label for i in train.items] == [0, 1, 2]
    assert train.extra["split_source"] == "the split column of labels.csv"
    assert not (root / "splits.csv").exists()  # the table decides: nothing written
    test = load_task_data(f"folder:{root}", "test", "recognition")
    frames = test.source.frames(test.items[0].video, sampler_from_spec("uniform:4"))
    assert frames.shape == (4, 480, 640, 3) and frames.dtype == np.uint8
    # folder:DIR/labels.csv names the same folder
    assert len(load_task_data(f"folder:{root / 'labels.csv'}", "val", "recognition")) == 3


def test_auto_split_is_written_to_splits_csv_and_read_back(tmp_path, asl_clips):
    root = _asl_folder(tmp_path / "mine", asl_clips)
    first = _split_ids(f"folder:{root}")
    written = (root / "splits.csv").read_text(encoding="utf-8")
    assert written.splitlines()[0] == "video,split" and len(written.splitlines()) == 10
    # stratified: each class of 3 videos has one in every split
    for split, ids in first.items():
        assert sorted(i.split("_")[0] for i in ids) == list(WORDS), split
    # Read back, not recomputed: editing the file moves a video, and the table's order does not matter.
    (root / "splits.csv").write_text(written.replace("eat_1.mkv,test", "eat_1.mkv,train"), encoding="utf-8")
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "labels.csv").write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n", encoding="utf-8")
    again = _split_ids(f"folder:{root}")
    assert "eat_1.mkv" in again["train"] and load_task_data(f"folder:{root}", "train", "recognition").extra[
        "split_source"
    ] == str(root / "splits.csv")


def test_auto_split_is_deterministic_and_stable_when_recomputed(tmp_path):
    names = [f"v{i:02d}.mp4" for i in range(20)]
    a = _labels(tmp_path / "a", [f"{n},{'x' if i % 2 else 'y'}" for i, n in enumerate(names)])
    b = _labels(tmp_path / "b", [f"{n},{'x' if i % 2 else 'y'}" for i, n in reversed(list(enumerate(names)))])
    _empty_videos(a, names)
    _empty_videos(b, names)
    assert (a / "labels.csv").read_text() != (b / "labels.csv").read_text()
    split_a, split_b = _split_ids(f"folder:{a}"), _split_ids(f"folder:{b}")
    assert {k: sorted(v) for k, v in split_a.items()} == {k: sorted(v) for k, v in split_b.items()}
    assert (a / "splits.csv").read_text() == (b / "splits.csv").read_text()


def test_stratified_split_fractions_and_small_classes():
    groups = {"big": [f"b{i}" for i in range(20)], "three": ["t1", "t2", "t3"], "two": ["w1", "w2"], "one": ["o"]}
    split = make_split(groups, (0.7, 0.15, 0.15))
    per = {g: Counter(split[v] for v in vs) for g, vs in groups.items()}
    assert per["big"] == Counter(train=14, val=3, test=3)
    assert per["three"] == Counter(train=1, val=1, test=1)  # at least one val and one test video
    assert per["two"]["train"] >= 1 and per["one"] == Counter(train=1)  # never a class without training videos
    assert make_split(groups, (0.7, 0.15, 0.15)) == split


def test_split_fractions_option(tmp_path):
    names = [f"v{i}.mp4" for i in range(10)]
    root = _labels(tmp_path / "d", [f"{n},a" for n in names])
    _empty_videos(root, names)
    ids = _split_ids(f"folder:{root}", split_fractions="[8,1,1]")
    assert [len(ids[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    with pytest.raises(VideoadaptError, match="split_fractions"):
        load_task_data(f"folder:{root}", "train", "recognition", split_fractions=[1, 1])
    with pytest.warns(UserWarning, match=r"split_fractions is not used: .*splits\.csv holds the split made before"):
        load_task_data(f"folder:{root}", "train", "recognition", split_fractions=[1, 1, 1])


def test_video_missing_from_splits_csv_says_to_delete_or_add(tmp_path):
    names = ["a.mp4", "b.mp4", "c.mp4"]
    root = _labels(tmp_path / "d", [f"{n},x" for n in names])
    _empty_videos(root, [*names, "new.mp4"])
    load_task_data(f"folder:{root}", "train", "recognition")
    (root / "labels.csv").write_text("video,label\na.mp4,x\nb.mp4,x\nc.mp4,x\nnew.mp4,x\n")
    with pytest.raises(
        InputFileError, match=r"splits\.csv: 1 video\(s\) of labels\.csv are not in it: new\.mp4.*delete"
    ):
        load_task_data(f"folder:{root}", "train", "recognition")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_splits_in_memory_with_a_warning(tmp_path):
    names = [f"v{i}.mp4" for i in range(6)]
    root = _labels(tmp_path / "d", [f"{n},a" for n in names])
    _empty_videos(root, names)
    root.chmod(0o555)
    try:
        with pytest.warns(UserWarning, match="not writable.*in memory"):
            data = load_task_data(f"folder:{root}", "train", "recognition")
    finally:
        root.chmod(0o755)
    assert not (root / "splits.csv").exists() and "in memory" in data.extra["split_source"]


def test_read_only_folder_through_a_failed_write(tmp_path, monkeypatch):
    """The same path when running as root (chmod does not stop root): the write fails, the split is in memory."""
    from videoadapt.data.formats import folder

    names = [f"v{i}.mp4" for i in range(6)]
    root = _labels(tmp_path / "d", [f"{n},a" for n in names])
    _empty_videos(root, names)
    monkeypatch.setattr(folder, "_write_splits", lambda file, split_of: "[Errno 30] Read-only file system")
    with pytest.warns(UserWarning, match="not writable"):
        memory = _split_ids(f"folder:{root}")
    monkeypatch.undo()
    assert memory == _split_ids(f"folder:{root}")  # deterministic: the same split once it is written


def test_names_with_and_without_extension_and_subfolders(tmp_path):
    root = _labels(tmp_path / "d", ["clips/a.webm,x", "clips/b,x", "c,y", "d.avi,y", "e.MOV,y", "f,x"])
    _empty_videos(root, ["clips/a.webm", "clips/b.mkv", "c.mp4", "d.avi", "e.MOV", "f.ogv"])
    data = load_task_data(f"folder:{root}", "train", "recognition", split_fractions=[1, 0, 0])
    assert sorted(i.video.video_id for i in data.items) == [
        "c.mp4",
        "clips/a.webm",
        "clips/b.mkv",
        "d.avi",
        "e.MOV",
        "f.ogv",
    ]
    assert all(Path(i.video.path).is_file() for i in data.items)


@pytest.mark.parametrize("ext", [".mp4", ".mov", ".avi"])
def test_other_containers_decode(tmp_path, ext):
    """Tiny synthetic clips in other containers than the fixtures' Matroska, found by stem and decoded."""
    root = tmp_path / "d"
    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 48, 3), dtype=np.uint8)
    for k in range(3):
        write_video(root / f"clip{k}{ext}", frames, fps=10)
    _labels(root, [f"clip{k},eat" for k in range(3)])
    data = load_task_data(f"folder:{root}", "test", "recognition")
    assert data.items[0].video.video_id.endswith(ext)
    assert data.source.frames(data.items[0].video, sampler_from_spec("uniform:2")).shape == (2, 32, 48, 3)


# --- bad input ----------------------------------------------------------------------------------------------------


def test_missing_folder_and_missing_table(tmp_path):
    with pytest.raises(InputFileError, match="absent: no such folder"):
        load_task_data(f"folder:{tmp_path / 'absent'}", "train", "recognition")
    (tmp_path / "d").mkdir()
    with pytest.raises(InputFileError, match=r"no recognition table in this folder \(looked for labels\.csv"):
        load_task_data(f"folder:{tmp_path / 'd'}", "train", "recognition")
    with pytest.raises(InputFileError, match=r"looked for captions\.csv or captions\.jsonl"):
        load_task_data(f"folder:{tmp_path / 'd'}", "train", "retrieval")
    with pytest.raises(InputFileError, match=r"looked for questions\.jsonl"):
        load_task_data(f"folder:{tmp_path / 'd'}", "train", "qa")
    with pytest.raises(VideoadaptError, match="provides task"):
        load_task_data(f"folder:{tmp_path / 'd'}", "train", "temporal_grounding")


def test_every_missing_video_is_listed_at_once_or_skipped(tmp_path):
    present = [f"p{i}.mp4" for i in range(6)]
    absent = [f"gone{i}" for i in range(13)]
    root = _labels(tmp_path / "d", [f"{n},x" for n in [*present, *absent]])
    _empty_videos(root, [*present, "sub/gone0.mp4"])
    with pytest.raises(InputFileError) as error:
        load_task_data(f"folder:{root}", "train", "recognition")
    message = str(error.value)
    assert "labels.csv: 13 video(s) named in the table are not in" in message
    assert "gone0 (line 8) (did you mean sub/gone0.mp4?" in message and "gone9 (line 17)" in message
    assert "and 3 more" in message and "gone12" not in message
    counted = {s: load_task_data(f"folder:{root}", s, "recognition", skip_bad=True) for s in ("train", "val", "test")}
    assert sum(d.extra["skipped"]["count"] for d in counted.values()) == 13
    assert sum(len(d) for d in counted.values()) == 6  # the missing videos keep their place in splits.csv
    assert "is not in" in counted["train"].extra["skipped"]["reasons"][0]
    dropped = load_task_data(f"folder:{root}", "train", "recognition", skip_missing=True)
    assert dropped.extra["missing_videos"]["count"] == counted["train"].extra["skipped"]["count"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["a,x", "b,y", "a,x"], r"labels\.csv: line 4: video 'a\.mp4' is listed twice \(lines 2, 4\)"),
        (["a,x", "b,y", "a.mp4,y"], r"lines 2, 4: video 'a\.mp4' has different labels: 'x' \(line 2\), 'y' \(line 4\)"),
        (["a,x", "b,", "c,y"], r"labels\.csv: line 3: blank label"),
        (["a,x", "/etc/passwd,y"], r"line 3: video path '/etc/passwd' is absolute"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, rows, message):
    root = _labels(tmp_path / "d", rows)
    _empty_videos(root, ["a.mp4", "b.mp4", "c.mp4"])
    with pytest.raises(InputFileError, match=message):
        load_task_data(f"folder:{root}", "train", "recognition")
    data = load_task_data(f"folder:{root}", "train", "recognition", skip_bad=True, split_fractions=[1, 0, 0])
    assert data.extra["skipped"]["count"] >= 1


def test_unsafe_path_is_an_unsafe_path_error(tmp_path):
    root = _labels(tmp_path / "d", ["a,x", "../b,y"])
    _empty_videos(root, ["a.mp4"])
    with pytest.raises(UnsafePathError, match=r"'\.\./b' has a '\.\.' step"):
        load_task_data(f"folder:{root}", "train", "recognition")


def test_ambiguous_stem_is_an_error(tmp_path):
    root = _labels(tmp_path / "d", ["a,x", "b,x"])
    _empty_videos(root, ["a.mp4", "a.mkv", "b.mp4"])
    with pytest.raises(InputFileError, match=r"line 2: video 'a' is ambiguous: a\.mkv, a\.mp4"):
        load_task_data(f"folder:{root}", "train", "recognition")


def test_class_without_training_video_is_named(tmp_path):
    root = _labels(
        tmp_path / "d", ["a,x,train", "b,x,test", "c,y,train", "d,lonely,test", "e,y,val"], "video,label,split"
    )
    _empty_videos(root, ["a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"])
    with pytest.raises(InputFileError, match=r"labels\.csv: class\(es\) 'lonely' have no video in the training split"):
        load_task_data(f"folder:{root}", "test", "recognition")


def test_split_column_rules(tmp_path):
    root = _labels(tmp_path / "d", ["a,x,train", "b,x,", "c,x,test", "d,x,later"], "video,label,split")
    _empty_videos(root, ["a.mp4", "b.mp4", "c.mp4", "d.mp4"])
    with pytest.raises(InputFileError, match=r"line 5: split 'later' is not one of train, val, test"):
        load_task_data(f"folder:{root}", "train", "recognition")
    data = load_task_data(f"folder:{root}", "train", "recognition", skip_bad=True)
    assert [i.video.video_id for i in data.items] == ["a.mp4"] and data.extra["skipped"]["count"] == 2
    with pytest.raises(InputFileError, match="split 'val' of task recognition has no items"):
        load_task_data(f"folder:{root}", "val", "recognition", skip_bad=True)
    (root / "labels.csv").write_text("video,label,split\na,x,train\nb,x,\nc,x,test\nc,x,train\n")
    with pytest.raises(InputFileError, match=r"line 3: no split value, while other rows have one"):
        load_task_data(f"folder:{root}", "train", "recognition")
    (root / "labels.csv").write_text("video,label,split\na,x,train\nc,x,test\nc,x,train\n")
    with pytest.raises(InputFileError, match=r"line 4: video 'c.mp4' is in split train here and in test on line 3"):
        load_task_data(f"folder:{root}", "train", "recognition")


def test_byte_order_mark_header(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "labels.csv").write_bytes(b"\xef\xbb\xbfvideo,label\r\na,x\r\nb,x\r\nc,x\r\n")
    _empty_videos(root, ["a.mp4", "b.mp4", "c.mp4"])
    assert len(load_task_data(f"folder:{root}", "train", "recognition")) == 1


# --- captions and questions ---------------------------------------------------------------------------------------


def test_captions_csv_for_retrieval_and_captioning(tmp_path):
    root = tmp_path / "d"
    _empty_videos(root, ["a.mp4", "b.mp4", "c.mp4"])
    rows = ["a,a person eats,train", 'a,"someone signs ""eat""",train', "b,milk is signed,test", "c,thanks,val"]
    (root / "captions.csv").write_text("\n".join(["video,caption,split", *rows]) + "\n")
    train = load_task_data(f"folder:{root}", "train", "retrieval")
    assert [(i.video.video_id, i.captions) for i in train.items] == [
        ("a.mp4", ("a person eats", 'someone signs "eat"'))
    ]
    assert load_task_data(f"folder:{root}", "test", "captioning").items[0].captions == ("milk is signed",)


def test_captions_jsonl_with_auto_split_by_video(tmp_path):
    root = tmp_path / "d"
    names = [f"v{i}.mp4" for i in range(10)]
    _empty_videos(root, names)
    lines = [{"video": n, "captions": [f"{n} one", f"{n} two"]} for n in names] + [{"video": "v0", "caption": "more"}]
    (root / "captions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    ids = _split_ids(f"folder:{root}", "retrieval")
    assert sorted(sum(ids.values(), [])) == sorted(names) and [len(ids[s]) for s in ids] == [7, 2, 1]
    everything = {
        i.video.video_id: i.captions for s in ids for i in load_task_data(f"folder:{root}", s, "captioning").items
    }
    assert everything["v0.mp4"] == ("v0.mp4 one", "v0.mp4 two", "more")  # all lines of a video, one item
    (root / "captions.csv").write_text("video,caption\nv0,x\n")
    with pytest.raises(InputFileError, match=r"both captions\.csv and captions\.jsonl are here: keep one"):
        load_task_data(f"folder:{root}", "train", "retrieval")
    (root / "captions.csv").unlink()
    (root / "captions.jsonl").write_text('{"video": "v0", "caption": ""}\n{"video": "v1", "caption": "ok"}\n')
    with pytest.raises(InputFileError, match=r"captions\.jsonl: line 1: no caption"):
        load_task_data(f"folder:{root}", "train", "retrieval")


def test_questions_jsonl_multiple_choice(tmp_path):
    root = tmp_path / "d"
    _empty_videos(root, ["a.mp4", "b.mp4"])
    lines = [
        {"video": "a", "question": "which sign?", "choices": ["eat", "milk", "thanks"], "answer": 0, "split": "train"},
        {
            "video": "b",
            "question": "which sign?",
            "choices": ["eat", "milk", "thanks"],
            "answer": "milk",
            "split": "test",
        },
        {
            "video": "b",
            "question": "hands?",
            "choices": ["one", "two", "none"],
            "answer": 1,
            "split": "test",
            "id": "q7",
        },
    ]
    (root / "questions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    test = load_task_data(f"folder:{root}", "test", "qa")
    first, second = test.items
    assert first.multiple_choice and first.answer_index == 1 and first.answer == "milk" and first.question_id == "line2"
    assert second.question_id == "q7" and second.candidates == ("one", "two", "none") and test.answers is None
    lines.append({"video": "a", "question": "q", "choices": ["x", "y"], "answer": 0, "split": "train"})
    lines.append({"video": "a", "question": "q", "answer": "x", "split": "train"})
    lines.append({"video": "a", "question": "q", "choices": ["x", "y", "z"], "answer": "w", "split": "train"})
    (root / "questions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with pytest.raises(InputFileError, match=r"line 6: answer 'w' is neither a 0-based index of the 3 choices"):
        load_task_data(f"folder:{root}", "train", "qa")
    skipped = load_task_data(f"folder:{root}", "train", "qa", skip_bad=True).extra["skipped"]
    assert skipped["count"] == 3 and any("all multiple-choice" in r for r in skipped["reasons"])
    assert any("line 4: 2 choices, while line 1 has 3" in r for r in skipped["reasons"])


def test_questions_jsonl_open_ended(tmp_path):
    root = tmp_path / "d"
    names = [f"v{i}.mp4" for i in range(10)]
    _empty_videos(root, names)
    lines = [
        {"video": n, "question": "what is signed?", "answer": "eat" if i < 6 else "milk"} for i, n in enumerate(names)
    ]
    lines += [{"video": "v0", "question": "how many hands?", "answer": "two"}]
    (root / "questions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    train = load_task_data(f"folder:{root}", "train", "qa")
    assert not train.items[0].multiple_choice and set(train.answers) <= {"eat", "milk", "two"}
    test = load_task_data(f"folder:{root}", "test", "qa")
    assert test.answers == train.answers  # the vocabulary comes from the training split
    # questions of one video stay on one side of the split
    sides = {
        i.video.video_id: s for s in ("train", "val", "test") for i in load_task_data(f"folder:{root}", s, "qa").items
    }
    assert len(sides) == 10
    lines = (root / "questions.jsonl").read_text().splitlines()
    (root / "questions.jsonl").write_text("\n".join([*lines, "not json"]) + "\n")
    with pytest.raises(InputFileError, match=r"questions\.jsonl: line 12: not valid JSON"):
        load_task_data(f"folder:{root}", "train", "qa")


# --- commands -----------------------------------------------------------------------------------------------------


def test_cli_train_then_eval_on_a_folder(tmp_path, asl_clips, capsys):
    root = _asl_folder(tmp_path / "mine", asl_clips)
    run = tmp_path / "run"
    args = ["train", "--task", "recognition", "--paradigm", "post_network", "--backbone", "tiny"]
    args += ["--data", f"folder:{root}", "--out", str(run)]
    args += ["run.epochs=1", "run.batch_size=3", "data.frames=2", "run.progress=false", "run.log_every=1"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "recognition" and result["items"] == 3 and "top1" in result["metrics"]
    assert (root / "splits.csv").is_file()


def test_cli_extract_and_bench_take_a_folder(tmp_path, asl_clips, capsys):
    root = _asl_folder(tmp_path / "mine", asl_clips)
    cache = tmp_path / "cache"
    args = ["extract", "--backbone", "tiny", "--data", f"folder:{root}", "--split", "val", "--sampler", "uniform:2"]
    assert main([*args, "--out", str(cache), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["videos"] == 3
    bench = ["bench", "--preset", "micro", "--out", str(tmp_path / "bench"), "--data", f"recognition=folder:{root}"]
    bench += ["--tables", "recognition", "--paradigms", "post_network", "--no-baselines", "--steps", "1"]
    bench += ["--batch-size", "3", "--frames", "2", "--seeds", "1", "--in-process", "--json"]
    assert main(bench) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["complete"] and "recognition/post_network/seed0" in summary["ran"]


def test_a_table_made_elsewhere_reads_as_it_is(tmp_path, asl_clips):
    """The shared ASL set's own labels.csv says ``file,label``: no column to rename (issue 16, newcomer target)."""
    root = tmp_path / "d"
    root.mkdir()
    for clip in asl_clips:
        (root / clip.name).symlink_to(clip)
    (root / "labels.csv").write_text("file,class\n" + "".join(f"{c.name},{c.stem}\n" for c in asl_clips))
    data = load_task_data(f"folder:{root}", "train", "recognition")
    assert sorted(data.classes) == sorted(c.stem for c in asl_clips) and len(data) == len(asl_clips)
    (root / "splits.csv").unlink()
    (root / "labels.csv").write_text("clip_name,label\neat.mkv,eat\n")
    with pytest.raises(InputFileError, match=r"lacks column\(s\) video.*accepted names: video \(or file, filename"):
        load_task_data(f"folder:{root}", "train", "recognition")


def test_one_clip_per_class_trains_without_validation_and_says_why(tmp_path, asl_clips, capsys):
    root = tmp_path / "d"
    root.mkdir()
    for clip in asl_clips:
        (root / clip.name).symlink_to(clip)
    (root / "labels.csv").write_text("video,label\n" + "".join(f"{c.name},{c.stem}\n" for c in asl_clips))
    with pytest.raises(EmptySplitError, match="fewer than 3 videos in train"):
        load_task_data(f"folder:{root}", "val", "recognition")
    run = tmp_path / "run"
    args = ["train", "--task", "recognition", "--backbone", "tiny", "--data", f"folder:{root}", "--out", str(run)]
    assert main([*args, "run.max_steps=1", "run.batch_size=3", "data.frames=2", "run.progress=false"]) == 0
    assert "training without validation" in capsys.readouterr().err
    assert json.loads((run / "metrics.json").read_text())["weights"] == "last"


def test_the_recipe_batch_shrinks_to_a_small_folder(tmp_path, asl_clips, capsys):
    """recognition's recipe steps 32 clips at a time; three clips train as one batch of three, said and recorded."""
    root = tmp_path / "d"
    root.mkdir()
    for clip in asl_clips:
        (root / clip.name).symlink_to(clip)
    (root / "labels.csv").write_text("video,label\n" + "".join(f"{c.name},{c.stem}\n" for c in asl_clips))
    run = tmp_path / "run"
    args = ["train", "--task", "recognition", "--data", f"folder:{root}", "--out", str(run)]
    assert main([*args, "run.max_steps=1", "data.frames=2", "run.progress=false"]) == 0
    assert "run.batch_size=32 is more than the 3 training items hold" in capsys.readouterr().err
    assert "batch_size: 3" in (run / "config.yaml").read_text()
    assert json.loads((run / "metrics.json").read_text())["steps"] == 1
