"""Frames/s of the bench cells that train the backbone: today's settings against the new ones, side by side.

    python benchmarks/train_rate.py [--paradigms full_finetune,adapter,lora,prompt_tuning,partial_tuning]
        [--steps 16] [--batch N] [--frames 4] [--size 64] [--videos 240] [--rounds 1]
        [--settings before,after] [--json]

Each run is a bench cell's training (``videoadapt.bench.cell.config_for``'s settings and the bench's composition of
the paradigm, e.g. ``adapter+post_network`` with the shared one-layer temporal head: recognition on SynthWorld
generated on the fly, ``run.checkpoint_every=0``, no progress bar, no validation) through the real ``Trainer``, in a
fresh process of its own as the bench runs a cell, under one of these settings:

* ``before``: what a cell ran with before this benchmark was written: batches of 8 clips (the old quick preset's),
  fp32 (``run.precision=no``), ``OMP_WAIT_POLICY=PASSIVE`` (bench/runner.py sets it for cells), and SynthWorld
  clips drawn whole (every frame, and the annotations) before the sampler picks its frames, as ``SynthSource`` did;
  the fp32 path computes bit for bit what it did.
* ``after``: the new settings for cells: batches of 16 clips (the quick preset's now), ``run.precision=auto``
  (bf16 autocast on this CPU, which has AVX512-BF16), only the sampled frames of a SynthWorld clip drawn
  (``SynthWorld.frames``), and OpenMP threads that spin ~10 us before they sleep (``GOMP_SPINCOUNT=1000`` beside
  ``OMP_WAIT_POLICY=PASSIVE``, which alone makes every idle thread sleep at once, so each of the ~1,500 parallel
  regions of a step starts by waking the other thread);
* ``bf16_passive`` (not run by default): ``after`` without the spinning, to tell the two changes apart.

frames/s is ``clips_seen x frames / train_seconds`` from ``metrics.json`` (training steps only, first step
included; validation, checkpoints and model building excluded); ``steady_ms_per_step`` is the median step of
``log.csv`` after the first two. The runs of a paradigm alternate (before, after, before, ...) so that a change of
load on a shared machine hits both; the machine's load average is reported before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PARADIGMS = ("full_finetune", "adapter", "lora", "prompt_tuning", "partial_tuning")
SETTINGS: dict[str, dict] = {
    "before": {
        "overrides": ["run.precision=no"],
        "env": {"OMP_WAIT_POLICY": "PASSIVE"},
        "whole_clips": True,
        "batch": 8,  # the old quick preset: 16 steps of 8 clips
    },
    "after": {
        "overrides": ["run.precision=auto"],
        "env": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"},
        "batch": 16,  # the quick preset now
    },
    "bf16_passive": {"overrides": ["run.precision=auto"], "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
}


def one_cell(args: argparse.Namespace, paradigm: str, setting: str, out: Path) -> dict:
    """Train one cell in this process and return its rates (the child side of :func:`run_cell`)."""
    import csv

    from omegaconf import OmegaConf

    from videoadapt.bench.cell import config_for
    from videoadapt.bench.matrix import BENCH_PRESETS, paradigm_arms
    from videoadapt.model.config import check_config
    from videoadapt.train.trainer import Trainer

    if SETTINGS[setting].get("whole_clips"):
        _draw_whole_clips()
    arm = paradigm_arms(paradigm, BENCH_PRESETS["quick"].budget.video_head)[-1]
    spec = {
        "cell": {
            "task": "recognition",
            "paradigm": arm.paradigm,
            "backbone": args.backbone,
            "options": arm.options,
            "head": {},
            "seed": 0,
        },
        "budget": {
            "frames": args.frames,
            "validate": False,
            "steps": args.steps,
            "batch_size": args.batch or SETTINGS[setting].get("batch", 16),
            "eval_batch_size": 32,
            "lr": 1e-3,
            "warmup_steps": 0,
        },
        "data": {
            "source": "synth",
            "options": {"seed": 0, "videos": args.videos, "size": args.size, "frames": args.source_frames},
        },
        "cache_dir": str(out / "cache"),
        "device": "cpu",
    }
    # The cell's own config, then the setting's overrides (an unknown key is refused: the config is strict).
    config = OmegaConf.merge(config_for(spec), OmegaConf.from_dotlist(SETTINGS[setting]["overrides"]))
    check_config(config)
    trainer = Trainer(config, out / "run")
    metrics = trainer.fit()
    with open(out / "run" / "log.csv", newline="") as handle:
        elapsed = [float(row["elapsed_s"]) for row in csv.DictReader(handle)]
    steps = [b - a for a, b in zip([0.0, *elapsed], elapsed, strict=False)]
    frames = metrics["train"]["clips_seen"] * args.frames
    return {
        "paradigm": paradigm,
        "setting": setting,
        "precision": metrics["precision"],
        "steps": metrics["steps"],
        "train_seconds": metrics["train"]["train_seconds"],
        "frames_per_s": frames / metrics["train"]["train_seconds"],
        "steady_ms_per_step": 1000 * statistics.median(steps[2:]) if len(steps) > 2 else None,
        "first_step_ms": 1000 * steps[0],
        "final_loss": metrics["train"]["final_loss"],
        "trainable_parameters": metrics["trainable_parameters"],
    }


def _draw_whole_clips() -> None:
    """SynthWorld clips as ``SynthSource`` drew them before: the whole video with its annotations, then the
    sampler's frames (the ``before`` setting)."""
    import numpy as np

    from videoadapt.data.formats import synthworld
    from videoadapt.data.synthworld import SynthWorld

    def frames(self, ref, sampler=None, rng=None):  # noqa: ANN001, ANN202 - the method it stands in for
        split, index = ref.video_id.rsplit("_", 1)
        video = SynthWorld(self.config).video(split, int(index))
        if sampler is None:
            return video.frames
        return video.frames[np.asarray(sampler.indices(video.num_frames, video.fps, rng), dtype=np.int64).reshape(-1)]

    synthworld.SynthSource.frames = frames


