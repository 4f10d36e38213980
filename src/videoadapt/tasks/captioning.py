"""Video captioning: a small transformer decoder over the video's frame tokens; BLEU-4, METEOR, ROUGE-L, CIDEr.

The decoder (``layers`` 2, ``width`` 256, ``heads`` 4 by default) cross-attends to the encoder's frame features
``[B,T,W]`` (projected to its width, plus learnt frame positions) and predicts words of its own word-level
vocabulary, built from the training captions (words seen at least ``min_count`` times; saved in the run's
``vocabulary.json``). Training is teacher forcing with cross-entropy (one caption per video per step, drawn anew
each epoch, as in SwinBERT and CLIP4Caption); decoding is greedy or beam search (``beam_size``), at most
``max_length`` words, with the length normalisation of GNMT (``length_penalty``).

On a video MLLM, ``head: mllm`` generates the caption with its language model instead (trained with the LM loss
on a reference caption; prompt, template, ``max_new_tokens``, ``beam_size``: :mod:`videoadapt.tasks.generative`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

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
    TextEncoder,
    check_predictions,
    check_spec,
    feature_widths,
    percent,
)
from videoadapt.tasks.generative import MLLMHead, build_mllm_head, generate, seen, wants_mllm

if TYPE_CHECKING:
    from videoadapt.metrics.captioning import CaptionScores

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
CAPTION_PROMPT = "Describe what happens in the video in one sentence."
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


class WordTokenizer:
    """Lower-cased words (punctuation dropped, as the PTB tokenizer of the metrics drops it), ids into ``words``."""

    def __init__(self, words: Sequence[str]) -> None:
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise VideoadaptError(f"captioning vocabulary must start with {SPECIALS}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.pad, self.bos, self.eos, self.unk = (self.index[s] for s in SPECIALS)

    @staticmethod
    def split(text: str) -> list[str]:
        return _WORD.findall(text.lower())

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> WordTokenizer:
        counts = Counter(w for c in captions for w in cls.split(c))
        # Sorted by frequency, then alphabetically: the same captions always give the same ids.
        kept = [w for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count]
        return cls([*SPECIALS, *kept])

    def encode(self, text: str, max_length: int) -> list[int]:
        ids = [self.index.get(w, self.unk) for w in self.split(text)][: max_length - 1]
        return [self.bos, *ids, self.eos]

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                out.append(self.words[i])
        return " ".join(out)

    def __len__(self) -> int:
        return len(self.words)


class CaptionHead(TaskHead):
    def __init__(self, spec: dict[str, Any], frame_width: int) -> None:
        super().__init__(spec)
        self.tokenizer = WordTokenizer(spec["words"])
        width, heads, layers = int(spec["width"]), int(spec["heads"]), int(spec["layers"])
        self.max_length = int(spec["max_length"])
        self.memory_proj = nn.Sequential(nn.Linear(frame_width, width), nn.LayerNorm(width))
        self.frame_pos = nn.Parameter(torch.zeros(int(spec["max_frames"]), width))
        self.embed = nn.Embedding(len(self.tokenizer), width, padding_idx=self.tokenizer.pad)
        self.word_pos = nn.Parameter(torch.zeros(self.max_length + 1, width))
        nn.init.normal_(self.frame_pos, std=0.02)
        nn.init.normal_(self.word_pos, std=0.02)
        layer = nn.TransformerDecoderLayer(
            width, heads, 4 * width, dropout=float(spec["dropout"]), batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, len(self.tokenizer))

    def memory(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[1] > self.frame_pos.shape[0]:
            raise VideoadaptError(
                f"captioning: {frames.shape[1]} frame tokens but the decoder has {self.frame_pos.shape[0]} frame "
                "positions (model.head.max_frames)"
            )
        return self.memory_proj(frames.float()) + self.frame_pos[: frames.shape[1]]

    def forward(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Next-word logits ``[B,L,V]`` for ``tokens`` ``[B,L]`` given ``memory`` ``[B,T,width]``."""
        length = tokens.shape[1]
        x = self.embed(tokens) + self.word_pos[:length]
        # Boolean like the padding mask: PyTorch warns about (and slows down on) mixed mask types.
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).triu(1)
        x = self.decoder(x, memory, tgt_mask=causal, tgt_key_padding_mask=tokens == self.tokenizer.pad)
        return self.out(self.norm(x))

    @torch.no_grad()
    def generate(self, frames: torch.Tensor, beam_size: int = 1, length_penalty: float = 0.6) -> list[list[int]]:
        memory = self.memory(frames)
        if beam_size <= 1:
            return self._greedy(memory)
        return [self._beam(memory[i : i + 1], beam_size, length_penalty) for i in range(len(memory))]

    def _greedy(self, memory: torch.Tensor) -> list[list[int]]:
        tokens = torch.full((len(memory), 1), self.tokenizer.bos, dtype=torch.long, device=memory.device)
        done = torch.zeros(len(memory), dtype=torch.bool, device=memory.device)
        for _ in range(self.max_length):
            step = self(memory, tokens)[:, -1].argmax(-1)
            step = torch.where(done, torch.full_like(step, self.tokenizer.eos), step)
            tokens = torch.cat([tokens, step[:, None]], dim=1)
            done |= step == self.tokenizer.eos
            if bool(done.all()):
                break
        return [row[1:].tolist() for row in tokens]

    def _beam(self, memory: torch.Tensor, beam_size: int, length_penalty: float) -> list[int]:
        """Beam search for one video; finished hypotheses are ranked by ``log p / ((5 + len) / 6) ** alpha``."""
        eos = self.tokenizer.eos
        beams = [([self.tokenizer.bos], 0.0)]
        finished: list[tuple[list[int], float]] = []
        for _ in range(self.max_length):
            tokens = torch.tensor([b[0] for b in beams], device=memory.device)
            logp = F.log_softmax(self(memory.expand(len(beams), -1, -1), tokens)[:, -1].float(), dim=-1)
            scores = torch.tensor([b[1] for b in beams], device=memory.device)[:, None] + logp
            top = scores.flatten().topk(min(beam_size * 2, scores.numel()))
            candidates = []
            for score, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                row, word = divmod(flat, logp.shape[1])
                sequence = [*beams[row][0], word]
                if word == eos:
                    finished.append((sequence, score / ((5 + len(sequence) - 1) / 6) ** length_penalty))
                else:
                    candidates.append((sequence, score))
                if len(candidates) == beam_size:
                    break
            beams = candidates
            if not beams or len(finished) >= beam_size:
                break
        finished += [(s, v / ((5 + len(s) - 1) / 6) ** length_penalty) for s, v in beams]
        best = max(finished, key=lambda f: f[1])[0]
        return best[1:]


