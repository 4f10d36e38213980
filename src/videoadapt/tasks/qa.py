"""Video question answering, multiple choice or open-ended (which one follows the data: items with candidates are
multiple choice).

* **Multiple choice** (MSRVTT-MC, SynthWorld ``qa=multiple_choice``): each candidate is written after the question
  (``"{question} {candidate}"``), encoded by the text tower, and scored by its cosine similarity with the video
  embedding times a temperature; cross-entropy over the candidates. This is how CLIP4Clip-style retrieval models
  answer MSRVTT-MC, and it works zero-shot from the first step.
* **Open-ended** (MSRVTT-QA, MSVD-QA, SynthWorld ``qa=open_ended``): classification over the answer vocabulary of
  the training split (TaskData.answers), from the video embedding fused with the question's text embedding
  (``[v, q, v*q]`` through a two-layer MLP, as the "FrozenBiLM"-free baselines of the survey's Table V do).
  Accuracy after VQA answer normalisation; a test answer outside the vocabulary simply cannot be predicted.

With a frozen text tower, ``text_adapter: true`` passes the question (+ candidate) texts through a zero-initialised
residual MLP (:class:`~videoadapt.tasks.base.TextAdapter`) first.

On a video MLLM, ``head: mllm`` answers with its language model instead: open-ended answers are generated,
multiple-choice ones are the candidate of highest likelihood (:mod:`videoadapt.tasks.generative`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.data.records import Item, QAItem, TaskData, VideoRef
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import VideoEncoder, VideoFeatures
from videoadapt.registry import registry
from videoadapt.tasks.base import (
    Request,
    SurveyTable,
    Task,
    TaskHead,
    TextAdapter,
    TextEncoder,
    adapted_text,
    build_text_adapter,
    check_predictions,
    check_spec,
    feature_widths,
    head_device,
    ilfm_logit_scale,
    percent,
    projection,
    text_adapter_spec,
)
from videoadapt.tasks.generative import MLLMHead, build_mllm_head, generate, seen, wants_mllm

MODES = ("multiple_choice", "open_ended")
OPEN_PROMPT = "{question} Answer in a few words."
MC_PROMPT = "{question} Choose one: {choices}."


class QAHead(TaskHead):
    def __init__(
        self, spec: dict[str, Any], width: int, embed_dim: int, text_adapter: TextAdapter | None = None
    ) -> None:
        super().__init__(spec)
        self.project = projection(width, embed_dim)
        self.text_adapter = text_adapter
        if spec["mode"] == "multiple_choice":
            self.log_scale = nn.Parameter(torch.tensor(math.log(float(spec["logit_scale"]))))
        else:
            hidden = int(spec["hidden"])
            self.classifier = nn.Sequential(
                nn.Linear(3 * embed_dim, hidden),
                nn.GELU(),
                nn.Dropout(float(spec.get("dropout", 0.1))),
                nn.Linear(hidden, len(spec["answers"])),
            )

    def forward(self, video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Multiple choice: ``text`` ``[B,K,E]`` candidates -> logits ``[B,K]``. Open-ended: ``text`` ``[B,E]``
        questions -> logits ``[B,answers]``."""
        video = F.normalize(self.project(video).float(), dim=-1)
        text = F.normalize(text.float().to(video.device), dim=-1)
        if self.spec["mode"] == "multiple_choice":
            return self.log_scale.exp().clamp(max=100.0) * torch.einsum("be,bke->bk", video, text)
        return self.classifier(torch.cat([video, text, video * text], dim=-1))


