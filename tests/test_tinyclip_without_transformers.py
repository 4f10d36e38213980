"""TinyCLIP loads without transformers (its import costs seconds): its CLIP blocks and its MiniLM text tower are ours.
These tests pin them to transformers' numbers: our block against ``CLIPEncoderLayer`` with the same weights, our
MiniLM and tokenizer against ``AutoModel``/``AutoTokenizer`` on the package's files, and the shipped TinyCLIP against
the transformers-built version it was before (built here from transformers' modules)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AttentionInterface, AutoModel, AutoTokenizer, CLIPVisionConfig
from transformers.models.clip.modeling_clip import CLIPEncoderLayer as HFCLIPEncoderLayer

from videoadapt.foundation.loading import load_backbone
from videoadapt.foundation.tinyclip.blocks import CLIPEncoderLayer, eager_attention
from videoadapt.foundation.tinyclip.minilm import MiniLM, MiniLMTokenizer
from videoadapt.foundation.tinyclip.text import MiniLMTextTower, minilm_directory

WIDTH, HEADS, MLP = 192, 3, 768
# The name the transformers-built TinyCLIP registered its eager attention (softmax in the scores' dtype) under.
OLD_EAGER = "tinyclip_eager"
AttentionInterface.register(OLD_EAGER, eager_attention)


def hf_block(attention: str, act: str = "gelu") -> HFCLIPEncoderLayer:
    config = CLIPVisionConfig(
        hidden_size=WIDTH, intermediate_size=MLP, num_attention_heads=HEADS, image_size=64, patch_size=8, hidden_act=act
    )
    config._attn_implementation = attention
    return HFCLIPEncoderLayer(config)


def block_pair(attention: str, act: str = "gelu") -> tuple[CLIPEncoderLayer, HFCLIPEncoderLayer]:
    """Ours and transformers', each built after the same seed: the same draws must give the same weights."""
    torch.manual_seed(0)
    ours = CLIPEncoderLayer(WIDTH, HEADS, MLP, hidden_act=act, attn_implementation=attention)
    torch.manual_seed(0)
    theirs = hf_block({"eager": "eager", "sdpa": "sdpa"}[attention], act)
    return ours, theirs


def test_the_block_has_clip_encoder_layers_tree_names_and_attributes():
    ours, theirs = block_pair("eager")
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in ours.state_dict().items())
    for name in ("num_heads", "head_dim", "scale", "embed_dim", "dropout", "is_causal"):
        assert getattr(ours.self_attn, name) == getattr(theirs.self_attn, name), name
    assert ours.layer_norm1.eps == theirs.layer_norm1.eps == 1e-5
    assert ours.layer_norm2.eps == theirs.layer_norm2.eps
    assert ours.embed_dim == theirs.embed_dim


@pytest.mark.parametrize("act", ["gelu", "quick_gelu"])
def test_the_eager_block_is_transformers_bit_for_bit_forward_and_backward(act):
    ours, theirs = block_pair("eager", act)
    x = torch.randn(4, 65, WIDTH)
    mask = torch.zeros(4, 1, 65, 65)
    mask[:, :, :, -5:] = torch.finfo(torch.float32).min  # an additive mask, as transformers passes one
    for attention_mask in (None, mask):
        outputs, grads = [], []
        for block in (ours, theirs):
            block.zero_grad(set_to_none=True)
            inputs = x.clone().requires_grad_(True)
            out = block(inputs, attention_mask)
            out.pow(2).sum().backward()
            outputs.append(out)
            grads.append({"x": inputs.grad, **{n: p.grad for n, p in block.named_parameters()}})
        assert torch.equal(outputs[0], outputs[1])
        assert grads[0].keys() == grads[1].keys()
        assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0]), act
    # The attention alone: (output, weights), called as the paradigms call it.
    ours_out, ours_weights = ours.self_attn(hidden_states=x, attention_mask=None)
    theirs_out, theirs_weights = theirs.self_attn(hidden_states=x, attention_mask=None)
    assert torch.equal(ours_out, theirs_out) and torch.equal(ours_weights, theirs_weights)


