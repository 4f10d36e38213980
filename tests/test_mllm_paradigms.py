"""Paradigms on the video MLLM: what each trains (tower, projector, language model), that gradients reach exactly
those parameters through the answer loss, the projector as every composition's head, refusals, and `params`."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

from mllm_helpers import make_mllm, video
from videoadapt.errors import VideoadaptError
from videoadapt.paradigms import build_video_encoder, load_paradigms
from videoadapt.paradigms.generative_head import GenerativeHead

load_paradigms()

# Which parameter groups train under each paradigm (the projector always: it is the head of every composition).
EXPECTED = {
    "post_network": {"projector"},
    "lora": {"projector", "language_model"},
    "adapter": {"projector", "vision"},
    "prompt_tuning": {"projector", "vision"},
    "partial_tuning": {"projector", "vision"},
    "full_finetune": {"projector", "vision", "language_model"},
    "adapter+lora": {"projector", "vision", "language_model"},
}


def _mllm():
    # feature_layer -1: the transformers CLIP test tower reports no per-block tokens once adapters replace its blocks
    return make_mllm(feature_layer=-1)


@pytest.mark.parametrize("spec", sorted(EXPECTED))
def test_each_paradigm_trains_its_groups_and_gradients_reach_only_them(spec: str) -> None:
    model = _mllm()
    frozen_lm = {n: p.detach().clone() for n, p in model.language_model.named_parameters()}
    encoder = build_video_encoder(model, spec)
    assert isinstance(encoder.head, GenerativeHead)
    groups = model.parameter_groups()
    training = {name for name, params in groups.items() if any(p.requires_grad for p in params)}
    assert training == EXPECTED[spec]
    if "language_model" in EXPECTED[spec] and spec != "full_finetune":
        # LoRA: only the low-rank matrices of the LM train, never its own weights
        names = [n for n, p in model.language_model.named_parameters() if p.requires_grad]
        assert names and all("lora_" in n for n in names)
    features = encoder(video(2, 3))
    loss = features.generative.loss("what happens ?", ["a red circle moves left", "a square moves up"])
    loss.backward()
    for name, params in groups.items():
        got = [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params if p.requires_grad]
        assert any(got) if name in EXPECTED[spec] else not got, name
    # LoRA starts at the LM's function: B = 0, and nothing of the LM's own weights moved
    for n, p in model.language_model.named_parameters():
        key = n.replace(".base_layer", "")
        if key in frozen_lm:
            assert torch.equal(p.detach(), frozen_lm[key])


def test_frozen_tower_compositions_are_cacheable_and_train_from_cached_features() -> None:
    model = _mllm()
    encoder = build_video_encoder(model, "lora")
    assert encoder.cacheable  # the tower is frozen: its frame features can come from the feature cache
    clip = video(2, 3)
    with torch.no_grad():
        cached = model.encode_frames(clip, all_layers=encoder.head.needs_layers)
        direct = encoder(clip).generative.projected
        from_cache = encoder(cached=cached).generative.projected
    torch.testing.assert_close(direct, from_cache)
    assert not build_video_encoder(_mllm(), "adapter").cacheable


def test_projected_tokens_give_the_same_answers_as_the_video() -> None:
    model = _mllm()
    encoder = build_video_encoder(model, "post_network").eval()
    clip = video(2, 3)
    with torch.no_grad():
        seen = encoder(clip).generative
        via_head = seen.generate("what happens ?", max_new_tokens=6)
        direct = model.generate(clip, "what happens ?", max_new_tokens=6)
        assert via_head.token_ids == direct.token_ids
        scores = seen.score("what happens ?", [["red", "blue square"], ["yes", "no"]])
        reference = model.score_candidates(clip, "what happens ?", [["red", "blue square"], ["yes", "no"]])
    for a, b in zip(scores, reference, strict=True):
        torch.testing.assert_close(a, b)
    # several questions about one clip: rows are selected, the model sees the same tokens
    picked = seen.select(torch.tensor([1, 1, 0]))
    assert len(picked) == 3 and torch.equal(picked.projected[0], seen.projected[1])


def test_refusals_name_the_reason() -> None:
    with pytest.raises(VideoadaptError, match="side_tuning cannot adapt the video MLLM"):
        build_video_encoder(_mllm(), "side_tuning")
    with pytest.raises(VideoadaptError, match="head is its projector"):
        build_video_encoder(_mllm(), "post_network", {"post_network": {"temporal": "mean"}})
    with pytest.raises(VideoadaptError, match="no linear layer"):
        build_video_encoder(_mllm(), "lora", {"lora": {"lm_targets": ["nothing_here"]}})


def test_reconfigure_changes_visual_tokens_and_refuses_unknown_keys() -> None:
    model = _mllm()
    assert model.tokens_for(4) == 4 * 16
    model.reconfigure(pool_output=[2, 2, 2])
    assert model.tokens_for(4) == 8
    assert model.visual_tokens(video(1, 4)).shape[1] == 8
    with pytest.raises(VideoadaptError, match="unknown MLLM options"):
        model.reconfigure(colour="red")
    with pytest.raises(VideoadaptError, match="exactly once"):
        model.reconfigure(template="no placeholder {prompt}")


def test_params_counts_groups_and_prefill_flops() -> None:
    from videoadapt.commands import params

    with mock.patch("videoadapt.foundation.load_backbone", lambda spec: _mllm()):
        post = params.count("mllm", "post_network", 4, 10)
        lora = params.count("mllm", "adapter+lora", 4, 10)
    assert post["trainable"] == post["trainable_projector"] > 0
    assert post["trainable_language_model"] == post["trainable_vision"] == 0
    assert lora["trainable"] == sum(lora[f"trainable_{g}"] for g in ("vision", "projector", "language_model"))
    assert lora["trainable_language_model"] > 0 and lora["trainable_vision"] > 0
    assert post["visual_tokens"] == 64
    # the LM prefill over 64 visual tokens and the prompt dominates the tiny tower: more than the LM's parameters
    lm = sum(p.numel() for p in _mllm().language_model.parameters())
    assert post["gflops_per_sample"] * 1e9 > 64 * lm * 0.5
    assert lora["gflops_per_sample"] > post["gflops_per_sample"]  # adapters and LoRA branches add work


def test_a_saved_encoder_records_the_mllm_settings_and_loads_onto_them(tmp_path) -> None:
    from videoadapt.errors import InputFileError
    from videoadapt.paradigms.saved import load_encoder

    model = make_mllm(feature_layer=-1, pool_output=(None, 2, 2), projector_norm=True, cls_tokens=True)
    encoder = build_video_encoder(model, "post_network")
    clip = video(1, 2)
    expected = model.visual_tokens(clip)
    encoder.save_pretrained(tmp_path, backbone="test-spec")
    # Loaded onto a model with the default settings (what a spec rebuilds): the recorded ones are applied first,
    # so the projector's LayerNorm fits its weights and the tokens are the same.
    fresh = make_mllm(feature_layer=-1)
    loaded = load_encoder(tmp_path, ilfm=fresh)
    assert fresh.config.projector_norm and fresh.config.cls_tokens and fresh.config.pool_output == (None, 2, 2)
    torch.testing.assert_close(fresh.visual_tokens(clip), expected)
    assert loaded.ilfm is fresh
    # Settings this version does not know name the file.
    record = (tmp_path / "encoder.json").read_text().replace('"cls_tokens"', '"no_such_option"')
    (tmp_path / "encoder.json").write_text(record)
    with pytest.raises(InputFileError, match="encoder.json.*no_such_option"):
        load_encoder(tmp_path, ilfm=make_mllm(feature_layer=-1))
