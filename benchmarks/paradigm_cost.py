"""Cost of every transfer paradigm on one backbone, frame count and batch, measured side by side in one run.

    python benchmarks/paradigm_cost.py [--backbone tiny] [--frames 8] [--batch 2] [--steps 3] [--json]
    python benchmarks/paradigm_cost.py --backbone hf-config:clip-vit-b16 --frames 8 --batch 2 --json

Per paradigm (its default options) and per ``--presets``: trainable parameters, GFLOPs per view (fvcore
convention, forward), median training-step time, and peak training memory. One step = forward, a cross-entropy
loss through a linear classifier on the video feature plus the paradigm's auxiliary losses, backward, AdamW.

Each entry runs in a fresh child process so that peak memory is its own. On CPU: the peak resident set size of the
training steps (Linux ``VmHWM``, reset through ``/proc/self/clear_refs`` once the model is built, so transient
memory of model construction does not count) above the process's size just before the model was built — weights,
gradients, optimizer state and activations all count, as ``torch.cuda.max_memory_allocated`` counts them on a
GPU; ``training_memory_mb`` leaves the weights out (peak minus the size right after building). On a GPU:
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` at the same point. Ratios are taken against
``full_finetune`` from the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

# Frozen-feature paradigms first, then adapted-feature ones, as in the survey's Fig. 4 (the bench's order).
from videoadapt.bench.matrix import PARADIGM_ORDER


def measure(args: argparse.Namespace, entry: str) -> dict:
    """One entry (``paradigm:NAME`` or ``preset:NAME``), measured in this process."""
    import torch
    from torch import nn

    from videoadapt.bench.cost import count_flops, count_parameters
    from videoadapt.bench.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss
    from videoadapt.foundation import load_backbone
    from videoadapt.paradigms import build_video_encoder, load_paradigms
    from videoadapt.registry import registry

    torch.manual_seed(0)
    device = torch.device(args.device)
    load_paradigms()
    kind, name = entry.split(":", 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    idle = current_rss_bytes()

    ilfm = load_backbone(args.backbone)
    encoder = registry.get("preset", name).build(ilfm) if kind == "preset" else build_video_encoder(ilfm, name)
    encoder.to(device).train()
    width = getattr(encoder.head, "width", ilfm.dims.embed_dim)
    classifier = nn.Linear(width, args.classes).to(device)
    trainable = [p for p in encoder.parameters() if p.requires_grad] + list(classifier.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)

    size = ilfm.processor.image_size
    generator = torch.Generator().manual_seed(0)
    video = torch.randn(args.batch, args.frames, 3, size, size, generator=generator).to(device)
    labels = torch.randint(0, args.classes, (args.batch,), generator=generator).to(device)
    text = None
    if encoder.head.needs_text:
        with torch.no_grad():
            text = ilfm.encode_text(["a person does something"] * args.batch)

    built = current_rss_bytes()
    if device.type == "cuda":
        built = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    reset = device.type == "cuda" or reset_peak_rss()

    def step() -> float:
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            features = encoder(video, text=text)
            loss = nn.functional.cross_entropy(classifier(features.video).float(), labels)
            loss = loss + sum(features.losses.values(), torch.zeros((), device=device))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    step()  # warm-up: allocates gradients and optimizer state
    times = [step() for _ in range(args.steps)]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
        memory = {
            "peak_memory_mb": peak / 2**20,
            "training_memory_mb": (peak - built) / 2**20,
            "memory_measure": "torch.cuda.max_memory_allocated",
        }
    else:
        peak = peak_rss_bytes()
        measure = "VmHWM of the training steps above the pre-build RSS"
        memory = {
            "peak_memory_mb": (peak - idle) / 2**20,
            "training_memory_mb": (peak - built) / 2**20,
            "memory_measure": measure if reset else measure + " (peak not reset: construction included)",
        }

    encoder.eval()
    one = video[:1]
    one_text = None if text is None else type(text)(text.tokens[:1], text.mask[:1], text.embeds[:1])
    gflops = count_flops(lambda: classifier(encoder(one, text=one_text).video), [encoder, classifier]) / 1e9
    return {
        "entry": entry,
        "trainable": count_parameters(encoder, trainable_only=True) + count_parameters(classifier),
        "gflops_per_view": gflops,
        "step_s": statistics.median(times),
        "clips_per_s": args.batch / statistics.median(times),
        **memory,
    }


def run_child(args: argparse.Namespace, entry: str) -> dict:
    command = [sys.executable, __file__, "--child", entry, "--backbone", args.backbone]
    command += ["--frames", str(args.frames), "--batch", str(args.batch), "--steps", str(args.steps)]
    command += ["--classes", str(args.classes), "--device", args.device] + (["--bf16"] if args.bf16 else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"entry": entry, "error": reason}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny", help="backbone spec (default: the shipped TinyCLIP)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2, help="clips per training step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--paradigms", default="all", help="comma-separated paradigm names, or all")
    parser.add_argument("--presets", default="", help="comma-separated preset names to add")
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args, args.child)))
        return

    from videoadapt.paradigms import paradigm_names
    from videoadapt.utils.machine import machine_description

    known = paradigm_names()
    names = known if args.paradigms == "all" else [n.strip() for n in args.paradigms.split(",")]
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"unknown paradigms {unknown}; known: {', '.join(known)}")
    names = sorted(names, key=lambda n: PARADIGM_ORDER.index(n) if n in PARADIGM_ORDER else len(PARADIGM_ORDER))
    entries = [f"paradigm:{n}" for n in names] + [f"preset:{p}" for p in args.presets.split(",") if p]
    rows = []
    for entry in entries:
        print(f"measuring {entry} ...", file=sys.stderr, flush=True)
        rows.append(run_child(args, entry))
    reference = next((r for r in rows if r["entry"] == "paradigm:full_finetune" and "error" not in r), None)
    if reference:
        for row in rows:
            if "error" not in row:
                row["memory_vs_full_finetune"] = row["peak_memory_mb"] / reference["peak_memory_mb"]
                row["training_memory_vs_full_finetune"] = row["training_memory_mb"] / reference["training_memory_mb"]
                row["step_time_vs_full_finetune"] = row["step_s"] / reference["step_s"]
    result = {
        "benchmark": "paradigm_cost",
        "backbone": args.backbone,
        "frames": args.frames,
        "batch": args.batch,
        "device": args.device,
        "bf16": args.bf16,
        "machine": machine_description(),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.backbone}, {args.frames} frames, batch {args.batch}, {args.device}")
    print(f"{'entry':34} {'trainable':>12} {'GFLOPs':>8} {'step s':>8} {'peak MB':>9} {'mem/FT':>7} {'train MB':>9}")
    for row in rows:
        if "error" in row:
            print(f"{row['entry']:34} error: {row['error']}")
            continue
        ratio = row.get("memory_vs_full_finetune", float("nan"))
        print(
            f"{row['entry']:34} {row['trainable']:>12,} {row['gflops_per_view']:>8.2f} {row['step_s']:>8.3f} "
            f"{row['peak_memory_mb']:>9.1f} {ratio:>7.2f} {row['training_memory_mb']:>9.1f}"
        )


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
