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
