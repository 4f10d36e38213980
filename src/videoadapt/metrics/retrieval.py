"""Text-video retrieval metrics, following CLIP4Clip's ``metrics.py`` (``compute_metrics``).

CLIP4Clip (and X-CLIP, CLIP2Video, TS2-Net, which copy its evaluation) sorts each query's row of the similarity
matrix in descending order and finds where the correct item's similarity sits (``np.where(sorted - correct ==
0)``). Conventions, as implemented here:

* **Ranks** are 1-based: rank 1 = the correct item has the highest similarity. R@K = percentage of ranks <= K
  (a rank exactly K counts). MdR = ``np.median`` of the ranks, so an **even** number of ranks averages the two
  middle ones (MdR can be x.5). MnR = mean rank.
* **Ties**: ``np.where`` returns *every* sorted position that holds the correct item's value, so a query whose
  correct item ties with m other items contributes m+1 ranks (p+1, ..., p+m+1, p = number of strictly higher
  items), and R@K, MdR and MnR are taken over all of them. Ties therefore count as the average over the tied
  positions (a constant similarity matrix scores chance level, not 100%), and a tied query weighs m+1 times.
  Without ties every query gives exactly one rank. We compute the same multiset of ranks by counting
  (strictly greater, equal) instead of expanding it, so a degenerate matrix does not cost N^2 memory.
* **t2v**: one query per text; its correct video is ``text_to_video[i]``; every video (column) is a candidate.
* **v2t with several captions per video**: CLIP4Clip's multi-sentence evaluation (``tensor_video_to_text_sim``):
  each video's candidates are the *caption groups* of the videos, a group scoring the maximum similarity of its
  captions to the query video; the rank is that of the video's own group. So the competitors are the other
  videos' best captions, not every other caption (ALBEF/BLIP's image-to-text counts every caption ranked above
  the best correct one; the two agree with one caption per video). Videos without any caption are neither
  v2t queries nor v2t candidates; they remain t2v candidates (distractors).
* Rsum = R1 + R5 + R10 (per direction) and their sum over both directions. Recalls in percent, ranks as ranks.
* Infinite similarities are ranked by comparison (``-inf`` ties with ``-inf``); CLIP4Clip's subtraction would
  silently drop such a query. NaN is an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videoadapt.errors import VideoadaptError

CONVENTIONS = {
    "ranks": "1-based position of the correct item in the descending sort (CLIP4Clip compute_metrics)",
    "recall_at_k": "percent of ranks <= K",
    "median": "np.median: an even count averages the two middle ranks",
    "ties": "a correct item tied with m others contributes the m+1 tied positions (CLIP4Clip's np.where)",
    "v2t_multi_caption": "CLIP4Clip multi-sentence: caption groups scored by their best caption; rank of the "
    "video's own group; videos without captions are not v2t queries",
}

KS = (1, 5, 10)


@dataclass(frozen=True)
class QueryRanks:
    """The multiset of 0-based ranks of each query: ``{lo, ..., lo + tied - 1}`` (``tied`` >= 1 counts the correct
    item and those tied with it; ``tied`` is 1 without ties)."""

    lo: np.ndarray
    tied: np.ndarray

    def below(self, k: int) -> np.ndarray:
        """Per query, how many of its ranks are < ``k`` (0-based): R@k's numerator."""
        return np.clip(np.minimum(self.lo + self.tied, k) - self.lo, 0, None)

    def rank_sum(self) -> np.ndarray:
        """Per query, the sum of its 0-based ranks (MnR's numerator)."""
        return self.tied * self.lo + self.tied * (self.tied - 1) / 2.0


def retrieval_ranks(similarity: np.ndarray, text_to_video: np.ndarray) -> tuple[QueryRanks, QueryRanks, np.ndarray]:
    """Each query's ranks, with the conventions of :func:`retrieval_metrics`: text-to-video per text, and
    video-to-text per captioned video; the third array is those videos' column indices (the v2t query order).
    Every metric but MdR is a sum over queries of what :class:`QueryRanks` gives per query."""
    similarity, text_to_video = _check(similarity, text_to_video)
    rows = np.arange(similarity.shape[0])
    t2v = _ranks(similarity, similarity[rows, text_to_video])
    # v2t: one row per captioned video, one column per caption group (= captioned video), max over the captions.
    order = np.argsort(text_to_video, kind="stable")
    videos, starts = np.unique(text_to_video[order], return_index=True)
    group_max = np.maximum.reduceat(similarity[order], starts, axis=0)  # [group, video]
    v2t = group_max[:, videos].T  # [query video, group]; the correct group is on the diagonal
    return t2v, _ranks(v2t, np.diag(v2t)), videos


