"""`videoadapt profile`: parameters, GFLOPs per frame, forward time and achieved FLOP/s of a backbone."""

from __future__ import annotations

import argparse
import json

from videoadapt.commands import Command
from videoadapt.registry import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="tiny", help="backbone spec (see docs/backbones.md); default: tiny")
    parser.add_argument("--frames", type=int, default=8, help="frames per forward pass (default 8)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after warm-up (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def profile_backbone(spec: str, frames: int, repeats: int = 5) -> dict:
    import torch

    from videoadapt.bench.cost import (
        count_flops,
        count_parameters,
        machine_description,
        matmul_flops_per_second,
        time_call,
    )
    from videoadapt.foundation import load_backbone

    if frames < 1:
        raise ValueError("--frames must be at least 1")
    model = load_backbone(spec).eval()
    size = model.processor.image_size
    images = torch.randn(frames, 3, size, size)

    def forward() -> None:
        model.encode_images(images)

    macs = count_flops(forward, modules=[model])
    seconds = time_call(forward, repeats=repeats)
    peak = matmul_flops_per_second()
    achieved = 2 * macs / seconds
    vision = sum(count_parameters(m) for m in model.vision_modules())
    text = sum(count_parameters(m) for m in model.text_modules())
    return {
        "backbone": spec,
        "frames": frames,
        "image_size": size,
        "parameters": {"total": count_parameters(model), "vision": vision, "text": text},
        "gflops_per_frame": macs / frames / 1e9,
        "flop_convention": "fvcore: one multiply-add = one FLOP",
        "forward_ms_per_frame": 1e3 * seconds / frames,
        "achieved_tflops": achieved / 1e12,
        "matmul_fp32_tflops": peak / 1e12,
        "fraction_of_matmul_peak": achieved / peak,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "machine": machine_description(),
    }


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result = profile_backbone(args.backbone, args.frames, args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"profile of {args.backbone} ({args.frames} frames at {result['image_size']} px)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in result["parameters"].items():
        table.add_row(f"parameters ({name})", f"{value:,}")
    table.add_row("GFLOPs per frame (fvcore)", f"{result['gflops_per_frame']:.3f}")
    table.add_row("forward ms per frame", f"{result['forward_ms_per_frame']:.2f}")
    table.add_row("achieved TFLOP/s", f"{result['achieved_tflops']:.3f}")
    table.add_row("fp32 matmul TFLOP/s", f"{result['matmul_fp32_tflops']:.3f}")
    table.add_row("fraction of matmul rate", f"{result['fraction_of_matmul_peak']:.0%}")
    Console().print(table)
    return 0


registry.register("command", "profile")(
    Command(
        help="parameters, GFLOPs per frame, forward time and achieved FLOP/s of a backbone",
        add_arguments=add_arguments,
        run=run,
    )
)
