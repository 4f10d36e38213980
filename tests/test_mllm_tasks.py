"""Tasks through a video MLLM's language model (head ``mllm``): captioning and open-ended QA by generation,
multiple-choice QA by candidate likelihood, the zero-shot (blind) row, bad input, and the chat-style predict; all on
the tiny random MLLM of tests/mllm_helpers.py."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from mllm_helpers import make_mllm, video
from videoadapt.data.records import CaptionItem, QAItem, TaskData, VideoRef
from videoadapt.errors import VideoadaptError
from videoadapt.paradigms import build_video_encoder, load_paradigms
from videoadapt.tasks import TextEncoder, build_task

load_paradigms()
PROMPT = "what happens in the video ?"


def _setup(task: str, items: list, spec: str = "post_network", **head):
    model = make_mllm(feature_layer=-1)
    encoder = build_video_encoder(model, spec).eval()
    data = TaskData(task, "train", items, None, "test", answers=["red", "blue"] if task == "qa" else None)
    t = build_task(task, head="mllm", **head)
    return model, encoder, t, t.build_head(model, encoder, data), data


def _mc_items() -> list[QAItem]:
    candidates = ("red", "blue square", "green")
    return [
        QAItem(f"q{i}", VideoRef(f"v{i}"), "which colour ?", candidates[i], candidates, answer_index=i)
        for i in range(2)
    ]


def test_captioning_generates_with_the_prompt_and_trains_on_the_lm_loss() -> None:
    items = [CaptionItem(VideoRef("v0"), ("a red circle moves left",)), CaptionItem(VideoRef("v1"), ("a square",))]
    model, encoder, task, head, data = _setup("captioning", items, prompt=PROMPT, max_new_tokens=5)
    assert not list(head.parameters())  # nothing of its own: the paradigm decides what trains
    clip = video(2, 3)
    features = encoder(clip)
    captions = task.predict(head, features, {}, TextEncoder(model))
    with torch.no_grad():
        assert captions == model.generate(clip, PROMPT, max_new_tokens=5).texts
    encoder.train()
    targets = task.targets(items, data, None, train=True)
    loss = task.loss(head, encoder(clip), targets, TextEncoder(model))
    torch.testing.assert_close(loss, model.loss(clip, PROMPT, targets["texts"]))
    loss.backward()
    assert model.projector.linear_1.weight.grad is not None


def test_open_ended_qa_generates_answers_and_multiple_choice_picks_the_likeliest_candidate() -> None:
    open_items = [QAItem(f"q{i}", VideoRef(f"v{i}"), "which colour ?", "red") for i in range(2)]
    model, encoder, task, head, data = _setup("qa", open_items, max_new_tokens=4)
    assert head.spec["mode"] == "open_ended"
    clip = video(2, 3)
    targets = task.targets(open_items, data, None, train=False)
    answers = task.predict(head, encoder(clip), targets, TextEncoder(model))
    with torch.no_grad():
        expected = model.generate(clip, "which colour ? Answer in a few words.", max_new_tokens=4).texts
    assert answers == expected
    loss = task.loss(head, encoder(clip), targets, TextEncoder(model))
    torch.testing.assert_close(loss, model.loss(clip, "which colour ? Answer in a few words.", ["red", "red"]))

    items = _mc_items()
    model, encoder, task, head, data = _setup("qa", items)
    targets = task.targets(items, data, None, train=False)
    picked = task.predict(head, encoder(clip), targets, TextEncoder(model))
    prompt = "which colour ? Choose one: red, blue square, green."
    with torch.no_grad():
        scores = model.score_candidates(clip, prompt, [list(i.candidates) for i in items])
    assert picked == [int(s.argmax()) for s in scores]
    assert task.evaluate(picked, TaskData("qa", "test", items, None, "t"))["accuracy"] >= 0.0
    # the discriminative loss: cross-entropy over the candidates' log-likelihoods
    model, encoder, task, head, data = _setup("qa", items, mc_loss="choice")
    loss = task.loss(head, encoder(clip), task.targets(items, data, None, train=True), TextEncoder(model))
    labels = torch.tensor([0, 1])
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(torch.stack(scores), labels))


def test_multiple_choice_learns_from_the_answer_loss() -> None:
    """A few steps of post-network tuning on two videos make each one's gold candidate the likeliest."""
    items = _mc_items()
    model, encoder, task, head, data = _setup("qa", items)
    clip = video(2, 2, seed=3)
    targets = task.targets(items, data, None, train=True)
    optimizer = torch.optim.Adam([p for p in encoder.parameters() if p.requires_grad], lr=3e-2)
    encoder.train()
    for _ in range(25):
        optimizer.zero_grad()
        task.loss(head, encoder(clip), targets, TextEncoder(model)).backward()
        optimizer.step()
    encoder.eval()
    assert task.predict(head, encoder(clip), targets, TextEncoder(model)) == [0, 1]