@registry.register("task", "captioning")
class Captioning(CaptionTask):
    name = "captioning"
    monitor = "CIDEr"
    survey = (
        SurveyTable(
            "captioning",
            "Table III: video captioning",
            (("BLEU-4", "BLEU-4"), ("ROUGE-L", "ROUGE-L"), ("METEOR", "METEOR"), ("CIDEr", "CIDEr")),
            zero_shot_note="an ILFM has no text decoder, so captioning has no zero-shot baseline",
            primary="CIDEr",
            mllm_head={"head": "mllm", "max_new_tokens": 20},
        ),
    )
    references_key = "references"
    _memo: tuple[tuple, CaptionScores] | None = None  # the last scores (see _scores)

    def build_head(
        self,
        ilfm: ImageLanguageModel,
        encoder: VideoEncoder,
        data: TaskData,
        spec: dict[str, Any] | None = None,
    ) -> CaptionHead | MLLMHead:
        if wants_mllm(self, spec):
            return build_mllm_head(self, encoder, spec, CAPTION_PROMPT, 24)
        frame_width, _ = feature_widths(encoder)
        if spec is None:
            captions = [c for item in data.items for c in getattr(item, "captions", ())]
            tokenizer = WordTokenizer.build(captions, int(self.option("min_count", 1)))
            spec = {
                "words": tokenizer.words,
                "width": int(self.option("width", 256)),
                "heads": int(self.option("heads", 4)),
                "layers": int(self.option("layers", 2)),
                "dropout": float(self.option("dropout", 0.1)),
                "max_length": int(self.option("max_length", 24)),
                "max_frames": int(self.option("max_frames", 64)),
            }
        check_spec(spec, self.name, ("words", "width", "heads", "layers", "dropout", "max_length", "max_frames"))
        return CaptionHead(spec, frame_width)

    def loss(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> torch.Tensor:
        if isinstance(head, MLLMHead):
            return seen(head, features).loss(head.prompt, targets["texts"], template=head.template)
        tokenizer: WordTokenizer = head.tokenizer  # type: ignore[assignment]
        encoded = [tokenizer.encode(t, head.max_length) for t in targets["texts"]]  # type: ignore[arg-type]
        longest = max(len(e) for e in encoded)
        tokens = torch.full((len(encoded), longest), tokenizer.pad, dtype=torch.long, device=features.frames.device)
        for row, ids in enumerate(encoded):
            tokens[row, : len(ids)] = torch.tensor(ids)
        logits = head(head.memory(features.frames), tokens[:, :-1])  # type: ignore[operator]
        return F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten(), ignore_index=tokenizer.pad)

    def predict(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> list[Any]:
        if isinstance(head, MLLMHead):
            return generate(head, features, [head.prompt] * len(features.generative))
        beam = int(self.option("beam_size", 1))
        penalty = float(self.option("length_penalty", 0.6))
        ids = head.generate(features.frames, beam_size=beam, length_penalty=penalty)  # type: ignore[operator]
        return [head.tokenizer.decode(row) for row in ids]  # type: ignore[union-attr]

    def user_items(self, video: VideoRef, request: Request, spec: dict[str, Any]) -> list[Item]:
        return [CaptionItem(video, ())]

    def describe(self, prediction: Any, item: Item, spec: dict[str, Any], top_k: int = 5) -> dict[str, Any]:
        return {"caption": str(prediction)}

    def evaluate(self, predictions: Sequence[Any], data: TaskData) -> dict[str, float]:
        return self._scores(predictions, data).metrics()

    def _scores(self, predictions: Sequence[Any], data: TaskData) -> CaptionScores:
        """pycocoevalcap's scores, per video too; the last ones are kept, so that :meth:`evaluate`,
        :meth:`item_statistics` and :meth:`item_records` of the same predictions run the Java steps once."""
        from videoadapt.metrics.captioning import caption_scores

        check_predictions(self, predictions, data)
        items: list[CaptionItem] = list(data.items)  # type: ignore[arg-type]
        # Keyed by position, not video id: a data set may list a video twice, and the metric must see each item.
        predicted = {str(i): p for i, p in enumerate(predictions)}
        references = {str(i): [c for c in item.captions if c.strip()] for i, item in enumerate(items)}
        key = (tuple(predicted.values()), tuple(tuple(r) for r in references.values()))
        memo = self._memo
        if memo is None or memo[0] != key:
            memo = (key, caption_scores(predicted, references))
            self._memo = memo
        return memo[1]

    # --- per item: a video ---------------------------------------------------------------------------------------

    def item_statistics(self, predictions: Sequence[Any], data: TaskData) -> dict[str, np.ndarray]:
        """One row per video: ``bleu`` (hypothesis and closest reference length, n-gram totals and matches),
        ``meteor`` (the jar's statistics line), ``rouge`` and ``cider`` (the video's score, 0–1; CIDEr's document
        frequencies are the whole test set's and stay fixed in a resample), ``items``."""
        scores = self._scores(predictions, data)
        return {
            "items": np.ones((len(scores.ids), 1)),
            "bleu": scores.bleu_stats,
            "meteor": scores.meteor_stats,
            "rouge": scores.rouge[:, None],
            "cider": scores.cider[:, None],
        }

    def metrics_from_sums(self, sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from videoadapt.metrics.captioning import BLEU_N, bleu_from_sums, meteor_from_sums

        bleu = bleu_from_sums(sums["bleu"])
        result = {f"BLEU-{n}": 100.0 * bleu[..., n - 1] for n in range(1, BLEU_N + 1)}
        items = sums["items"][..., 0]
        result.update(
            {
                "METEOR": 100.0 * meteor_from_sums(sums["meteor"]),
                "ROUGE-L": percent(sums["rouge"][..., 0], items),
                "CIDEr": percent(sums["cider"][..., 0], items),
            }
        )
        return result

    def score_documents(self, predictions: Sequence[Any], data: TaskData) -> dict[str, str]:
        """One caption per video and every reference caption."""
        from videoadapt.metrics import prediction_files as pf

        check_predictions(self, predictions, data)
        ids = pf.unique_ids([item.video.video_id for item in data.items])
        captions = {i: str(p) for i, p in zip(ids, predictions, strict=True)}
        references = {i: list(item.captions) for i, item in zip(ids, data.items, strict=True)}  # type: ignore[union-attr]
        return pf.documents(pf.captioning_predictions_text(captions), pf.captioning_ground_truth_text(references))

    def item_records(self, predictions: Sequence[Any], data: TaskData) -> list[dict[str, Any]]:
        """Per video: ``id``, the generated ``caption``, its ``references`` and its own scores x100 (``BLEU-4``
        of its statistics alone, the jar's ``METEOR`` segment score, ``ROUGE-L``, ``CIDEr``)."""
        from videoadapt.metrics.captioning import bleu_from_sums

        scores = self._scores(predictions, data)
        bleu4 = bleu_from_sums(scores.bleu_stats)[:, -1]
        records = []
        for i, (caption, item) in enumerate(zip(predictions, data.items, strict=True)):
            records.append(
                {
                    "id": item.video.video_id,
                    "caption": str(caption),
                    "references": [c for c in getattr(item, "captions", ()) if c.strip()],
                    "BLEU-4": 100.0 * float(bleu4[i]),
                    "METEOR": 100.0 * float(scores.meteor_segments[i]),
                    "ROUGE-L": 100.0 * float(scores.rouge[i]),
                    "CIDEr": 100.0 * float(scores.cider[i]),
                }
            )
        return records