def test_the_sdpa_block_is_transformers_sdpa():
    ours, theirs = block_pair("sdpa")
    x = torch.randn(4, 65, WIDTH)
    torch.testing.assert_close(ours(x), theirs(x, None), rtol=0, atol=1e-6)
    out, weights = ours.self_attn(hidden_states=x, attention_mask=None)
    assert weights is None
    torch.testing.assert_close(out, theirs.self_attn(hidden_states=x, attention_mask=None)[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_the_block_under_bf16_autocast_is_close_to_transformers(attention):
    """Under bf16 autocast our eager attention softmaxes in bf16 (the transformers-built TinyCLIP registered that
    same function): against it the result is equal; against transformers' own eager, close to bf16's precision."""
    ours, theirs = block_pair(attention)
    x = torch.randn(4, 65, WIDTH)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mine = ours(x)
        reference = theirs(x, None)
        if attention == "eager":
            theirs.self_attn.config._attn_implementation = OLD_EAGER
            assert torch.equal(mine, theirs(x, None))
    assert mine.dtype == reference.dtype
    torch.testing.assert_close(mine.float(), reference.float(), rtol=0.02, atol=0.05)


# --- MiniLM ---------------------------------------------------------------------------------------------------

TEXTS = [
    "a person eating",
    "A person EATS an apple, then drinks; quickly!",
    "",
    "   leading and trailing spaces   ",
    "punctuation: (brackets) [square] {curly} <angle> 'quotes' \"double\" -- dashes ... ellipsis?!",
    "numbers 3.14159, 1,000,000 and 42nd",
    "Ünïcödé àccents façade naïve résumé Straße",
    "中文字符 和 日本語のテキスト 한국어",
    "emoji 🙂👍 and symbols © ® ™ € £ ¥ §",
    "tabs\tand\nnewlines\r\nmixed",
    "unbelievably antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "[CLS] [SEP] [PAD] [MASK] [UNK] special tokens written out",
    "a long caption " + " ".join(f"word{i}" for i in range(200)),
    "the person on the left waves while the person on the right signs 'thank you' in ASL " * 5,
]


@pytest.fixture(scope="module")
def transformers_minilm():
    path = minilm_directory()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path, use_safetensors=True).eval()


@pytest.fixture(scope="module")
def minilm():
    path = minilm_directory()
    return MiniLMTokenizer(path), MiniLM.from_directory(path)


@pytest.mark.parametrize("max_length", [64, 60, 8, 3, 512])
def test_token_ids_are_autotokenizers(transformers_minilm, minilm, max_length):
    hf_tokenizer, _ = transformers_minilm
    tokenizer, _ = minilm
    for texts in (TEXTS, TEXTS[:1], TEXTS[2:3], TEXTS[::-1], [t for t in TEXTS if len(t) < 40]):
        expected = hf_tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        ids, mask = tokenizer(texts, max_length=max_length)
        assert torch.equal(ids, expected["input_ids"]), texts
        assert torch.equal(mask, expected["attention_mask"]), texts
        assert ids.dtype == mask.dtype == torch.long


def test_the_encoder_reads_every_tensor_of_the_checkpoint_but_the_pooler(minilm):
    from safetensors import safe_open

    _, model = minilm
    path = minilm_directory()
    with safe_open(str(path / "model.safetensors"), "pt") as file:
        keys = {k for k in file.keys() if not k.startswith(("pooler.", "embeddings.position_ids"))}
        assert set(model.state_dict()) == keys
        assert all(torch.equal(v, file.get_tensor(k)) for k, v in model.state_dict().items())
    config = json.loads((path / "config.json").read_text())
    assert model.embeddings.LayerNorm.eps == config["layer_norm_eps"] == 1e-12
    assert not model.training


def test_hidden_states_and_sentence_embeddings_are_automodels(transformers_minilm, minilm):
    hf_tokenizer, hf_model = transformers_minilm
    tokenizer, model = minilm
    with torch.no_grad():
        for texts in (TEXTS, TEXTS[:1], TEXTS[:3]):  # padded, unpadded (no mask) and padded again
            ids, mask = tokenizer(texts, max_length=64)
            expected = hf_model(input_ids=ids, attention_mask=mask).last_hidden_state
            states = model(input_ids=ids, attention_mask=mask)
            torch.testing.assert_close(states, expected, rtol=0, atol=1e-5)
            pooled = MiniLMTextTower.mean_pool(states, mask)
            torch.testing.assert_close(pooled, MiniLMTextTower.mean_pool(expected, mask), rtol=0, atol=1e-5)


class TransformersTextTower(MiniLMTextTower):
    """The text tower as it was: AutoTokenizer and AutoModel (the reference)."""

    def __init__(self, tokenizer, model, max_length: int = 64) -> None:
        nn.Module.__init__(self)
        self.hf_tokenizer, self.encoder = tokenizer, model
        self.max_length = max_length
        self._cache = {}

    def tokens_with_prefix(self, texts: Sequence[str], prefix_embeddings: torch.Tensor | None):
        extra = 0 if prefix_embeddings is None else prefix_embeddings.shape[0]
        batch = self.hf_tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length - extra, return_tensors="pt"
        )
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if prefix_embeddings is None:
            return self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask
        words = self.encoder.get_input_embeddings()(ids)
        prefix = prefix_embeddings.to(words.dtype).unsqueeze(0).expand(ids.shape[0], -1, -1)
        words = torch.cat([words[:, :1], prefix, words[:, 1:]], dim=1)
        mask = torch.cat([mask[:, :1], mask.new_ones(ids.shape[0], extra), mask[:, 1:]], dim=1)
        return self.encoder(inputs_embeds=words, attention_mask=mask).last_hidden_state, mask


