"""`videoadapt extract`: write the feature cache of a frozen backbone over one split of a data set.

Run it once per (backbone, sampler, split); frozen-backbone training then reads the cache and never decodes a
video nor runs the backbone. Under ``accelerate launch --num_processes N -m videoadapt extract ...`` the videos
are sharded across the processes. Rerunning an interrupted extraction resumes it.
"""

from __future__ import annotations

import argparse
import json
import time

from videoadapt.commands import Command, old_spelling, task_names_text
from videoadapt.errors import VideoadaptError
from videoadapt.registry import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", required=True, help="backbone spec (tiny, hf:ID, hf-config:NAME, DIR, ...)")
    parser.add_argument(
        "--data",
        required=True,
        help="data spec: folder:DIR (your own videos), synth, synth:DIR or NAME:PATH (docs/datasets.md)",
    )
    parser.add_argument("--split", default="train", help="train, val or test (default train)")
    parser.add_argument(
        "--task",
        default="recognition",
        help=f"{task_names_text()} (default recognition)",
    )
    parser.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reader option, repeatable (e.g. videos=200, video_dir=/data/clips)",
    )
    parser.add_argument("--sampler", default="uniform:8", help="frame sampler, deterministic (default uniform:8)")
    parser.add_argument("--out", required=True, help="cache directory")
    parser.add_argument("--all-layers", action="store_true", help="also keep every block's tokens (side-tuning; large)")
    parser.add_argument("--batch-size", type=int, default=8, help="videos per forward pass (default 8)")
    old_spelling(parser, "--batch", "--batch-size", type=int)
    parser.add_argument(
        "--dtype",
        choices=("float32", "float16"),
        default="float32",
        help="stored precision (default float32: exactly what the model computes; float16 halves the disk)",
    )
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable videos (recorded in the manifest)")
    parser.add_argument("--overwrite", action="store_true", help="replace a different cache already in --out")
    parser.add_argument("--verify", action="store_true", help="re-read every row and check its checksum at the end")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads per process (default 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise VideoadaptError(f"--data-option expects KEY=VALUE, got {pair!r}")
        options[key.strip()] = value.strip()
    return options


def _accelerator() -> object | None:
    """An Accelerator (it shards across processes under `accelerate launch` and picks the GPU when there is one),
    or None where accelerate is not installed."""
    try:
        from accelerate import Accelerator
    except ImportError:
        return None
    return Accelerator()


def _extract(args: argparse.Namespace, data: object, ilfm: object, accelerator: object, main: bool) -> object:
    from videoadapt.foundation.feature_cache import extract_features

    cache = extract_features(
        ilfm,
        data,
        args.sampler,
        args.out,
        all_layers=args.all_layers,
        batch_size=args.batch_size,
        accelerator=accelerator,
        dtype=args.dtype,
        skip_bad=args.skip_bad,
        progress=main,  # a bar on a terminal, a line every 30 s in a log
        meta={"backbone_spec": args.backbone, "data_spec": args.data},
        overwrite=args.overwrite,
        decode_workers=args.workers,
    )
    if args.verify and main:
        cache.verify()
    return cache


def run(args: argparse.Namespace) -> int:
    from videoadapt.data.formats import load_task_data
    from videoadapt.foundation import load_backbone
    from videoadapt.utils.safe_io import writable_folder

    if args.batch_size < 1:
        raise VideoadaptError(f"--batch-size must be >= 1, got {args.batch_size}")
    writable_folder(args.out, "--out")
    started = time.perf_counter()
    data = load_task_data(args.data, args.split, args.task, **_options(args.data_option))
    ilfm = load_backbone(args.backbone)
    accelerator = _accelerator()
    main = accelerator is None or accelerator.is_main_process
    try:
        cache = _extract(args, data, ilfm, accelerator, main)
    finally:
        if accelerator is not None and accelerator.num_processes > 1:
            # A gloo group left to its destructors at exit can abort a finished process; tear it down now.
            accelerator.end_training()
    if not main:
        return 0
    result = {
        "out": str(cache.directory),
        "key": str(cache.key),
        "backbone": args.backbone,
        "sampler": args.sampler,
        "split": args.split,
        "task": args.task,
        "videos": len(cache),
        "frames": cache.frames,
        "dtype": cache.dtype.name,
        "all_layers": cache.all_layers,
        "fields": {name: shape for name, shape in cache.layout["fields"].items()},
        "bytes": cache.nbytes,
        "processes": getattr(accelerator, "num_processes", 1),
        **cache.run_stats,
        "skipped_ids": sorted(cache.skipped),
        "skipped_reasons": dict(sorted(cache.skipped.items())),
        "verified": bool(args.verify),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, value in result.items():
            print(f"{name:12s} {value}")
    return 0


registry.register("command", "extract")(
    Command(
        help="write the frame-feature cache of a frozen backbone over a data split",
        add_arguments=add_arguments,
        run=run,
        description="Decode every video of --split once, encode it with the frozen --backbone and store its "
        "per-frame features (CLS, patch tokens, joint embeddings; every layer with --all-layers) in a "
        "memory-mapped cache with a checksum per video. Training of frozen-backbone paradigms then reads the "
        "cache. Rerunning an interrupted extraction resumes it; under `accelerate launch --num_processes N -m "
        "videoadapt extract ...` the videos are split across the processes.",
    )
)
