"""`videoadapt check-data` lists every missing or unreadable video and every bad annotation row at once, before any
training (issue 16 (i) and deliverable 2). Real clips: the ASL fixtures (CC-BY-4.0, tests/fixtures/asl/NOTICE.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from videoadapt.cli import main

ASL = Path(__file__).parent / "fixtures" / "asl"


def _charades_folder(root: Path) -> Path:
    """Two real clips, a missing one, a corrupt one and a reversed window, as Charades-STA annotations."""
    videos = root / "videos"
    videos.mkdir(parents=True)
    for name in ("eat", "milk"):
        os.symlink(ASL / f"{name}.mkv", videos / f"{name}.mkv")
    (videos / "broken.mp4").write_bytes(b"this is not a video")
    lines = [
        "eat 0.2 1.0##a person signs eat",
        "milk 0.1 0.9##a person signs milk",
        "broken 0.0 1.0##a corrupt file",
        "gone 0.0 1.0##a clip nobody copied",
        "milk 1.0 0.5##a reversed window",
    ]
    (root / "charades_sta_train.txt").write_text("\n".join(lines) + "\n")
    (root / "charades_sta_test.txt").write_text(lines[0] + "\n")
    durations = {"eat": 2.0, "milk": 2.0, "broken": 2.0, "gone": 2.0}
    (root / "durations.json").write_text(json.dumps(durations))
    return root


def test_every_problem_is_listed_at_once(tmp_path, capsys):
    root = _charades_folder(tmp_path / "set")
    args = ["check-data", "--data", f"charades_sta:{root}", "--task", "temporal_grounding"]
    args += ["--data-option", f"durations={root / 'durations.json'}"]
    assert main([*args, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    train = report["splits"]["train"]
    assert train["bad_annotation_rows"] == 1 and "reversed" in train["bad_annotation_examples"][0]
    assert train["missing_videos"] == 1 and "gone" in json.dumps(train["missing_examples"])
    assert [u["video"] for u in train["unreadable_videos"]] == ["broken"]
    assert "broken.mp4" in train["unreadable_videos"][0]["file"]
    assert "unavailable" in report["splits"]["val"]  # Charades-STA has no validation split: said, not an error
    assert report["splits"]["test"]["unreadable_videos"] == [] and not report["ok"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "unreadable: " in out and "broken.mp4" in out and "missing: " in out and "problems found" in out


def test_a_clean_set_passes_and_bad_flags_are_named(tmp_path, capsys):
    root = _charades_folder(tmp_path / "set")
    (root / "charades_sta_train.txt").write_text("eat 0.2 1.0##a person signs eat\nmilk 0.1 0.9##milk\n")
    args = ["check-data", "--data", f"charades_sta:{root}", "--task", "temporal_grounding", "--split", "train"]
    args += ["--data-option", f"durations={root / 'durations.json'}"]
    assert main(args) == 0
    assert "every video can be opened" in capsys.readouterr().out
    assert main([*args, "--data-option", "no_equals_sign"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def _folder_with_bad_videos(root: Path) -> Path:
    """Nine real clips (three per word) in train/val/test, plus two corrupt videos in train and one in test (a
    missing video is the folder reader's error, which lists them all: tests/test_formats_folder.py)."""
    root.mkdir(parents=True)
    rows = ["video,label,split"]
    for word in ("eat", "milk", "thanks"):
        for i, split in enumerate(("train", "val", "test")):
            os.symlink(ASL / f"{word}.mkv", root / f"{word}_{i}.mkv")
            rows.append(f"{word}_{i}.mkv,{word},{split}")
    (root / "broken.mp4").write_bytes(b"this is not a video")
    (root / "truncated.mkv").write_bytes((ASL / "eat.mkv").read_bytes()[:300])
    (root / "broken_test.mp4").write_bytes(b"nor is this")
    rows += ["truncated.mkv,eat,train", "broken.mp4,milk,train", "broken_test.mp4,thanks,test"]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_training_opens_every_video_first_and_names_every_bad_one(tmp_path, capsys):
    """Deliverable 2: the check runs before training: one error names both corrupt videos and why (no checkpoint,
    no cache); with skip_bad they are left out and metrics.json counts them per split, the test
    split's included."""
    root = _folder_with_bad_videos(tmp_path / "mine")
    run = tmp_path / "run"
    args = ["train", "--task", "recognition", "--backbone", "tiny", "--data", f"folder:{root}", "--out", str(run)]
    args += ["run.max_steps=1", "run.batch_size=3", "data.frames=2", "run.progress=false"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "0 missing and 2 unreadable of 5 videos" in error and "truncated.mkv" in error and "broken.mp4" in error
    assert "skip_bad" in error and not (run / "checkpoints").exists() and not (run / "cache").exists()
    assert main([*args, "data.skip_bad=true", "--json"]) == 0
    captured = capsys.readouterr()
    assert "broken_test.mp4" in captured.err  # the test split's bad video is warned about before training
    counts = json.loads((run / "metrics.json").read_text())["data"]
    assert counts["train"]["items"] == 3 and counts["train"]["bad_videos"] == 2
    assert counts["val"] == {"items": 3, "annotation_rows": 0, "items_the_task_refused": 0, "bad_videos": 0}
    assert counts["test"]["items"] == 4 and counts["test"]["unreadable_videos"] == 1
    # eval leaves the bad test video out with skip_bad (the run's setting), and says so.
    assert main(["eval", "--run", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["items"] == 3 and result["skipped"]["bad_videos"] == 1