@pytest.fixture(scope="module")
def reference_tower(transformers_minilm):
    return TransformersTextTower(*transformers_minilm)


def test_the_prefix_path_and_its_gradients_are_transformers(reference_tower, text_tower):
    torch.manual_seed(0)
    prefix = (torch.randn(4, 384) * 0.02).requires_grad_(True)
    results = []
    for tower in (text_tower, reference_tower):
        prefix.grad = None
        states, mask = tower.tokens_with_prefix(TEXTS, prefix)
        pooled = tower.mean_pool(states, mask)
        pooled.pow(2).sum().backward()
        results.append((states, mask, pooled, prefix.grad.clone()))
    (states, mask, pooled, grad), (ref_states, ref_mask, ref_pooled, ref_grad) = results
    assert torch.equal(mask, ref_mask) and states.shape[1] == 64
    torch.testing.assert_close(states, ref_states, rtol=0, atol=1e-5)
    torch.testing.assert_close(pooled, ref_pooled, rtol=0, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(text_tower.pooled(TEXTS), reference_tower.pooled(TEXTS), rtol=0, atol=1e-5)


# --- the shipped TinyCLIP -------------------------------------------------------------------------------------


def transformers_built(model, reference_tower):
    """The shipped TinyCLIP as it was built before: transformers' CLIPEncoderLayer with TinyCLIP's eager attention
    registered by name, and the AutoModel text tower; the same weights."""
    import copy

    old = copy.deepcopy(model)
    old.text_tower = reference_tower
    config = old.config
    block_config = CLIPVisionConfig(
        hidden_size=config.width,
        intermediate_size=config.width * config.mlp_ratio,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        image_size=config.image_size,
        patch_size=config.patch_size,
        hidden_act=config.hidden_act,
    )
    block_config._attn_implementation = OLD_EAGER if config.attn_implementation == "eager" else "sdpa"
    old.vision.layers = nn.ModuleList(HFCLIPEncoderLayer(block_config) for _ in range(config.layers))
    missing, unexpected = old.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("text_tower.") for k in missing)
    return old.eval()


def test_the_shipped_tinyclip_computes_what_the_transformers_built_one_did(reference_tower):
    model = load_backbone("tiny").eval()
    old = transformers_built(model, reference_tower)
    assert all(type(b).__module__ == "videoadapt.foundation.tinyclip.blocks" for b in model.vision_blocks())
    torch.manual_seed(0)
    video = torch.rand(2, 4, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = model.encode_frames(video, all_layers=True), old.encode_frames(video, all_layers=True)
        for field in ("cls", "patches", "embeds"):
            assert torch.equal(getattr(ours, field), getattr(theirs, field)), field
        assert all(torch.equal(a, b) for a, b in zip(ours.layers, theirs.layers, strict=True))
        ours, theirs = model.encode_text(TEXTS), old.encode_text(TEXTS)
        assert torch.equal(ours.mask, theirs.mask)
        torch.testing.assert_close(ours.tokens, theirs.tokens, rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.embeds, theirs.embeds, rtol=0, atol=1e-5)
        prefix = torch.randn(3, 384) * 0.02
        ours, theirs = model.encode_text(TEXTS, prefix), old.encode_text(TEXTS, prefix)
        torch.testing.assert_close(ours.embeds, theirs.embeds, rtol=0, atol=1e-5)
        torch.testing.assert_close(model.embed_texts(TEXTS), old.embed_texts(TEXTS), rtol=0, atol=1e-5)


def test_the_shipped_tinyclip_and_tinyowl_load_without_importing_transformers():
    code = (
        "import sys\n"
        "from videoadapt.foundation.loading import load_backbone\n"
        "load_backbone('tiny').encode_text(['a person eating'])\n"
        "load_backbone('tiny-owl')\n"
        "heavy = sorted(m for m in ('transformers', 'torch._dynamo', 'sympy') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    import os

    import videoadapt

    # The videoadapt under test, not whichever an installed environment would import.
    source = str(Path(videoadapt.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
