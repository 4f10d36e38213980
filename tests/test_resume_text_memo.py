"""Issue 19, item 1 (first part): a resumed run equals the uninterrupted one byte for byte even when the frozen text
tower's memo is refilled after the resume. The tower's output for a caption used to depend on the other captions
batched with it (padding and GEMM blocking: ~1e-6), so the memo of a resumed process held other numbers than the
uninterrupted one's: retrieval with lora+post_network ended 1e-6 away. Texts are now encoded one at a time when
memoised: a memo entry depends on its string alone."""

from __future__ import annotations

import torch

from videoadapt.foundation.loading import load_backbone
from videoadapt.model.config import load_config
from videoadapt.tasks import TextEncoder
from videoadapt.train.trainer import Trainer, train
from videoadapt.utils.safe_io import load_tensors

TEXTS = ["a red star moves to the left", "a blue square", "a green circle grows bigger and bigger, then stops"]


def test_a_memoised_text_does_not_depend_on_its_batch_neighbours():
    ilfm = load_backbone("tiny").requires_grad_(False)  # frozen, as every paradigm but full fine-tuning leaves it
    assert TextEncoder(ilfm).memoize
    alone = [TextEncoder(ilfm).embeds([t])[0] for t in TEXTS]
    together = TextEncoder(ilfm).embeds(TEXTS)
    assert all(torch.equal(a, b) for a, b in zip(alone, together, strict=True))
    pooled_alone = [TextEncoder(ilfm).pooled_tokens([t])[0] for t in TEXTS]
    assert all(torch.equal(a, b) for a, b in zip(pooled_alone, TextEncoder(ilfm).pooled_tokens(TEXTS), strict=True))
    # The tower's own sentence cache (TinyCLIP's MiniLM) too.
    tower = ilfm.text_tower
    tower._cache.clear()
    first = tower.pooled([TEXTS[2]])[0]
    tower._cache.clear()
    assert torch.equal(tower.pooled(TEXTS)[2], first)


def test_retrieval_with_lora_resumes_byte_for_byte(tmp_path):
    overrides = [
        "run.task=retrieval",
        "model.backbone=tiny",
        "model.paradigm=lora+post_network",
        "data.options.videos=60",
        "data.options.size=32",
        "data.options.frames=8",
        "data.frames=4",
        "data.val_split=null",
        "run.batch_size=8",
        "run.epochs=2",
        "run.checkpoint_every=2",
        "run.progress=false",
    ]
    straight = tmp_path / "straight"
    train(load_config(None, overrides=overrides), straight)
    resumed = tmp_path / "resumed"
    assert Trainer(load_config(None, overrides=overrides), resumed).fit(stop_at=3) == {"stopped_at": 3}
    train(load_config(None, overrides=overrides), resumed, resume=True)
    a, b = load_tensors(straight / "model.safetensors"), load_tensors(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
