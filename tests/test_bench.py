"""`videoadapt bench`: the matrix from the registries, a micro bench end to end (report, CSV and plots agree), resume
after an interruption, the report's arithmetic over seeds, random-init backbones, and the real-data recipe on the
Kinetics and MSR-VTT fixtures."""

from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path

import pytest
import torch

from videoadapt.bench import cell as cell_module
from videoadapt.bench.matrix import (
    PRESETS,
    RANDOM_INIT,
    RESERVED_TABLES,
    ZERO_SHOT,
    Cell,
    build_matrix,
    cell_dir,
    random_counterpart,
    task_tables,
    with_budget,
)
from videoadapt.bench.report import write_report
from videoadapt.bench.runner import run_bench
from videoadapt.cli import main
from videoadapt.errors import VideoadaptError
from videoadapt.paradigms import paradigm_names
from videoadapt.registry import registry
from videoadapt.tasks import Task
from videoadapt.utils.safe_io import save_json

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
ASL = Path(__file__).parent / "fixtures" / "asl"


# --- the matrix -----------------------------------------------------------------------------------------------


def test_quick_matrix_covers_every_paradigm_on_recognition_retrieval_and_qa():
    tables, cells = build_matrix(PRESETS["quick"])
    assert [t.name for t in tables] == ["recognition", "retrieval", "qa-mc"]
    for table in ("recognition", "retrieval", "qa-mc"):
        arms = {c.arm for c in cells if c.table == table}
        assert arms == {*paradigm_names(), ZERO_SHOT, RANDOM_INIT}
    # One budget: the cells differ only in what trains, never in data or steps (those live in the preset).
    assert {json.dumps(c.data, sort_keys=True) for c in cells if c.table == "qa-mc"} == {'{"qa": "multiple_choice"}'}
    random = [c for c in cells if c.arm == RANDOM_INIT]
    assert {c.backbone for c in random} == {"random:tiny"} and {c.paradigm for c in random} == {"full_finetune"}


def test_full_matrix_has_every_table_and_seeds():
    tables, cells = build_matrix(PRESETS["full"])
    names = {t.name for t in tables}
    assert {"recognition", "retrieval", "qa-mc", "qa-open", "captioning"} <= names
    # Captioning and open-ended QA have no zero-shot baseline (said in the report); the others do.
    zero = {c.table for c in cells if c.arm == ZERO_SHOT}
    assert "captioning" not in zero and "qa-open" not in zero and {"recognition", "retrieval", "qa-mc"} <= zero
    seeds = {c.seed for c in cells if c.arm == "lora" and c.table == "captioning"}
    assert seeds == set(range(PRESETS["full"].seeds))
    with pytest.raises(VideoadaptError, match="unknown paradigm"):
        build_matrix(PRESETS["quick"], paradigms=["nope"])


def test_a_task_registered_later_joins_the_matrix():
    class Grounding(Task):
        name = "temporal_grounding"
        monitor = "mIoU"

    class Counting(Task):
        name = "counting_test_only"
        monitor = "accuracy"

    entries = registry._entries["task"]
    try:
        registry.register("task", "temporal_grounding")(Grounding)
        registry.register("task", "counting_test_only")(Counting)
        tables = {t.name: t for t in task_tables()}
        # A Table II task gets the survey's columns without a declaration of its own, an unknown one its metrics.
        assert tables["temporal_grounding"].columns == RESERVED_TABLES["temporal_grounding"][1]
        assert tables["counting_test_only"].columns == ()
        _, cells = build_matrix(PRESETS["full"], seeds=1)
        assert {c.arm for c in cells if c.table == "counting_test_only"} >= set(paradigm_names())
    finally:
        entries.pop("temporal_grounding", None)
        entries.pop("counting_test_only", None)


