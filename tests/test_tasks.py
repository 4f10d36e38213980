"""Tasks: every task learns on a tiny SynthWorld batch through several paradigms, heads behave as their designs say
(frozen text classifier, symmetric InfoNCE, caption decoding), evaluation returns the metric keys, bad items are
named. Backbone: ``hf-config:clip-tiny`` (random, 32 px, E = 16), so nothing depends on the shipped weights."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from videoadapt.data.formats import load_task_data
from videoadapt.data.records import CaptionItem, ClassificationItem, TaskData
from videoadapt.data.sampling import sampler_from_spec
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.loading import load_backbone
from videoadapt.model.batches import BatchBuilder
from videoadapt.model.data import check_items
from videoadapt.model.task_model import TaskModel
from videoadapt.paradigms import build_video_encoder
from videoadapt.tasks import TextEncoder, build_task, feature_widths, task_names
from videoadapt.tasks.base import TextAdapter, text_adapter_spec
from videoadapt.tasks.captioning import WordTokenizer
from videoadapt.tasks.retrieval import contrastive_loss

SYNTH = {"videos": 40, "size": 32, "frames": 8}
FRAMES = 4
PARADIGMS = {
    "post_network": {},
    "lora": {"lora": {"r": 2}},
    "adapter": {"adapter": {"variant": "st_adapter", "width": 8}},
    "side_tuning": {},
}
CASES = [
    ("recognition", {}, {}),
    ("recognition", {"classifier": "text"}, {}),
    ("retrieval", {}, {}),
    ("qa", {}, {}),
    ("qa", {}, {"qa": "open_ended"}),
    ("captioning", {"width": 32, "heads": 2, "layers": 1}, {}),
]


def synth(task: str, split: str = "train", **options) -> TaskData:
    return load_task_data("synth", split, task, **SYNTH, **options)


def model_for(task_name: str, paradigm: str, head_options: dict, data: TaskData) -> TaskModel:
    torch.manual_seed(0)
    ilfm = load_backbone("hf-config:clip-tiny")
    encoder = build_video_encoder(ilfm, paradigm, PARADIGMS[paradigm])
    feature_widths(encoder, FRAMES)
    task = build_task(task_name, **head_options)
    head = task.build_head(ilfm, encoder, data)
    return TaskModel(encoder, head, task, TextEncoder(ilfm))


def first_batch(model: TaskModel, data: TaskData, size: int = 8, train: bool = True):
    builder = BatchBuilder(
        data, model.task, model.encoder.ilfm.processor, sampler_from_spec(f"uniform:{FRAMES}"), train=train
    )
    return builder.build(list(range(size)))


def test_tasks_are_registered():
    assert {"recognition", "retrieval", "qa", "captioning"} <= set(task_names())


@pytest.mark.parametrize("paradigm", list(PARADIGMS))
@pytest.mark.parametrize(("task_name", "head_options", "data_options"), CASES)
def test_loss_goes_down(task_name, head_options, data_options, paradigm):
    """A few AdamW steps on one batch lower the task loss, whatever the paradigm."""
    data = synth(task_name, **data_options)
    model = model_for(task_name, paradigm, head_options, data)
    batch = first_batch(model, data)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses


EXPECTED_KEYS = {
    "recognition": {"top1", "top5", "mean_class_accuracy"},
    "retrieval": {"t2v_R1", "t2v_R5", "t2v_R10", "t2v_MdR", "t2v_MnR", "v2t_R1", "v2t_MdR", "Rsum"},
    "qa": {"accuracy"},
    "captioning": {"BLEU-4", "METEOR", "ROUGE-L", "CIDEr"},
}


@pytest.mark.parametrize(("task_name", "head_options", "data_options"), CASES)
def test_predict_and_evaluate(task_name, head_options, data_options):
    train = synth(task_name, **data_options)
    test = synth(task_name, "test", **data_options)
    model = model_for(task_name, "post_network", head_options, train)
    model.eval()
    predictions = []
    for start in range(0, len(test), 8):
        builder = BatchBuilder(
            test, model.task, model.encoder.ilfm.processor, sampler_from_spec(f"uniform:{FRAMES}"), train=False
        )
        predictions += model.predict(builder.build(list(range(start, min(start + 8, len(test))))))
    assert len(predictions) == len(test)
    metrics = model.task.evaluate(predictions, test)
    assert EXPECTED_KEYS[task_name] <= set(metrics)
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("kind", [True, "tokens"])
@pytest.mark.parametrize(("task_name", "data_options"), [("retrieval", {}), ("qa", {})])
def test_text_adapter_starts_at_the_frozen_tower_and_learns(task_name, data_options, kind):
    """text_adapter (true = mlp, or tokens) adds a zero-initialised residual on the text embeddings: the first loss
    equals the one without it, its parameters are the only new trainable ones, they receive gradients, and the spec
    rebuilds it."""
    data = synth(task_name, **data_options)
    plain = model_for(task_name, "post_network", {}, data)
    adapted = model_for(task_name, "post_network", {"text_adapter": kind, "text_hidden": 32}, data)
    adapted.encoder.load_state_dict(plain.encoder.state_dict())
    adapted.head.load_state_dict(plain.head.state_dict(), strict=False)
    batch = first_batch(plain, data)
    plain.eval()
    adapted.eval()
    with torch.no_grad():
        assert float(adapted(batch)) == pytest.approx(float(plain(batch)), abs=1e-6)
    extra = {n for n, p in adapted.named_parameters() if p.requires_grad} - {
        n for n, p in plain.named_parameters() if p.requires_grad
    }
    assert extra and all(n.startswith("head.text_adapter.") for n in extra)
    adapted.train()
    adapted(batch).backward()
    assert adapted.head.text_adapter.out.weight.grad.abs().sum() > 0
    rebuilt = adapted.task.build_head(adapted.encoder.ilfm, adapted.encoder, data, spec=adapted.head.spec)
    rebuilt.load_state_dict(adapted.head.state_dict())
    assert rebuilt.text_adapter is not None and rebuilt.text_adapter.kind == ("mlp" if kind is True else kind)


def test_token_text_adapter_ignores_padding():
    """A text's adapted embedding does not depend on the longer texts padded beside it, and the memoised token
    states it reads are the tower's own."""
    ilfm = load_backbone("hf-config:clip-tiny").requires_grad_(False)
    text = TextEncoder(ilfm)
    adapter = TextAdapter(ilfm.dims.text_width, ilfm.dims.embed_dim, 32, kind="tokens", layers=1)
    torch.nn.init.normal_(adapter.out.weight, std=0.5)  # away from the zero start, so the residual shows
    adapter.eval()
    short, long = "a red circle", "a red circle moves to the left while a blue square stays still"
    with torch.no_grad():
        alone = adapter(text, [short])
        padded = adapter(text, [long, short])
    torch.testing.assert_close(padded[1:], alone, atol=1e-5, rtol=1e-5)
    calls = text.calls  # one pass of the tower per new text filled the token states and the embeddings
    assert calls == 2 and text.embeds([long, short]).shape == (2, ilfm.dims.embed_dim) and text.calls == calls
    tokens, mask = text.token_states([long, short])
    live = ilfm.encode_text([short])
    assert int(mask[1].sum()) == int(live.mask.sum())
    torch.testing.assert_close(tokens[1, : int(mask[1].sum())], live.tokens[0, : int(live.mask.sum())])