def run_cell(args: argparse.Namespace, paradigm: str, setting: str) -> dict:
    """One cell in a fresh process with the setting's environment (OpenMP reads it once, at start)."""
    command = [sys.executable, __file__, "--child", paradigm, setting, *_shared_flags(args)]
    env = {**os.environ, **SETTINGS[setting]["env"], "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([*command, "--out", tmp], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{paradigm} ({setting}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _shared_flags(args: argparse.Namespace) -> list[str]:
    names = ("backbone", "steps", "batch", "frames", "size", "videos", "source_frames")
    return [
        item
        for name in names
        if getattr(args, name) is not None
        for item in (f"--{name.replace('_', '-')}", str(getattr(args, name)))
    ]


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paradigms", default=",".join(PARADIGMS))
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument(
        "--batch", type=int, help="clips per optimizer step for every setting (default: each setting's own, 8 before)"
    )
    parser.add_argument("--frames", type=int, default=4, help="frames per clip")
    parser.add_argument("--size", type=int, default=64, help="SynthWorld frame size (px)")
    parser.add_argument("--videos", type=int, default=240, help="SynthWorld videos in all splits")
    parser.add_argument("--source-frames", type=int, default=8, help="frames of each generated video")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each (paradigm, setting); the best is kept")
    parser.add_argument("--settings", default="before,after", help=f"among {', '.join(SETTINGS)}; before first")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("PARADIGM", "SETTING"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_cell(args, *args.child, Path(args.out))))
        return

    from videoadapt.utils.machine import machine_description

    settings = args.settings.split(",")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown or settings[0] != "before" or len(settings) < 2:
        parser.error(f"--settings: 'before' then one or more of {', '.join(SETTINGS)} (got {args.settings!r})")
    load_before = load_average()
    rows = []
    for paradigm in args.paradigms.split(","):
        runs: dict[str, list[dict]] = {name: [] for name in settings}
        for _ in range(args.rounds):
            for name in settings:
                runs[name].append(run_cell(args, paradigm, name))
        best = {name: max(found, key=lambda r: r["frames_per_s"]) for name, found in runs.items()}
        base = best["before"]["frames_per_s"]
        rows.append(
            {
                "paradigm": paradigm,
                **{f"{name}_frames_per_s": best[name]["frames_per_s"] for name in settings},
                # Each setting's rate over before's; "ratio" is the last setting's (after, by default).
                **{f"{name}_ratio": best[name]["frames_per_s"] / base for name in settings[1:]},
                "ratio": best[settings[-1]]["frames_per_s"] / base,
                "runs": best,
            }
        )
    result = {
        "benchmark": "train_rate",
        "settings": {name: SETTINGS[name] for name in settings},
        "budget": {k: getattr(args, k) for k in ("steps", "frames", "size", "videos", "source_frames")},
        "batch": {name: args.batch or SETTINGS[name].get("batch", 16) for name in settings},
        "machine": machine_description(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "paradigms": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'paradigm':16}" + "".join(f" {name + ' frames/s':>22}" for name in settings) + f" {'ratio':>6}")
    for row in rows:
        rates = "".join(f" {row[name + '_frames_per_s']:22.1f}" for name in settings)
        print(f"{row['paradigm']:16}{rates} {row['ratio']:6.2f}")
    print(f"load average before {load_before}, after {result['load_average_after']}")


if __name__ == "__main__":
    main()