def test_random_counterpart_backbone_reinitialises_the_image_tower_only():
    from videoadapt.foundation.loading import load_backbone

    assert random_counterpart("tiny") == "random:tiny"
    assert random_counterpart("hf:openai/clip-vit-base-patch16") == "random:hf:openai/clip-vit-base-patch16"
    assert random_counterpart("hf-config:clip-vit-b16") == "hf-config:clip-vit-b16"  # already random
    pretrained = load_backbone("hf-config:clip-tiny")
    random = load_backbone("random:hf-config:clip-tiny")
    again = load_backbone("random:hf-config:clip-tiny")
    vision = [dict(m.named_parameters()) for m in (pretrained.vision_modules()[0], random.vision_modules()[0])]
    changed = [n for n in vision[0] if not torch.equal(vision[0][n], vision[1][n])]
    # Every weight matrix is new (LayerNorms of a random architecture are back at 1 and 0, as they were).
    assert {n for n, p in vision[0].items() if p.ndim >= 2} <= set(changed)
    text = [dict(m.named_parameters()) for m in (pretrained.text_modules()[0], random.text_modules()[0])]
    assert all(torch.equal(text[0][n], text[1][n]) for n in text[0])  # the text side is kept
    first, second = random.vision_modules()[0].state_dict(), again.vision_modules()[0].state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)  # seeded
    with pytest.raises(VideoadaptError, match="needs a backbone"):
        load_backbone("random:")


# --- a micro bench end to end ---------------------------------------------------------------------------------


