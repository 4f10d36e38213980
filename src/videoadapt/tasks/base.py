"""The task interface: what is predicted from VideoFeatures (and TextFeatures), how it is learnt and scored.

A task knows nothing about paradigms. The trainer hands it the items of a batch (to collate their targets), the
:class:`~videoadapt.paradigms.base.VideoFeatures` that the paradigm's encoder made of their videos, and a
:class:`TextEncoder` for any text it needs (class names, captions, questions); the task answers with a loss, with
per-item predictions, and finally with metrics. Its trainable part is a :class:`TaskHead`.

    task = task_class("recognition")(classifier="text")
    head = task.build_head(ilfm, encoder, train_data)           # nn.Module, with its vocabulary in head.spec
    targets = task.targets(items, train_data, rngs, train=True)  # labels, captions, questions ...
    loss = task.loss(head, encoder(video), targets, text)
    predictions = task.predict(head, encoder(video), targets, text)   # one per item, in order
    task.evaluate(all_predictions, data)                         # {"top1": ..., ...}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.data.records import CaptionItem, Item, TaskData, VideoRef
from videoadapt.data.sampling import UniformSegments
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel, ModelDims, TextFeatures
from videoadapt.paradigms.base import VideoEncoder, VideoFeatures


@dataclass(frozen=True)
class Request:
    """What a user asks of one new video (``videoadapt predict``, ``Predictor``): ``texts`` to rank against it
    (retrieval) or to ground in it (one query each), a ``question`` and its ``choices`` (QA), and what is known of
    the video itself (duration in seconds, frame rate, frame size), which grounding answers are expressed in."""

    texts: tuple[str, ...] = ()
    question: str | None = None
    choices: tuple[str, ...] | None = None
    duration: float = 0.0
    fps: float = 0.0
    width: int = 0
    height: int = 0


class TextEncoder:
    """The ILFM's text tower as a task sees it: ``__call__(texts) -> TextFeatures`` and ``embeds(texts) -> [N,E]``.

    When no text parameter trains (every paradigm except full fine-tuning with ``text=True``), the tower is a
    fixed function, so embeddings are memoised per string: class prompts, captions and candidate answers repeat
    every epoch and MiniLM would otherwise dominate the step time of a frozen-feature run. The frozen tower always
    runs in eval mode (no dropout), whatever mode the vision side trains in.
    """

    def __init__(self, ilfm: ImageLanguageModel, memoize: bool | None = None) -> None:
        self.ilfm = ilfm
        self.trainable = any(p.requires_grad for m in ilfm.text_modules() for p in m.parameters())
        self.memoize = (not self.trainable) if memoize is None else memoize
        self._memo: dict[str, torch.Tensor] = {}
        self._pooled_memo: dict[str, torch.Tensor] = {}
        # Filled only for texts that a token-level adapter reads: a text's real token states, [L_text,Dt].
        self._tokens_memo: dict[str, torch.Tensor] = {}
        self.calls = 0  # texts actually sent through the tower (tests and benchmarks read it)

    def _frozen_mode(self) -> None:
        if not self.trainable:
            for module in self.ilfm.text_modules():
                module.eval()

    def __call__(self, texts: Sequence[str]) -> TextFeatures:
        self._frozen_mode()
        self.calls += len(texts)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable):
            return self.ilfm.encode_text(list(texts))

    def embeds(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled embeddings ``[N,E]`` in the joint space (not normalised)."""
        texts = list(texts)
        if not self.memoize:
            return self(texts).embeds
        self._remember(texts)
        return torch.stack([self._memo[t] for t in texts])

    def pooled_tokens(self, texts: Sequence[str]) -> torch.Tensor:
        """Mask-weighted mean of the tower's last token states ``[N,Dt]``: what a :class:`TextAdapter` reads. Word
        information that the tower's own pooling and projection drop (they were trained on still images, so
        verbs of motion never mattered to them) is still there. Memoised like :meth:`embeds`."""
        texts = list(texts)
        if not self.memoize:
            return _mean_tokens(self(texts))
        self._remember(texts)
        return torch.stack([self._pooled_memo[t] for t in texts])

    def token_states(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The tower's last token states ``[N,L,Dt]`` and their mask ``[N,L]`` (1 = real token, right-padded to the
        longest text of this call): what a token-level :class:`TextAdapter` reads. Memoised per string."""
        texts = list(texts)
        if not self.memoize:
            features = self(texts)
            return features.tokens, features.mask
        self._remember(texts, tokens=True)
        rows = [self._tokens_memo[t] for t in texts]
        longest = max(len(r) for r in rows)
        tokens = rows[0].new_zeros(len(rows), longest, rows[0].shape[-1])
        mask = torch.zeros(len(rows), longest, dtype=torch.long)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return tokens, mask

    def _remember(self, texts: list[str], tokens: bool = False) -> None:
        # One pass of the tower fills every memo that a text will be read from: the embedding and the mean token
        # state always (retrieval and QA need both), the token states when asked (they are the large one). Each
        # text goes through alone: batched with others, its numbers move by ~1e-6 with its neighbours (padding,
        # GEMM blocking), and a memo refilled after a resume would then differ from the uninterrupted run's.
        # About 2.6x the time of batching, once per distinct string.
        memo = self._tokens_memo if tokens else self._memo
        missing = list(dict.fromkeys(t for t in texts if t not in memo))
        for text in missing:
            with torch.no_grad():
                features = self([text])
            self._memo[text] = features.embeds[0].float()
            self._pooled_memo[text] = _mean_tokens(features)[0].float()
            if tokens:
                self._tokens_memo[text] = features.tokens[0, features.mask[0].bool()].float().clone()


def _mean_tokens(features: TextFeatures) -> torch.Tensor:
    mask = features.mask.to(features.tokens.dtype).unsqueeze(-1)
    return (features.tokens * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class TaskHead(nn.Module):
    """A task's trainable module. ``spec`` is everything beyond tensors needed to rebuild it (class names, answer
    vocabulary, word list, mode): JSON, saved as the run's ``vocabulary.json``."""

    # Reads VideoFeatures.pixels, the preprocessed clips (segmentation's pixel stem): the model then decodes the
    # clips beside the cached frame features and passes them on. An attribute of the head, not of the task, because
    # the head's spec decides it (a run restored from its spec reads pixels or not as it was trained).
    needs_pixels: bool = False

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = spec


