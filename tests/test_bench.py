"""`videoadapt bench`: the matrix from the registries (the paradigm is the only thing that varies), learning rates
per arm (files, the sweep on validation), a micro bench end to end (report, CSV, intervals and plots agree), resume,
ties and leaders from the paired bootstrap, Kendall's tau between two benches, random-init backbones, and the
real-data recipe on the Kinetics and MSR-VTT fixtures."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from videoadapt.bench import cell as cell_module
from videoadapt.bench.learning_rates import GRIDS, HEAD_GRID, LearningRates, parse_grid, rates_file
from videoadapt.bench.matrix import (
    BENCH_PRESETS,
    HEAD_ONLY,
    RANDOM_INIT,
    SHARED_HEAD,
    ZERO_SHOT,
    Cell,
    bench_arms,
    build_matrix,
    cell_dir,
    random_counterpart,
    run_order,
    task_tables,
    with_budget,
)
from videoadapt.bench.report import write_report
from videoadapt.bench.runner import run_bench
from videoadapt.bench.statistics import TableStatistics, kendall_tau
from videoadapt.cli import main
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.paradigms import paradigm_names
from videoadapt.registry import registry
from videoadapt.tasks import Task, build_task
from videoadapt.utils.safe_io import save_json

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
ASL = Path(__file__).parent / "fixtures" / "asl"
# A tiny random HF CLIP: no MiniLM to load per cell (the shipped TinyCLIP runs the same code in `make demo`).
TINY = "hf-config:clip-tiny"


# --- the matrix -----------------------------------------------------------------------------------------------


def test_quick_covers_every_paradigm_on_recognition_with_a_large_test_split():
    tables, cells = build_matrix(BENCH_PRESETS["quick"])
    assert [t.name for t in tables] == ["recognition"]
    arms = {c.arm for c in cells}
    assert {ZERO_SHOT, RANDOM_INIT, HEAD_ONLY, SHARED_HEAD} <= arms
    assert {p for p in paradigm_names()} <= arms | {"post_network"}
    budget = BENCH_PRESETS["quick"].budget
    # At least 1,000 test videos: one video is then worth at most 0.1 point.
    assert round(budget.videos * budget.split_fractions[2]) >= 1000


def test_standard_covers_every_table_iii_table_with_three_seeds():
    preset = BENCH_PRESETS["standard"]
    tables, cells = build_matrix(preset)
    assert {t.name for t in tables} == {"recognition", "retrieval", "qa-mc", "qa-open", "captioning"}
    assert {c.seed for c in cells} == {0, 1, 2} and preset.seeds >= 3
    # Each seed is its own data set too.
    assert {(c.seed, c.data_seed) for c in cells} == {(0, 0), (1, 1), (2, 2)}
    zero = {c.table for c in cells if c.arm == ZERO_SHOT}
    assert "captioning" not in zero and "qa-open" not in zero and {"recognition", "retrieval", "qa-mc"} <= zero


def test_grounding_covers_table_ii_grounding():
    preset = BENCH_PRESETS["grounding"]
    tables, cells = build_matrix(preset)
    assert [t.name for t in tables] == ["temporal_grounding", "st_grounding"]
    assert preset.budget.source_frames == 16 and preset.budget.frames >= 8
    zero = {c.table: c for c in cells if c.arm == ZERO_SHOT}
    # Frame-text similarity is the zero-shot temporal grounder; per-frame detection by the grounding ILFM the STVG
    # one, so the preset runs on TinyOWL.
    assert zero["temporal_grounding"].head == {"head": "similarity"} and zero["st_grounding"].head == {
        "head": "detection"
    }
    assert preset.backbone == "tiny-owl" and {c.backbone for c in cells if c.arm == ZERO_SHOT} == {"tiny-owl"}
    # Tasks that hand the encoder a query sentence get R2-Tuning's side network as the side-tuning row; the task
    # modules name no paradigm, the bench decides from the task interface.
    side = {c.table: c.options["side_tuning"] for c in cells if c.arm == "side_tuning"}
    assert side == {t: {"design": "r2_tuning", "text": True} for t in ("temporal_grounding", "st_grounding")}
    assert {p for p in paradigm_names()} <= {c.arm for c in cells if c.table == "st_grounding"} | {"post_network"}


def test_the_paradigm_is_the_only_thing_that_varies():
    preset = BENCH_PRESETS["quick"]
    _, cells = build_matrix(preset)
    head = preset.budget.video_head
    by_arm = {c.arm: c for c in cells}
    # Every arm that adapts the backbone is read by the same shared head, composed after it.
    for arm in ("full_finetune", "partial_tuning", "adapter", "lora", "prompt_tuning", RANDOM_INIT):
        cell = by_arm[arm]
        assert cell.paradigm.endswith("+post_network") and cell.options["post_network"] == head, arm
        assert cell.role == "backbone" and cell.backbone_lr is not None
    assert by_arm[SHARED_HEAD].options == {"post_network": head} and by_arm[SHARED_HEAD].role == "frozen"
    assert by_arm[HEAD_ONLY].options == {"post_network": {"temporal": "mean"}}
    # The distilled student gets the same temporal head, and its teacher is the full fine-tuning row's run.
    distillation = by_arm["distillation"]
    assert {k: distillation.options["distillation"][k] for k in head} == head
    assert distillation.teacher == "recognition/full_finetune/seed0"
    # One task head for every trained arm (the zero-shot row keeps the untrained zero-shot head).
    trained_heads = {json.dumps(c.head, sort_keys=True) for c in cells if c.arm != ZERO_SHOT}
    assert len(trained_heads) == 1
    assert by_arm[ZERO_SHOT].head == {"classifier": "text"}
    # Same data everywhere.
    assert len({json.dumps(c.data, sort_keys=True) for c in cells}) == 1
    random = by_arm[RANDOM_INIT]
    assert random.backbone == "random:tiny" and random.paradigm == "full_finetune+post_network"


def test_teachers_train_before_their_students():
    _, cells = build_matrix(BENCH_PRESETS["standard"], paradigms=["distillation", "full_finetune"])
    order = [c.key for c in run_order(cells)]
    for cell in cells:
        if cell.teacher:
            assert order.index(cell.teacher) < order.index(cell.key)
    # Without its teacher's row in the bench, distillation has nobody to learn from: it is left out.
    assert "distillation" not in {a.name for a in bench_arms(["distillation"], {"temporal": "mean"})}


def test_a_task_registered_later_joins_the_matrix():
    class Counting(Task):
        name = "counting_test_only"
        monitor = "accuracy"

    task_tables()  # registers the built-in tasks first
    entries = registry._entries["task"]
    try:
        registry.register("task", "counting_test_only")(Counting)
        tables = {t.name: t for t in task_tables()}
        # Table II's tasks declare their own survey columns; a task without a declaration gets its metrics.
        assert tables["tracking"].title.startswith("Table II") and tables["segmentation"].title.startswith("Table II")
        assert tables["counting_test_only"].columns == ()
        _, cells = build_matrix(BENCH_PRESETS["full"], seeds=1)
        assert {c.arm for c in cells if c.table == "counting_test_only"} >= {"adapter", "lora", SHARED_HEAD}
    finally:
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


# --- learning rates -------------------------------------------------------------------------------------------


def _arms():
    return bench_arms(None, BENCH_PRESETS["quick"].budget.video_head)


def test_learning_rates_per_arm_from_a_file_and_the_defaults(tmp_path):
    arms = {a.name: a for a in _arms()}
    defaults = LearningRates.defaults()
    assert defaults.for_arm("recognition", arms[ZERO_SHOT]) == (None, None)
    lr, backbone = defaults.for_arm("recognition", arms["full_finetune"])
    assert backbone < lr  # pretrained weights move slower than the new head, as the papers train them
    chosen = {"recognition": {"adapter": {"lr": 3e-3, "backbone_lr": 1e-4}, SHARED_HEAD: {"lr": 1e-2}}}
    path = tmp_path / "rates.json"
    save_json(path, rates_file("quick", "videoadapt bench --sweep lr", chosen, {}, {}, "now"))
    rates = LearningRates.load(path, ["recognition"], list(arms.values()))
    assert rates.for_arm("recognition", arms["adapter"]) == (3e-3, 1e-4)
    assert rates.for_arm("recognition", arms[SHARED_HEAD]) == (1e-2, None)
    assert rates.for_arm("recognition", arms["lora"]) == defaults.for_arm("recognition", arms["lora"])
    _, cells = build_matrix(BENCH_PRESETS["quick"], rates=rates)
    adapter = next(c for c in cells if c.arm == "adapter")
    assert (adapter.lr, adapter.backbone_lr) == (3e-3, 1e-4)


@pytest.mark.parametrize(
    "tables, problem",
    [
        ({"recognition": {"adapter": {"lr": 0, "backbone_lr": 1e-3}}}, "must be a positive number"),
        ({"recognition": {"adapter": {"lr": -1e-3, "backbone_lr": 1e-3}}}, "must be a positive number"),
        ({"recognition": {"adapter": {"lr": 1e-3}}}, "give its backbone_lr"),
        ({"recognition": {"nope": {"lr": 1e-3}}}, "unknown arm 'nope'"),
        ({"retrieval": {"adapter": {"lr": 1e-3}}}, "unknown table 'retrieval'"),
    ],
)
def test_a_bad_learning_rate_file_names_the_file_and_the_value(tmp_path, tables, problem):
    path = tmp_path / "bad.json"
    save_json(path, rates_file("quick", "x", tables, {}, {}, "now"))
    with pytest.raises(InputFileError, match=re.escape(str(path)) + ".*" + re.escape(problem)):
        LearningRates.load(path, ["recognition"], _arms())
    save_json(path, {"tables": {}})
    with pytest.raises(InputFileError, match="not a learning-rate file"):
        LearningRates.load(path, ["recognition"], _arms())


def test_the_shipped_quick_rates_were_chosen_on_validation_by_the_sweep_they_name():
    """bench/rates/quick.json: every trainable arm of the quick bench has rates, each the best validation figure of
    the grid points the file records (the command that chose them is in the file)."""
    import importlib.resources

    resource = importlib.resources.files("videoadapt.bench").joinpath("rates", "quick.json")
    document = json.loads(resource.read_text())
    assert document["selected_on"] == "val" and "--sweep lr" in document["command"]
    assert "--preset quick" in document["command"]
    rates = LearningRates.shipped("quick")
    trained = [a for a in _arms() if a.trains]
    for arm in trained:
        chosen = rates.tables["recognition"][arm.name]
        points = document["sweep"]["recognition"][arm.name]
        swept = "backbone_lr" if arm.role == "backbone" else "lr"
        best = max((p for p in points if p["val"] is not None), key=lambda p: (p["val"], -p[swept]))
        assert chosen[swept] == best[swept], arm.name
    # The bench's cells take them: the quick matrix's rates are the file's.
    _, cells = build_matrix(BENCH_PRESETS["quick"], rates=rates)
    for cell in cells:
        if cell.role != "none":
            assert cell.lr == rates.tables["recognition"][cell.arm]["lr"]


def test_the_shipped_standard_rates_say_what_was_swept_and_what_was_carried_over():
    """bench/rates/standard.json: on every standard table the head rates were swept on that table's validation
    split (the best grid point), and each arm the sweep did not run carries the table's head rate and the backbone
    rate quick's sweep chose on recognition, as the file's `transferred` section says."""
    import importlib.resources

    folder = importlib.resources.files("videoadapt.bench").joinpath("rates")
    document = json.loads(folder.joinpath("standard.json").read_text())
    quick = LearningRates.shipped("quick").tables["recognition"]
    assert document["selected_on"] == "val" and "--preset standard --sweep lr" in document["command"]
    rates = LearningRates.shipped("standard")
    tables, _ = build_matrix(BENCH_PRESETS["standard"])
    trained = [a for a in _arms() if a.trains]
    assert set(rates.tables) == {t.name for t in tables}
    for table in rates.tables:
        swept = document["sweep"][table]
        carried = document["transferred"]["arms"][table]
        assert "post_network" in swept and "post_network" not in carried
        assert set(swept) | set(carried) == {a.name for a in trained}, table
        for arm in trained:
            chosen = rates.tables[table][arm.name]
            if arm.name in swept:
                role = "backbone_lr" if arm.role == "backbone" else "lr"
                best = max((p for p in swept[arm.name] if p["val"] is not None), key=lambda p: (p["val"], -p[role]))
                assert chosen[role] == best[role], (table, arm.name)
            else:
                assert chosen["lr"] == rates.tables[table]["post_network"]["lr"], (table, arm.name)
                assert chosen.get("backbone_lr") == quick[arm.name].get("backbone_lr"), (table, arm.name)
    # The standard matrix reads them (not the defaults).
    _, cells = build_matrix(BENCH_PRESETS["standard"], rates=rates)
    assert all(c.lr == rates.tables[c.table][c.arm]["lr"] for c in cells if c.role != "none")


def test_grids_span_the_published_recipes_and_refuse_non_positive_rates():
    # Full fine-tuning's grid reaches down to the published CLIP rates (1e-7..1e-5) and up to a new module's.
    assert min(GRIDS["full_finetune"]) <= 1e-5 and max(GRIDS["full_finetune"]) >= 1e-4
    assert min(GRIDS["adapter"]) <= 1e-4 <= 1e-3 <= max(GRIDS["adapter"])
    assert all(v > 0 for v in HEAD_GRID)
    assert parse_grid("1e-4, 3e-4") == (1e-4, 3e-4)
    for bad in ("0", "1e-3,-1e-4", "fast", ""):
        with pytest.raises(VideoadaptError, match="--grid"):
            parse_grid(bad)


def test_the_sweep_chooses_on_validation_and_never_reads_test(tmp_path, monkeypatch):
    """SWEEP (about 20 s): two grid points per arm on the micro preset; the chosen file feeds a bench."""
    from videoadapt.bench.sweep import run_sweep
    from videoadapt.data import formats

    splits = []
    real = formats.load_task_data

    def spy(data, split, task, **options):
        splits.append(split)
        return real(data, split, task, **options)

    monkeypatch.setattr(formats, "load_task_data", spy)
    out = tmp_path / "sweep"
    result = run_sweep(
        out,
        BENCH_PRESETS["micro"],
        command="videoadapt bench --preset micro --sweep lr",
        backbone=TINY,
        paradigms=["post_network", "lora"],
        tables=["recognition"],
        grids={"head": (1e-3, 1e-2), "lora": (1e-4, 1e-3), RANDOM_INIT: (1e-3,), HEAD_ONLY: (1e-2,)},
        isolate=False,
        progress=False,
        extend=0,
    )
    assert result["complete"] and "test" not in splits and "val" in splits
    chosen = result["chosen"]["recognition"]
    tried = result["tried"]["recognition"]
    head = max(tried[SHARED_HEAD], key=lambda p: (p["val"], -p["lr"]))["lr"]
    assert chosen[SHARED_HEAD] == {"lr": head}
    # LoRA swept its backbone rate with the head rate the shared head chose.
    assert {p["lr"] for p in tried["lora"]} == {head} and chosen["lora"]["lr"] == head
    assert chosen["lora"]["backbone_lr"] in (1e-4, 1e-3)
    rates = LearningRates.load(out / "learning_rates.json", ["recognition"], _arms())
    lora = next(a for a in _arms() if a.name == "lora")
    assert "--sweep lr" in rates.command
    assert rates.for_arm("recognition", lora) == (chosen["lora"]["lr"], chosen["lora"]["backbone_lr"])
    assert "test split was not read" in (out / "sweep.md").read_text()


def test_a_sweep_whose_best_rate_sits_at_the_grid_edge_tries_further(tmp_path, monkeypatch):
    """The validation figure peaks at 3e-2, beyond the grid (1e-3, 3e-3): the sweep adds 1e-2 then 3e-2, and stops
    after the peak; below the grid nothing is added. Cells are faked (the choice logic alone)."""
    import math

    from videoadapt.bench import sweep as sweep_module
    from videoadapt.bench.sweep import half_decade, run_sweep

    assert [half_decade(1e-3, True), half_decade(3e-3, True), half_decade(1e-4, False)] == [3e-3, 1e-2, 3e-5]

    def fake_cells(out, cells, spec_of, *args, **kwargs):
        for cell in cells:
            folder = cell_dir(out, cell)
            folder.mkdir(parents=True, exist_ok=True)
            rate = cell.backbone_lr if cell.role == "backbone" else cell.lr
            value = 50 - 10 * abs(math.log10(rate) - math.log10(3e-2))
            save_json(folder / cell_module.RESULT, {"status": "ok", "metrics": {"top1": value}})
        return [c.key for c in cells], []

    monkeypatch.setattr(sweep_module, "run_cells", fake_cells)
    result = run_sweep(
        tmp_path / "sweep",
        BENCH_PRESETS["micro"],
        command="test",
        paradigms=["post_network"],
        tables=["recognition"],
        grids={"head": (1e-3, 3e-3), HEAD_ONLY: (3e-2, 1e-1), RANDOM_INIT: (3e-2,)},
        progress=False,
    )
    tried = result["tried"]["recognition"]
    assert [p["lr"] for p in tried[SHARED_HEAD]] == [1e-3, 3e-3, 1e-2, 3e-2]  # two steps up, at most
    assert result["chosen"]["recognition"][SHARED_HEAD] == {"lr": 3e-2}
    assert [p["lr"] for p in tried[HEAD_ONLY]] == [1e-2, 3e-2, 1e-1]  # best at the low edge: one step down
    assert result["chosen"]["recognition"][RANDOM_INIT]["backbone_lr"] == 3e-2  # one value: nothing to extend


# --- a micro bench end to end ---------------------------------------------------------------------------------


def _report_rows(report: str, title: str) -> dict[str, dict[str, str]]:
    """The rows of the report's table under the heading that starts with ``### title``, by first cell."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"### {title} "))
    rows = {}
    header = None
    for line in lines[start + 1 :]:
        if line.startswith("###") or line.startswith("## "):
            break
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if header is None:
            header = cells
            continue
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def _folder(out: Path, key: str) -> Path:
    from videoadapt.bench.matrix import slug

    return out / "cells" / Path(*[slug(part) for part in key.split("/")])


