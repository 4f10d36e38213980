"""Evaluation time of item-at-a-time prediction (what ``evaluate_data`` does, so that metrics are the same at every
batch size) against the batched prediction it replaced, on one model and one split, side by side.

    python benchmarks/eval_per_item.py [--items 240] [--batch 64] [--frames 8] [--size 64] [--rounds 3]
        [--cases recognition:lora+post_network,recognition:post_network:cache,...] [--precision no|bf16] [--json]

Both paths decode (or read the feature cache for) ``--batch`` items at a time; ``batched`` then runs the model on
the whole batch (items' numbers move by ~1e-6 with their neighbours), ``per_item`` on each item alone
(``BatchBuilder.each_item``). The model is built untrained from the shipped TinyCLIP (weights do not change the
cost); a ``:cache`` case reads the frozen backbone's features from a cache extracted once before timing (only the
head runs); ``extraction`` times the feature cache's encoding of ``--batch`` clips, batched or one at a time (the
ILFM alone). Rounds alternate the two paths; the median of each is reported with its ratio, and the torch thread
count (set OMP_NUM_THREADS to change it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

CASES = (
    "extraction",
    "recognition:lora+post_network",
    "recognition:post_network:cache",
    "retrieval:post_network",
    "qa:post_network:cache",
    "temporal_grounding:post_network:cache",
)


def run_case(args: argparse.Namespace, case: str, scratch: Path) -> dict:
    from videoadapt.data.sampling import sampler_from_spec
    from videoadapt.model.batches import BatchBuilder
    from videoadapt.model.build import build_model
    from videoadapt.model.config import load_config, sampler_specs
    from videoadapt.model.data import load_split, open_cache
    from videoadapt.model.evaluation import _shards
    from videoadapt.model.precision import autocast

    task, paradigm, *flags = case.split(":")
    videos = int(args.items / 0.1) + 20  # SynthWorld's test split holds about 10 % of the videos
    overrides = [
        f"run.task={task}",
        f"model.paradigm={paradigm}",
        f"data.options.videos={videos}",
        f"data.options.size={args.size}",
        f"data.options.frames={max(8, args.frames)}",
        f"data.frames={args.frames}",
    ]
    config = load_config(None, overrides=overrides)
    torch.manual_seed(0)
    model = build_model(config, load_split(config, "train")).eval()
    test = load_split(config, "test")
    data = test.subset(list(range(min(args.items, len(test)))))
    _, spec = sampler_specs(config)
    encoder = model.encoder
    cache = None
    if "cache" in flags:
        cache = open_cache(encoder.ilfm, data, spec, scratch / case.replace(":", "_"), encoder.head.needs_layers)
    builder = BatchBuilder(
        data,
        model.task,
        encoder.ilfm.processor,
        sampler_from_spec(spec),
        train=False,
        cache=cache,
        pixels=cache is None or encoder.cache_with_pixels,
    )
    batches = list(_shards(len(data), args.batch, 0, 1))
    built = [builder.build(indices) for indices in batches]  # decoding is the same for both paths: not timed
    device = torch.device("cpu")

    def batched() -> None:
        for batch in built:
            model.predict(batch)

    def per_item() -> None:
        for batch in built:
            for single in builder.each_item(batch):
                model.predict(single)

    with autocast(device, args.precision):
        per_item()  # fills the text memo and warms the kernels
        times: dict[str, list[float]] = {"batched": [], "per_item": []}
        for _ in range(args.rounds):
            for name, path in (("batched", batched), ("per_item", per_item)):
                began = time.perf_counter()
                path()
                times[name].append(time.perf_counter() - began)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "case": case,
        "items": len(data),
        "batched_s": round(medians["batched"], 3),
        "per_item_s": round(medians["per_item"], 3),
        "ratio": round(medians["per_item"] / medians["batched"], 2),
    }


def run_extraction(args: argparse.Namespace) -> dict:
    """The feature cache's encoding: ``--batch`` clips at once (as it was) against one clip at a time (as it is)."""
    from videoadapt.foundation.loading import load_backbone

    ilfm = load_backbone("tiny").eval()
    size = ilfm.processor.image_size
    clips = torch.randn(args.batch, args.frames, 3, size, size, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {"batched": [], "per_item": []}
    with torch.no_grad():
        ilfm.encode_frames(clips[:2])  # warm-up
        for _ in range(args.rounds):
            began = time.perf_counter()
            ilfm.encode_frames(clips)
            times["batched"].append(time.perf_counter() - began)
            began = time.perf_counter()
            for k in range(len(clips)):
                ilfm.encode_frames(clips[k : k + 1].clone())
            times["per_item"].append(time.perf_counter() - began)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "case": "extraction (ILFM only)",
        "items": len(clips),
        "batched_s": round(medians["batched"], 3),
        "per_item_s": round(medians["per_item"], 3),
        "ratio": round(medians["per_item"] / medians["batched"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=240)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--precision", default="no", choices=("no", "bf16"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for case in args.cases.split(","):
            rows.append(run_extraction(args) if case == "extraction" else run_case(args, case, Path(scratch)))
            if not args.json:
                print(json.dumps(rows[-1]), flush=True)
    summary = {"threads": torch.get_num_threads(), "precision": args.precision, "batch": args.batch, "cases": rows}
    print(json.dumps(summary, indent=None if not args.json else 2))


if __name__ == "__main__":
    main()
