"""Real video MLLM families through transformers (LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL, SmolVLM2) as config-only
tiny checkpoints saved to a temporary directory and loaded back: inputs built by our own video preprocessing (the
model itself checks that the video tokens match its features), generation with the KV cache and left padding
against a loop without either, candidate scores against a direct computation, and the bad inputs."""

from __future__ import annotations

import pytest
import torch

from mllm_helpers import make_hf_mllm_directory
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.foundation.mllm.family_qwen2_vl import patchify
from videoadapt.foundation.mllm.hf_video import from_pretrained

FAMILIES = ("llava_onevision", "qwen2_vl", "qwen2_5_vl", "smolvlm")


def load(family, tmp_path, context=512):
    return from_pretrained(make_hf_mllm_directory(family, tmp_path / family, context=context), frame_size=56)


def clips(model, batch=2, frames=3, seed=0):
    size = model.processor.image_size
    return torch.randn(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def greedy_without_cache(model, clip, prompt, steps):
    """Reference: the full sequence through the model at every step, one video, no padding, no KV cache."""
    inputs, _ = model._inputs(clip, model._prompt_ids([prompt]))
    ids = inputs["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(steps):
            step = {
                **inputs,
                "input_ids": ids,
                "attention_mask": torch.ones_like(ids),
                **model.family.token_inputs(ids),
            }
            token = int(model.model(**step, use_cache=False).logits[0, -1].argmax())
            if token in model.stop_ids:
                break
            out.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_and_scores_of_a_tiny_checkpoint(family, tmp_path):
    model = load(family, tmp_path)
    video = clips(model)
    prompts = ["what happens ?", "which colour is the circle that moves left then up ?"]
    result = model.generate(video, prompts, max_new_tokens=5)
    for i in range(2):
        assert result.token_ids[i] == greedy_without_cache(model, video[i : i + 1], prompts[i], 5), family
    beams = model.generate(video, prompts, max_new_tokens=4, num_beams=2)
    assert all(len(ids) <= 4 for ids in beams.token_ids)
    # Scores: the log-likelihood of each candidate, computed directly on one unpadded sequence.
    candidates = ["red", "blue square"]
    scores = model.score_candidates(video[:1], prompts[0], candidates, reduction="sum")[0]
    for j, candidate in enumerate(candidates):
        answer = model._answer_ids(candidate, end=False)
        inputs, _ = model._inputs(video[:1], model._prompt_ids([prompts[0]]), [answer])
        with torch.no_grad():
            logits = model.model(**inputs).logits[0]
        n = len(answer)
        logp = torch.log_softmax(logits[-n - 1 : -1], dim=-1).gather(1, torch.tensor(answer)[:, None]).sum()
        assert scores[j].item() == pytest.approx(logp.item(), abs=1e-4)
    # The video matters.
    other = model.score_candidates(clips(model, 1, seed=7), prompts[0], candidates, reduction="sum")[0]
    assert not torch.allclose(scores, other)
    # The prompt alone (the zero-shot baseline): no video tokens, no pixels.
    alone = model.generate(None, prompts, max_new_tokens=3)
    assert alone.frames_used == 0 and len(alone.texts) == 2
    assert model.score_candidates(None, prompts[0], candidates)[0].shape == (2,)
    loss = model.loss(video, prompts, ["red", "blue square"])
    loss.backward()
    assert all(p.grad is not None for p in model.parameter_groups()["projector"])


@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_groups_and_vision_blocks(family, tmp_path):
    model = load(family, tmp_path)
    groups = {name: {id(p) for p in params} for name, params in model.parameter_groups().items()}
    assert all(groups.values())
    assert groups["vision"].isdisjoint(groups["projector"]) and groups["projector"].isdisjoint(groups["language_model"])
    every = {id(p) for p in model.model.parameters()}
    assert groups["vision"] | groups["projector"] | groups["language_model"] == every
    assert len(model.vision_blocks()) == 2 and model.dims.layers == 2
    with pytest.raises(VideoadaptError, match="joint image-text space"):
        model.encode_text(["a red circle"])


def test_a_video_longer_than_the_context_is_sampled_down(tmp_path):
    model = load("llava_onevision", tmp_path, context=128)  # 4 tokens per frame + 1
    with pytest.warns(UserWarning, match="sampled uniformly down"):
        result = model.generate(clips(model, 1, frames=60), "what happens ?", max_new_tokens=4)
    assert result.frames_given == 60 and 1 <= result.frames_used < 60
    with pytest.raises(VideoadaptError, match="preprocess"):
        model.generate(torch.zeros(1, 2, 3, 20, 20), "what happens ?", max_new_tokens=2)


def test_qwen_patchify_lays_tubes_out_as_the_processor_does():
    # Pixel value = 1000*t + 100*c + 10*(y // 14) + (x // 14) ... encoded exactly: t, c, row, col of each pixel.
    t, c, y, x = torch.meshgrid(torch.arange(4), torch.arange(3), torch.arange(56), torch.arange(56), indexing="ij")
    video = (t * 1_000_000 + c * 100_000 + y * 100 + x).double()[None]
    flat, grid = patchify(video, patch=14, merge=2, temporal=2)
    assert grid == [2, 4, 4] and flat.shape == (2 * 16, 3 * 2 * 14 * 14)
    tube = flat.reshape(-1, 3, 2, 14, 14)
    # Row 0: time pair 0, merge window (0,0), patch (0,0); row 1: same window, patch (0,1); row 2: patch (1,0).
    assert tube[0, 0, 0, 0, 0] == 0 and tube[0, 2, 1, 13, 13] == 1_000_000 + 200_000 + 1313
    assert tube[1, 0, 0, 0, 0] == 14 and tube[2, 0, 0, 0, 0] == 1400
    # Row 4: the next merge window to the right (patch row 0, patch col 2); row 16: the second time pair.
    assert tube[4, 0, 0, 0, 0] == 28 and tube[16, 0, 0, 0, 0] == 2_000_000


def test_an_odd_frame_count_is_padded_with_the_last_frame_for_qwen(tmp_path):
    model = load("qwen2_vl", tmp_path)
    inputs = model.family.pixel_inputs(clips(model, 1, frames=3))
    assert inputs["video_grid_thw"].tolist() == [[2, 4, 4]]
    assert model.tokens_for(3) == model.tokens_for(4) == 2 * 4 + 2


def test_bad_checkpoint_directories_are_refused(tmp_path):
    folder = make_hf_mllm_directory("smolvlm", tmp_path / "m")
    (folder / "model.safetensors").unlink()
    with pytest.raises(InputFileError, match="no weights"):
        from_pretrained(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputFileError, match="config.json"):
        from_pretrained(empty)
    from videoadapt.foundation.hf import from_architecture

    clip = from_architecture("clip-tiny")
    clip.model.save_pretrained(tmp_path / "clip")
    with pytest.raises(VideoadaptError, match="not a supported video MLLM"):
        from_pretrained(tmp_path / "clip")


def test_the_backbone_loader_knows_mllm_checkpoints(tmp_path):
    from videoadapt.foundation import load_backbone
    from videoadapt.foundation.mllm.hf_video import HFVideoMLLM

    folder = make_hf_mllm_directory("llava_onevision", tmp_path / "ov")
    for spec in (f"hf-mllm:{folder}", str(folder)):
        model = load_backbone(spec)
        assert isinstance(model, HFVideoMLLM) and model.spec == spec


def test_a_hub_id_without_the_hub_fails_at_once_with_a_way_forward(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty local hub cache
    with pytest.raises(VideoadaptError, match="hf download"):
        from_pretrained("llava-hf/llava-onevision-qwen2-0.5b-ov-hf")