def test_micro_bench_resumes_and_its_report_csv_intervals_and_plots_agree(tmp_path):
    """MICRO BENCH (about 30 s of CPU): 2 paradigms x 2 tasks + baselines, interrupted after 3 cells, continued."""
    out = tmp_path / "bench"
    preset = with_budget(BENCH_PRESETS["micro"], curve_points=2, steps=4)
    kwargs = dict(paradigms=["post_network", "lora"], backbone=TINY, isolate=False, progress=False)
    first = run_bench(out, preset, max_cells=3, **kwargs)
    assert len(first["ran"]) == 3 and not first["complete"]
    finished = {key: (_folder(out, key) / cell_module.RESULT).read_bytes() for key in first["ran"]}
    seen = []
    second = run_bench(out, preset, on_cell=lambda cell, result: seen.append(cell.key), **kwargs)
    assert second["complete"] and second["reused"] == first["ran"]
    assert not set(seen) & set(first["ran"]) and len(seen) == 2 * 5 - 3  # nothing recomputed
    for key, content in finished.items():
        assert (_folder(out, key) / cell_module.RESULT).read_bytes() == content

    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and {r["status"] for r in rows} == {"ok"}, [r["reason"] for r in rows]
    # The zero-shot row reads the frozen rows' shared cache: the frame features post_network:mean is trained on.
    zero = json.loads((_folder(out, f"recognition/{ZERO_SHOT}/seed0") / cell_module.RESULT).read_text())
    assert zero["cached_features"] is True
    report = (out / "report.md").read_text()
    columns = {"recognition": ("top-1", "top1"), "retrieval": ("R@sum", "t2v_Rsum")}
    labels = {ZERO_SHOT: "zero-shot ILFM", RANDOM_INIT: "random init"}
    for table, (label, key) in columns.items():
        shown = _report_rows(report, table)
        for row in (r for r in rows if r["table"] == table):
            name = labels.get(row["arm"], row["arm"])
            folder = _folder(out, f"{table}/{row['arm']}/seed0")
            # The point is the CSV's metric; the interval comes from the cell's per-item statistics.
            point, low, high = re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", shown[name][label]).groups()
            assert float(point) == pytest.approx(float(row[f"metric:{key}"]), abs=0.051)
            assert float(low) <= float(point) + 0.05 and float(point) - 0.05 <= float(high)
            assert (folder / cell_module.ITEM_STATS).is_file() and (folder / cell_module.PREDICTIONS).is_file()
            records = (folder / cell_module.PREDICTIONS).read_text().splitlines()
            assert len(records) == int(row["test_items"])
            if row["arm"] != ZERO_SHOT:
                assert int(row["steps"]) == preset.budget.steps
                assert shown[name]["lr"] != "—"
                result = json.loads((folder / cell_module.RESULT).read_text())
                # The learning curve: validations during training, with steps, seconds and compute so far.
                steps = [p["step"] for p in result["curve"]]
                assert steps == sorted(steps) and steps[-1] == preset.budget.steps and len(steps) >= 2
                assert all(p["train_gflops"] > 0 for p in result["curve"])
        for kind in ("params", "time", "curves"):
            png = out / "plots" / f"{table}-{'vs-' if kind != 'curves' else ''}{kind}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"plots/{png.name}" in report
    lora = next(r for r in rows if r["arm"] == "lora" and r["table"] == "recognition")
    assert float(lora["backbone_lr"]) > 0 and lora["composition"].startswith("lora+post_network")
    assert "What each row changes relative to the zero-shot row" in report
    assert re.search(r"(leads with|are tied)", report) and "Table II" in report


