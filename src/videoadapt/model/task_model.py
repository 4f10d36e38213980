"""Encoder + task head behind one module: the training loss and the predictions of a batch."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures
from videoadapt.model.batches import Batch
from videoadapt.paradigms.base import VideoEncoder, VideoFeatures
from videoadapt.tasks import Task, TaskHead, TextEncoder


def index_frame_features(features: FrameFeatures, rows: torch.Tensor) -> FrameFeatures:
    """Cached frame features of the clips ``rows`` (in that order, repeats allowed)."""

    def pick(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x.index_select(0, rows.to(x.device))

    layers = None if features.layers is None else [pick(x) for x in features.layers]
    return FrameFeatures(pick(features.cls), pick(features.patches), pick(features.embeds), layers)


def select_rows(features: VideoFeatures, rows: torch.Tensor) -> VideoFeatures:
    """Features of the items of a batch when several items share a clip (QA: many questions per video)."""
    videos = features.video.shape[0]
    if len(rows) == videos and bool((rows == torch.arange(videos, device=rows.device)).all()):
        return features

    def pick(x: torch.Tensor | None) -> torch.Tensor | None:
        return x.index_select(0, rows) if x is not None and x.ndim and x.shape[0] == videos else x

    outputs = {k: pick(v) for k, v in features.outputs.items()}
    frames, video, patches, cls = (pick(x) for x in (features.frames, features.video, features.patches, features.cls))
    generative = None if features.generative is None else features.generative.select(rows)
    return VideoFeatures(frames, video, patches, outputs, features.losses, cls, generative, pick(features.pixels))


class TaskModel(nn.Module):
    """Encoder + task head behind one ``forward``, which is what DDP wraps: ``forward(batch)`` is the training loss
    (task loss plus every auxiliary loss the paradigm reports), ``predict(batch)`` the task's predictions."""

    def __init__(self, encoder: VideoEncoder, head: TaskHead, task: Task, text: TextEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.task = task
        self.text = text

    @property
    def cache_with_pixels(self) -> bool:
        """True when frame features can come from the cache but batches must also carry the decoded clips: the
        encoder's head reads pixels beside its frozen backbone, or the task head does (``TaskHead.needs_pixels``)."""
        return self.encoder.cache_with_pixels or (self.encoder.cacheable and self.head.needs_pixels)

    def features(self, batch: Batch) -> VideoFeatures:
        features = self._encoded(batch)
        if not self.head.needs_pixels:
            return features
        if batch.video is None:
            raise VideoadaptError(
                f"task {self.task.name}: this head reads the clips' pixels beside the features; build batches with "
                "pixels (BatchBuilder(pixels=True)) also when the features come from the cache"
            )
        # Per item, as every other field after select_rows (the clips are per distinct clip).
        return dataclasses.replace(features, pixels=batch.video.index_select(0, batch.rows.to(batch.video.device)))

    def _encoded(self, batch: Batch) -> VideoFeatures:
        # Cached features stand in for the backbone; a head that also reads pixels gets both.
        video = batch.video if (batch.cached is None or self.encoder.cache_with_pixels) else None
        if self.encoder.head.needs_text:
            queries = self.task.query_texts(batch.targets)
            if queries is None:
                raise VideoadaptError(
                    f"{'+'.join(self.encoder.paradigm_names)}: this encoder fuses the video with a text query, "
                    f"which task {self.task.name} does not supply (grounding heads belong to grounding tasks)"
                )
            # One query per item, so the clip of every item is encoded with its own sentence (two queries about
            # one video are two rows here).
            rows = batch.rows
            video = None if video is None else video.index_select(0, rows.to(video.device))
            cached = None if batch.cached is None else index_frame_features(batch.cached, rows)
            return self.encoder(video=video, cached=cached, text=self.text(queries))
        extras = {}
        if "anchors" in self.encoder.head.extra_inputs and self.training:
            # A distillation head matches its teacher's text-video similarities over the task's texts of the batch
            # (class prompts, captions, candidate answers); fixed targets, so no gradient flows into them.
            anchors = self.task.anchor_texts(self.head, batch.targets, self.text)
            extras["anchors"] = None if anchors is None else anchors.detach()
        return select_rows(self.encoder(video=video, cached=batch.cached, **extras), batch.rows)

    def forward(self, batch: Batch) -> torch.Tensor:
        if not len(batch):
            # Every item of this process's share was skipped: a zero that still touches every trainable parameter,
            # so that the gradient all-reduce of the other processes does not wait forever.
            return sum(p.sum() * 0 for p in self.parameters() if p.requires_grad)  # type: ignore[return-value]
        features = self.features(batch)
        loss = self.task.loss(self.head, features, batch.targets, self.text)
        for extra in features.losses.values():
            loss = loss + extra
        return loss

    @torch.no_grad()
    def predict(self, batch: Batch) -> list[Any]:
        if not len(batch):
            return []
        return self.task.predict(self.head, self.features(batch), batch.targets, self.text)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        state = {f"encoder.{k}": v for k, v in self.encoder.trainable_state_dict().items()}
        state.update({f"head.{k}": v.detach() for k, v in self.head.state_dict().items()})
        return state

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
        head = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
        self.encoder.load_trainable_state_dict(encoder)
        missing, unexpected = self.head.load_state_dict(head, strict=False)
        if missing or unexpected:
            raise VideoadaptError(f"task head weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")

    def start_from(self, state: dict[str, torch.Tensor], origin: str) -> tuple[int, int]:
        """Copy another run's trained weights (its :meth:`trainable_state`, read from ``origin``) onto the tensors
        of the same name that train here; the rest keep their initialisation. Returns ``(copied, fresh)``.

        Every tensor of ``state`` must land on a trainable tensor of the same shape: one that would be frozen or
        absent here would silently leave this run's saved weights, and a run resumed or reloaded from them would
        differ from the one trained."""
        here = self.trainable_state()
        homeless = sorted(set(state) - set(here))
        if homeless:
            raise VideoadaptError(
                f"{origin}: {len(homeless)} of its trained tensors do not train here ({', '.join(homeless[:3])}"
                f"{', ...' if len(homeless) > 3 else ''}): start from a run whose paradigm this one contains "
                "(post_network -> lora: yes; lora -> post_network: no)"
            )
        wrong = [
            f"{k} {tuple(v.shape)}, here {tuple(here[k].shape)}" for k, v in state.items() if v.shape != here[k].shape
        ]
        if wrong:
            raise VideoadaptError(f"{origin}: tensors of another shape: {'; '.join(wrong[:3])}")
        with torch.no_grad():
            for name, value in state.items():
                here[name].copy_(value)
        return len(state), len(here) - len(state)

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]