@dataclass(frozen=True)
class SurveyTable:
    """How ``videoadapt bench`` reports a task: one table in the survey's own columns.

    ``name`` is the table's (and the bench cell folder's) name; ``data`` are reader options that select this
    variant of the task (QA: multiple choice or open-ended); ``columns`` pairs each column as the survey prints it
    with the key of :meth:`Task.evaluate` that fills it (the first column ranks paradigms unless ``primary`` says
    otherwise); ``zero_shot_head`` are the ``model.head`` options under which the *untrained* head, on mean-pooled
    frame embeddings, is the ILFM's zero-shot predictor (None: no zero-shot baseline, ``zero_shot_note`` says why);
    ``head`` are the ``model.head`` options of every *trained* row (one task head for all, so that the paradigm is
    the only thing that varies; best one that starts at the zero-shot answer); ``mllm_head`` those of the rows on a
    video MLLM.
    """

    name: str
    title: str
    columns: tuple[tuple[str, str], ...]
    data: dict[str, Any] = field(default_factory=dict)
    zero_shot_head: dict[str, Any] | None = None
    zero_shot_note: str = ""
    primary: str | None = None
    head: dict[str, Any] = field(default_factory=dict)
    # The ``model.head`` options of the table's video-MLLM rows (``videoadapt bench --mllm SPEC``): each paradigm on
    # the MLLM and its zero-shot row (the LM from the prompt alone); None: the table has no MLLM rows.
    mllm_head: dict[str, Any] | None = None

    @property
    def primary_metric(self) -> str:
        return self.primary or self.columns[0][1]