def retrieval_metrics(similarity: np.ndarray, text_to_video: np.ndarray) -> dict[str, float]:
    """Text-to-video and video-to-text R@1/5/10, median and mean rank, with CLIP4Clip's conventions.

    Args:
        similarity: ``[N_text, N_video]`` scores, higher = more similar.
        text_to_video: ``[N_text]`` integers; ``text_to_video[i]`` is the column of text i's video. Several texts
            may share a video.

    Returns:
        keys ``t2v_R1, t2v_R5, t2v_R10, t2v_MdR, t2v_MnR`` and the same for ``v2t_``, then ``t2v_Rsum,
        v2t_Rsum, Rsum``. Recalls in percent (0–100); MdR/MnR are ranks (1 = best). See the module docstring for
        ties, the median and the v2t multi-caption convention.
    """
    t2v, v2t, _ = retrieval_ranks(similarity, text_to_video)
    result = {f"t2v_{k}": v for k, v in _summarise(t2v).items()}
    result.update({f"v2t_{k}": v for k, v in _summarise(v2t).items()})
    result["t2v_Rsum"] = result["t2v_R1"] + result["t2v_R5"] + result["t2v_R10"]
    result["v2t_Rsum"] = result["v2t_R1"] + result["v2t_R5"] + result["v2t_R10"]
    result["Rsum"] = result["t2v_Rsum"] + result["v2t_Rsum"]
    return result


def _ranks(scores: np.ndarray, correct: np.ndarray) -> QueryRanks:
    lo = (scores > correct[:, None]).sum(axis=1).astype(np.int64)
    tied = (scores == correct[:, None]).sum(axis=1).astype(np.int64)  # >= 1: the correct item itself
    return QueryRanks(lo, tied)


def _summarise(ranks: QueryRanks) -> dict[str, float]:
    """R@K, MdR, MnR over the multiset of 0-based ranks {lo, ..., lo + tied - 1} of every query."""
    lo, tied = ranks.lo, ranks.tied
    hi = lo + tied  # exclusive
    total = int(tied.sum())

    def count_below(r: int) -> int:  # how many ranks (0-based) are < r
        return int(ranks.below(r).sum())

    def kth(k: int) -> int:  # the k-th smallest rank (0-based k), by bisection on count_below
        low, high = 0, int(hi.max()) - 1
        while low < high:
            mid = (low + high) // 2
            if count_below(mid + 1) >= k + 1:
                high = mid
            else:
                low = mid + 1
        return low

    # np.median convention: the mean of the two middle values when the count is even.
    median = (kth((total - 1) // 2) + kth(total // 2)) / 2.0
    rank_sum = float(ranks.rank_sum().sum())
    out = {f"R{k}": 100.0 * count_below(k) / total for k in KS}
    out["MdR"] = median + 1.0
    out["MnR"] = rank_sum / total + 1.0
    return out


def _check(similarity: np.ndarray, text_to_video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    similarity = np.asarray(similarity)
    text_to_video = np.asarray(text_to_video)
    if similarity.ndim != 2 or 0 in similarity.shape:
        raise VideoadaptError(f"similarity must be a non-empty [N_text, N_video] array, got shape {similarity.shape}")
    if similarity.dtype.kind not in "iuf":
        raise VideoadaptError(f"similarity must be real numbers, got dtype {similarity.dtype}")
    if text_to_video.shape != (similarity.shape[0],):
        raise VideoadaptError(
            f"text_to_video must have one entry per text ({similarity.shape[0]}), got shape {text_to_video.shape}"
        )
    if text_to_video.dtype.kind not in "iu":
        raise VideoadaptError(f"text_to_video must hold integer video indices, got dtype {text_to_video.dtype}")
    bad = np.flatnonzero((text_to_video < 0) | (text_to_video >= similarity.shape[1]))
    if bad.size:
        raise VideoadaptError(
            f"text {int(bad[0])} maps to video {int(text_to_video[bad[0]])}, outside [0, {similarity.shape[1]})"
        )
    if similarity.dtype.kind == "f":
        nan_rows = np.flatnonzero(np.isnan(similarity).any(axis=1))
        if nan_rows.size:
            raise VideoadaptError(f"similarity row of text {int(nan_rows[0])} contains NaN")
    return similarity, text_to_video.astype(np.int64)
