"""A training epoch of a frozen paradigm from the feature cache vs from video, in one run.

    python benchmarks/cache_speedup.py [--backbone tiny] [--paradigm post_network] [--options '{temporal: mean}']
        [--videos 500] [--json]

Three trainings of one epoch on the same SynthWorld split with ``videoadapt.train.trainer.train``: (1) from video
(every step decodes, preprocesses and runs the backbone), (2) with ``run.cache=true`` on an empty cache directory
(extracts the features once, then trains from them), (3) the same again on the now complete cache. The speed-up is
the loop time of (1) over the loop time of (3) (``metrics.json`` ``train.seconds``: the epoch itself, model
building excluded), reported with and without the end-of-epoch checkpoint write (``train.checkpoint_seconds``,
disk I/O that neither path can avoid); (2) also gives the one-off extraction cost. Target (issue 5): ≥ 20×.

The cache removes the backbone's forward pass and nothing else, so the speed-up cannot exceed what the FLOP count
allows: ``flops_bound`` = (backbone forward + head forward and backward) / (head forward and backward) for one clip,
with the backward pass counted as twice the forward (the usual estimate). A heavy head over a light backbone is
bounded low whatever the implementation; decoding (not counted) lifts the measured ratio above the bound.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def one_epoch(args: argparse.Namespace, out: Path, cache: bool, cache_dir: Path) -> dict:
    from videoadapt.model.config import load_config
    from videoadapt.train.trainer import train

    overrides = [
        "run.epochs=1",
        f"run.batch_size={args.batch}",
        f"run.cache={str(cache).lower()}",
        f"run.cache_dir={cache_dir}",
        "run.progress=false",
        "run.checkpoint_every=0",
        "data.val_split=null",
        f"data.frames={args.frames}",
        f"data.options.videos={args.videos}",
    ]
    if args.options:
        overrides.append(f"model.options={{{args.paradigm}: {args.options}}}")
    flags = {
        "run.task": "recognition",
        "model.paradigm": args.paradigm,
        "model.backbone": args.backbone,
        "data.source": "synth",
    }
    config = load_config(flags=flags, overrides=overrides)
    start = time.perf_counter()
    metrics = train(config, out)
    return {
        "wall_s": time.perf_counter() - start,
        "epoch_s": metrics["train"]["seconds"],
        # The same epoch less the end-of-epoch checkpoint write (disk I/O, the same in both runs).
        "steps_s": metrics["train"]["seconds"] - metrics["train"].get("checkpoint_seconds", 0.0),
        "clips_per_s": metrics["train"]["clips_per_s"],
        "videos_encoded": metrics["cache"]["videos_encoded"],
    }


def flops_bound(args: argparse.Namespace) -> dict:
    """Multiply-accumulates of one clip through the backbone and through the head, and the speed-up they allow."""
    import torch

    from videoadapt.bench.cost import count_flops
    from videoadapt.model.build import build_encoder
    from videoadapt.model.config import load_config

    overrides = [f"model.options={{{args.paradigm}: {args.options}}}"] if args.options else []
    config = load_config(flags={"model.paradigm": args.paradigm, "model.backbone": args.backbone}, overrides=overrides)
    encoder = build_encoder(config).eval()
    size = encoder.ilfm.processor.image_size
    video = torch.randn(1, args.frames, 3, size, size)
    modules = [encoder]
    backbone = count_flops(lambda: encoder.ilfm.encode_frames(video, all_layers=encoder.head.needs_layers), modules)
    with torch.no_grad():
        features = encoder.ilfm.encode_frames(video, all_layers=encoder.head.needs_layers)
    pixels = video if encoder.cache_with_pixels else None
    head = count_flops(lambda: encoder(pixels, cached=features), modules)
    return {
        "backbone_macs_per_clip": backbone,
        "head_macs_per_clip": head,
        # None: a head without multiply-accumulates (mean pooling) sets no bound.
        "flops_bound": (backbone + 3 * head) / (3 * head) if head else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--paradigm", default="post_network", help="a paradigm with a frozen backbone")
    parser.add_argument("--videos", type=int, default=500, help="SynthWorld videos in all splits (80%% train)")
    parser.add_argument("--options", default=None, help="the paradigm's options as a YAML map, e.g. '{temporal: mean}'")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from videoadapt.utils.machine import machine_description

    bound = flops_bound(args)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        from_video = one_epoch(args, root / "video", cache=False, cache_dir=root / "cache")
        extracting = one_epoch(args, root / "extract", cache=True, cache_dir=root / "cache")
        from_cache = one_epoch(args, root / "cached", cache=True, cache_dir=root / "cache")
    result = {
        "benchmark": "cache_speedup",
        "backbone": args.backbone,
        "paradigm": args.paradigm,
        "options": args.options,
        "videos": args.videos,
        "frames": args.frames,
        "batch": args.batch,
        "machine": machine_description(),
        "epoch_from_video_s": from_video["epoch_s"],
        "epoch_from_cache_s": from_cache["epoch_s"],
        "speedup": from_video["epoch_s"] / from_cache["epoch_s"],
        "steps_from_video_s": from_video["steps_s"],
        "steps_from_cache_s": from_cache["steps_s"],
        "speedup_without_checkpoint_io": from_video["steps_s"] / from_cache["steps_s"],
        "extraction_s": extracting["wall_s"] - extracting["epoch_s"],
        **bound,
        "videos_encoded": {"extracting": extracting["videos_encoded"], "cached": from_cache["videos_encoded"]},
        "runs": {"from_video": from_video, "extracting": extracting, "from_cache": from_cache},
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.paradigm} on {args.backbone}: epoch from video {result['epoch_from_video_s']:.2f} s, "
            f"from cache {result['epoch_from_cache_s']:.3f} s: {result['speedup']:.1f}x "
            f"(one-off extraction {result['extraction_s']:.1f} s); without the checkpoint write "
            f"{result['speedup_without_checkpoint_io']:.1f}x; the FLOP count allows "
            + (f"{result['flops_bound']:.1f}x" if result["flops_bound"] else "any ratio")
        )


if __name__ == "__main__":
    main()
