"""Costs of the embedded video MLLM (TinyCLIP + projector + SmolLM2-135M-Instruct), each part in its own process.

    python benchmarks/mllm_cost.py [--json] [--parts convert,generate,train] [--frames 8] [--new-tokens 64]

* ``convert``: GGUF → safetensors conversion into a fresh temporary cache, then the load from that cache in a fresh
  process (python start and imports apart: ``load_s``), i.e. what every later run pays.
* ``generate``: tokens per second (prefill included) of greedy and 3-beam generation for one video (``--frames``
  TinyCLIP frames, PLLaVA pooling to 16 tokens per frame, a one-line prompt), KV cache on; and greedy generation
  from token ids of the same prompt length with the KV cache on and off. The end token is suppressed until
  ``--new-tokens`` so every run generates the same number of tokens.
* ``train``: one training step (batch 2, answer loss, AdamW) of post-network tuning (projector only), LoRA (rank 8
  on every linear layer of the LM, plus the projector) and full fine-tuning (everything), each in its own process:
  trainable parameters, median step time, peak training memory (VmHWM above the size right after building, as
  benchmarks/paradigm_cost.py measures it) and its ratio to full fine-tuning's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PROMPT = "What happens in the video?"


def convert_part(args: argparse.Namespace) -> dict:
    from videoadapt.foundation.mllm import smollm2

    previous = os.environ.get("VIDEOADAPT_CACHE")
    with tempfile.TemporaryDirectory() as root:
        os.environ["VIDEOADAPT_CACHE"] = root
        try:
            start = time.perf_counter()
            smollm2.converted_directory()
            convert_s = time.perf_counter() - start
            child = run_child(["--child", "load"])
        finally:
            if previous is None:
                os.environ.pop("VIDEOADAPT_CACHE")
            else:
                os.environ["VIDEOADAPT_CACHE"] = previous
    return {"convert_s": convert_s, **child}


def load_child() -> dict:
    start = time.perf_counter()
    import transformers  # noqa: F401 - import time reported apart

    imports_s = time.perf_counter() - start
    from videoadapt.foundation.mllm import smollm2

    start = time.perf_counter()
    smollm2.load_language_model()
    return {"load_s": time.perf_counter() - start, "import_transformers_s": imports_s}


def build(frames: int):
    import torch

    from videoadapt.foundation.mllm import MLLMConfig, load_video_mllm

    torch.manual_seed(0)
    model = load_video_mllm(None, config=MLLMConfig(pooling="pllava", pool_output=(None, 4, 4)))
    size = model.processor.image_size
    video = torch.randn(2, frames, 3, size, size, generator=torch.Generator().manual_seed(0))
    return model, video


def generate_part(args: argparse.Namespace) -> dict:
    import torch

    model, video = build(args.frames)
    model.eval()
    prompts = model._prompt_ids([PROMPT])
    with torch.no_grad():
        embeds, mask, _ = model._sequences(model.visual_tokens(video[:1]), prompts)
    length = int(embeds.shape[1])
    result = {"prompt_tokens": length, "threads": torch.get_num_threads()}
    options = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
    options["pad_token_id"] = model.stop_ids[0]
    # The MLLM itself (prompt embeddings with the video's tokens), as generate() runs it: KV cache on.
    for name, beams in (("mllm_greedy", 1), ("mllm_beam3", 3)):
        start = time.perf_counter()
        with torch.no_grad():
            out = model.language_model.generate(
                inputs_embeds=embeds, attention_mask=mask, num_beams=beams, use_cache=True, **options
            )
        result[f"{name}_tokens_per_s"] = out.shape[1] / (time.perf_counter() - start)
    # The KV cache's effect, on token ids of the same length (transformers ignores use_cache=False for a prompt
    # given as embeddings, so the comparison is made on ids).
    ids = torch.randint(100, 1000, (1, length), generator=torch.Generator().manual_seed(0))
    for name, cache in (("lm_greedy_cache", True), ("lm_greedy_no_cache", False)):
        start = time.perf_counter()
        with torch.no_grad():
            out = model.language_model.generate(input_ids=ids, use_cache=cache, **options)
        result[f"{name}_tokens_per_s"] = (out.shape[1] - length) / (time.perf_counter() - start)
    return result


def train_child(mode: str, frames: int) -> dict:
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    from videoadapt.bench.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss
    from videoadapt.foundation.mllm import LM_LORA_TARGETS

    model, video = build(frames)
    model.requires_grad_(False)
    if mode == "lora":
        inject_adapter_in_model(
            LoraConfig(r=8, lora_alpha=16, target_modules=list(LM_LORA_TARGETS)), model.language_model
        )
        for name, p in model.language_model.named_parameters():
            p.requires_grad_("lora_" in name)
    if mode == "full":
        for group in model.parameter_groups().values():
            for p in group:
                p.requires_grad_(True)
    for p in model.parameter_groups()["projector"]:
        p.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    model.train()
    answers = ["a red circle moves left then up", "a small blue square moves right"]
    built = current_rss_bytes()
    reset = reset_peak_rss()

    def step() -> float:
        start = time.perf_counter()
        loss = model.loss(video, PROMPT, answers)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    step()
    times = [step() for _ in range(2)]
    return {
        "mode": mode,
        "trainable": sum(p.numel() for p in trainable),
        "step_s": statistics.median(times),
        "training_memory_mb": (peak_rss_bytes() - built) / 2**20,
        "peak_reset": reset,
    }


def run_child(extra: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="convert,generate,train")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind = args.child[0]
        out = load_child() if kind == "load" else train_child(args.child[1], args.frames)
        print(json.dumps(out))
        return
    results: dict = {}
    parts = args.parts.split(",")
    if "convert" in parts:
        results["convert"] = convert_part(args)
    if "generate" in parts:
        results["generate"] = generate_part(args)
    if "train" in parts:
        rows = [
            run_child(["--child", "train", mode, "--frames", str(args.frames)])
            for mode in ("projector", "lora", "full")
        ]
        full = next((r for r in rows if r.get("mode") == "full" and "error" not in r), None)
        for row in rows:
            if full and "training_memory_mb" in row:
                row["memory_vs_full"] = row["training_memory_mb"] / full["training_memory_mb"]
        results["train"] = rows
    print(json.dumps(results, indent=2) if args.json else results)


if __name__ == "__main__":
    main()
