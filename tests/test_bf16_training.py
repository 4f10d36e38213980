"""Training under bf16 autocast (run.precision bf16 / auto): what auto picks, TinyCLIP's bf16 path (its own eager
attention, a token stream in the stem's dtype; that its blocks are transformers' eager bit for bit in fp32, forward
and backward, is tests/test_tinyclip_without_transformers.py's), and every paradigm taking a first step under bf16
that agrees with fp32 to bf16's precision. Speed is measured by
benchmarks/train_rate.py, not here."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.loading import load_backbone
from videoadapt.foundation.tinyclip.blocks import CLIPAttention
from videoadapt.model import precision as precision_module
from videoadapt.model.config import load_config
from videoadapt.paradigms import paradigm_names
from videoadapt.train.trainer import train

TINY = [
    "model.backbone=tiny-random",
    "data.options.videos=24",
    "data.options.size=32",
    "data.options.frames=8",
    "data.frames=4",
    "data.val_split=null",
    "run.batch_size=4",
    "run.max_steps=1",
    "run.progress=false",
    "run.log_every=1",
    "run.cpu=true",
]


def tiny(*overrides: str):
    return load_config(None, overrides=[*TINY, *overrides])


# --- run.precision: auto -------------------------------------------------------------------------------------


def test_precision_auto_is_bf16_exactly_where_the_cpu_has_bf16_instructions(tmp_path):
    """run.precision=auto on the CPU: bf16 where /proc/cpuinfo lists AVX512-BF16 or AMX-BF16, else fp32."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to check against")
    flags = set(re.findall(r"^flags\s*:(.*)$", cpuinfo.read_text(), re.MULTILINE)[0].split())
    expected = "bf16" if flags & {"avx512_bf16", "amx_bf16"} else "no"
    metrics = train(tiny("run.precision=auto"), tmp_path)
    assert metrics["precision"] == expected
    assert load_config(overrides=["run.precision=auto"]).run.precision == "auto"  # the config keeps the choice
    assert load_config(overrides=["run.precision=no"]).run.precision == "no"  # not YAML's false
    with pytest.raises(VideoadaptError, match="run.precision must be one of no, bf16, auto, got 'fp8'"):
        load_config(overrides=["run.precision=fp8"])


@pytest.mark.parametrize(
    ("features", "expected"),
    [({"avx512_bf16": True}, "bf16"), ({"amx_bf16": True, "avx512_bf16": False}, "bf16"), ({}, "no")],
)
def test_precision_auto_follows_the_cpu_features(monkeypatch, features, expected):
    monkeypatch.setattr(precision_module, "cpu_features", lambda: features)
    assert precision_module.resolve_precision("auto", cuda=False) == expected
    assert precision_module.resolve_precision("no", cuda=False) == "no"  # explicit choices stay
    assert precision_module.resolve_precision("bf16", cuda=False) == "bf16"


# --- TinyCLIP's bf16 path ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tower():
    torch.manual_seed(0)
    model = load_backbone("tiny-random")
    model.train()
    return model


def _encode(model, images: torch.Tensor, attention: str, bf16: bool):
    for module in model.modules():
        if isinstance(module, CLIPAttention):
            module.attn_implementation = attention
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        features = model.encode_images(images)
    features.embeds.float().pow(2).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return features, grads


def test_tinyclip_tokens_stay_in_the_stems_dtype(tower):
    """Under bf16 autocast the token stream is bf16 (no fp32 promotion by the position embedding), and the result
    is the fp32 one to bf16's precision; without autocast everything stays fp32."""
    images = torch.randn(4, 3, 64, 64)
    full, _ = _encode(tower, images, "eager", bf16=False)
    half, _ = _encode(tower, images, "eager", bf16=True)
    assert full.cls.dtype == full.patches.dtype == torch.float32
    assert half.cls.dtype == half.patches.dtype == half.embeds.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa: six blocks of it stay within a few percent of the fp32 embedding.
    error = (half.embeds.float() - full.embeds).norm() / full.embeds.norm()
    assert 0 < error < 0.03


def test_a_trained_stem_takes_its_bf16_weight_gradients_on_one_thread(tower, monkeypatch):
    """Under bf16 autocast with two threads, the stem's trained convolutions compute their weight gradient on one
    thread (oneDNN's two-thread kernel spins at barriers, 30x slower on a shared machine); the gradients are those of
    the plain bf16 convolution up to summation order, and the thread count is restored."""
    stem = tower.vision.stem
    images = torch.randn(8, 3, 64, 64)
    counts: list[int] = []
    real = torch.nn.grad.conv2d_weight

    def counting(*args, **kwargs):
        counts.append(torch.get_num_threads())
        return real(*args, **kwargs)

    def grads(plain: bool) -> dict[str, torch.Tensor]:
        stem.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tokens = stem.layers(images).flatten(2).transpose(1, 2) if plain else stem(images)
        tokens.float().pow(2).sum().backward()
        return {n: p.grad.clone() for n, p in stem.named_parameters()}

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(torch.nn.grad, "conv2d_weight", counting)
        ours, plain = grads(plain=False), grads(plain=True)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    convolutions = sum(isinstance(m, torch.nn.Conv2d) for m in stem.modules())
    assert counts == [1] * convolutions
    # Both are bf16 results: a different summation order may round an element to the neighbouring bf16 value, one
    # unit in the last place (at most 2**-7 relative). Which images show such a flip depends on the random draws.
    for name in plain:
        torch.testing.assert_close(ours[name], plain[name], rtol=2**-7, atol=1e-6)


# --- every paradigm under bf16 -----------------------------------------------------------------------------


@pytest.mark.parametrize("paradigm", paradigm_names())
def test_every_paradigm_takes_a_bf16_step_that_agrees_with_fp32(tmp_path, paradigm):
    """The first training step's loss under bf16 autocast is the fp32 one to bf16's precision (same weights,
    same batch), and differs from it (autocast was on)."""
    full = train(tiny(f"model.paradigm={paradigm}", "run.precision=no"), tmp_path / "fp32")
    half = train(tiny(f"model.paradigm={paradigm}", "run.precision=bf16"), tmp_path / "bf16")
    assert half["precision"] == "bf16" and full["precision"] == "no"
    a, b = full["train"]["final_loss"], half["train"]["final_loss"]
    assert math.isfinite(b) and a != b
    assert b == pytest.approx(a, rel=0.02)


def test_the_motion_stream_trains_in_bf16_on_two_frames(tmp_path):
    # torch 2.13 CPU: the weight gradient of a bf16 Conv3d(3, C, (3, 7, 7), stride (1, 4, 4)) over 2 frames is NaN;
    # the motion stream therefore runs its 3D CNN in fp32 under autocast (temporal/motion.py).
    half = train(tiny("model.paradigm=extra_models", "run.precision=bf16", "data.frames=2"), tmp_path)
    assert half["train"]["nonfinite_steps"] == 0
