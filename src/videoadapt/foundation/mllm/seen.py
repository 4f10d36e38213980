"""What a generative ILFM has seen of a batch of videos, ready to be asked about.

A video encoder on a video MLLM hands its tasks a :class:`SeenVideos` (``VideoFeatures.generative``) instead of a
joint-space embedding: the projected frame tokens of the embedded :class:`VideoMLLM` (or, for a transformers
checkpoint, which projects inside its own forward, the preprocessed pixels), bound to the model. Tasks ask it to
``generate``, ``score`` candidate answers or compute the ``loss`` of reference answers; they never see the model's
parts, and paradigms never see the prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.mllm.generation import Generation


class SeenVideos:
    """``model`` (a :class:`VideoMLLM` or :class:`HFVideoMLLM`) bound to ``projected`` frame tokens ``[B,T,P,H]``
    (VideoMLLM) or ``video`` pixels ``[B,T,3,S,S]`` (HFVideoMLLM); both None with ``count`` set: no video at all,
    the language model from the prompt alone (:meth:`blind`). Prompts are one per video (or one for all)."""

    def __init__(
        self,
        model: Any,
        projected: torch.Tensor | None = None,
        video: torch.Tensor | None = None,
        count: int | None = None,
    ) -> None:
        if projected is not None and video is not None:
            raise VideoadaptError("SeenVideos holds projected tokens or pixels, not both")
        self.model = model
        self.projected = projected
        self.video = video
        source = projected if projected is not None else video
        if source is None and count is None:
            raise VideoadaptError("SeenVideos without a video needs the number of rows (count)")
        self.count = int(source.shape[0]) if source is not None else int(count)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.count

    @property
    def frames(self) -> int:
        source = self.projected if self.projected is not None else self.video
        return 0 if source is None else int(source.shape[1])

    def select(self, rows: torch.Tensor) -> SeenVideos:
        """The videos ``rows`` (in that order, repeats allowed): several questions about one clip."""

        def pick(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.index_select(0, rows.to(x.device))

        return SeenVideos(self.model, pick(self.projected), pick(self.video), count=len(rows))

    def blind(self) -> SeenVideos:
        """The same rows without their videos: what the language model answers from the prompt alone."""
        return SeenVideos(self.model, count=self.count)

    def _prompts(self, prompts: str | Sequence[str]) -> list[str]:
        prompts = [prompts] * self.count if isinstance(prompts, str) else list(prompts)
        if len(prompts) != self.count:
            raise VideoadaptError(f"{len(prompts)} prompts for {self.count} videos")
        return prompts

    def _inputs(self) -> dict[str, torch.Tensor]:
        return {} if self.projected is None else {"projected": self.projected}

    def generate(
        self, prompts: str | Sequence[str], max_new_tokens: int = 32, num_beams: int = 1, template: str | None = None
    ) -> Generation:
        """Each video's answer to its prompt (greedy, or beam search with ``num_beams`` > 1), at most
        ``max_new_tokens`` tokens."""
        return self.model.generate(
            self.video, self._prompts(prompts), max_new_tokens, num_beams, template=template, **self._inputs()
        )

    def score(
        self,
        prompts: str | Sequence[str],
        candidates: Sequence[Sequence[str]],
        reduction: str = "mean",
        template: str | None = None,
    ) -> list[torch.Tensor]:
        """The log-likelihood of each video's candidate answers: one tensor ``[C_i]`` per video."""
        return self.model.score_candidates(
            self.video, self._prompts(prompts), list(candidates), reduction, template=template, **self._inputs()
        )

    def loss(self, prompts: str | Sequence[str], answers: Sequence[str], template: str | None = None) -> torch.Tensor:
        """Mean cross-entropy of the reference ``answers`` (one per video) given video and prompt."""
        return self.model.loss(self.video, self._prompts(prompts), list(answers), template=template, **self._inputs())

    def prefill(self, prompts: str | Sequence[str], template: str | None = None) -> torch.Tensor:
        """One pass of the language model over the prompts and the visual tokens (generation's prefill), for cost
        counts; a transformers checkpoint scores a one-token answer instead (the prefill plus one position)."""
        if hasattr(self.model, "prefill"):
            return self.model.prefill(self.projected, self._prompts(prompts), template=template)
        return torch.stack([s.sum() for s in self.score(prompts, [["yes"]] * self.count, "sum", template=template)])