# --- intervals, leaders and ties ------------------------------------------------------------------------------


def _recognition_stats(correct: np.ndarray) -> dict[str, np.ndarray]:
    """Item statistics of a 2-class recognition run whose per-item correctness is ``correct``."""
    from videoadapt.data.records import ClassificationItem, TaskData, VideoRef

    labels = np.zeros(len(correct), dtype=int)
    scores = np.stack([correct.astype(float), 1 - correct.astype(float)], axis=1)
    items = [ClassificationItem(VideoRef(f"v{i}"), int(label)) for i, label in enumerate(labels)]
    data = TaskData("recognition", "test", items, None, "test", ["a", "b"])
    return build_task("recognition").item_statistics([torch.tensor(s) for s in scores], data)


def test_a_leader_is_named_only_when_the_paired_interval_excludes_zero():
    rng = np.random.default_rng(0)
    base = rng.random(1000) < 0.5
    stats = TableStatistics(build_task("recognition"), "recognition")
    stats.add("strong", 0, _recognition_stats(base | (rng.random(1000) < 0.3)))  # right wherever base is, and more
    stats.add("same", 0, _recognition_stats(base.copy()))
    stats.add("twin", 0, _recognition_stats(np.where(rng.random(1000) < 0.01, ~base, base)))  # 1 % flipped
    ranking = stats.ranking(["strong", "same", "twin"], "top1")
    assert ranking["best"] == "strong" and not ranking["tied"]
    low, high = stats.summary("same", "top1")[1:3]
    assert low < 100 * base.mean() < high and high - low < 7
    # Two arms that differ on a handful of items are tied, though one is ahead by its point estimate.
    tie = stats.ranking(["same", "twin"], "top1")
    assert tie["tied"] and tie["tied"][0]["difference"][1] <= 0 <= tie["tied"][0]["difference"][2]
    # The difference of an arm with itself is exactly zero in every resample.
    assert stats.difference("same", "same", "top1")[:3] == (0.0, 0.0, 0.0)