def test_text_adapter_rejects_an_unknown_kind():
    with pytest.raises(VideoadaptError, match="text_adapter: unknown value 'attention'"):
        text_adapter_spec(build_task("retrieval", text_adapter="attention"))


def test_text_classifier_is_frozen_cosine_of_class_prompts():
    data = synth("recognition")
    model = model_for("recognition", "post_network", {"classifier": "text"}, data)
    head = model.head
    assert not any(p.requires_grad for n, p in head.named_parameters() if "class_embeds" in n)
    assert "class_embeds" in dict(head.named_buffers())
    prompts = [f"a video of {c.replace('_', ' ')}." for c in data.classes]
    expected = torch.nn.functional.normalize(model.encoder.ilfm.encode_text(prompts).embeds.float(), dim=-1)
    torch.testing.assert_close(head.class_embeds, expected, atol=1e-5, rtol=1e-5)
    video = torch.randn(3, model.encoder._task_feature_widths[1])
    logits = head(video)
    cos = torch.nn.functional.normalize(head.project(video), dim=-1) @ expected.T
    torch.testing.assert_close(logits, head.scale * cos, atol=1e-4, rtol=1e-4)
    # Only a projection into the joint space may train (here the features are already in it: nothing).
    assert sum(p.numel() for p in head.parameters() if p.requires_grad) == 0


