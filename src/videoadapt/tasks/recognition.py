"""Action recognition: one class per clip; top-1, top-5 and mean class accuracy.

Two classifiers (``model.head.classifier``):

* ``linear`` (default) — a linear layer on the video feature, as ST-Adapter, AIM and EVL train.
* ``text`` — the class names, written into a prompt (``prompt``, default ``"a video of {}."``), are encoded once by
  the ILFM's text tower and kept frozen; logits are the cosine similarities of the video embedding with them,
  times the ILFM's logit scale. This is the text classifier of ActionCLIP (Wang et al., 2021) and Text4Vis
  (Wu et al., AAAI 2023): it needs no class-specific parameter, so it starts where zero-shot CLIP is. A video
  feature outside the joint space is projected into it by a learnt linear map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.data.records import ClassificationItem, Item, TaskData
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import VideoEncoder, VideoFeatures
from videoadapt.registry import registry
from videoadapt.tasks.base import (
    SurveyTable,
    Task,
    TaskHead,
    TextEncoder,
    check_spec,
    cosine_logits,
    feature_widths,
    ilfm_logit_scale,
    projection,
)

CLASSIFIERS = ("linear", "text")


class RecognitionHead(TaskHead):
    def __init__(self, spec: dict[str, Any], width: int, embed_dim: int, class_embeds: torch.Tensor | None) -> None:
        super().__init__(spec)
        classes = len(spec["classes"])
        self.dropout = nn.Dropout(float(spec.get("dropout", 0.0)))
        if spec["classifier"] == "linear":
            self.classifier: nn.Module = nn.Linear(width, classes)
        else:
            self.project = projection(width, embed_dim)
            # A buffer, not a parameter: the text classifier stays frozen, and it is saved with the head so that
            # evaluation never needs the text tower again.
            embeds = class_embeds if class_embeds is not None else torch.zeros(classes, embed_dim)
            self.register_buffer("class_embeds", F.normalize(embeds.float(), dim=-1))
            self.scale = float(spec["logit_scale"])

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        video = self.dropout(video)
        if self.spec["classifier"] == "linear":
            return self.classifier(video).float()
        return cosine_logits(self.project(video), self.class_embeds, self.scale)


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
            zero_shot_head={"classifier": "text"},  # class-name prompts against mean-pooled frame embeddings
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
        if spec["classifier"] == "text":
            prompts = [spec["prompt"].format(name.replace("_", " ")) for name in spec["classes"]]
            with torch.no_grad():
                class_embeds = TextEncoder(ilfm).embeds(prompts)
        return RecognitionHead(spec, width, ilfm.dims.embed_dim, class_embeds)

    def loss(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> torch.Tensor:
        return F.cross_entropy(head(features.video), targets["labels"].to(features.video.device))

    def predict(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> list[Any]:
        return list(head(features.video).float().cpu())

    def evaluate(self, predictions: Sequence[Any], data: TaskData) -> dict[str, float]:
        from videoadapt.metrics import recognition_metrics

        scores = torch.stack([torch.as_tensor(p) for p in predictions])
        labels = torch.tensor([item.label for item in data.items])  # type: ignore[union-attr]
        topk = (1, 5) if scores.shape[1] >= 5 else (1,)
        result = {k: float(v) for k, v in recognition_metrics(scores, labels, topk=topk).items()}
        pairs = data.extra.get("reversal_pairs")
        if pairs:
            result.update(reversal_metrics(scores, labels, pairs))
        return result


def reversal_metrics(scores: torch.Tensor, labels: torch.Tensor, pairs: Sequence[Sequence[int]]) -> dict[str, float]:
    """Accuracy on classes that only temporal order tells apart (SynthWorld's time-reversal pairs), in percent.

    ``reversal_top1``: top-1 over the videos whose class belongs to a pair. ``reversal_pair_accuracy``: on the same
    videos, how often the true class scores strictly higher than its reversal partner — the binary question a
    bag-of-frames model cannot answer better than chance (50 %), whatever it gets right about the object.
    """
    partner = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    rows = [i for i, label in enumerate(labels.tolist()) if label in partner]
    if not rows:
        return {}
    index = torch.tensor(rows)
    true = labels[index]
    other = torch.tensor([partner[int(label)] for label in true])
    chosen = scores[index]
    top1 = (chosen.argmax(dim=1) == true).float().mean()
    pair = (chosen.gather(1, true[:, None]) > chosen.gather(1, other[:, None])).float().mean()
    return {
        "reversal_top1": 100 * float(top1),
        "reversal_pair_accuracy": 100 * float(pair),
        "reversal_videos": float(len(rows)),
    }