def test_a_shortfall_is_explained_by_what_the_bench_measured():
    from videoadapt.bench.report import diagnose

    blind = {"metrics": {"reversal_pair_accuracy": (49.8, 0, 1)}, "intervals": {"reversal_pair_accuracy": (49.6, 49.9)}}
    rising = [{"step": 100.0, "top1": 10.0}, {"step": 200.0, "top1": 14.0}]
    flat = [{"step": 100.0, "top1": 10.0}, {"step": 200.0, "top1": 10.2}]
    text = diagnose("x", blind, rising, "top1")
    assert "does not tell time-reversed actions apart" in text and "still learning" in text and "+4.0" in text
    seeing = {"metrics": {"reversal_pair_accuracy": (60.0, 0, 1)}, "intervals": {"reversal_pair_accuracy": (58, 62)}}
    assert diagnose("x", seeing, flat, "top1").startswith("settled (validation +0.2")
    assert diagnose("x", seeing, [], "top1") == "no learning curve to tell why"


def test_against_a_baseline_a_difference_whose_interval_holds_the_bar_is_a_tie():
    from videoadapt.bench.matrix import Table
    from videoadapt.bench.report import summary_lines

    table = Table("retrieval", "retrieval", "Table III: retrieval", (("R@sum", "t2v_Rsum"),))
    figures = {"zero_shot": 60.0, "under": 40.0, "level": 59.9, "over": 80.0}
    entries = [
        {"arm": arm, "metrics": {"t2v_Rsum": (v, 0.0, 1)}, "intervals": {"t2v_Rsum": (v - 3, v + 3)}}
        for arm, v in figures.items()
    ]
    versus = {
        "under": {"point": -20.0, "difference": (-20.0, -26.0, -14.0, 1000)},
        "level": {"point": -0.1, "difference": (-0.1, -0.4, 0.2, 1000)},
        "over": {"point": 20.0, "difference": (20.0, 15.0, 25.0, 1000)},
    }
    ranking = {"best": "over", "tied": [], "behind": [{"arm": "level", "difference": (20.1, 15.0, 25.0, 1000)}]}
    standing = {"metric": "t2v_Rsum", "ranking": ranking, "baselines": {"zero_shot": versus}}
    text = "\n".join(summary_lines(table, entries, standing))
    assert "1 arm(s) below its figure, 1 arm(s) tied with its figure (the paired interval holds it), 1 above" in text
    assert "under -20.0 [-26.0, -14.0] (below)" in text and "level -0.1 [-0.4, +0.2] (tied)" in text
    assert "over +20.0" not in text


