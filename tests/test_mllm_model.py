"""The LLaVA-style VideoMLLM on a tiny random CLIP tower and a tiny random Llama: token pooling against hand-derived
values, generation against a decoding loop without the KV cache, candidate scores against a direct computation,
and the bad inputs of issue 18 (template without <video>, a video longer than the context, endless generation)."""

from __future__ import annotations

import warnings

import pytest
import torch

from mllm_helpers import make_mllm, video
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.mllm import MLLMConfig, PromptTemplate
from videoadapt.foundation.mllm.token_pooling import AdaptivePool3d, SpatialPool2x2


def test_pllava_pooling_averages_time_and_space_blocks():
    # [B=1,T=4,P=4x4,H=1] with value t*100 + row*10 + col: averages over (2 frames, 2 rows, 2 cols) blocks.
    t, r, c = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), torch.arange(4.0), indexing="ij")
    tokens = (t * 100 + r * 10 + c).reshape(1, 4, 16, 1)
    out = AdaptivePool3d((2, 2, 2))(tokens, (4, 4))
    assert out.shape == (1, 8, 1)
    # First output token: frames 0-1, rows 0-1, cols 0-1 → mean(t)=0.5, mean(r)=0.5, mean(c)=0.5.
    assert out[0, 0, 0].item() == pytest.approx(50 + 5 + 0.5)
    # Last: frames 2-3, rows 2-3, cols 2-3.
    assert out[0, -1, 0].item() == pytest.approx(250 + 25 + 2.5)
    # Frames kept (None): T*h*w tokens, per-frame 2x2 spatial means.
    kept = AdaptivePool3d((None, 2, 2))(tokens, (4, 4))
    assert kept.shape == (1, 16, 1) and kept[0, 4, 0].item() == pytest.approx(100 + 5 + 0.5)


def test_onevision_pooling_is_a_2x2_mean_with_a_separator_after_each_frame():
    torch.manual_seed(0)
    tokens = torch.randn(2, 3, 16, 8)
    pool = SpatialPool2x2(8)
    out = pool(tokens, (4, 4))
    assert out.shape == (2, 3 * (4 + 1), 8) and pool.tokens_for(3, (4, 4)) == 15
    grid = tokens.reshape(2, 3, 4, 4, 8).permute(0, 1, 4, 2, 3).flatten(0, 1)
    expected = torch.nn.functional.avg_pool2d(grid, 2).flatten(2).transpose(1, 2).reshape(2, 3, 4, 8)
    frames = out.reshape(2, 3, 5, 8)
    torch.testing.assert_close(frames[:, :, :4], expected)
    torch.testing.assert_close(frames[:, :, 4], pool.separator.expand(2, 3, 8))


def test_visual_token_counts_follow_the_pooling():
    assert make_mllm(pooling="pllava", pool_output=(None, 2, 2)).visual_tokens(video(1, 4)).shape == (1, 16, 32)
    assert make_mllm(pooling="pllava", pool_output=(2, 2, 2)).visual_tokens(video(1, 4)).shape == (1, 8, 32)
    assert make_mllm(pooling="onevision").visual_tokens(video(1, 4)).shape == (1, 20, 32)
    assert make_mllm(pooling="none").visual_tokens(video(1, 4)).shape == (1, 64, 32)


def _greedy_without_cache(model, clip, prompt, steps):
    """Reference decoding: the whole sequence recomputed at each step (no KV cache, no padding, one video)."""
    before, after = (model._ids(p) for p in model.template.render(prompt, model.tokenizer))
    embed = model.language_model.get_input_embeddings()
    with torch.no_grad():
        sequence = torch.cat([embed(before), model.visual_tokens(clip)[0], embed(after)])
        out = []
        for _ in range(steps):
            token = int(model.language_model(inputs_embeds=sequence[None]).logits[0, -1].argmax())
            if token in model.stop_ids:
                break
            out.append(token)
            sequence = torch.cat([sequence, embed(torch.tensor([token]))])
    return out


def test_greedy_generation_with_kv_cache_and_left_padding_matches_a_loop_without_cache():
    model = make_mllm(pooling="onevision")
    clips = video(2, 3)
    prompts = ["what happens ?", "which colour is the circle that moves left then up ?"]  # different lengths
    result = model.generate(clips, prompts, max_new_tokens=6)
    for i in range(2):
        assert result.token_ids[i] == _greedy_without_cache(model, clips[i : i + 1], prompts[i], 6)
    assert result.frames_used == result.frames_given == 3
    # The video matters: another video, another answer.
    other = model.generate(video(2, 3, seed=5), prompts, max_new_tokens=6)
    assert other.token_ids != result.token_ids


def test_beam_search_runs_within_the_bound_and_one_beam_is_greedy():
    model = make_mllm()
    clips = video(2, 2)
    greedy = model.generate(clips, "what happens ?", max_new_tokens=4)
    assert model.generate(clips, "what happens ?", max_new_tokens=4, num_beams=1).token_ids == greedy.token_ids
    beams = model.generate(clips, "what happens ?", max_new_tokens=4, num_beams=3)
    assert all(len(ids) <= 4 for ids in beams.token_ids) and len(beams.texts) == 2


