"""What every video MLLM shares, whatever builds its inputs: the frame budget of the LM context, generation
(greedy or beam search, KV cache, a hard length bound) and the log-likelihood of candidate answers.

Conventions: sequences are **left-padded**, so that every answer (scored or trained on) sits at the end of its row
and the LM needs output logits only for the last positions (``logits_to_keep``), not the whole vocabulary at every
position. Generation is deterministic (no sampling).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from videoadapt.errors import VideoadaptError

IGNORE = -100  # label of a position that is not part of the answer (transformers' convention)
MAX_NEW_TOKENS = 4096  # refuse absurd bounds outright rather than run for hours


@dataclass
class Generation:
    """The answers to a batch: ``texts`` (special tokens removed), the generated ``token_ids``, whether each
    stopped at the length bound rather than at its end token (``hit_length_bound``), and how many frames the
    model saw of those given (fewer when the video did not fit the LM context)."""

    texts: list[str]
    token_ids: list[list[int]]
    hit_length_bound: list[bool]
    frames_used: int
    frames_given: int


def frames_that_fit(frames: int, tokens_for: Callable[[int], int], room: int, what: str) -> int:
    """The most frames (≤ ``frames``) whose visual tokens fit in ``room`` positions of the LM context."""
    if tokens_for(1) > room and tokens_for(frames) > room:
        raise VideoadaptError(
            f"{what}: no room for the video: {tokens_for(1)} visual tokens per frame, {room} positions left in the "
            "context after the prompt and the answer; shorten the prompt or lower max_new_tokens"
        )
    fit = frames
    while fit > 1 and tokens_for(fit) > room:
        fit -= 1
    if tokens_for(fit) > room:
        raise VideoadaptError(f"{what}: {tokens_for(fit)} visual tokens do not fit the {room} positions left")
    return fit


def sample_frames(video: torch.Tensor, fit: int, what: str) -> torch.Tensor:
    """``video`` ``[B,T,...]`` sampled uniformly down to ``fit`` frames, with a warning saying so."""
    t = video.shape[1]
    if fit >= t:
        return video
    warnings.warn(
        f"{what}: {t} frames do not fit the language model's context; sampled uniformly down to {fit}",
        stacklevel=3,
    )
    index = torch.from_numpy(np.linspace(0, t - 1, fit).round().astype(np.int64)).to(video.device)
    return video.index_select(1, index)


def left_pad(rows: Sequence[torch.Tensor], value: float | int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack rows of different lengths (``[L_i, ...]``) left-padded with ``value``; returns ``(batch, mask)``."""
    length = max(r.shape[0] for r in rows)
    batch = rows[0].new_full((len(rows), length, *rows[0].shape[1:]), value)
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=rows[0].device)
    for i, row in enumerate(rows):
        batch[i, length - row.shape[0] :] = row
        mask[i, length - row.shape[0] :] = 1
    return batch, mask


def check_generation_options(max_new_tokens: int, num_beams: int) -> None:
    if not 1 <= int(max_new_tokens) <= MAX_NEW_TOKENS:
        raise VideoadaptError(f"max_new_tokens must be in 1..{MAX_NEW_TOKENS}, got {max_new_tokens}")
    if int(num_beams) < 1:
        raise VideoadaptError(f"num_beams must be >= 1, got {num_beams}")


def run_generate(
    lm: Any,
    inputs: dict[str, torch.Tensor],
    tokenizer: Any,
    stop_ids: list[int],
    max_new_tokens: int,
    num_beams: int,
    frames_used: int,
    frames_given: int,
) -> Generation:
    """``lm.generate`` on prepared inputs: greedy (``num_beams`` 1) or beam search, the KV cache on, at most
    ``max_new_tokens`` new tokens whatever the model does (the hard bound that keeps a model that never emits its
    end token from running on)."""
    check_generation_options(max_new_tokens, num_beams)
    prompt_length = inputs["input_ids"].shape[1] if "input_ids" in inputs else 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    with torch.no_grad():
        out = lm.generate(
            **inputs,
            max_new_tokens=int(max_new_tokens),
            min_new_tokens=0,
            num_beams=int(num_beams),
            do_sample=False,
            use_cache=True,
            eos_token_id=stop_ids,
            pad_token_id=pad,
            # Reset what a checkpoint's generation_config may set for sampling, so greedy means greedy.
            temperature=None,
            top_p=None,
            top_k=None,
            repetition_penalty=None,
            length_penalty=1.0,
        )
    new = out[:, prompt_length:].tolist()
    ids, bound = [], []
    for row in new:
        end = next((i for i, token in enumerate(row) if token in stop_ids), None)
        ids.append(row if end is None else row[:end])
        bound.append(end is None)
    texts = [tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]
    return Generation(texts, ids, bound, frames_used, frames_given)


def answer_log_likelihoods(logits: torch.Tensor, labels: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-row log-likelihood of the labelled tokens. ``logits`` ``[N,K,V]`` are the LM outputs at the last ``K``
    positions of left-padded rows whose ``labels`` ``[N,L]`` are ``IGNORE`` except on the answer at the end (with
    ``L`` ≥ ``K`` and every answer within the last ``K - 1`` positions): the logit at position ``i`` predicts the
    token at ``i + 1``. ``reduction``: ``"sum"`` or ``"mean"`` (per answer token)."""
    k = logits.shape[1]
    targets = labels[:, -k:][:, 1:]
    scores = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    keep = targets != IGNORE
    picked = scores.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * keep
    total = picked.sum(dim=1)
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / keep.sum(dim=1).clamp(min=1)
    raise VideoadaptError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every answer token of the batch (the same layout as :func:`answer_log_likelihoods`)."""
    k = logits.shape[1]
    targets = labels[:, -k:][:, 1:]
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE
    )
