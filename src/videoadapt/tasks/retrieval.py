"""Text-video retrieval: a video embedding and a caption embedding meet in the joint space; R@1/5/10, MdR, MnR and
R@sum in both directions.

Training follows CLIP4Clip (Luo et al., 2022): one caption per video per step (drawn anew each epoch), symmetric
InfoNCE over the global batch (gathered across processes): cross-entropy of the text-to-video and video-to-text
similarity matrices with the diagonal as targets. The temperature (``temperature``) is ``learnable`` (initialised
at the ILFM's logit scale, kept at most 100 as in CLIP), ``ilfm`` (the ILFM's, fixed) or a number (fixed). A video
feature outside the joint space is projected into it by a learnt linear map.

``train_captions: all`` trains on every caption of each video at each step instead of one drawn at random: the
text-to-video loss then has one row per caption, and the video-to-text loss, with several positives per video,
is MIL-NCE's (Miech et al., 2020): ``-log`` of the softmax mass on the video's own captions. An epoch so sees each
caption once, as CLIP4Clip's epoch over MSR-VTT's (video, caption) pairs does, while each video is encoded once.

Evaluation scores every caption against every video (MSR-VTT's 1k-A test has one caption per video; SynthWorld
and MSVD have several, so text-to-video counts each caption as a query, and video-to-text ranks a video's best
caption).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.data.records import CaptionItem, Item, TaskData, VideoRef
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import VideoEncoder, VideoFeatures
from videoadapt.registry import registry
from videoadapt.tasks.base import (
    CaptionTask,
    Request,
    SurveyTable,
    TaskHead,
    TextAdapter,
    TextEncoder,
    adapted_text,
    build_text_adapter,
    check_predictions,
    check_spec,
    feature_widths,
    gather_across_processes,
    head_device,
    ilfm_logit_scale,
    percent,
    process_offset,
    projection,
    text_adapter_spec,
)

MAX_SCALE = 100.0


class RetrievalHead(TaskHead):
    def __init__(
        self, spec: dict[str, Any], width: int, embed_dim: int, text_adapter: TextAdapter | None = None
    ) -> None:
        super().__init__(spec)
        self.project = projection(width, embed_dim)
        self.text_adapter = text_adapter
        log_scale = torch.tensor(math.log(float(spec["logit_scale"])))
        if spec["temperature"] == "learnable":
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=MAX_SCALE)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(video).float(), dim=-1)


TRAIN_CAPTIONS = ("one", "all")


def contrastive_loss(video: torch.Tensor, text: torch.Tensor, owner: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: ``video`` ``[B,E]``, ``text`` ``[T,E]`` (normalised), ``owner`` ``[T]`` the video of
    each caption. Text-to-video is cross-entropy per caption; video-to-text is MIL-NCE, ``-log`` of the softmax mass
    on the video's own captions, which with one caption per video (``owner = arange(B)``) is plain cross-entropy:
    CLIP4Clip's loss."""
    logits = scale * text @ video.T  # [T,B]
    t2v = F.cross_entropy(logits, owner)
    own = owner.unsqueeze(0) == torch.arange(len(video), device=owner.device).unsqueeze(1)  # [B,T]
    scores = logits.T
    v2t = torch.logsumexp(scores, dim=1) - torch.logsumexp(scores.masked_fill(~own, float("-inf")), dim=1)
    return (t2v + v2t.mean()) / 2