def test_generation_that_never_ends_stops_at_the_hard_bound():
    model = make_mllm()
    # Forbid the end token (id 2): the model can never stop by itself.

    def never_end(module, inputs, logits):
        logits[..., 2] = float("-inf")
        return logits

    model.language_model.get_output_embeddings().register_forward_hook(never_end)
    result = model.generate(video(1, 2), "what happens ?", max_new_tokens=7, num_beams=2)
    assert len(result.token_ids[0]) == 7 and result.hit_length_bound == [True]
    with pytest.raises(VideoadaptError, match="max_new_tokens"):
        model.generate(video(1, 2), "what happens ?", max_new_tokens=0)


def test_candidate_scores_are_the_log_likelihood_of_each_answer():
    model = make_mllm(pooling="pllava", pool_output=(2, 2, 2))
    clip = video(1, 4)
    candidates = ["red", "blue square", "a green triangle moves left"]
    mean = model.score_candidates(clip, "which colour ?", candidates)[0]
    total = model.score_candidates(clip, "which colour ?", candidates, reduction="sum")[0]
    before, after = (model._ids(p) for p in model.template.render("which colour ?", model.tokenizer))
    embed = model.language_model.get_input_embeddings()
    with torch.no_grad():
        prefix = torch.cat([embed(before), model.visual_tokens(clip)[0], embed(after)])
        for i, candidate in enumerate(candidates):
            answer = model._ids(candidate)
            logits = model.language_model(inputs_embeds=torch.cat([prefix, embed(answer)])[None]).logits[0]
            logp = torch.log_softmax(logits[len(prefix) - 1 : -1], dim=-1).gather(1, answer[:, None]).sum()
            assert total[i].item() == pytest.approx(logp.item(), abs=1e-4)
            assert mean[i].item() == pytest.approx(logp.item() / len(answer), abs=1e-4)
    # Per-video candidate lists; a video without candidates is refused.
    scores = model.score_candidates(video(2, 4), "which colour ?", [["red", "blue"], ["yes", "no", "red"]])
    assert [s.shape[0] for s in scores] == [2, 3]
    with pytest.raises(VideoadaptError, match="candidate"):
        model.score_candidates(video(2, 4), "which colour ?", [["red"], []])


def test_training_the_projector_and_lm_fits_two_videos_and_then_answers_them():
    torch.manual_seed(0)
    model = make_mllm(pooling="pllava", pool_output=(1, 2, 2), feature_layer=-1)
    clips = video(2, 2, seed=3)
    answers = ["red circle", "blue square"]
    model.tower.requires_grad_(False)
    params = [p for group in ("projector", "language_model") for p in model.parameter_groups()[group]]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    model.train()
    first = None
    for _ in range(40):
        loss = model.loss(clips, "what happens ?", answers)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert loss.item() < first / 10
    assert model.generate(clips, "what happens ?", max_new_tokens=5).texts == answers
    scores = model.score_candidates(clips, "what happens ?", answers)
    assert [int(s.argmax()) for s in scores] == [0, 1]


def test_parameter_groups_and_lora_on_the_language_model():
    from peft import LoraConfig, inject_adapter_in_model

    model = make_mllm(pooling="onevision")
    groups = model.parameter_groups()
    ids = {name: {id(p) for p in params} for name, params in groups.items()}
    assert ids["vision"].isdisjoint(ids["projector"]) and ids["projector"].isdisjoint(ids["language_model"])
    assert id(model.pooling.separator) in ids["projector"]
    assert {id(p) for p in model.vision_blocks().parameters()} <= ids["vision"]
    before = model.generate(video(1, 2), "what happens ?", max_new_tokens=4).token_ids
    inject_adapter_in_model(LoraConfig(r=4, target_modules=["q_proj", "v_proj"]), model.language_model)
    model.requires_grad_(False)
    lora = [p for n, p in model.language_model.named_parameters() if "lora_" in n]
    assert lora
    for p in lora:
        p.requires_grad_(True)
    # LoRA's B starts at zero: the same answers before any training.
    assert model.generate(video(1, 2), "what happens ?", max_new_tokens=4).token_ids == before
    model.loss(video(1, 2), "what happens ?", ["red"]).backward()
    assert all(p.grad is not None for p in lora)
    assert all(p.grad is None for p in model.projector.parameters())


def test_a_template_without_the_video_placeholder_is_refused():
    with pytest.raises(VideoadaptError, match="<video>"):
        MLLMConfig(template="Question: {prompt}")
    with pytest.raises(VideoadaptError, match="exactly once"):
        PromptTemplate("<video> and <video>")
    model = make_mllm()
    with pytest.raises(VideoadaptError, match="placeholder"):
        model.generate(video(1, 2), "what is in <video> ?", max_new_tokens=2)
    with pytest.raises(VideoadaptError, match="prompts for"):
        model.generate(video(2, 2), ["one prompt"], max_new_tokens=2)
    # Without {prompt} the prompt follows the text; without chat no template is applied.
    plain = PromptTemplate("Video: <video>", chat=False)
    assert plain.render("what happens ?", model.tokenizer) == ("Video: ", "\nwhat happens ?")