def test_zero_shot_head_answers_from_the_prompt_alone() -> None:
    items = [CaptionItem(VideoRef("v0"), ("a",)), CaptionItem(VideoRef("v1"), ("b",))]
    model, encoder, task, head, _ = _setup("captioning", items, prompt=PROMPT, max_new_tokens=4, video=False)
    a = task.predict(head, encoder(video(2, 3, seed=1)), {}, TextEncoder(model))
    b = task.predict(head, encoder(video(2, 3, seed=2)), {}, TextEncoder(model))
    with torch.no_grad():
        blind = model.generate(None, [PROMPT, PROMPT], max_new_tokens=4).texts
    assert a == b == blind  # the videos change nothing


def test_bad_input_template_length_bound_long_video_and_a_contrastive_backbone() -> None:
    items = [CaptionItem(VideoRef("v0"), ("a",))]
    with pytest.raises(VideoadaptError, match="<video>"):
        _setup("captioning", items, template="Describe this: {prompt}")
    with pytest.raises(VideoadaptError, match="max_new_tokens"):
        _setup("captioning", items, max_new_tokens=0)
    # a model that never stops is cut at the bound, and the cut is said
    model, encoder, task, head, _ = _setup("captioning", items, max_new_tokens=2)
    model.stop_ids = [len(model.tokenizer) + 5]  # an end token it can never produce
    with pytest.warns(UserWarning, match="reached max_new_tokens=2"):
        (caption,) = task.predict(head, encoder(video(1, 2)), {}, TextEncoder(model))
    assert len(caption.split()) <= 2
    # a video longer than the context is sampled down, with a warning
    model = make_mllm(feature_layer=-1, context=80)
    encoder = build_video_encoder(model, "post_network").eval()
    task = build_task("captioning", head="mllm", max_new_tokens=3)
    head = task.build_head(model, encoder, TaskData("captioning", "train", items, None, "t"))
    with pytest.warns(UserWarning, match="sampled uniformly down"):
        task.predict(head, encoder(video(1, 8)), {}, TextEncoder(model))
    # head mllm on a contrastive ILFM
    from videoadapt.foundation.hf import from_architecture

    clip_model = from_architecture("clip-tiny")
    encoder = build_video_encoder(clip_model, "post_network")
    with pytest.raises(VideoadaptError, match="head 'mllm' asks a video MLLM"):
        build_task("captioning", head="mllm").build_head(
            clip_model, encoder, TaskData("captioning", "t", items, None, "")
        )


def test_train_eval_and_chat_predict_on_a_run(tmp_path, monkeypatch, capsys) -> None:
    """The whole path through the CLI: a captioning run on the MLLM (backbone loading patched to the tiny model),
    its evaluation, and `predict --prompt` on one video file."""
    from videoadapt.cli import main
    from videoadapt.foundation import loading

    monkeypatch.setattr(loading, "load_backbone", lambda spec: make_mllm(feature_layer=-1))
    assert main(["synth", "--out", str(tmp_path / "sw"), "--videos", "12", "--size", "32", "--frames", "8"]) == 0
    run = tmp_path / "run"
    argv = ["train", "--task", "captioning", "--data", f"synth:{tmp_path / 'sw'}", "--backbone", "mllm"]
    argv += ["--paradigm", "lora", "--out", str(run), "model.head.head=mllm", "model.head.max_new_tokens=3"]
    argv += ["data.frames=2", "run.batch_size=4", "run.max_steps=2", "run.progress=false", "run.cache=false"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random answers never end: cut at the bound, said in a warning
        assert main(argv) == 0
        capsys.readouterr()
        assert main(["eval", "--run", str(run), "--split", "test", "--json"]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert "CIDEr" in json.dumps(metrics)
        clip = sorted((tmp_path / "sw").rglob("*.mp4"))[0]
        assert main(["predict", str(clip), "--run", str(run), "--prompt", "what happens ?", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["videos"][0]
    assert out["prompt"] == "what happens ?" and isinstance(out["answer"], str) and out["frames_seen"] == 2
    with pytest.raises(VideoadaptError, match="no such|prompt"):
        from videoadapt.inference.predictor import Predictor

        Predictor(run).chat(clip, "   ")


def test_a_template_or_prompt_that_yaml_read_as_a_mapping_is_refused_with_the_way_out() -> None:
    # An unquoted "<video> {prompt}\nCaption:" reads as {"<video> {prompt}\nCaption": None}: it used to reach the
    # template as a dict (AttributeError in the model config, or str(dict) silently taken as the head's template).
    items = [CaptionItem(VideoRef("v0"), ("a",))]
    mapping = {"<video> {prompt}\nCaption": None}
    with pytest.raises(VideoadaptError, match="prompt template must be a text.*quote"):
        _setup("captioning", items, template=mapping)
    with pytest.raises(VideoadaptError, match="prompt must be a text"):
        _setup("captioning", items, prompt={"Describe": "it"})
    from videoadapt.foundation.mllm.model import MLLMConfig

    with pytest.raises(VideoadaptError, match="prompt template must be a text"):
        MLLMConfig(template=mapping)  # type: ignore[arg-type]
    # quoted, the same text is a template and works
    model, encoder, task, head, _ = _setup("captioning", items, template="<video> {prompt}\nCaption:")
    assert head.template == "<video> {prompt}\nCaption:"
