"""Action recognition: one class per clip; top-1, top-5 and mean class accuracy.

Three classifiers (``model.head.classifier``):

* ``linear`` (default) — a linear layer on the video feature, as ST-Adapter, AIM and EVL train.
* ``text`` — the class names, written into a prompt (``prompt``, default ``"a video of {}."``), are encoded once by
  the ILFM's text tower and kept frozen; logits are the cosine similarities of the video embedding with them,
  times the ILFM's logit scale. This is the text classifier of ActionCLIP (Wang et al., 2021) and Text4Vis
  (Wu et al., AAAI 2023): it needs no class-specific parameter, so it starts where zero-shot CLIP is. A video
  feature outside the joint space is projected into it by a learnt linear map.
* ``text_tuned`` — the same cosine classifier, but the class embeddings are a trainable parameter initialised from
  the normalised prompt embeddings, and the temperature is learnt (initialised at the ILFM's, at most 100, as CLIP
  and ActionCLIP learn theirs): a linear probe in the joint space that starts exactly at the zero-shot classifier,
  so that even a model whose video side cannot change (mean-pooled frozen frames) can learn. The temperature
  matters: an image model's scale makes its zero-shot guesses on video confidently wrong (TinyCLIP's 41 gives a
  cross-entropy near 15 on SynthWorld's actions), and a fixed scale leaves the head fighting that for hundreds of
  steps.

On SynthWorld with ``reversal_copies`` (data option), each clip of a class with a time-reversal partner has a
copy played backwards and labelled with the partner: top-k and mean class accuracy are over the original clips,
``reversal_pair_accuracy`` over the balanced set of originals and copies (see :func:`reversal_metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.data.records import ClassificationItem, Item, TaskData, VideoRef, time_reversal_copies
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import VideoEncoder, VideoFeatures
from videoadapt.registry import registry
from videoadapt.tasks.base import (
    Request,
    SurveyTable,
    Task,
    TaskHead,
    TextEncoder,
    check_predictions,
    check_spec,
    cosine_logits,
    feature_widths,
    ilfm_logit_scale,
    percent,
    projection,
)

CLASSIFIERS = ("linear", "text", "text_tuned")
TEXT_CLASSIFIERS = ("text", "text_tuned")
TOPK = (1, 5)  # top-5 only with at least 5 classes
RECORD_TOP = 5  # classes kept per clip in item_records
MAX_SCALE = 100.0  # CLIP caps its learnt logit scale at 100


class RecognitionHead(TaskHead):
    def __init__(self, spec: dict[str, Any], width: int, embed_dim: int, class_embeds: torch.Tensor | None) -> None:
        super().__init__(spec)
        classes = len(spec["classes"])
        self.dropout = nn.Dropout(float(spec.get("dropout", 0.0)))
        if spec["classifier"] == "linear":
            self.classifier: nn.Module = nn.Linear(width, classes)
        else:
            self.project = projection(width, embed_dim)
            embeds = class_embeds if class_embeds is not None else torch.zeros(classes, embed_dim)
            embeds = F.normalize(embeds.float(), dim=-1)
            if spec["classifier"] == "text_tuned":
                # A linear probe in the joint space that starts at the zero-shot classifier, its temperature learnt.
                self.class_embeds = nn.Parameter(embeds)
                # The learnt temperature as a log-factor on the ILFM's (0 at first: exactly the zero-shot logits).
                self.log_scale_shift = nn.Parameter(torch.zeros(()))
            else:
                # A buffer, not a parameter: the text classifier stays frozen, and it is saved with the head so
                # that evaluation never needs the text tower again.
                self.register_buffer("class_embeds", embeds)
            self.scale = float(spec["logit_scale"])

    def logit_scale(self) -> torch.Tensor | float:
        shift = getattr(self, "log_scale_shift", None)
        return self.scale if shift is None else (self.scale * shift.exp()).clamp(max=MAX_SCALE)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        video = self.dropout(video)
        if self.spec["classifier"] == "linear":
            return self.classifier(video).float()
        return cosine_logits(self.project(video), self.class_embeds, self.logit_scale())


@registry.register("task", "recognition")
class Recognition(Task):
    name = "recognition"
    monitor = "top1"
    survey = (
        SurveyTable(
            "recognition",
            "Table III: action recognition (top-1 / top-5; SynthWorld's time-reversal pairs apart)",
            (
                ("top-1", "top1"),
                ("top-5", "top5"),
                ("reversal top-1", "reversal_top1"),
                ("reversal pair acc.", "reversal_pair_accuracy"),
            ),
            # SynthWorld's test split gets each reversal-class clip played backwards too (balanced pairs); the
            # validation split, which learning curves and the sweep read for top-1, does without the extra clips.
            data={"reversal_copies": "test"},
            zero_shot_head={"classifier": "text"},  # class-name prompts against mean-pooled frame embeddings
            # Every trained row: a linear classifier on the video embedding (ST-Adapter, AIM, EVL). The zero-shot
            # classifier trained (text_tuned) was measured too and learns far slower on frozen frame embeddings
            # (docs/bench.md, "The task heads").
            head={"classifier": "linear"},
        ),
    )

    def check_item(self, item: Item, data: TaskData) -> str | None:
        if not isinstance(item, ClassificationItem):
            return f"not a classification item ({type(item).__name__})"
        classes = data.classes or []
        if not 0 <= item.label < len(classes):
            return f"label {item.label} is outside the {len(classes)} classes"
        return None

    def targets(
        self, items: Sequence[Item], data: TaskData, rngs: Sequence[np.random.Generator] | None, train: bool
    ) -> dict:
        return {"labels": torch.tensor([item.label for item in items], dtype=torch.long)}  # type: ignore[union-attr]

    def build_head(
        self,
        ilfm: ImageLanguageModel,
        encoder: VideoEncoder,
        data: TaskData,
        spec: dict[str, Any] | None = None,
    ) -> RecognitionHead:
        _, width = feature_widths(encoder)
        if spec is None:
            if not data.classes:
                raise VideoadaptError(f"{data.origin}: recognition needs the class list (TaskData.classes)")
            classifier = self.option("classifier", "linear")
            if classifier not in CLASSIFIERS:
                raise VideoadaptError(f"recognition: classifier must be one of {CLASSIFIERS}, got {classifier!r}")
            spec = {
                "classifier": classifier,
                "classes": list(data.classes),
                "prompt": str(self.option("prompt", "a video of {}.")),
                "dropout": float(self.option("dropout", 0.0)),
                "logit_scale": ilfm_logit_scale(ilfm),
            }
        check_spec(spec, self.name, ("classifier", "classes", "prompt", "logit_scale"))
        class_embeds = None
        if spec["classifier"] in TEXT_CLASSIFIERS:
            prompts = [spec["prompt"].format(name.replace("_", " ")) for name in spec["classes"]]
            with torch.no_grad():
                class_embeds = TextEncoder(ilfm).embeds(prompts)
        return RecognitionHead(spec, width, ilfm.dims.embed_dim, class_embeds)

    def loss(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> torch.Tensor:
        return F.cross_entropy(head(features.video), targets["labels"].to(features.video.device))

    def predict(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> list[Any]:
        return list(head(features.video).float().cpu())

    def user_items(self, video: VideoRef, request: Request, spec: dict[str, Any]) -> list[Item]:
        return [ClassificationItem(video, label=0)]

    def describe(self, prediction: Any, item: Item, spec: dict[str, Any], top_k: int = 5) -> dict[str, Any]:
        probabilities = torch.as_tensor(prediction).float().softmax(-1)
        best = torch.argsort(probabilities, descending=True, stable=True)[: max(1, top_k)]
        classes = spec["classes"]
        return {"top_k": [{"label": classes[int(i)], "probability": float(probabilities[i])} for i in best]}

    def anchor_texts(self, head: TaskHead, targets: dict, text: TextEncoder) -> torch.Tensor | None:
        """The class embeddings of a text classifier (``text``, ``text_tuned``); None for ``linear``."""
        if head.spec["classifier"] not in TEXT_CLASSIFIERS:
            return None
        return F.normalize(head.class_embeds.float(), dim=-1)

    def evaluate(self, predictions: Sequence[Any], data: TaskData) -> dict[str, float]:
        from videoadapt.metrics import recognition_metrics

        check_predictions(self, predictions, data)
        scores = torch.stack([torch.as_tensor(p) for p in predictions])
        labels = torch.tensor([item.label for item in data.items])  # type: ignore[union-attr]
        copies = time_reversal_copies(data.items)
        originals = torch.as_tensor(_originals(len(data.items), copies))
        topk = _topk(scores.shape[1])
        result = {k: float(v) for k, v in recognition_metrics(scores[originals], labels[originals], topk=topk).items()}
        result.update(reversal_metrics(scores, labels, _pairs(data, copies), copies))
        return result

    # --- per item ------------------------------------------------------------------------------------------------

    def item_statistics(self, predictions: Sequence[Any], data: TaskData) -> dict[str, np.ndarray]:
        """One row per original clip (its time-reversed copy folded in): ``items``; ``topk`` hits (top-1, top-5);
        per class ``class_items``, ``class_hits`` (argmax right), ``class_predicted`` (argmax) for mean class
        accuracy; with reversal pairs ``reversal`` (clip of a paired class, its top-1 hit) and, with copies,
        ``reversal_pairs`` (clips in the balanced set: 2, how many beat their partner: 0–2)."""
        check_predictions(self, predictions, data)
        scores = _score_array(predictions)
        labels = np.array([item.label for item in data.items])  # type: ignore[union-attr]
        copies = time_reversal_copies(data.items)
        originals = _originals(len(labels), copies)
        own, true = scores[originals], labels[originals]
        rows, classes = len(originals), scores.shape[1]
        ahead = _ranked_above(own, true)
        predicted = np.argmax(own, axis=1)  # ties: the lowest class index, as mean class accuracy's argmax
        stats = {
            "items": np.ones((rows, 1)),
            "topk": np.stack([ahead < k for k in _topk(classes)], axis=1).astype(np.float64),
            "class_items": np.eye(classes)[true],
            "class_hits": np.eye(classes)[true] * (predicted == true)[:, None],
            "class_predicted": np.eye(classes)[predicted],
        }
        partner = _partner(_pairs(data, copies))
        paired = np.array([int(t) in partner for t in true], dtype=np.float64)
        if paired.any():
            stats["reversal"] = np.stack([paired, paired * (ahead == 0)], axis=1)
        if copies:
            pairs = np.zeros((rows, 2))
            for row, original in enumerate(originals):
                if original in copies:
                    copy = copies[original]
                    pairs[row] = (
                        2,
                        _beats(scores[original], labels[original], labels[copy])
                        + _beats(scores[copy], labels[copy], labels[original]),
                    )
            stats["reversal_pairs"] = pairs
        return stats

    def metrics_from_sums(self, sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        topk = sums["topk"]
        items = sums["items"][..., 0]
        result = {f"top{k}": percent(topk[..., j], items) for j, k in enumerate(TOPK[: topk.shape[-1]])}
        counts, hits, predicted = sums["class_items"], sums["class_hits"], sums["class_predicted"]
        # MMAction2's mean over the classes that occur as a label or as a prediction (a predicted-only class: 0).
        present = (counts > 0) | (predicted > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            accuracy = np.where(counts > 0, hits / np.where(counts > 0, counts, 1.0), 0.0)
        result["mean_class_accuracy"] = percent((accuracy * present).sum(-1), present.sum(-1))
        if "reversal" in sums:
            result["reversal_top1"] = percent(sums["reversal"][..., 1], sums["reversal"][..., 0])
        if "reversal_pairs" in sums:
            result["reversal_pair_accuracy"] = percent(sums["reversal_pairs"][..., 1], sums["reversal_pairs"][..., 0])
        return result

    def score_documents(self, predictions: Sequence[Any], data: TaskData) -> dict[str, str]:
        """Scores per class and video (a time-reversed copy is ``<id>#2``), and the labels by class name."""
        from videoadapt.metrics import prediction_files as pf

        check_predictions(self, predictions, data)
        ids = pf.unique_ids([item.video.video_id for item in data.items])
        classes = list(data.classes or [])
        scores = {i: torch.as_tensor(p).tolist() for i, p in zip(ids, predictions, strict=True)}
        labels = {i: item.label for i, item in zip(ids, data.items, strict=True)}  # type: ignore[union-attr]
        return pf.documents(
            pf.recognition_predictions_text(scores, classes), pf.recognition_ground_truth_text(labels, classes)
        )

    def item_records(self, predictions: Sequence[Any], data: TaskData) -> list[dict[str, Any]]:
        """Per original clip: ``id``, ``label``, ``correct`` (top-1), ``top5`` ``[[class, score], ...]`` (ties: the
        higher class index first, as top-k counts them), ``label_score``; for a class with a reversal partner
        ``partner`` and ``partner_score``; with a copy, ``reversed`` (the same for the clip played backwards) and
        ``pair`` (whether the original and the copy each score their class strictly above its partner)."""
        check_predictions(self, predictions, data)
        scores = _score_array(predictions)
        labels = [int(item.label) for item in data.items]  # type: ignore[union-attr]
        names = list(data.classes or [str(c) for c in range(scores.shape[1])])
        copies = time_reversal_copies(data.items)
        partner = _partner(_pairs(data, copies))

        def record(row: int) -> dict[str, Any]:
            label, order = labels[row], np.argsort(scores[row], kind="stable")[::-1][:RECORD_TOP]
            out: dict[str, Any] = {
                "label": names[label],
                "correct": bool(_ranked_above(scores[row : row + 1], np.array([label]))[0] == 0),
                "top5": [[names[c], float(scores[row, c])] for c in order],
                "label_score": float(scores[row, label]),
            }
            if label in partner:
                out["partner"] = names[partner[label]]
                out["partner_score"] = float(scores[row, partner[label]])
            return out

        records = []
        for original in _originals(len(labels), copies):
            entry = {"id": data.items[original].video.video_id, **record(original)}
            if original in copies:
                copy = copies[original]
                entry["reversed"] = record(copy)
                entry["pair"] = [
                    bool(_beats(scores[original], labels[original], labels[copy])),
                    bool(_beats(scores[copy], labels[copy], labels[original])),
                ]
            records.append(entry)
        return records


def _score_array(predictions: Sequence[Any]) -> np.ndarray:
    return np.stack([torch.as_tensor(p).detach().cpu().numpy() for p in predictions])


def _topk(classes: int) -> tuple[int, ...]:
    return TOPK if classes >= max(TOPK) else TOPK[:1]


def _ranked_above(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row, how many classes rank above the label under top-k's convention (a stable ascending argsort read
    from the end: a higher score, or an equal score at a higher class index); the label is in the top k iff < k."""
    own = scores[np.arange(len(labels)), labels][:, None]
    index = np.arange(scores.shape[1])[None, :]
    return ((scores > own) | ((scores == own) & (index > labels[:, None]))).sum(axis=1)


def _beats(scores: np.ndarray, label: int, other: int) -> int:
    return int(scores[label] > scores[other])


def _originals(count: int, copies: dict[int, int]) -> np.ndarray:
    copied = set(copies.values())
    return np.array([i for i in range(count) if i not in copied], dtype=np.int64)


def _pairs(data: TaskData, copies: dict[int, int]) -> list[list[int]]:
    """The data's time-reversal class pairs; each copy must carry its original's partner class."""
    pairs = list(data.extra.get("reversal_pairs") or [])  # type: ignore[call-overload]
    if copies and not pairs:
        raise VideoadaptError(f"{data.origin}: time-reversed copies but no reversal_pairs to score them with")
    partner = _partner(pairs)
    for original, copy in copies.items():
        label, copied = data.items[original].label, data.items[copy].label  # type: ignore[union-attr]
        if partner.get(label) != copied or copied == label:
            raise VideoadaptError(
                f"{data.origin}: item {copy} is the time-reversed copy of item {original} (class {label}) but is "
                f"labelled {copied}, not its reversal partner {partner.get(label)}"
            )
    return pairs


def _partner(pairs: Sequence[Sequence[int]]) -> dict[int, int]:
    return {int(a): int(b) for a, b in pairs} | {int(b): int(a) for a, b in pairs}


def reversal_metrics(
    scores: torch.Tensor,
    labels: torch.Tensor,
    pairs: Sequence[Sequence[int]],
    copies: dict[int, int] | None = None,
) -> dict[str, float]:
    """Accuracy on classes that only temporal order tells apart (SynthWorld's time-reversal pairs), in percent.

    ``scores`` ``[M, C]`` and ``labels`` ``[M]`` of every item; ``copies`` maps an original item to its time-reversed
    copy (the same clip played backwards, labelled with the partner class). ``reversal_top1``: top-1 (as ``top1``
    counts it) over the original clips whose class has a partner (``reversal_videos`` of them).
    ``reversal_pair_accuracy``, only with copies: over the balanced set of each copied original and its copy
    (``reversal_clips``), how often a clip's class scores strictly above its partner. A frame-order-blind model
    gives a clip and its reversal the same scores, so at most one of the two counts: it cannot beat 50 % (a tie
    counts for neither).
    """
    copies = copies or {}
    partner = _partner(pairs)
    originals = _originals(len(labels), copies)
    rows = [int(i) for i in originals if int(labels[i]) in partner]
    if not rows:
        return {}
    # Top-1 as ``top1`` counts it: the last class of a stable ascending sort (a tie goes to the higher index).
    first = np.argsort(np.asarray(scores[rows]), axis=1, kind="stable")[:, -1]
    top1 = float((first == np.asarray(labels[rows])).mean())
    result = {"reversal_top1": 100 * top1, "reversal_videos": float(len(rows))}
    if copies:
        hits = 0
        for original, copy in copies.items():
            hits += int(scores[original, labels[original]] > scores[original, labels[copy]])
            hits += int(scores[copy, labels[copy]] > scores[copy, labels[original]])
        result["reversal_pair_accuracy"] = 100 * hits / (2 * len(copies))
        result["reversal_clips"] = float(2 * len(copies))
    return result
