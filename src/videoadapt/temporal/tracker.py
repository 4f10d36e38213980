"""An online multi-object tracker in OVTrack's manner (its ``OVTracker``/QDTrack's ``QuasiDenseEmbedTracker``):
frame by frame, detections are associated with the live tracks, tracks are born and die, and each finished track
is classified by a vote over its boxes.

Per frame, given detections (boxes, scores, per-category probabilities, appearance embeddings):

1. similarity to every live track: the bi-softmax of the embeddings against the tracks' memory embeddings
   (``metric="bisoftmax"``), or the IoU with the track's last box (``metric="iou"``: the zero-shot row, no
   appearance model);
2. one-to-one Hungarian matching; a pair counts when its similarity is at least ``match_score``;
3. a matched track takes the box, and its memory embedding moves by momentum:
   ``memory = (1 - momentum) * memory + momentum * new`` (OVTrack's ``momentum_embed`` 0.8);
4. an unmatched detection starts a track when its score is at least ``init_score`` and it does not overlap a
   matched detection of the frame by more than ``distractor_iou`` (OVTrack's distractor rule: a second box on an
   object already followed is not a new object);
   With ``min_cosine`` above -1 a pair also needs that cosine similarity of embedding and memory: a bi-softmax
   between one detection and one track is 1 whatever they look like (QDTrack keeps low-score "backdrop" boxes
   as extra negatives against it; the gate is the simpler guard).
5. a track not matched for more than ``max_age`` frames is dropped from matching (OVTrack's ``memo_frames`` 10).

A track's category is the score-weighted vote of its boxes' labels (each box votes its arg-max category with its
detection score); every box of the track reports that category. Given each detection's class embedding
(``class_embeds``), a track also keeps their score-weighted sum of unit vectors (:attr:`Track.class_sum`), so that
the caller can classify the track once from its mean appearance instead (a track-level embedding: small, blurred
or occluded boxes then count less than a vote of their arg-maxes). Defaults are OVTrack's except the score
thresholds, which depend on the detector's calibration and are the task's options.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from videoadapt.errors import VideoadaptError
from videoadapt.temporal.association import bisoftmax, box_iou_matrix, hungarian_match

METRICS = ("bisoftmax", "iou")


@dataclass(frozen=True)
class TrackerConfig:
    metric: str = "bisoftmax"
    init_score: float = 0.3
    match_score: float = 0.5
    max_age: int = 10
    momentum: float = 0.8
    distractor_iou: float = 0.3
    min_cosine: float = -1.0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise VideoadaptError(f"tracker metric {self.metric!r} is unknown; known: {', '.join(METRICS)}")
        if self.max_age < 0 or not 0.0 <= self.momentum <= 1.0:
            raise VideoadaptError(f"tracker: max_age {self.max_age} must be >= 0, momentum {self.momentum} in [0, 1]")


@dataclass
class Track:
    """One followed object: its boxes per frame (in the detections' units), scores, labels and memory."""

    track_id: int
    frames: list[int] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    memory: torch.Tensor | None = None
    class_sum: torch.Tensor | None = None
    last_box: torch.Tensor | None = None
    last_frame: int = -1

    def category(self, categories: int) -> int:
        """The score-weighted vote of the boxes' labels (ties: the lower index)."""
        votes = torch.zeros(categories, dtype=torch.float64)
        for label, score in zip(self.labels, self.scores, strict=True):
            votes[label] += score
        return int(votes.argmax())


class Tracker:
    """``step(frame, boxes, scores, labels, embeds)`` once per frame in order, then :attr:`tracks`."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self.tracks: list[Track] = []
        self._next_id = 1

    def _live(self, frame: int) -> list[Track]:
        return [t for t in self.tracks if frame - t.last_frame <= self.config.max_age + 1 and t.last_frame < frame]

    def step(
        self,
        frame: int,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        labels: torch.Tensor,
        embeds: torch.Tensor | None = None,
        class_embeds: torch.Tensor | None = None,
    ) -> list[int]:
        """Associate this frame's detections (``boxes`` ``[N,4]``, ``scores`` ``[N]``, ``labels`` ``[N]``,
        ``embeds`` ``[N,d]`` for the bi-softmax, optional ``class_embeds`` ``[N,E]`` summed per track) and return
        each detection's track id (0: dropped)."""
        if self.config.metric == "bisoftmax" and embeds is None:
            raise VideoadaptError("tracker: the bi-softmax metric needs appearance embeddings")
        live = self._live(frame)
        order = scores.argsort(descending=True)  # better detections first: births are decided in score order
        boxes, scores, labels = boxes[order], scores[order], labels[order]
        embeds = embeds[order] if embeds is not None else None
        class_embeds = F.normalize(class_embeds[order].float(), dim=-1) if class_embeds is not None else None
        assigned = [0] * len(order)
        matched: list[int] = []
        if live and len(order):
            if self.config.metric == "iou":
                similarity = box_iou_matrix(boxes, torch.stack([t.last_box for t in live]))  # type: ignore[misc]
            else:
                memories = torch.stack([t.memory for t in live])  # type: ignore[misc]
                similarity = bisoftmax(embeds, memories)  # type: ignore[arg-type]
                if self.config.min_cosine > -1.0:
                    cosine = F.normalize(embeds.float(), dim=-1) @ F.normalize(memories.float(), dim=-1).T  # type: ignore[union-attr]
                    similarity = similarity.masked_fill(cosine < self.config.min_cosine, -1.0)
            for i, j in hungarian_match(similarity, self.config.match_score):
                self._extend(live[j], frame, boxes[i], scores[i], labels[i], _row(embeds, i), _row(class_embeds, i))
                assigned[i] = live[j].track_id
                matched.append(i)
        matched_boxes = boxes[matched] if matched else boxes[:0]
        for i in range(len(order)):
            if assigned[i] or float(scores[i]) < self.config.init_score:
                continue
            if len(matched_boxes) and float(box_iou_matrix(boxes[i : i + 1], matched_boxes).max()) > (
                self.config.distractor_iou
            ):
                continue
            track = Track(self._next_id)
            self._next_id += 1
            self.tracks.append(track)
            self._extend(track, frame, boxes[i], scores[i], labels[i], _row(embeds, i), _row(class_embeds, i))
            assigned[i] = track.track_id
            matched_boxes = torch.cat((matched_boxes, boxes[i : i + 1]))
        result = [0] * len(order)
        for position, index in enumerate(order.tolist()):
            result[index] = assigned[position]
        return result

    def _extend(
        self,
        track: Track,
        frame: int,
        box: torch.Tensor,
        score: torch.Tensor,
        label: torch.Tensor,
        embed: torch.Tensor | None,
        class_embed: torch.Tensor | None = None,
    ) -> None:
        track.frames.append(frame)
        track.boxes.append([float(v) for v in box])
        track.scores.append(float(score))
        track.labels.append(int(label))
        track.last_box, track.last_frame = box.detach().float(), frame
        if embed is not None:
            embed = embed.detach().float()
            m = self.config.momentum
            track.memory = embed if track.memory is None else (1 - m) * track.memory + m * embed
        if class_embed is not None:
            weighted = class_embed * float(score)
            track.class_sum = weighted if track.class_sum is None else track.class_sum + weighted


def _row(x: torch.Tensor | None, i: int) -> torch.Tensor | None:
    return x[i] if x is not None else None