class Task:
    """A registered task. Options come from the config's ``model.head`` section (e.g. ``classifier: text``)."""

    name: ClassVar[str]
    monitor: ClassVar[str]  # validation metric for early stopping and the best checkpoint (higher is better)
    # The bench's tables for this task (videoadapt.bench); a task without them gets one table of all its metrics.
    survey: ClassVar[tuple[SurveyTable, ...]] = ()
    # Reads VideoFeatures.patches (spatio-temporal grounding): the feature cache then keeps the patch tokens.
    needs_patches: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        self.options = options

    def option(self, key: str, default: Any) -> Any:
        return self.options.get(key, default)

    # --- samples ------------------------------------------------------------------------------------------------

    def check_item(self, item: Item, data: TaskData) -> str | None:
        """Why ``item`` cannot be used with this task (None when it can); the trainer raises naming the item or,
        with ``skip_bad``, skips and counts it."""
        return None

    def targets(
        self, items: Sequence[Item], data: TaskData, rngs: Sequence[np.random.Generator] | None, train: bool
    ) -> dict:
        """Collate what the loss and predictions need besides the video. ``rngs`` (training only; one generator per
        item, seeded by the trainer from the item and the epoch) draw the random choices (which caption of a
        video), so that a resumed run, or one split over more processes, repeats them exactly."""
        raise NotImplementedError

    # --- model --------------------------------------------------------------------------------------------------

    def build_head(
        self,
        ilfm: ImageLanguageModel,
        encoder: VideoEncoder,
        data: TaskData,
        spec: dict[str, Any] | None = None,
    ) -> TaskHead:
        """The head for ``data`` (vocabularies taken from it), or, when ``spec`` is given (restoring a saved run),
        the head that ``spec`` describes."""
        raise NotImplementedError

    def loss(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> list[Any]:
        """One prediction per item of the batch, in order (anything :meth:`evaluate` understands)."""
        raise NotImplementedError

    def evaluate(self, predictions: Sequence[Any], data: TaskData) -> dict[str, float]:
        """Metrics of ``predictions`` (one per item of ``data``, in order)."""
        raise NotImplementedError

    # --- per item: confidence intervals and saved predictions (videoadapt.metrics.bootstrap) -----------------------

    def item_statistics(self, predictions: Sequence[Any], data: TaskData) -> dict[str, np.ndarray]:
        """Additive statistics of each scored test item: ``{name: [N, K] float64}``, one row per resampling unit
        in data order (an item, or an item with what belongs to it: a video with its captions, an original clip
        with its time-reversed copy). :meth:`metrics_from_sums` of their column sums is :meth:`evaluate`."""
        raise NotImplementedError(f"{self.name}: no per-item statistics")

    def metrics_from_sums(self, sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The metrics as functions of the column sums of :meth:`item_statistics`, vectorised over leading axes
        (``[..., K] -> [...]``): on the sums over every item, the values of :meth:`evaluate` for the same keys
        (metrics that are no function of sums, e.g. a median rank, are left out)."""
        raise NotImplementedError(f"{self.name}: no metrics from sums")

    def item_records(self, predictions: Sequence[Any], data: TaskData) -> list[dict[str, Any]]:
        """One small JSON-able record per row of :meth:`item_statistics`: the item's id, what was predicted, the
        target, whether it was right; enough to redo the analysis without the model."""
        raise NotImplementedError(f"{self.name}: no per-item records")

    def query_texts(self, targets: dict) -> list[str] | None:
        """One sentence per item of the batch for an encoder that fuses the video with a text query (a grounding
        paradigm head such as R2-Tuning's side network with ``text: true``); None: this task has no such query."""
        return None

    def score_documents(self, predictions: Sequence[Any], data: TaskData) -> dict[str, str]:
        """``{"predictions.json": text, "ground_truth.json": text}`` (file name -> contents) in the formats
        ``videoadapt score --task NAME`` reads (docs/scoring.md), so that ``eval --save-predictions DIR`` and
        ``score`` chain and give the same metrics."""
        raise VideoadaptError(f"{self.name}: eval --save-predictions is not available for this task yet")

    # --- a user's video (videoadapt.inference) ---------------------------------------------------------------------

    def user_items(self, video: VideoRef, request: Request, spec: dict[str, Any]) -> list[Item]:
        """The items to predict for ``request`` on a user's ``video`` (no ground truth; ``spec`` is the trained
        head's description): one for most tasks, one per query for grounding. Raises naming what is missing."""
        raise VideoadaptError(f"{self.name}: predictions on new videos are not available for this task yet")

    def describe(self, prediction: Any, item: Item, spec: dict[str, Any], top_k: int = 5) -> dict[str, Any]:
        """``prediction`` of ``item`` as a user reads it, JSON-able: class names with probabilities, ranked texts,
        an answer, a caption, moments in seconds, boxes in pixels."""
        raise VideoadaptError(f"{self.name}: predictions on new videos are not available for this task yet")

    def anchor_texts(self, head: TaskHead, targets: dict, text: TextEncoder) -> torch.Tensor | None:
        """The text embeddings ``[M, E]`` (joint space, L2-normalised) a training batch is scored against, for a
        distillation loss that matches a teacher's video-to-text similarity distributions over them (TeachCLIP);
        None when the head has none. They keep their gradients where they train; detach them to hold them fixed."""
        return None


def check_predictions(task: Task, predictions: Sequence[Any], data: TaskData) -> None:
    if len(predictions) != len(data.items):
        raise VideoadaptError(
            f"{task.name}: {len(predictions)} predictions for the {len(data.items)} items of {data.origin} "
            f"({data.split}); expected one per item, in order"
        )


def percent(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``100 * numerator / denominator``, NaN where the denominator is 0 (a resample without such items)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * np.asarray(numerator, dtype=np.float64) / np.asarray(denominator, dtype=np.float64)


def head_device(head: nn.Module) -> torch.device:
    for tensor in (*head.parameters(), *head.buffers()):
        return tensor.device
    return torch.device("cpu")


class CaptionTask(Task):
    """A task over caption items (retrieval, captioning): one caption drawn per video in training, all at test."""

    references_key: ClassVar[str]  # the targets key under which evaluation gets each video's captions

    def check_item(self, item: Item, data: TaskData) -> str | None:
        if not isinstance(item, CaptionItem):
            return f"not a caption item ({type(item).__name__})"
        if not any(c.strip() for c in item.captions):
            return "video has no captions"
        return None

    def targets(
        self, items: Sequence[Item], data: TaskData, rngs: Sequence[np.random.Generator] | None, train: bool
    ) -> dict:
        captions = [[c for c in item.captions if c.strip()] for item in items]  # type: ignore[union-attr]
        if train:
            rngs = rngs if rngs is not None else [np.random.default_rng(i) for i in range(len(captions))]
            return {"texts": [c[int(r.integers(len(c)))] for c, r in zip(captions, rngs, strict=True)]}
        return {self.references_key: captions}


# --- helpers shared by task heads ---------------------------------------------------------------------------

# The targets' key under which the batch builder passes the video frames each item's clip was sampled at (an int
# array per item, in the clip's order; None where unknown). Tasks whose targets depend on the frame (tracking,
# segmentation) read it through :func:`frames_of_samples`.
SAMPLED_FRAMES = "sampled_frames"


def frames_of_samples(targets: dict, i: int, num_frames: int, t: int) -> list[int]:
    """The video frames the ``t`` sampled frames of item ``i`` of a batch stand for: those its clip was decoded at
    (a random-offset sampler draws new ones each epoch), or, where the batch does not say (a task called directly),
    those the evaluation sampler ``uniform:t`` decodes."""
    recorded = targets.get(SAMPLED_FRAMES)
    frames = None if recorded is None else recorded[i]
    if frames is None:
        return [int(f) for f in UniformSegments(t).indices(num_frames, 1.0)]
    if len(frames) != t:
        raise VideoadaptError(f"the clip was sampled at {len(frames)} frames but its features have {t}")
    return [int(f) for f in frames]


def feature_widths(encoder: VideoEncoder, frames: int = 8) -> tuple[int, int]:
    """``(frame width, video width)`` of what ``encoder`` outputs, found by running it once on a blank clip.

    Heads differ (joint space E, CLS width D, a side network's own width), and no attribute says which for all of
    them, so a probe is the one answer that is always right. It runs in eval mode without gradients and is
    remembered on the encoder; the trainer calls it first with the run's frame count (some heads have one
    temporal position per frame).
    """
    cached = getattr(encoder, "_task_feature_widths", None)
    if cached is not None:
        return cached
    size = encoder.ilfm.processor.image_size
    was_training = encoder.training
    parameter = next(encoder.parameters())
    video = torch.zeros(1, frames, 3, size, size, device=parameter.device)
    encoder.eval()
    try:
        with torch.no_grad():
            # A head that fuses the video with a query sentence (a grounding side network) gets a stand-in one.
            text = encoder.ilfm.encode_text(["a video"]) if getattr(encoder.head, "needs_text", False) else None
            out = encoder(video, text=text)
    except VideoadaptError as error:
        raise VideoadaptError(f"cannot run the video encoder on its own to size the task head: {error}") from None
    finally:
        encoder.train(was_training)
    widths = (int(out.frames.shape[-1]), int(out.video.shape[-1]))
    encoder._task_feature_widths = widths  # type: ignore[attr-defined]
    return widths


TEXT_ADAPTERS = ("mlp", "tokens")


class TextAdapter(nn.Module):
    """A trainable residual on a frozen text tower's embedding: ``embed + f(token states)``, ``f``'s output layer
    zero-initialised so that training starts exactly at the ILFM's text embedding (zero-shot preserved).

    Heads that match video to free text (retrieval, multiple-choice QA) use it where no text parameter trains: an
    image-text tower was never asked to tell "moves left" from "moves right", and a frozen embedding cannot learn
    to. It is the text-side counterpart of the post-network modules on the video side (CLIP4Clip trains the text
    tower instead; with ``full_finetune`` and ``text: true`` the tower itself adapts and the residual is optional).

    ``kind="mlp"`` reads the mean of the last token states (one small MLP). ``kind="tokens"`` reads the token
    states themselves through ``layers`` pre-norm transformer layers of width ``hidden`` (positions learnt) and
    pools them by the mask: a mean has already mixed "a red star moves left while a blue ring stays still" into one
    vector, attention can still tell which colour goes with which verb.
    """

    def __init__(
        self, text_width: int, embed_dim: int, hidden: int, kind: str = "mlp", layers: int = 1, max_tokens: int = 77
    ) -> None:
        super().__init__()
        if kind not in TEXT_ADAPTERS:
            raise VideoadaptError(
                f"text_adapter: unknown kind {kind!r}; known: true (= mlp), {', '.join(TEXT_ADAPTERS)}"
            )
        self.kind = kind
        self.mlp = nn.Sequential(nn.LayerNorm(text_width), nn.Linear(text_width, hidden), nn.GELU())
        if kind == "tokens":
            heads = max(1, hidden // 64)
            self.positions = nn.Parameter(torch.zeros(max_tokens, hidden))
            nn.init.normal_(self.positions, std=0.02)
            layer = nn.TransformerEncoderLayer(
                hidden, heads, 2 * hidden, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, embed_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, text: TextEncoder, texts: Sequence[str]) -> torch.Tensor:
        """Adapted embeddings ``[N,E]`` of ``texts`` (not normalised)."""
        device = self.out.weight.device
        if self.kind == "mlp":
            embeds = text.embeds(texts).float().to(device)
            return embeds + self.out(self.mlp(text.pooled_tokens(texts).float().to(device)))
        tokens, mask = text.token_states(texts)  # first: its one pass of the tower also memoises the embeddings
        embeds = text.embeds(texts).float().to(device)
        tokens, mask = tokens.float().to(device), mask.to(device).bool()
        length = min(tokens.shape[1], len(self.positions))  # longer texts keep their first max_tokens states
        tokens, mask = tokens[:, :length], mask[:, :length]
        x = self.blocks(self.mlp(tokens) + self.positions[:length], src_key_padding_mask=~mask)
        weights = mask.unsqueeze(-1).float()
        pooled = (self.norm(x) * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return embeds + self.out(pooled)


def text_adapter_spec(task: Task) -> dict[str, Any]:
    """The ``text_adapter`` head options as they go into a head's spec: ``text_adapter: true`` (or ``mlp``) or
    ``tokens``, ``text_hidden`` (default 512 for ``mlp``, 256 for ``tokens``), ``text_layers`` (``tokens``, 1)."""
    kind = task.option("text_adapter", False)
    if kind is False or kind is None:
        return {}
    kind = "mlp" if kind is True else str(kind)
    if kind not in TEXT_ADAPTERS:
        raise VideoadaptError(
            f"model.head.text_adapter: unknown value {kind!r}; use true (= mlp), {', '.join(TEXT_ADAPTERS)} or false"
        )
    spec: dict[str, Any] = {
        "text_adapter": kind,
        "text_hidden": int(task.option("text_hidden", 512 if kind == "mlp" else 256)),
    }
    if kind == "tokens":
        spec["text_layers"] = int(task.option("text_layers", 1))
    return spec


def build_text_adapter(spec: dict[str, Any], ilfm_dims: ModelDims) -> TextAdapter | None:
    kind = spec.get("text_adapter")
    if not kind:
        return None
    return TextAdapter(
        int(ilfm_dims.text_width),
        int(ilfm_dims.embed_dim),
        int(spec["text_hidden"]),
        kind="mlp" if kind is True else str(kind),  # runs saved before the token kind wrote ``true``
        layers=int(spec.get("text_layers", 1)),
    )


def adapted_text(head: nn.Module, text: TextEncoder, texts: Sequence[str]) -> torch.Tensor:
    """A head's text embeddings ``[N,E]``: through its :class:`TextAdapter` when it has one, else the tower's."""
    adapter = getattr(head, "text_adapter", None)
    return adapter(text, texts) if adapter is not None else text.embeds(texts)


def projection(width: int, embed_dim: int) -> nn.Module:
    """Into the joint space when the encoder's features are elsewhere (CLS width, a side network's width)."""
    return nn.Identity() if width == embed_dim else nn.Linear(width, embed_dim, bias=False)


def cosine_logits(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """``scale * cos(a_i, b_j)``: ``a`` ``[N,E]``, ``b`` ``[M,E]`` -> ``[N,M]``."""
    return scale * F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def ilfm_logit_scale(ilfm: ImageLanguageModel) -> float:
    """The ILFM's contrastive temperature as a plain number, capped at 100 as in CLIP."""
    return float(min(float(ilfm.logit_scale.detach().float()), 100.0))


def check_spec(spec: dict[str, Any], task: str, keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in spec]
    if missing:
        raise VideoadaptError(f"{task}: saved head description lacks {', '.join(missing)}; was it written by {task}?")


class _GatherRows(torch.autograd.Function):
    """All-gather rows of every process with gradients flowing back to their owner (CLIP4Clip's AllGather): the
    backward sums each copy's gradient over processes with an all-reduce (every backend has one, unlike
    reduce-scatter) and keeps this process's rows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        import torch.distributed as dist

        rank, longest = dist.get_rank(), max(sizes)
        padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
        padded[: len(x)] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        ctx.rank, ctx.sizes = rank, sizes
        return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def _process_sizes(n: int, device: torch.device) -> list[int] | None:
    """Every process's row count ``n`` in rank order, or None in one process (or without gradients: evaluation
    gathers predictions itself)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1 or not torch.is_grad_enabled():
        return None
    size = torch.tensor([n], device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s) for s in sizes]


def gather_across_processes(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``[n_r, ...]`` of every process concatenated in rank order, differentiable; ``x`` itself in a single
    process. Contrastive losses use it so that a batch split over processes still sees all of its negatives, and
    the gradient equals the single-process one (each process computes the same global loss; DDP averages)."""
    sizes = _process_sizes(len(x), x.device)
    return x if sizes is None else _GatherRows.apply(x, sizes)


def process_offset(n: int, device: torch.device) -> int:
    """Where this process's ``n`` rows start in :func:`gather_across_processes`' concatenation (0 in one process)."""
    import torch.distributed as dist

    sizes = _process_sizes(n, device)
    return 0 if sizes is None else sum(sizes[: dist.get_rank()])