@registry.register("task", "retrieval")
class Retrieval(CaptionTask):
    name = "retrieval"
    monitor = "Rsum"
    survey = (
        SurveyTable(
            "retrieval",
            "Table III: text-to-video retrieval",
            (("R@1", "t2v_R1"), ("R@5", "t2v_R5"), ("R@10", "t2v_R10"), ("R@sum", "t2v_Rsum")),
            zero_shot_head={"temperature": "ilfm"},  # frame-mean video embeddings vs caption embeddings
            primary="t2v_Rsum",
        ),
    )
    references_key = "captions"

    def build_head(
        self,
        ilfm: ImageLanguageModel,
        encoder: VideoEncoder,
        data: TaskData,
        spec: dict[str, Any] | None = None,
    ) -> RetrievalHead:
        _, width = feature_widths(encoder)
        if spec is None:
            temperature = self.option("temperature", "learnable")
            scale = ilfm_logit_scale(ilfm)
            if temperature not in ("learnable", "ilfm"):
                scale, temperature = float(temperature), "fixed"
            spec = {"temperature": temperature, "logit_scale": scale, **text_adapter_spec(self)}
        check_spec(spec, self.name, ("temperature", "logit_scale"))
        return RetrievalHead(spec, width, ilfm.dims.embed_dim, build_text_adapter(spec, ilfm.dims))

    def train_captions(self) -> str:
        value = str(self.option("train_captions", "one"))
        if value not in TRAIN_CAPTIONS:
            raise VideoadaptError(f"model.head.train_captions: {value!r}; use one (a random caption per step) or all")
        return value

    def targets(
        self, items: Sequence[Item], data: TaskData, rngs: Sequence[np.random.Generator] | None, train: bool
    ) -> dict:
        if not (train and self.train_captions() == "all"):
            return super().targets(items, data, rngs, train)
        captions = super().targets(items, data, rngs, train=False)[self.references_key]
        owner = [i for i, c in enumerate(captions) for _ in c]
        return {"texts": [t for c in captions for t in c], "owner": torch.tensor(owner, dtype=torch.long)}

    def loss(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> torch.Tensor:
        video = head(features.video)
        texts = F.normalize(adapted_text(head, text, targets["texts"]).float().to(video.device), dim=-1)
        owner = targets.get("owner", torch.arange(len(video)))
        # Under several processes the negatives are the whole global batch, as in one process: owners index this
        # process's videos, offset, they index the gathered ones.
        owner = gather_across_processes(owner.to(video.device) + process_offset(len(video), video.device))
        video, texts = gather_across_processes(video), gather_across_processes(texts)
        return contrastive_loss(video, texts, owner, head.scale())  # type: ignore[operator]

    def predict(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> list[Any]:
        video = head(features.video).cpu()
        out = []
        for row, captions in zip(video, targets["captions"], strict=True):
            out.append({"video": row, "texts": F.normalize(adapted_text(head, text, captions).float(), dim=-1).cpu()})
        return out

    def user_items(self, video: VideoRef, request: Request, spec: dict[str, Any]) -> list[Item]:
        texts = tuple(t for t in request.texts if t.strip())
        if not texts:
            raise VideoadaptError("retrieval: give the texts to rank against the video (--text, texts=)")
        return [CaptionItem(video, texts)]

    def describe(self, prediction: Any, item: Item, spec: dict[str, Any], top_k: int = 5) -> dict[str, Any]:
        # Cosine similarity in the head's joint space, the score the metrics rank by.
        video = F.normalize(torch.as_tensor(prediction["video"]).float(), dim=-1)
        similarity = torch.as_tensor(prediction["texts"]).float() @ video
        order = torch.argsort(similarity, descending=True, stable=True)
        texts = item.captions  # type: ignore[union-attr]
        return {"texts": [{"text": texts[int(i)], "similarity": float(similarity[i])} for i in order]}

    def anchor_texts(self, head: TaskHead, targets: dict, text: TextEncoder) -> torch.Tensor | None:
        """The batch's caption embeddings (through the head's text adapter when it has one): the captions drawn for
        training, or every caption of the batch's videos in evaluation."""
        texts = targets["texts"] if "texts" in targets else [c for group in targets["captions"] for c in group]
        return F.normalize(adapted_text(head, text, texts).float().to(head_device(head)), dim=-1)

    def evaluate(self, predictions: Sequence[Any], data: TaskData) -> dict[str, float]:
        from videoadapt.metrics import retrieval_metrics

        check_predictions(self, predictions, data)
        return {k: float(v) for k, v in retrieval_metrics(*_similarity(predictions)).items()}

    def score_documents(self, predictions: Sequence[Any], data: TaskData) -> dict[str, str]:
        """The similarity matrix (rows: every caption, ``<video id>/<k>``; columns: the videos) and each caption's
        video, which ``score --task retrieval`` reads."""
        from videoadapt.metrics import prediction_files as pf

        check_predictions(self, predictions, data)
        similarity, owner = _similarity(predictions)
        videos = pf.unique_ids([item.video.video_id for item in data.items])
        texts = pf.unique_ids([f"{videos[v]}/{k}" for v, k in zip(owner, _caption_numbers(owner), strict=True)])
        text_to_video = {t: videos[v] for t, v in zip(texts, owner, strict=True)}
        prediction = pf.retrieval_predictions_text(texts, videos, similarity)
        return pf.documents(prediction, pf.retrieval_ground_truth_text(text_to_video, videos))

    # --- per item: a video with its captions ---------------------------------------------------------------------

    def item_statistics(self, predictions: Sequence[Any], data: TaskData) -> dict[str, np.ndarray]:
        """One row per video: ``t2v`` sums over its captions as queries, ``v2t`` the video as a query; columns
        (ranks <= 1, <= 5, <= 10, sum of 0-based ranks, ranks), ranks taken on the full gallery with CLIP4Clip's
        tie convention (a tie of m+1 counts m+1 ranks). A resample keeps a video's captions together."""
        from videoadapt.metrics.retrieval import KS, QueryRanks, retrieval_ranks

        check_predictions(self, predictions, data)
        similarity, owner = _similarity(predictions)
        t2v, v2t, queries = retrieval_ranks(similarity, owner)

        def columns(ranks: QueryRanks) -> np.ndarray:
            return np.stack([*(ranks.below(k) for k in KS), ranks.rank_sum(), ranks.tied], axis=1).astype(np.float64)

        per_text, per_query = columns(t2v), columns(v2t)
        stats = {"items": np.ones((len(predictions), 1)), "t2v": np.zeros((len(predictions), len(KS) + 2))}
        np.add.at(stats["t2v"], owner, per_text)
        stats["v2t"] = np.zeros_like(stats["t2v"])
        stats["v2t"][queries] = per_query
        return stats

    def metrics_from_sums(self, sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from videoadapt.metrics.retrieval import KS

        result: dict[str, np.ndarray] = {}
        for direction in ("t2v", "v2t"):
            s = sums[direction]
            ranks = s[..., len(KS) + 1]
            for j, k in enumerate(KS):
                result[f"{direction}_R{k}"] = percent(s[..., j], ranks)
            with np.errstate(divide="ignore", invalid="ignore"):
                result[f"{direction}_MnR"] = s[..., len(KS)] / ranks + 1.0
            result[f"{direction}_Rsum"] = sum(result[f"{direction}_R{k}"] for k in KS)
        result["Rsum"] = result["t2v_Rsum"] + result["v2t_Rsum"]
        return result

    def item_records(self, predictions: Sequence[Any], data: TaskData) -> list[dict[str, Any]]:
        """Per video: ``id``; per caption the 1-based rank of its video (``t2v_ranks``, ties counted from the best
        position; ``t2v_tied``: how many share it, 1 without a tie) and the video it ranks first (``t2v_top``);
        the rank of the video's own captions among the videos' best captions (``v2t_rank``, ``v2t_tied``) and the
        video whose caption ranks first (``v2t_top``). Right at R@1 means rank 1 and tied 1."""
        from videoadapt.metrics.retrieval import retrieval_ranks

        check_predictions(self, predictions, data)
        similarity, owner = _similarity(predictions)
        t2v, v2t, queries = retrieval_ranks(similarity, owner)
        ids = [item.video.video_id for item in data.items]
        best_video = np.argmax(similarity, axis=1)
        groups = np.full((len(ids), len(ids)), -np.inf)  # [video query, caption group]: its best caption
        np.maximum.at(groups.T, owner, similarity)
        records = []
        for video in range(len(ids)):
            mine = np.flatnonzero(owner == video)
            record: dict[str, Any] = {
                "id": ids[video],
                "t2v_ranks": [int(r) + 1 for r in t2v.lo[mine]],
                "t2v_tied": [int(t) for t in t2v.tied[mine]],
                "t2v_top": [ids[int(v)] for v in best_video[mine]],
            }
            where = np.flatnonzero(queries == video)
            if where.size:
                record["v2t_rank"] = int(v2t.lo[where[0]]) + 1
                record["v2t_tied"] = int(v2t.tied[where[0]])
                record["v2t_top"] = ids[int(np.argmax(groups[video]))]
            records.append(record)
        return records


def _similarity(predictions: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Every caption against every video ``[N_text, N_video]`` and each caption's video ``[N_text]``."""
    videos = torch.stack([p["video"] for p in predictions])
    texts = torch.cat([p["texts"] for p in predictions])
    owner = torch.cat([torch.full((len(p["texts"]),), i, dtype=torch.long) for i, p in enumerate(predictions)])
    return (texts @ videos.T).detach().cpu().numpy(), owner.numpy()


def _caption_numbers(owner: np.ndarray) -> list[int]:
    """Each caption's number among its video's captions (0, 1, ...)."""
    seen: dict[int, int] = {}
    out = []
    for v in owner.tolist():
        out.append(seen.get(v, 0))
        seen[v] = out[-1] + 1
    return out