def test_a_video_longer_than_the_context_is_sampled_down_and_says_so():
    # onevision: 5 tokens per frame; a 160-position context leaves room for a few frames only.
    model = make_mllm(pooling="onevision", context=160)
    with pytest.warns(UserWarning, match="sampled uniformly down"):
        result = model.generate(video(1, 40), "what happens ?", max_new_tokens=8)
    assert result.frames_given == 40 and 1 <= result.frames_used < 40
    prompt = sum(len(model._ids(p)) for p in model.template.render("what happens ?", model.tokenizer))
    assert (
        model.tokens_for(result.frames_used) + prompt + 8 <= 160 < model.tokens_for(result.frames_used + 1) + prompt + 8
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a video that fits: no warning
        assert model.generate(video(1, 2), "what happens ?", max_new_tokens=8).frames_used == 2
    with pytest.raises(VideoadaptError, match="no room"):
        model.generate(video(1, 2), "what happens ?", max_new_tokens=200)


def test_feature_layer_selects_a_tower_block():
    clip = video(1, 2)
    last = make_mllm(feature_layer=-1).visual_tokens(clip)
    penultimate = make_mllm(feature_layer=-2).visual_tokens(clip)
    assert not torch.allclose(last, penultimate)
    with pytest.raises(VideoadaptError, match="feature_layer"):
        make_mllm(feature_layer=-9).visual_tokens(clip)


def test_the_untrained_projector_is_the_same_on_every_build():
    from mllm_helpers import make_language_model, make_tokenizer
    from videoadapt.foundation.hf import from_architecture
    from videoadapt.foundation.mllm import VideoMLLM

    def build(seed):
        tokenizer = make_tokenizer()
        tower = from_architecture("clip-tiny")
        return VideoMLLM(tower, make_language_model(tokenizer), tokenizer, MLLMConfig(pooling="onevision", seed=seed))

    torch.manual_seed(1)
    a = build(0)
    torch.manual_seed(2)  # another global state: the projector does not depend on it
    b = build(0)
    for p, q in zip(a.parameter_groups()["projector"], b.parameter_groups()["projector"], strict=True):
        assert torch.equal(p, q)
    c = build(1)
    assert not torch.equal(a.projector.linear_1.weight, c.projector.linear_1.weight)


def test_without_a_video_the_language_model_answers_the_prompt_alone():
    model = make_mllm(pooling="onevision")
    prompts = ["what happens ?", "which colour is the circle ?"]
    result = model.generate(None, prompts, max_new_tokens=5)
    assert result.frames_used == result.frames_given == 0 and len(result.texts) == 2
    embed = model.language_model.get_input_embeddings()
    for i, prompt in enumerate(prompts):
        before, after = (model._ids(p) for p in model.template.render(prompt, model.tokenizer))
        ids = torch.cat([before, after])  # the placeholder removed, nothing in its place
        with torch.no_grad():
            out = model.language_model.generate(
                inputs_embeds=embed(ids)[None], max_new_tokens=5, do_sample=False, eos_token_id=2, pad_token_id=2
            )[0].tolist()
        assert result.token_ids[i] == (out[: out.index(2)] if 2 in out else out)
    scores = model.score_candidates(None, prompts, ["red", "blue"])
    assert len(scores) == 2 and not torch.allclose(scores[0], scores[1])
    assert model.loss(None, "what happens ?", ["red", "blue"]).ndim == 0


def test_cls_tokens_put_each_frames_pooled_token_before_the_pooled_patches():
    clip = video(1, 4)
    plain = make_mllm(pooling="pllava", pool_output=(None, 2, 2))
    with_cls = make_mllm(pooling="pllava", pool_output=(None, 2, 2), cls_tokens=True)
    assert with_cls.tokens_for(4) == plain.tokens_for(4) + 4
    features = with_cls.encode_frames(clip, all_layers=True)
    expected_cls = with_cls.project(features.cls)  # [1,T,H]: the tower's pooled token of each frame, projected
    out = with_cls.visual_tokens(clip)
    assert out.shape == (1, 4 + 16, 32)
    torch.testing.assert_close(out[:, :4], expected_cls)
    torch.testing.assert_close(out[:, 4:], plain.visual_tokens(clip))  # the same seed: the same projector


def test_projector_norm_normalises_the_tower_tokens_and_a_reconfigure_rebuilds_the_projector():
    clip = video(1, 2)
    model = make_mllm(pooling="pllava", pool_output=(None, 2, 2))
    tokens = model.frame_tokens(clip) * 1000.0  # any scale: the projector sees unit-scale tokens
    model.reconfigure(projector_norm=True)
    assert isinstance(model.projector.norm, torch.nn.LayerNorm)
    torch.testing.assert_close(model.project(tokens), model.project(tokens / 1000.0), atol=1e-4, rtol=1e-4)
    model.reconfigure(projector_norm=False)
    assert isinstance(model.projector.norm, torch.nn.Identity)
    with pytest.raises(VideoadaptError, match="unknown MLLM options"):
        model.reconfigure(seed=3)