def _report_rows(report: str, title: str) -> dict[str, list[str]]:
    """The rows of the report's table under the heading that starts with ``### title``, by first cell."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"### {title} "))
    rows = {}
    header = None
    for line in lines[start + 1 :]:
        if line.startswith("###"):
            break
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if header is None:
            header = cells
            continue
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def _fmt(values: list[float], digits: int = 1) -> str:
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def test_micro_bench_resumes_and_its_report_csv_and_plots_agree(tmp_path):
    """MICRO BENCH (about 20 s of CPU): 2 paradigms x 2 tasks + baselines, interrupted after 3 cells then continued."""
    out = tmp_path / "bench"
    preset = PRESETS["micro"]
    # A tiny random HF CLIP: no MiniLM to load per cell (the shipped TinyCLIP runs the same code in `make demo`).
    kwargs = dict(paradigms=["post_network", "lora"], backbone="hf-config:clip-tiny", isolate=False, progress=False)
    first = run_bench(out, preset, max_cells=3, **kwargs)
    assert len(first["ran"]) == 3 and not first["complete"]
    finished = {key: (out / "cells" / key / cell_module.RESULT).read_bytes() for key in first["ran"]}
    seen = []
    second = run_bench(out, preset, on_cell=lambda cell, result: seen.append(cell.key), **kwargs)
    assert second["complete"] and second["reused"] == first["ran"]
    assert set(seen) & set(first["ran"]) == set() and len(seen) == 5  # nothing recomputed
    for key, content in finished.items():
        assert (out / "cells" / key / cell_module.RESULT).read_bytes() == content
        assert (out / "cells" / key / cell_module.DONE).is_file()
        assert (out / "cells" / key / "run" / "model.safetensors").is_file() or "zero_shot" in key

    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    report = (out / "report.md").read_text()
    columns = {"recognition": ("top-1", "top1"), "retrieval": ("R@sum", "t2v_Rsum")}
    for table, (label, key) in columns.items():
        shown = _report_rows(report, table)
        for row in (r for r in rows if r["table"] == table):
            name = {"zero_shot": "zero-shot ILFM", "random_init": "random init (full_finetune)"}.get(
                row["arm"], row["arm"]
            )
            assert shown[name][label] == _fmt([float(row[f"metric:{key}"])])
            assert shown[name]["trainable params"] == f"{int(row['trainable_parameters'] or 0):,}"
            if row["arm"] != "zero_shot":
                assert shown[name]["train s"] == _fmt([float(row["train_s"])])
                assert shown[name]["peak train MB"] == _fmt([float(row["peak_memory_mb"])], 0)
                assert int(row["steps"]) == preset.budget.steps
        for kind in ("params", "time"):
            png = out / "plots" / f"{table}-vs-{kind}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"plots/{png.name}" in report
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tables"]["recognition"]["leader"]["arm"] in ("post_network", "lora")
    assert "leads on top-1" in report and "Table II" in report
    # The same budget everywhere: every trained cell did the preset's steps on the same data.
    assert {r["train_items"] for r in rows if r["arm"] != "zero_shot"} == {"32"}


def _fake_result(out: Path, cell: Cell, top1: float, seconds: float, status: str = "ok") -> None:
    folder = cell_dir(out, cell)
    folder.mkdir(parents=True)
    result = {
        "cell": cell.to_json(),
        "status": status,
        "reason": "cannot be built for this task" if status != "ok" else "",
        "started": 0.0,
        "finished": seconds + 1,
    }
    if status == "ok":
        result.update(
            metrics={"top1": top1, "top5": top1 + 10, "reversal_top1": 1.0, "reversal_pair_accuracy": 50.0},
            trainable_parameters=1000,
            gflops_per_view=0.5,
            train_s=seconds,
            peak_memory_mb=10.0 + seconds,
            steps=2,
            video_head="TemporalHead(MeanPool)",
        )
    save_json(folder / cell_module.RESULT, result)
    (folder / cell_module.DONE).write_text("{}")


def test_report_means_and_stds_over_seeds_come_from_the_csv(tmp_path):
    preset = with_budget(PRESETS["micro"])
    tables, cells = build_matrix(preset, seeds=3, paradigms=["post_network", "lora"], tables=["recognition"])
    values = {"post_network": [40.0, 50.0, 45.0], "lora": [30.0, 20.0, 31.0], RANDOM_INIT: [5.0, 6.0, 7.0]}
    for cell in cells:
        if cell.arm == ZERO_SHOT:
            _fake_result(tmp_path, cell, 12.0, 0.0)
        elif cell.arm == "lora" and cell.seed == 2:
            _fake_result(tmp_path, cell, 0.0, 0.0, status="failed")
        else:
            _fake_result(tmp_path, cell, values[cell.arm][cell.seed], 1.0 + cell.seed)
    settings = {"preset": "micro", "budget": vars(preset.budget), "backbone": "tiny", "seeds": 3, "data": {}}
    settings["data"] = {"recognition": {"source": "synth", "options": {}}}
    write_report(tmp_path, tables, cells, settings)
    report = (tmp_path / "report.md").read_text()
    shown = _report_rows(report, "recognition")
    assert shown["post_network"]["top-1"] == "45.0 ± 5.0"
    assert shown["lora"]["top-1"] == _fmt([30.0, 20.0])  # the failed seed is left out of the mean
    assert shown["post_network"]["train s"] == "2.0 ± 1.0"
    assert "45.0 ± 5.0, 20.0 ahead of lora (25.0 ± 7.1)" in report
    assert "pretraining buys +39.0" in report
    with open(tmp_path / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 + 3 + 3 + 1 and sum(r["status"] == "failed" for r in rows) == 1


def test_incompatible_cells_are_reported_with_their_reason(tmp_path):
    preset = PRESETS["micro"]
    tables, cells = build_matrix(preset, paradigms=["post_network"], tables=["recognition"])
    for cell in cells:
        _fake_result(tmp_path, cell, 20.0, 1.0, status="incompatible" if cell.arm == "post_network" else "ok")
    settings = {"preset": "micro", "budget": vars(preset.budget), "backbone": "tiny", "seeds": 1}
    settings["data"] = {"recognition": {"source": "synth", "options": {}}}
    write_report(tmp_path, tables, cells, settings)
    report = (tmp_path / "report.md").read_text()
    assert "post_network: incompatible: cannot be built for this task" in report
    assert "| post_network (incompatible) |" in report


def test_cli_help_list_and_bad_flags(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0 and "--preset" in capsys.readouterr().out
    assert main(["bench", "--preset", "quick", "--out", str(tmp_path / "b"), "--list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert "qa-mc/zero_shot/seed0" in listing["cells"] and "recognition/side_tuning/seed0" in listing["cells"]
    assert main(["bench", "--out", str(tmp_path / "b"), "--data", "msrvtt"]) == 2
    assert "expected synth or TABLE=SPEC" in capsys.readouterr().err


def test_rerun_with_other_settings_is_refused(tmp_path):
    save_json(tmp_path / "bench.json", {"preset": "quick"})
    with pytest.raises(VideoadaptError, match="other settings"):
        run_bench(tmp_path, PRESETS["micro"], paradigms=["post_network"], isolate=False, progress=False)


# --- the real-data recipe on the fixtures ---------------------------------------------------------------------


def test_real_data_recipe_on_kinetics_and_msrvtt_fixtures(tmp_path, capsys):
    """The docs/bench.md recipe with the formats' fixtures: Kinetics-400 csv for recognition (clips named as the
    official downloader names them) and MSR-VTT (9k train list, 1k-A test) for retrieval, on a tiny HF CLIP."""
    clips = tmp_path / "k400"
    clips.mkdir()
    with open(FIXTURES / "kinetics" / "val.csv") as handle:
        rows = list(csv.DictReader(handle))
    with open(FIXTURES / "kinetics" / "train.csv") as handle:
        rows += list(csv.DictReader(handle))
    sources = sorted(ASL.glob("*.mkv"))
    for k, row in enumerate(rows):
        name = f"{row['youtube_id']}_{int(row['time_start']):06d}_{int(row['time_end']):06d}.mkv"
        (clips / name).symlink_to(sources[k % len(sources)])
    out = tmp_path / "bench"
    argv = ["bench", "--preset", "micro", "--out", str(out), "--backbone", "hf-config:clip-tiny"]
    argv += ["--tables", "recognition,retrieval", "--paradigms", "post_network", "--in-process"]
    argv += [
        "--data",
        f"recognition=kinetics:{FIXTURES / 'kinetics'}",
        "--data",
        f"retrieval=msrvtt:{FIXTURES / 'msrvtt'}",
    ]
    argv += ["--data-option", f"recognition.video_dir={clips}", "--data-option", f"retrieval.video_dir={ASL}"]
    argv += ["--test-split", "val", "--steps", "1", "--batch-size", "2", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cells_finished"] == summary["cells"] == 2 * 3
    with open(out / "results.csv", newline="") as handle:
        results = list(csv.DictReader(handle))
    assert {r["status"] for r in results} == {"ok"}, [r["reason"] for r in results]
    assert {r["test_items"] for r in results if r["table"] == "recognition"} == {"1"}
    settings = json.loads((out / "bench.json").read_text())
    assert settings["data"]["retrieval"]["source"].startswith("msrvtt:")
    assert re.search(r"data kinetics:.*msrvtt:", (out / "report.md").read_text())


def test_cells_run_under_accelerate_launch(tmp_path):
    """MULTI-PROCESS (about 20 s): --launcher runs a cell's training on two processes (CPU, gloo); process 0
    writes the result, evaluation is split and gathered."""
    import sys

    launcher = Path(sys.executable).with_name("accelerate")
    assert launcher.exists(), f"no accelerate launcher next to {sys.executable}"
    command = f"{launcher} launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no"
    command += " --dynamo_backend no --main_process_port 29541"
    out = tmp_path / "bench"
    argv = ["bench", "--preset", "micro", "--out", str(out), "--backbone", "hf-config:clip-tiny", "--no-baselines"]
    argv += ["--tables", "recognition", "--paradigms", "post_network", "--launcher", command]
    assert main(argv) == 0
    folder = out / "cells" / "recognition" / "post_network" / "seed0"
    result = json.loads((folder / cell_module.RESULT).read_text())
    assert result["status"] == "ok", (folder / cell_module.LOG).read_text()[-2000:]
    assert json.loads((folder / "run" / "metrics.json").read_text())["world_size"] == 2
    assert result["test_items"] == 4 and "top1" in result["metrics"]