def test_kendall_tau_and_compare_refuse_benches_of_another_preset(tmp_path, capsys):
    assert kendall_tau({"a": 3, "b": 2, "c": 1}, {"a": 30, "b": 20, "c": 10}) == (1.0, 3)
    assert kendall_tau({"a": 3, "b": 2, "c": 1}, {"a": 10, "b": 20, "c": 30})[0] == -1.0
    for name, preset, values in (("a", "quick", (50, 40, 30)), ("b", "quick", (52, 31, 38)), ("c", "micro", (1, 2, 3))):
        rows = [
            {"arm": arm, "status": "ok", "metrics": {"top1": [v, 0, 1]}}
            for arm, v in zip(("adapter", "lora", "full_finetune"), values, strict=True)
        ]
        rows.append({"arm": ZERO_SHOT, "status": "ok", "metrics": {"top1": [99, 0, 1]}})  # baselines are not ranked
        summary = {"settings": {"preset": preset, "backbone": "tiny", "budget": {"steps": 1}}}
        summary["tables"] = {"recognition": {"primary_metric": "top1", "rows": rows}}
        (tmp_path / name).mkdir()
        save_json(tmp_path / name / "summary.json", summary)
    assert main(["bench", "--compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)["tables"]["recognition"]
    assert compared["arms"] == 3 and compared["kendall_tau"] == pytest.approx(1 / 3)
    assert main(["bench", "--compare", str(tmp_path / "a"), str(tmp_path / "c")]) == 2
    assert "another preset" in capsys.readouterr().err
    assert main(["bench", "--compare", str(tmp_path / "a"), str(tmp_path / "missing")]) == 2
    assert "not a finished bench folder" in capsys.readouterr().err


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


def test_report_means_over_seeds_come_from_the_csv_and_failed_seeds_are_left_out(tmp_path):
    preset = BENCH_PRESETS["micro"]
    tables, cells = build_matrix(preset, seeds=3, paradigms=["lora", "full_finetune"], tables=["recognition"])
    values = {"lora": [40.0, 50.0, 45.0], "full_finetune": [30.0, 20.0, 31.0], RANDOM_INIT: [5.0, 6.0, 7.0]}
    for cell in cells:
        if cell.arm == ZERO_SHOT:
            _fake_result(tmp_path, cell, 12.0, 0.0)
        elif cell.arm == "full_finetune" and cell.seed == 2:
            _fake_result(tmp_path, cell, 0.0, 0.0, status="failed")
        else:
            _fake_result(tmp_path, cell, values[cell.arm][cell.seed], 1.0 + cell.seed)
    settings = {"preset": "micro", "budget": vars(preset.budget), "backbone": "tiny", "seeds": 3, "paradigms": None}
    settings["data"] = {"recognition/seed0": {"source": "synth", "options": {}}}
    write_report(tmp_path, tables, cells, settings)
    report = (tmp_path / "report.md").read_text()
    shown = _report_rows(report, "recognition")
    # No item statistics kept by these fake cells: points without intervals, means over the seeds that finished.
    assert shown["lora"]["top-1"] == "45.0" and shown["full_finetune"]["top-1"] == "25.0"
    assert shown["lora"]["train s"] == "2.0 ± 1.0"
    assert "**lora** leads" in report
    with open(tmp_path / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(r["status"] == "failed" for r in rows) == 1 and len(rows) == 3 * 4


def test_incompatible_cells_are_reported_with_their_reason(tmp_path):
    preset = BENCH_PRESETS["micro"]
    tables, cells = build_matrix(preset, paradigms=["lora"], tables=["recognition"])
    for cell in cells:
        _fake_result(tmp_path, cell, 20.0, 1.0, status="incompatible" if cell.arm == "lora" else "ok")
    settings = {"preset": "micro", "budget": vars(preset.budget), "backbone": "tiny", "seeds": 1, "paradigms": None}
    settings["data"] = {"recognition/seed0": {"source": "synth", "options": {}}}
    write_report(tmp_path, tables, cells, settings)
    report = (tmp_path / "report.md").read_text()
    assert "lora: incompatible: cannot be built for this task" in report
    assert "| lora (incompatible) |" in report


def test_cli_help_list_and_bad_flags(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0 and "--sweep" in capsys.readouterr().out
    assert main(["bench", "--preset", "standard", "--out", str(tmp_path / "b"), "--list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert "qa-mc/zero_shot/seed0" in listing["cells"] and "recognition/side_tuning/seed2" in listing["cells"]
    assert listing["rates"]["recognition/adapter/seed0"]["backbone_lr"] > 0
    assert main(["bench", "--out", str(tmp_path / "b"), "--data", "msrvtt"]) == 2
    assert "expected synth or TABLE=SPEC" in capsys.readouterr().err
    for argv, message in (
        (["--lr", "0"], "--lr: learning rate 0.0 must be a positive number"),
        (["--sweep", "lr", "--grid", "adapter=1e-3,0"], "--grid adapter"),
        (["--grid", "adapter=1e-3"], "--grid goes with --sweep"),
        (["--test-split", "val"], "also the validation split"),
        (["--test-split", "recognition=val"], "also the validation split"),
        (["--test-split", "=test"], "expected SPLIT or TABLE=SPLIT"),
        (["--learning-rates", str(tmp_path / "none.json")], "learning-rate file not found"),
    ):
        assert main(["bench", "--out", str(tmp_path / "c"), "--tables", "recognition", *argv]) == 2
        assert message in capsys.readouterr().err, argv


def test_rerun_with_other_settings_is_refused(tmp_path):
    save_json(tmp_path / "bench.json", {"preset": "quick"})
    with pytest.raises(VideoadaptError, match="other settings"):
        run_bench(tmp_path, BENCH_PRESETS["micro"], paradigms=["post_network"], isolate=False, progress=False)


# --- the real-data recipe on the fixtures ---------------------------------------------------------------------


def test_holdout_splits_validate_on_training_videos_only():
    from videoadapt.data.formats import load_task_data

    options = {"videos": 60, "seed": 3}
    train = load_task_data("synth", "train", "qa", **options)
    held = load_task_data("synth", "holdout", "qa", **options, holdout_fraction=0.25)
    fit = load_task_data("synth", "fit", "qa", **options, holdout_fraction=0.25)
    ids = [{i.video.video_id for i in d.items} for d in (train, held, fit)]
    assert ids[1] and ids[2] and not ids[1] & ids[2] and ids[1] | ids[2] == ids[0]
    assert len(held.items) + len(fit.items) == len(train.items)  # a video's questions stay on one side
    again = load_task_data("synth", "holdout", "qa", **options, holdout_fraction=0.25)
    assert [i.question_id for i in again.items] == [i.question_id for i in held.items]
    with pytest.raises(VideoadaptError, match="holdout_fraction must be between 0 and 1"):
        load_task_data("synth", "holdout", "qa", **options, holdout_fraction=1.5)
    # The option describes the data set: the other splits read as they are.
    test = load_task_data("synth", "test", "qa", **options, holdout_fraction=0.2)
    assert test.items == load_task_data("synth", "test", "qa", **options).items


def test_real_data_recipe_on_kinetics_and_msrvtt_fixtures(tmp_path, capsys):
    """The docs/bench.md recipe with the formats' fixtures: Kinetics-400 csv for recognition (clips named as the
    official downloader names them) and MSR-VTT (9k train list, 1k-A test) for retrieval, on a tiny HF CLIP;
    validation on a part of the training split, scored on the split papers report."""
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
    argv = ["bench", "--preset", "micro", "--out", str(out), "--backbone", TINY]
    argv += ["--tables", "recognition,retrieval", "--paradigms", "post_network", "--in-process"]
    argv += [
        "--data",
        f"recognition=kinetics:{FIXTURES / 'kinetics'}",
        "--data",
        f"retrieval=msrvtt:{FIXTURES / 'msrvtt'}",
    ]
    argv += ["--data-option", f"recognition.video_dir={clips}", "--data-option", f"retrieval.video_dir={ASL}"]
    argv += ["--data-option", "recognition.holdout_fraction=0.5", "--data-option", "retrieval.holdout_fraction=0.5"]
    argv += ["--train-split", "fit", "--val-split", "holdout", "--validate"]
    argv += ["--test-split", "recognition=val", "--test-split", "retrieval=test"]  # what each benchmark reports
    argv += ["--steps", "1", "--batch-size", "1", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cells_finished"] == summary["cells"] == 2 * 4
    with open(out / "results.csv", newline="") as handle:
        results = list(csv.DictReader(handle))
    assert {r["status"] for r in results} == {"ok"}, [r["reason"] for r in results]
    settings = json.loads((out / "bench.json").read_text())
    assert settings["splits"] == {"train": "fit", "val": "holdout", "test": {"recognition": "val", "retrieval": "test"}}
    assert settings["data"]["retrieval/seed0"]["source"].startswith("msrvtt:")
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
    argv = ["bench", "--preset", "micro", "--out", str(out), "--backbone", TINY, "--no-baselines"]
    argv += ["--tables", "recognition", "--paradigms", "post_network", "--launcher", command, "--precision", "fp32"]
    assert main(argv) == 0
    folder = out / "cells" / "recognition" / "post_network" / "seed0"
    result = json.loads((folder / cell_module.RESULT).read_text())
    assert result["status"] == "ok", (folder / cell_module.LOG).read_text()[-2000:]
    assert json.loads((folder / "run" / "metrics.json").read_text())["world_size"] == 2


def test_every_preset_can_be_named_on_the_command_line():
    from videoadapt.commands.bench import PRESET_NAMES

    assert set(PRESET_NAMES) == set(BENCH_PRESETS)
