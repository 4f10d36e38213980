"""`videoadapt score`: file formats of docs/scoring.md, id matching, --skip-bad, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from videoadapt.cli import main
from videoadapt.commands.score import score_files
from videoadapt.errors import InputFileError
from videoadapt.metrics import recognition_metrics, retrieval_metrics

FIXTURES = Path(__file__).parent / "fixtures" / "scoring"


def score(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any] | None, str]:
    code = main(["score", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and "--json" in args else None), err


def fixture(task: str, kind: str) -> str:
    return str(FIXTURES / f"{task}_{kind}.json")


def write(path: Path, data: object) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def test_recognition_from_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, result, _ = score(
        capsys,
        "--task",
        "recognition",
        "--pred",
        fixture("recognition", "pred"),
        "--gt",
        fixture("recognition", "gt"),
        "--json",
    )
    assert code == 0 and result is not None
    pred = json.loads(Path(fixture("recognition", "pred")).read_text())["scores"]
    expected = recognition_metrics(
        np.array([pred[v] for v in ("vid_a", "vid_b", "vid_c", "vid_d")]), np.array([1, 2, 0, 0])
    )
    assert result["metrics"] == pytest.approx(expected)
    assert result["counts"] == {"videos": 4, "classes": 3}
    assert result["skipped"] == 0
    assert "topk" in result["conventions"]


def test_recognition_topk_option_and_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--task", "recognition", "--pred", fixture("recognition", "pred"), "--gt", fixture("recognition", "gt")]
    code, _, _ = score(capsys, *args, "--topk", "1,2")
    assert code == 0
    assert main(["score", *args, "--topk", "1,2", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["metrics"]) == {"top1", "top2", "mean_class_accuracy"}


def test_retrieval_from_npy_and_inline_matrix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    gt = fixture("retrieval", "gt")
    code, result, _ = score(capsys, "--task", "retrieval", "--pred", fixture("retrieval", "pred"), "--gt", gt, "--json")
    assert code == 0 and result is not None
    sim = np.load(FIXTURES / "retrieval_similarity.npy")
    assert result["metrics"] == pytest.approx(retrieval_metrics(sim, np.array([0, 0, 1, 2])))
    assert result["counts"] == {"texts": 4, "videos": 4, "captioned_videos": 3}
    # The same matrix inline, with texts and videos listed in another order: same scores.
    perm_t, perm_v = [2, 0, 3, 1], [3, 1, 0, 2]
    inline = write(
        tmp_path / "pred.json",
        {
            "text_ids": [f"t{i}" for i in perm_t],
            "video_ids": [f"v{j}" for j in perm_v],
            "similarity": sim[np.ix_(perm_t, perm_v)].tolist(),
        },
    )
    code, again, _ = score(capsys, "--task", "retrieval", "--pred", inline, "--gt", gt, "--json")
    assert code == 0 and again is not None
    assert again["metrics"] == pytest.approx(result["metrics"])


def test_qa_multiple_choice_and_open_ended(capsys: pytest.CaptureFixture[str]) -> None:
    for kind, mode in (("choice", "multiple_choice"), ("open", "open_ended")):
        code, result, _ = score(
            capsys,
            "--task",
            "qa",
            "--pred",
            fixture(f"qa_{kind}", "pred"),
            "--gt",
            fixture(f"qa_{kind}", "gt"),
            "--json",
        )
        assert code == 0 and result is not None
        assert result["mode"] == mode
        assert result["metrics"]["accuracy"] == pytest.approx(200 / 3)
        assert result["counts"] == {"questions": 3}


def test_captioning_passes_matched_ids(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The metric itself is tested against pycocoevalcap in test_metrics.py; here only what reaches it (no Java).
    from videoadapt.metrics import captioning

    seen: dict[str, Any] = {}

    def fake(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
        seen.update(predictions=predictions, references=references)
        return {"CIDEr": 1.0}

    monkeypatch.setattr(captioning, "caption_metrics", fake)
    pred = write(tmp_path / "pred.json", {"captions": {"vid_a": "a man", "vid_b": "a dog", "vid_x": "extra"}})
    code, result, _ = score(
        capsys, "--task", "captioning", "--pred", pred, "--gt", fixture("captioning", "gt"), "--skip-bad", "--json"
    )
    assert code == 0 and result is not None
    assert seen["predictions"] == {"vid_a": "a man", "vid_b": "a dog"}
    assert seen["references"]["vid_b"] == ["A dog is running in a park.", "The dog runs on the grass."]
    assert result["skipped"] == 1
    assert result["skipped_by_reason"] == {"unknown_id": 1}
    assert result["counts"] == {"videos": 2, "references": 4}


def test_mismatched_ids_fail_naming_items_and_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pred = write(
        tmp_path / "pred.json",
        {"scores": {"vid_a": [0, 1, 0], "vid_b": [0, 0, 1], "vid_zz": [1, 0, 0]}},  # no vid_c, vid_d; extra vid_zz
    )
    gt = fixture("recognition", "gt")
    code, _, err = score(capsys, "--task", "recognition", "--pred", pred, "--gt", gt)
    assert code == 2
    assert "videoadapt score: error:" in err
    assert pred in err and gt in err
    assert "2 video id(s)" in err and "'vid_c'" in err
    assert "'vid_zz'" in err and "--skip-bad" in err

    code, result, _ = score(capsys, "--task", "recognition", "--pred", pred, "--gt", gt, "--skip-bad", "--json")
    assert code == 0 and result is not None
    assert result["skipped"] == 3
    assert result["skipped_by_reason"] == {"missing_prediction": 2, "unknown_id": 1}
    assert result["counts"]["videos"] == 2
    assert result["metrics"]["top1"] == 100.0


def test_invalid_entries_error_or_count(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pred = write(
        tmp_path / "pred.json",
        {"scores": {"vid_a": [0, 1, 0], "vid_b": [0, 1], "vid_c": [1, 0, 0], "vid_d": [1, "x", 0]}},
    )
    gt = fixture("recognition", "gt")
    code, _, err = score(capsys, "--task", "recognition", "--pred", pred, "--gt", gt)
    assert code == 2 and "video 'vid_b'" in err and "3 numbers" in err
    code, result, _ = score(capsys, "--task", "recognition", "--pred", pred, "--gt", gt, "--skip-bad", "--json")
    assert code == 0 and result is not None
    assert result["skipped"] == 2 and result["skipped_by_reason"] == {"invalid": 2}
    assert [s["item"] for s in result["skipped_examples"]] == ["video 'vid_b'", "video 'vid_d'"]


def test_retrieval_missing_video_column(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sim = np.load(FIXTURES / "retrieval_similarity.npy")
    pred = write(
        tmp_path / "pred.json",
        {
            "text_ids": ["t0", "t1", "t2", "t3"],
            "video_ids": ["v0", "v1", "v3"],
            "similarity": sim[:, [0, 1, 3]].tolist(),
        },
    )
    gt = fixture("retrieval", "gt")
    code, _, err = score(capsys, "--task", "retrieval", "--pred", pred, "--gt", gt)
    assert code == 2 and "'v2'" in err
    code, result, _ = score(capsys, "--task", "retrieval", "--pred", pred, "--gt", gt, "--skip-bad", "--json")
    assert code == 0 and result is not None
    # Video v2 is missing, so its caption t3 cannot be ranked either.
    assert result["skipped"] == 2
    assert result["counts"] == {"texts": 3, "videos": 3, "captioned_videos": 2}


def test_retrieval_shape_mismatch(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pred = write(tmp_path / "pred.json", {"text_ids": ["t0", "t1"], "video_ids": ["v0"], "similarity": [[1.0, 2.0]]})
    code, _, err = score(capsys, "--task", "retrieval", "--pred", pred, "--gt", fixture("retrieval", "gt"))
    assert code == 2 and "shape" in err


def test_unreadable_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    gt = fixture("qa_open", "gt")
    code, _, err = score(capsys, "--task", "qa", "--pred", str(broken), "--gt", gt)
    assert code == 2 and "broken.json" in err and "JSON" in err
    code, _, err = score(capsys, "--task", "qa", "--pred", str(tmp_path / "missing.json"), "--gt", gt)
    assert code == 2 and "not found" in err
    wrong_key = write(tmp_path / "pred.json", {"captions": {}})
    code, _, err = score(capsys, "--task", "qa", "--pred", wrong_key, "--gt", gt)
    assert code == 2 and "'answers'" in err


def test_nothing_left_to_score(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pred = write(tmp_path / "pred.json", {"answers": {"other": "x"}})
    code, _, err = score(capsys, "--task", "qa", "--pred", pred, "--gt", fixture("qa_open", "gt"), "--skip-bad")
    assert code == 2 and "no item is left" in err


def test_help_lists_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "recognition" in out and "captioning" in out and "--skip-bad" in out


# --- grounding -------------------------------------------------------------------------------------------------


def _qvh_truth(path):
    rows = [
        {
            "qid": 1,
            "query": "a man walks",
            "duration": 10,
            "vid": "v1",
            "relevant_windows": [[2, 6]],
            "relevant_clip_ids": [1, 2],
            "saliency_scores": [[4, 2, 1], [3, 4, 4]],
        },
        {
            "qid": 2,
            "query": "a dog runs",
            "duration": 8,
            "vid": "v2",
            "relevant_windows": [[0, 4]],
            "relevant_clip_ids": [0, 1],
            "saliency_scores": [[1, 1, 1], [4, 4, 4]],
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_temporal_grounding_scores_a_qvhighlights_submission_like_the_reference(tmp_path):
    from videoadapt.metrics import temporal_grounding as tg

    gt = _qvh_truth(tmp_path / "highlight_val_release.jsonl")
    pred = tmp_path / "pred.jsonl"
    preds = {
        "1": {
            "pred_relevant_windows": [[2.5, 6.0, 0.9], [0.0, 3.0, 0.4]],
            "pred_saliency_scores": [0.1, 0.9, 0.5, 0, 0],
        },
        "2": {"pred_relevant_windows": [[4.0, 8.0, 0.7]], "pred_saliency_scores": [0.2, 0.1, 0.3, 0.0]},
    }
    pred.write_text("".join(json.dumps({"qid": int(q), **p}) + "\n" for q, p in preds.items()))
    result = score_files("temporal_grounding", pred, gt, split="val")
    windows = {q: p["pred_relevant_windows"] for q, p in preds.items()}
    mr = tg.moment_retrieval_metrics(windows, {"1": [[2, 6]], "2": [[0, 4]]})
    hl = tg.highlight_detection_metrics(
        {q: p["pred_saliency_scores"] for q, p in preds.items()},
        {
            "1": tg.qvhighlights_saliency_labels(10, [1, 2], [[4, 2, 1], [3, 4, 4]]),
            "2": tg.qvhighlights_saliency_labels(8, [0, 1], [[1, 1, 1], [4, 4, 4]]),
        },
    )
    assert result["metrics"]["MR-mAP"] == pytest.approx(mr["mAP"])
    assert result["metrics"]["MR-R1@0.7"] == pytest.approx(mr["R1@0.7"])
    assert result["metrics"]["HL-mAP"] == pytest.approx(hl["mAP"])
    assert result["metrics"]["HL-HIT@1"] == pytest.approx(hl["HIT@1"])
    assert result["metrics"]["R1@0.5"] == 50.0  # query 1: IoU 3.5/4 > 0.5; query 2: disjoint


def test_grounding_predictions_for_unknown_or_missing_queries_are_named(tmp_path):
    gt = _qvh_truth(tmp_path / "highlight_val_release.jsonl")
    pred = tmp_path / "pred.jsonl"
    pred.write_text(
        json.dumps({"qid": 1, "pred_relevant_windows": [[1, 2, 0.5]], "pred_saliency_scores": [0] * 5})
        + "\n"
        + json.dumps({"qid": 99, "pred_relevant_windows": [[1, 2, 0.5]]})
        + "\n"
    )
    with pytest.raises(InputFileError, match=r"pred\.jsonl.*not in"):
        score_files("temporal_grounding", pred, gt, split="val")
    pred.write_text(
        json.dumps({"qid": 1, "pred_relevant_windows": [[1, 2, 0.5]], "pred_saliency_scores": [0] * 5}) + "\n"
    )
    with pytest.raises(InputFileError, match="have no prediction"):
        score_files("temporal_grounding", pred, gt, split="val")
    result = score_files("temporal_grounding", pred, gt, split="val", skip_bad=True)
    assert result["skipped"] == 1 and result["counts"]["queries"] == 1
    pred.write_text(json.dumps({"qid": 1, "pred_relevant_windows": [[3, 2, 0.5]]}) + "\n")
    with pytest.raises(InputFileError, match="pred.jsonl"):
        score_files("temporal_grounding", pred, gt, split="val")


def test_st_grounding_scores_tubes_against_a_data_set(tmp_path):
    from videoadapt.data.formats import load_task_data
    from videoadapt.metrics.prediction_files import write_stvg_predictions

    data = load_task_data("synth", "test", "st_grounding")  # what --gt synth reads: the defaults' test split
    perfect = {
        item.query_id: {
            "span": (item.tube.frames[0], item.tube.frames[-1]),
            "boxes": dict(zip(item.tube.frames, item.tube.boxes, strict=True)),
        }
        for item in data.items
    }
    pred = tmp_path / "tubes.json"
    write_stvg_predictions(pred, perfect)
    result = score_files("st_grounding", pred, "synth")
    assert result["metrics"]["m_vIoU"] == pytest.approx(100.0) and result["metrics"]["vIoU@0.5"] == 100.0
    assert result["counts"]["queries"] == len(data.items)
    first = data.items[0]
    moved = {f: [b[0] + 1, b[1], b[2] + 1, b[3]] for f, b in zip(first.tube.frames, first.tube.boxes, strict=True)}
    perfect[first.query_id] = {"span": perfect[first.query_id]["span"], "boxes": moved}
    write_stvg_predictions(pred, perfect)
    assert score_files("st_grounding", pred, "synth")["metrics"]["m_vIoU"] < 100.0
    del moved[first.tube.frames[0]]
    write_stvg_predictions(pred, perfect)
    with pytest.raises(InputFileError, match="no box for ground-truth tube frame"):
        score_files("st_grounding", pred, "synth")


def test_recognition_accepts_hard_labels(tmp_path):
    """A model that outputs one class per video is scored on top-1 and mean class accuracy (issue 16 (h))."""
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"classes": ["jump", "run", "swim"], "labels": {"a": "run", "b": "swim", "c": 0}}))
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"labels": {"a": "run", "b": 0, "c": "swim"}}))
    result = score_files("recognition", pred, gt)
    assert result["metrics"] == pytest.approx({"top1": 100 / 3, "mean_class_accuracy": 100 / 3})
    assert "top5" not in result["metrics"] and result["mode"].startswith("hard labels")
    pred.write_text(json.dumps({"labels": {"a": "run", "b": "fly", "c": "swim"}}))
    with pytest.raises(InputFileError, match=r"pred\.json.*'b'.*'fly'"):
        score_files("recognition", pred, gt)
    pred.write_text(json.dumps({"guesses": {}}))
    with pytest.raises(InputFileError, match="'scores' entry, or 'labels'"):
        score_files("recognition", pred, gt)
