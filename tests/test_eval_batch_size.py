"""Issue 19, item 1 (evaluation): metrics and every prediction are the same, bit for bit, at evaluation batch sizes 1,
7 and 64. In a batch, an item's numbers used to move by ~1e-6 with its neighbours (BLAS picks its kernel by the row
count: measured on the ILFM's frame embeddings and on a head's linear layers), so predictions depended on the batch
size; evaluation now decodes a batch at a time and runs the model on each item alone.

The shipped TinyCLIP (frozen, or with LoRA) decodes SynthWorld clips of 32 px; the heads' zero-initialised parts are
perturbed so that every trainable layer shapes the predictions."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from videoadapt.model.build import build_model
from videoadapt.model.config import load_config, sampler_specs
from videoadapt.model.data import load_split, open_cache
from videoadapt.model.evaluation import evaluate_data

SIZES = (1, 7, 64)
CASES = [
    ("recognition", "lora+post_network", []),
    ("retrieval", "post_network", ["model.head.text_adapter=tokens", "model.head.text_hidden=32"]),
    ("temporal_grounding", "post_network", ["model.head.hidden=32", "model.head.layers=1"]),
]


def model_and_data(task: str, paradigm: str, head: list[str]):
    config = load_config(
        None,
        overrides=[
            f"run.task={task}",
            f"model.paradigm={paradigm}",
            "model.backbone=tiny",
            "data.options.videos=100",
            "data.options.size=32",
            "data.options.frames=8",
            "data.frames=4",
            *head,
        ],
    )
    torch.manual_seed(0)
    model = build_model(config, load_split(config, "train"))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model, load_split(config, "val"), sampler_specs(config)[1]


def same(a: Any, b: Any) -> bool:
    """Equal bit for bit: tensors (dtype and shape too), numbers (NaN equals NaN), and containers of them."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def one_thread(function, *args, **kwargs):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return function(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(("task", "paradigm", "head"), CASES, ids=[c[0] for c in CASES])
def test_evaluation_is_the_same_at_every_batch_size(task, paradigm, head):
    model, data, spec = model_and_data(task, paradigm, head)
    assert len(data) > 7  # a batch of 7 then has neighbours, and the last batch is shorter
    results = []
    for size in SIZES:
        kept: list = []
        metrics = one_thread(evaluate_data, model, data, spec, batch_size=size, keep=kept)
        results.append((metrics, kept))
    (metrics, kept), others = results[0], results[1:]
    assert [index for index, _ in kept] == list(range(len(data)))
    for size, (other_metrics, other_kept) in zip(SIZES[1:], others, strict=True):
        assert other_metrics == metrics, f"batch size {size}"
        assert same(other_kept, kept), f"predictions at batch size {size} differ from those at batch size 1"


def test_evaluation_from_the_feature_cache_is_the_same_at_every_batch_size(tmp_path):
    """Cached frame features go through the head one item at a time too (recognition: the temporal transformer and
    the classifier see a batch of one)."""
    model, data, spec = model_and_data("recognition", "post_network", [])
    cache = one_thread(open_cache, model.encoder.ilfm, data, spec, tmp_path / "cache", all_layers=False)
    outputs = []
    for size in SIZES:
        kept: list = []
        metrics = one_thread(evaluate_data, model, data, spec, batch_size=size, cache=cache, keep=kept)
        outputs.append((metrics, kept))
    assert all(m == outputs[0][0] and same(k, outputs[0][1]) for m, k in outputs[1:])


def test_cached_features_do_not_depend_on_the_extraction_batch(tmp_path):
    """A cache extracted in batches of 8 holds the same bytes as one extracted in batches of 3 (what a resumed
    extraction does when a kill landed between the rows of a batch: the rest of the batch is encoded with other
    neighbours), and the same numbers as the clips encoded from pixels at evaluation."""
    from videoadapt.foundation.feature_cache import extract_features

    model, data, spec = model_and_data("recognition", "post_network", [])
    ilfm = model.encoder.ilfm
    caches = [
        one_thread(extract_features, ilfm, data, spec, tmp_path / str(size), batch_size=size, progress=False)
        for size in (8, 3)
    ]
    ids = [ref.video_id for ref in data.videos()]
    first, second = (cache.get(ids) for cache in caches)
    for name in ("cls", "patches", "embeds"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    # Evaluation encodes each clip alone from its pixels: the same numbers as the cache.
    from videoadapt.data.sampling import sampler_from_spec
    from videoadapt.model.batches import BatchBuilder

    builder = BatchBuilder(data, model.task, ilfm.processor, sampler_from_spec(spec), train=False)
    single = builder.each_item(builder.build([0]))[0]
    with torch.no_grad():
        pixels = one_thread(ilfm.encode_frames, single.video)
    assert torch.equal(pixels.embeds[0], first.embeds[ids.index(data.items[0].video.video_id)])
