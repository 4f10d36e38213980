"""`videoadapt params`: what a preset or a paradigm composition trains, and what one view costs."""

from __future__ import annotations

import argparse
import json

from videoadapt.commands import Command
from videoadapt.registry import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="hf-config:clip-vit-b16", help="backbone spec (default: ViT-B/16)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--preset", help="a published design (see `videoadapt params --list`)")
    what.add_argument("--paradigm", help="a paradigm composition, e.g. lora+post_network")
    what.add_argument("--list", action="store_true", help="list presets and paradigms")
    parser.add_argument("--frames", type=int, default=8, help="frames per view (default 8)")
    parser.add_argument("--classes", type=int, default=400, help="classes of the linear classifier (default 400)")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count (faster)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def count(backbone: str, spec: str, frames: int, classes: int, flops: bool = True, preset: bool = False) -> dict:
    import torch
    from torch import nn

    from videoadapt.bench.cost import count_flops, count_parameters
    from videoadapt.foundation import load_backbone
    from videoadapt.paradigms import build_video_encoder, load_paradigms

    load_paradigms()
    ilfm = load_backbone(backbone)
    encoder = registry.get("preset", spec).build(ilfm) if preset else build_video_encoder(ilfm, spec)
    if hasattr(ilfm, "parameter_groups"):
        return _count_generative(backbone, spec, ilfm, encoder, frames, flops, preset)
    width = getattr(encoder.head, "width", ilfm.dims.embed_dim)
    classifier = nn.Linear(width, classes)
    trainable_body = count_parameters(encoder, trainable_only=True)
    head = count_parameters(classifier)
    result = {
        "backbone": backbone,
        "preset" if preset else "paradigm": spec,
        "frames": frames,
        "classes": classes,
        "feature_width": width,
        "trainable": trainable_body + head,
        "trainable_excluding_head": trainable_body,
        # The video path: vision tower, inserted modules, temporal head, classifier (+ the text tower if trained).
        "total": _video_path_parameters(encoder) + head,
    }
    if flops:
        size = ilfm.processor.image_size
        video = torch.randn(1, frames, 3, size, size)
        encoder.eval()
        # Grounding heads (Moment-DETR) fuse a query text; it is encoded once, outside the counted video path.
        text = ilfm.encode_text(["a query"]) if encoder.head.needs_text else None
        result["gflops_per_view"] = (
            count_flops(lambda: classifier(encoder(video, text=text).video), modules=[encoder, classifier]) / 1e9
        )
        result["flop_convention"] = "fvcore: one multiply-add = one FLOP; one view = one clip of --frames frames"
    return result


PROMPT = "What happens in the video?"


def _count_generative(
    backbone: str, spec: str, ilfm: object, encoder: object, frames: int, flops: bool, preset: bool
) -> dict:
    """A video MLLM: trainable parameters per group (vision tower, projector, language model) and GFLOPs per
    sample = the tower on every frame + the projector + the language model's prefill of the visual tokens and a
    short prompt (generation then costs about 2 x LM parameters FLOPs per new token, KV cache on)."""
    import torch

    from videoadapt.bench.cost import count_flops, count_parameters

    groups = ilfm.parameter_groups()  # type: ignore[attr-defined]
    result: dict = {
        "backbone": backbone,
        "preset" if preset else "paradigm": spec,
        "frames": frames,
        "visual_tokens": int(ilfm.tokens_for(frames)),  # type: ignore[attr-defined]
        "trainable": count_parameters(encoder, trainable_only=True),  # type: ignore[arg-type]
        **{f"trainable_{name}": sum(p.numel() for p in params if p.requires_grad) for name, params in groups.items()},
        "total": sum(sum(p.numel() for p in params) for params in groups.values()),
    }
    if flops:
        size = ilfm.processor.image_size  # type: ignore[attr-defined]
        video = torch.randn(1, frames, 3, size, size)
        encoder.eval()  # type: ignore[attr-defined]
        with torch.no_grad():
            result["gflops_per_sample"] = (
                count_flops(lambda: encoder(video).generative.prefill(PROMPT), modules=[encoder]) / 1e9  # type: ignore
            )
        result["flop_convention"] = (
            f"fvcore: one multiply-add = one FLOP; one sample = a clip of --frames frames through the tower, the "
            f"projector and the LM prefill with the prompt {PROMPT!r}"
        )
    return result


def _video_path_parameters(encoder: object) -> int:
    """Every parameter a video passes through; the text tower counts only when the design trains it."""
    text = {id(p) for m in encoder.ilfm.text_modules() for p in m.parameters()}
    seen: set[int] = set()
    total = 0
    for parameter in encoder.parameters():
        if id(parameter) in seen or (id(parameter) in text and not parameter.requires_grad):
            continue
        seen.add(id(parameter))
        total += parameter.numel()
    return total


def run(args: argparse.Namespace) -> int:
    from videoadapt.paradigms import load_paradigms, paradigm_names

    load_paradigms()
    if args.list:
        listing = {"presets": registry.names("preset"), "paradigms": paradigm_names()}
        print(
            json.dumps(listing, indent=2)
            if args.json
            else "\n".join(f"{k}: {', '.join(v)}" for k, v in listing.items())
        )
        return 0
    spec = args.preset or args.paradigm
    result = count(args.backbone, spec, args.frames, args.classes, not args.no_flops, preset=bool(args.preset))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:26s} {value:,}" if isinstance(value, int) else f"{key:26s} {value}")
    return 0


registry.register("command", "params")(
    Command(
        help="trainable / total parameters and GFLOPs per view of a preset or a paradigm composition",
        add_arguments=add_arguments,
        run=run,
    )
)
