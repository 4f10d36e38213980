"""The bench's video-MLLM rows (``--mllm SPEC``): which tables get them, their compositions, heads, roles and
rates, and a micro bench that runs them through the runner on the tiny random MLLM."""

from __future__ import annotations

import pytest

from mllm_helpers import make_mllm
from videoadapt.bench.matrix import BENCH_PRESETS, build_matrix, with_budget


def test_mllm_rows_join_the_generative_tables_only() -> None:
    preset = BENCH_PRESETS["standard"]
    names = ["post_network", "lora", "side_tuning", "full_finetune"]
    _, plain = build_matrix(preset, seeds=1, paradigms=names)
    assert not [c for c in plain if c.arm.startswith("mllm:")]
    tables, cells = build_matrix(preset, seeds=1, paradigms=names, mllm="mllm")
    rows = {(c.table, c.arm): c for c in cells if c.arm.startswith("mllm:")}
    for table in ("captioning", "qa-mc", "qa-open"):
        arms = [arm for t, arm in rows if t == table]
        # side-tuning is a head beside a contrastive tower: no MLLM row
        assert arms == ["mllm:zero_shot", "mllm:post_network", "mllm:full_finetune", "mllm:lora"]
    assert not [t for t, _ in rows if t in ("recognition", "retrieval")]
    zero = rows[("captioning", "mllm:zero_shot")]
    assert zero.backbone == "mllm" and zero.head["video"] is False and zero.head["head"] == "mllm"
    assert zero.role == "none" and zero.lr is None
    post, lora = rows[("qa-open", "mllm:post_network")], rows[("qa-open", "mllm:lora")]
    assert post.paradigm == "post_network" and post.role == "frozen" and post.backbone_lr is None
    assert lora.paradigm == "lora" and lora.role == "backbone" and lora.backbone_lr == pytest.approx(2e-4)
    assert rows[("qa-mc", "mllm:full_finetune")].backbone_lr == pytest.approx(2e-5)
    assert "video" not in post.head and post.head["max_new_tokens"] == 8


def test_a_micro_bench_runs_the_mllm_rows(tmp_path, monkeypatch) -> None:
    import warnings

    from videoadapt.bench.runner import run_bench
    from videoadapt.foundation import loading

    real = loading.load_backbone
    monkeypatch.setattr(
        loading, "load_backbone", lambda spec: make_mllm(feature_layer=-1) if spec == "mllm" else real(spec)
    )
    preset = with_budget(BENCH_PRESETS["micro"], steps=1, batch_size=4, frames=2, videos=24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = run_bench(
            tmp_path / "b",
            preset,
            backbone="hf-config:clip-tiny",
            tables=["qa-mc"],
            paradigms=["post_network"],
            baselines=False,
            isolate=False,
            progress=False,
            mllm="mllm",
        )
    report = (tmp_path / "b" / "report.md").read_text()
    assert "mllm:post_network" in report and "mllm:zero_shot" in report
    assert len(summary["ran"]) == 4  # two head-axis rows, the MLLM's zero-shot and post-network rows
    import csv

    with open(tmp_path / "b" / "results.csv") as handle:
        rows = {r["arm"]: r for r in csv.DictReader(handle)}
    for arm in ("mllm:zero_shot", "mllm:post_network"):
        assert 0.0 <= float(rows[arm]["metric:accuracy"]) <= 100.0, rows[arm]
    assert float(rows["mllm:post_network"]["trainable_parameters"]) > 0