def test_contrastive_loss_is_symmetric_infonce():
    torch.manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    scale = torch.tensor(10.0)
    logits = scale * t @ v.T
    target = torch.arange(5)
    expected = (
        torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)
    ) / 2
    torch.testing.assert_close(contrastive_loss(v, t, target, scale), expected)
    assert contrastive_loss(v, v, target, torch.tensor(100.0)) < 1e-3  # perfect alignment


def test_contrastive_loss_with_several_captions_per_video_is_mil_nce():
    torch.manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(7, 8), dim=-1)
    owner = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    scale = torch.tensor(10.0)
    logits = scale * t @ v.T
    t2v = torch.nn.functional.cross_entropy(logits, owner)
    v2t = []
    for video in range(3):  # -log of the softmax mass on the video's own captions, written out
        probabilities = logits[:, video].softmax(0)
        v2t.append(-torch.log(probabilities[owner == video].sum()))
    expected = (t2v + torch.stack(v2t).mean()) / 2
    torch.testing.assert_close(contrastive_loss(v, t, owner, scale), expected)


def test_retrieval_trains_on_every_caption_with_train_captions_all():
    data = synth("retrieval")
    task = build_task("retrieval", train_captions="all")
    items = data.items[:3]
    targets = task.targets(items, data, None, train=True)
    assert targets["texts"] == [c for item in items for c in item.captions]
    assert targets["owner"].tolist() == [i for i, item in enumerate(items) for _ in item.captions]
    assert "owner" not in task.targets(items, data, None, train=False)  # evaluation is unchanged
    with pytest.raises(VideoadaptError, match="train_captions: 'some'"):
        build_task("retrieval", train_captions="some").targets(items, data, None, train=True)


def test_retrieval_samples_one_caption_per_video_reproducibly():
    data = synth("retrieval")
    task = build_task("retrieval")
    items = data.items[:6]
    draw = lambda seed: task.targets(items, data, [np.random.default_rng([seed, i]) for i in range(6)], train=True)  # noqa: E731
    first, again = draw(1), draw(1)
    assert first == again
    assert all(t in item.captions for t, item in zip(first["texts"], items, strict=True))
    evaluation = task.targets(items, data, None, train=False)
    assert [len(c) for c in evaluation["captions"]] == [len(i.captions) for i in items]