@registry.register("task", "qa")
class QuestionAnswering(Task):
    name = "qa"
    monitor = "accuracy"
    # ``data`` selects SynthWorld's QA kind; on a benchmark the mode follows the data set.
    survey = (
        SurveyTable(
            "qa-mc",
            "Table III: VideoQA, multiple choice",
            (("MC acc.", "accuracy"),),
            data={"qa": "multiple_choice"},
            zero_shot_head={},  # "question candidate" texts against mean-pooled frame embeddings
            mllm_head={"head": "mllm"},
        ),
        SurveyTable(
            "qa-open",
            "Table III: VideoQA, open-ended",
            (("open acc.", "accuracy"),),
            data={"qa": "open_ended"},
            zero_shot_note="the open-ended head classifies over a learnt answer vocabulary; an ILFM has no "
            "zero-shot answer",
            mllm_head={"head": "mllm", "max_new_tokens": 8},
        ),
    )

    def check_item(self, item: Item, data: TaskData) -> str | None:
        if not isinstance(item, QAItem):
            return f"not a QA item ({type(item).__name__})"
        if not item.question.strip():
            return "empty question"
        if item.multiple_choice:
            if item.answer_index is None or not 0 <= item.answer_index < len(item.candidates or ()):
                return f"answer_index {item.answer_index} is outside the {len(item.candidates or ())} candidates"
        elif data.split == "train" and item.answer not in (data.answers or []):
            # Only training needs the answer in the vocabulary; at test time it is simply a wrong prediction.
            return f"answer {item.answer!r} is not in the answer vocabulary"
        return None

    def targets(
        self, items: Sequence[Item], data: TaskData, rngs: Sequence[np.random.Generator] | None, train: bool
    ) -> dict:
        qa: list[QAItem] = list(items)  # type: ignore[arg-type]
        out: dict[str, Any] = {"questions": [q.question for q in qa]}
        if qa and qa[0].multiple_choice:
            out["candidates"] = [list(q.candidates or ()) for q in qa]
            out["labels"] = torch.tensor([q.answer_index for q in qa], dtype=torch.long)
        else:
            index = {a: i for i, a in enumerate(data.answers or [])}
            out["labels"] = torch.tensor([index.get(q.answer, -100) for q in qa], dtype=torch.long)
        out["answers"] = [q.answer for q in qa]  # the texts, for a head that generates answers (mllm)
        return out

    def build_head(
        self,
        ilfm: ImageLanguageModel,
        encoder: VideoEncoder,
        data: TaskData,
        spec: dict[str, Any] | None = None,
    ) -> QAHead | MLLMHead:
        if wants_mllm(self, spec):
            return self._build_mllm_head(encoder, data, spec)
        _, width = feature_widths(encoder)
        if spec is None:
            first = data.items[0]
            mode = "multiple_choice" if isinstance(first, QAItem) and first.multiple_choice else "open_ended"
            spec = {"mode": mode, "logit_scale": ilfm_logit_scale(ilfm), **text_adapter_spec(self)}
            if mode == "open_ended":
                if not data.answers:
                    raise VideoadaptError(f"{data.origin}: open-ended QA needs the answer vocabulary (answers)")
                spec.update(
                    answers=list(data.answers),
                    hidden=int(self.option("hidden", 512)),
                    dropout=float(self.option("dropout", 0.1)),
                )
            else:
                spec["template"] = str(self.option("template", "{question} {candidate}"))
        check_spec(spec, self.name, ("mode", "logit_scale"))
        return QAHead(spec, width, ilfm.dims.embed_dim, build_text_adapter(spec, ilfm.dims))

    def _build_mllm_head(self, encoder: VideoEncoder, data: TaskData, spec: dict[str, Any] | None) -> MLLMHead:
        if spec is not None:
            return build_mllm_head(self, encoder, spec, "", 0)
        first = data.items[0] if data.items else None
        mode = "multiple_choice" if isinstance(first, QAItem) and first.multiple_choice else "open_ended"
        loss = str(self.option("mc_loss", "answer"))
        if loss not in ("answer", "choice"):
            raise VideoadaptError(f"qa: mc_loss must be 'answer' or 'choice', got {loss!r}")
        prompt = MC_PROMPT if mode == "multiple_choice" else OPEN_PROMPT
        return build_mllm_head(self, encoder, None, prompt, 8, {"mode": mode, "mc_loss": loss})

    def _mllm_prompts(self, head: MLLMHead, targets: dict) -> list[str]:
        candidates = targets.get("candidates") or [[] for _ in targets["questions"]]
        return [
            head.prompt.format(question=q, choices=", ".join(c))
            for q, c in zip(targets["questions"], candidates, strict=True)
        ]

    def _mllm_check_mode(self, head: MLLMHead, targets: dict) -> None:
        if (head.spec["mode"] == "multiple_choice") != ("candidates" in targets):
            kind = "multiple-choice" if "candidates" in targets else "open-ended"
            raise VideoadaptError(f"qa: this head answers {head.spec['mode']} questions but the items are {kind}")

    def _mllm_loss(self, head: MLLMHead, features: VideoFeatures, targets: dict) -> torch.Tensor:
        self._mllm_check_mode(head, targets)
        asked = seen(head, features)
        prompts = self._mllm_prompts(head, targets)
        if head.spec["mode"] == "multiple_choice" and head.spec.get("mc_loss") == "choice":
            scores = asked.score(prompts, targets["candidates"], template=head.template)
            labels = targets["labels"].to(scores[0].device)
            return F.cross_entropy(torch.stack(scores), labels)
        return asked.loss(prompts, targets["answers"], template=head.template)

    def _mllm_predict(self, head: MLLMHead, features: VideoFeatures, targets: dict) -> list[Any]:
        self._mllm_check_mode(head, targets)
        prompts = self._mllm_prompts(head, targets)
        if head.spec["mode"] == "multiple_choice":
            scores = seen(head, features).score(prompts, targets["candidates"], template=head.template)
            return [int(s.argmax()) for s in scores]
        return generate(head, features, prompts)

    def _candidate_embeds(self, head: TaskHead, targets: dict, text: TextEncoder) -> torch.Tensor:
        """``[B, K, E]``: each question written with each of its candidates, through the text side."""
        if "candidates" not in targets:
            raise VideoadaptError("qa: this head answers multiple-choice questions but the items are open-ended")
        template = head.spec.get("template", "{question} {candidate}")
        pairs = [
            template.format(question=q, candidate=c)
            for q, cands in zip(targets["questions"], targets["candidates"], strict=True)
            for c in cands
        ]
        counts = {len(c) for c in targets["candidates"]}
        if len(counts) != 1:
            raise VideoadaptError(f"qa: a batch mixes questions with {sorted(counts)} candidates")
        return adapted_text(head, text, pairs).reshape(len(targets["questions"]), counts.pop(), -1)

    def _logits(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> torch.Tensor:
        if head.spec["mode"] == "multiple_choice":
            return head(features.video, self._candidate_embeds(head, targets, text))
        if "candidates" in targets:
            raise VideoadaptError("qa: this head answers open-ended questions but the items are multiple choice")
        return head(features.video, adapted_text(head, text, targets["questions"]))

    def loss(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> torch.Tensor:
        if isinstance(head, MLLMHead):
            return self._mllm_loss(head, features, targets)
        logits = self._logits(head, features, targets, text)
        return F.cross_entropy(logits, targets["labels"].to(logits.device), ignore_index=-100)

    def predict(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> list[Any]:
        if isinstance(head, MLLMHead):
            return self._mllm_predict(head, features, targets)
        best = self._logits(head, features, targets, text).argmax(dim=-1).tolist()
        if head.spec["mode"] == "multiple_choice":
            return best
        return [head.spec["answers"][i] for i in best]

    def user_items(self, video: VideoRef, request: Request, spec: dict[str, Any]) -> list[Item]:
        question = (request.question or "").strip()
        if not question:
            raise VideoadaptError("qa: give the question to answer (--question, question=)")
        if spec["mode"] != "multiple_choice":
            return [QAItem("question", video, question, answer="")]
        choices = tuple(c for c in (request.choices or ()) if c.strip())
        if len(choices) < 2:
            raise VideoadaptError("qa: this run answers multiple-choice questions; give two or more --choice")
        return [QAItem("question", video, question, answer=choices[0], candidates=choices, answer_index=0)]

    def describe(self, prediction: Any, item: Item, spec: dict[str, Any], top_k: int = 5) -> dict[str, Any]:
        if spec["mode"] == "multiple_choice":
            index = int(prediction)
            return {"question": item.question, "answer": item.candidates[index], "choice": index}  # type: ignore
        return {"question": item.question, "answer": str(prediction)}  # type: ignore[union-attr]

    def anchor_texts(self, head: TaskHead, targets: dict, text: TextEncoder) -> torch.Tensor | None:
        """Multiple choice: the batch's candidate texts (``"{question} {candidate}"``) ``[B*K, E]``; open-ended:
        None (its answers are classes of a learnt classifier, not texts in the joint space)."""
        if head.spec["mode"] != "multiple_choice" or isinstance(head, MLLMHead):
            return None
        embeds = self._candidate_embeds(head, targets, text).flatten(0, 1)
        return F.normalize(embeds.float().to(head_device(head)), dim=-1)

    def evaluate(self, predictions: Sequence[Any], data: TaskData) -> dict[str, float]:
        from videoadapt.metrics import qa

        check_predictions(self, predictions, data)
        items: list[QAItem] = list(data.items)  # type: ignore[arg-type]
        if items[0].multiple_choice:
            result = qa.multiple_choice_accuracy(list(predictions), [q.answer_index for q in items])
        else:
            result = qa.open_ended_accuracy([str(p) for p in predictions], [q.answer for q in items])
        return {k: float(v) for k, v in result.items()}

    def score_documents(self, predictions: Sequence[Any], data: TaskData) -> dict[str, str]:
        """The answer per question (a candidate index, or the answer text), and each question's gold."""
        from videoadapt.metrics import prediction_files as pf

        check_predictions(self, predictions, data)
        items: list[QAItem] = list(data.items)  # type: ignore[arg-type]
        ids = pf.unique_ids([q.question_id for q in items])
        answers: dict[str, Any] = {}
        questions: dict[str, Any] = {}
        for i, p, q in zip(ids, predictions, items, strict=True):
            if q.multiple_choice:
                answers[i] = int(p)
                questions[i] = {
                    "question": q.question,
                    "candidates": list(q.candidates or ()),
                    "answer_index": q.answer_index,
                }
            else:
                answers[i] = str(p)
                questions[i] = {"question": q.question, "answer": q.answer}
        return pf.documents(pf.qa_predictions_text(answers), pf.qa_ground_truth_text(questions))

    # --- per item: a question --------------------------------------------------------------------------------------

    def _correct(self, predictions: Sequence[Any], data: TaskData) -> list[bool]:
        from videoadapt.metrics.qa import normalize_answer

        items: list[QAItem] = list(data.items)  # type: ignore[arg-type]
        if items[0].multiple_choice:
            return [int(p) == q.answer_index for p, q in zip(predictions, items, strict=True)]
        return [normalize_answer(str(p)) == normalize_answer(q.answer) for p, q in zip(predictions, items, strict=True)]

    def item_statistics(self, predictions: Sequence[Any], data: TaskData) -> dict[str, np.ndarray]:
        """One row per question: ``items`` and ``correct`` (multiple choice: the gold candidate; open-ended: the
        answer after VQA normalisation)."""
        check_predictions(self, predictions, data)
        correct = np.asarray(self._correct(predictions, data), dtype=np.float64)[:, None]
        return {"items": np.ones_like(correct), "correct": correct}

    def metrics_from_sums(self, sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"accuracy": percent(sums["correct"][..., 0], sums["items"][..., 0])}

    def item_records(self, predictions: Sequence[Any], data: TaskData) -> list[dict[str, Any]]:
        """Per question: ``id``, ``video``, ``question``, ``predicted`` and ``answer`` (multiple choice: candidate
        indices, with their texts in ``predicted_text`` / ``answer_text``; open-ended: the answers), ``correct``."""
        check_predictions(self, predictions, data)
        items: list[QAItem] = list(data.items)  # type: ignore[arg-type]
        records = []
        for p, q, right in zip(predictions, items, self._correct(predictions, data), strict=True):
            record: dict[str, Any] = {"id": q.question_id, "video": q.video.video_id, "question": q.question}
            if q.multiple_choice:
                candidates = q.candidates or ()
                chosen = int(p)
                record.update(
                    predicted=chosen,
                    predicted_text=candidates[chosen] if 0 <= chosen < len(candidates) else None,
                    answer=q.answer_index,
                    answer_text=q.answer,
                )
            else:
                record.update(predicted=str(p), answer=q.answer)
            record["correct"] = bool(right)
            records.append(record)
        return records