def test_word_tokenizer_round_trip():
    tokenizer = WordTokenizer.build(["A red circle moves left.", "the red square, then up!"])
    assert tokenizer.words[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert tokenizer.words[4] == "red"  # most frequent first
    ids = tokenizer.encode("A red circle jumps", max_length=10)
    assert ids[0] == tokenizer.bos and ids[-1] == tokenizer.eos
    assert tokenizer.decode(ids[1:]) == "a red circle <unk>"
    assert len(tokenizer.encode("a " * 50, max_length=10)) == 11  # bos + 9 words + eos


def test_caption_decoding_greedy_and_beam():
    data = synth("captioning")
    model = model_for("captioning", "post_network", {"width": 32, "heads": 2, "layers": 1, "max_length": 6}, data)
    model.eval()
    frames = torch.randn(2, FRAMES, model.encoder._task_feature_widths[0])
    greedy = model.head.generate(frames, beam_size=1)
    beam = model.head.generate(frames, beam_size=3)
    for rows in (greedy, beam):
        assert len(rows) == 2
        assert all(len(r) <= 6 for r in rows)
    # Beam size 1 through the beam path equals greedy decoding up to the first end token.
    single = [model.head._beam(model.head.memory(frames[i : i + 1]), 1, 0.0) for i in range(2)]
    eos = model.head.tokenizer.eos
    for g, s in zip(greedy, single, strict=True):
        cut = g[: g.index(eos) + 1] if eos in g else g
        assert s == cut


def test_captioning_vocabulary_comes_from_training_captions():
    data = synth("captioning")
    model = model_for("captioning", "post_network", {"width": 32, "heads": 2, "layers": 1}, data)
    words = set(model.head.spec["words"])
    assert {w for item in data.items for c in item.captions for w in WordTokenizer.split(c)} <= words


def test_bad_items_are_named_or_skipped():
    data = synth("recognition")
    bad = ClassificationItem(data.items[0].video, len(data.classes) + 3)
    broken = TaskData("recognition", "train", [*data.items[:3], bad], data.source, data.origin, data.classes)
    task = build_task("recognition")
    with pytest.raises(VideoadaptError, match=r"item 3 .*label .* outside the .* classes"):
        check_items(task, broken, skip_bad=False)
    kept = check_items(task, broken, skip_bad=True)
    assert len(kept) == 3 and kept.extra["skipped_by_task"]["count"] == 1

    captions = synth("retrieval")
    silent = CaptionItem(captions.items[1].video, ("", "  "))
    odd = TaskData("retrieval", "train", [captions.items[0], silent], captions.source, captions.origin)
    with pytest.raises(VideoadaptError, match=r"item 1 .*no captions"):
        check_items(build_task("retrieval"), odd, skip_bad=False)


def test_empty_split_is_an_error():
    data = synth("recognition")
    with pytest.raises(VideoadaptError, match="no items"):
        TaskData("recognition", "train", [], data.source, data.origin, data.classes)


def test_text_encoder_memoises_a_frozen_tower():
    ilfm = load_backbone("hf-config:clip-tiny").requires_grad_(False)
    text = TextEncoder(ilfm)
    assert text.memoize
    a = text.embeds(["a red circle", "a blue square"])
    calls = text.calls
    b = text.embeds(["a blue square", "a red circle"])
    assert text.calls == calls
    torch.testing.assert_close(a.flip(0), b)
    # The text adapter's input comes from the same pass of the tower: no second call for known texts.
    pooled = text.pooled_tokens(["a red circle"])
    assert text.calls == calls and pooled.shape == (1, ilfm.dims.text_width)
    live = ilfm.encode_text(["a red circle"])
    torch.testing.assert_close(pooled, live.tokens[:, : int(live.mask.sum())].mean(1))


def test_text_tuned_classifier_starts_at_the_text_classifier_and_trains():
    """``text_tuned``: the class embeddings are a parameter initialised from the normalised prompt embeddings, so
    step 0 predicts what ``text`` predicts; on a mean-pooled frozen backbone they are all that trains, and they
    learn; the spec and the head's state rebuild it."""
    data = synth("recognition")
    frozen = {"post_network": {"temporal": "mean"}}
    ilfm = load_backbone("hf-config:clip-tiny")
    encoder = build_video_encoder(ilfm, "post_network", frozen)
    feature_widths(encoder, FRAMES)
    fixed, tuned = build_task("recognition", classifier="text"), build_task("recognition", classifier="text_tuned")
    text_model = TaskModel(encoder, fixed.build_head(ilfm, encoder, data), fixed, TextEncoder(ilfm))
    tuned_model = TaskModel(encoder, tuned.build_head(ilfm, encoder, data), tuned, TextEncoder(ilfm))
    assert isinstance(tuned_model.head.class_embeds, torch.nn.Parameter)
    torch.testing.assert_close(tuned_model.head.class_embeds.detach(), text_model.head.class_embeds, rtol=0, atol=0)
    batch = first_batch(text_model, data, train=False)
    text_model.eval()
    tuned_model.eval()
    with torch.no_grad():
        for a, b in zip(text_model.predict(batch), tuned_model.predict(batch), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    trainable = [n for n, p in tuned_model.named_parameters() if p.requires_grad]
    assert trainable == ["head.class_embeds", "head.log_scale_shift"]
    start = tuned_model.head.class_embeds.detach().clone()
    optimizer = torch.optim.AdamW([p for p in tuned_model.parameters() if p.requires_grad], lr=1e-2)
    tuned_model.train()
    losses = []
    for _ in range(8):
        loss = tuned_model(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] and not torch.equal(start, tuned_model.head.class_embeds.detach())
    # The temperature learns too (an image model's is too confident for video): it moved, within CLIP's cap.
    assert float(tuned_model.head.log_scale_shift) != 0 and float(tuned_model.head.logit_scale()) <= 100
    rebuilt = tuned.build_head(ilfm, encoder, data, spec=json.loads(json.dumps(tuned_model.head.spec)))
    rebuilt.load_state_dict(tuned_model.head.state_dict())
    video = torch.randn(3, encoder._task_feature_widths[1])
    torch.testing.assert_close(rebuilt(video), tuned_model.head(video))


def test_anchor_texts_of_each_task():
    """The text embeddings a batch is scored against (TeachCLIP's anchors), L2-normalised: recognition's class
    embeddings, retrieval's captions (through a text adapter when there is one), multiple-choice QA's candidate
    texts; None where there are none."""
    unit = lambda x: torch.nn.functional.normalize(x.float(), dim=-1)  # noqa: E731
    data = synth("recognition")
    linear = model_for("recognition", "post_network", {}, data)
    assert linear.task.anchor_texts(linear.head, {}, linear.text) is None
    for classifier in ("text", "text_tuned"):
        model = model_for("recognition", "post_network", {"classifier": classifier}, data)
        anchors = model.task.anchor_texts(model.head, {}, model.text)
        torch.testing.assert_close(anchors, unit(model.head.class_embeds.detach()))
        assert anchors.shape == (len(data.classes), model.encoder.ilfm.dims.embed_dim)
        assert anchors.requires_grad == (classifier == "text_tuned")

    data = synth("retrieval")
    items = data.items[:3]
    for head in ({}, {"text_adapter": True, "text_hidden": 16}):
        model = model_for("retrieval", "post_network", head, data)
        with torch.no_grad():  # a non-zero residual, so that the adapter's part shows
            if model.head.text_adapter is not None:
                torch.nn.init.normal_(model.head.text_adapter.out.weight, std=0.5)
        train = model.task.targets(items, data, None, train=True)
        anchors = model.task.anchor_texts(model.head, train, model.text)
        expected = model.text.embeds(train["texts"])
        if model.head.text_adapter is not None:
            expected = model.head.text_adapter(model.text, train["texts"])
            assert not torch.allclose(unit(expected), unit(model.text.embeds(train["texts"])))
        torch.testing.assert_close(anchors, unit(expected))
        evaluation = model.task.targets(items, data, None, train=False)
        assert len(model.task.anchor_texts(model.head, evaluation, model.text)) == sum(len(i.captions) for i in items)

    data = synth("qa")
    model = model_for("qa", "post_network", {}, data)
    targets = model.task.targets(data.items[:2], data, None, train=True)
    anchors = model.task.anchor_texts(model.head, targets, model.text)
    texts = [f"{q} {c}" for q, cands in zip(targets["questions"], targets["candidates"], strict=True) for c in cands]
    torch.testing.assert_close(anchors, unit(model.text.embeds(texts)))
    open_data = synth("qa", qa="open_ended")
    model = model_for("qa", "post_network", {}, open_data)
    assert (
        model.task.anchor_texts(model.head, model.task.targets(open_data.items[:2], open_data, None, True), model.text)
        is None
    )
    data = synth("captioning")
    model = model_for("captioning", "post_network", {"width": 32, "heads": 2, "layers": 1}, data)
    assert model.task.anchor_texts(model.head, model.task.targets(data.items[:2], data, None, True), model.text) is None
