"""Metrics against straightforward reimplementations of their reference conventions, and pycocoevalcap itself.

Recognition: MMAction2 ``top_k_accuracy`` / ``mean_class_accuracy``. Retrieval: CLIP4Clip ``compute_metrics`` and
its multi-sentence video-to-text evaluation. QA: the VQA evaluation script's answer normalisation. Captioning:
pycocoevalcap's own tokenizer and scorers (Java tests are few: each METEOR run starts a JVM).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from videoadapt.errors import VideoadaptError
from videoadapt.metrics import (
    caption_metrics,
    multiple_choice_accuracy,
    normalize_answer,
    open_ended_accuracy,
    recognition_metrics,
    retrieval_metrics,
)

# ----------------------------------------------------------------------------------------------------- recognition


def reference_recognition(scores: np.ndarray, labels: np.ndarray, topk: tuple[int, ...]) -> dict[str, float]:
    """Loop version of the conventions: top-k order = score descending, then class index descending (a stable
    ascending argsort read from the end); mean class accuracy over classes seen as label or argmax prediction."""
    n, c = scores.shape
    out = {}
    for k in topk:
        hits = 0
        for i in range(n):
            ranked = sorted(range(c), key=lambda j: (-scores[i, j], -j))
            hits += labels[i] in ranked[:k]
        out[f"top{k}"] = 100.0 * hits / n
    predicted = [max(range(c), key=lambda j: (scores[i, j], -j)) for i in range(n)]  # first maximum
    per_class = []
    for cls in sorted(set(predicted) | set(labels.tolist())):
        members = [i for i in range(n) if labels[i] == cls]
        per_class.append(sum(predicted[i] == cls for i in members) / len(members) if members else 0.0)
    out["mean_class_accuracy"] = 100.0 * sum(per_class) / len(per_class)
    return out


def mmaction_top_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """MMAction2's vectorised expression, with NumPy's default (unstable) sort."""
    top = np.argsort(scores, axis=1)[:, -k:][:, ::-1]
    return 100.0 * float(np.logical_or.reduce(top == labels[:, None], axis=1).mean())


@pytest.mark.parametrize("seed", range(5))
def test_recognition_matches_loop_reference_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, c = 37, 12
    scores = rng.integers(0, 4, size=(n, c)).astype(np.float32)  # many ties
    labels = rng.integers(0, c - 2, size=n)  # two classes never labelled: predicted-only classes count 0
    got = recognition_metrics(scores, labels, topk=(1, 3, 5))
    assert got == pytest.approx(reference_recognition(scores, labels, (1, 3, 5)), abs=1e-9)


def test_recognition_equals_mmaction_without_ties() -> None:
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(200, 50))
    labels = rng.integers(0, 50, size=200)
    got = recognition_metrics(scores, labels, topk=(1, 5))
    for k in (1, 5):
        assert got[f"top{k}"] == pytest.approx(mmaction_top_k(scores, labels, k))


def test_recognition_hand_computed() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0], [0.3, 0.3, 0.4], [0.9, 0.05, 0.05]])
    labels = np.array([1, 0, 1, 1])
    got = recognition_metrics(scores, labels, topk=(1, 2))
    # Row 1 ties 0 and 1: top-k ranks the higher index first (miss at top-1), argmax takes the lower (hit).
    assert got["top1"] == 25.0
    assert got["top2"] == 75.0  # row 3: order 0, then 2 before 1 (tie) -> label 1 not in top-2
    # argmax predictions 1, 0, 2, 0: class 0: 1/1, class 1: 1/3, class 2 (never labelled): 0 -> mean 4/9.
    assert got["mean_class_accuracy"] == pytest.approx(100 * 4 / 9)


def test_recognition_k_beyond_classes_and_bad_input() -> None:
    assert recognition_metrics(np.eye(3), np.array([2, 1, 0]), topk=(1, 5))["top5"] == 100.0
    with pytest.raises(VideoadaptError, match="outside"):
        recognition_metrics(np.eye(3), np.array([0, 1, 3]))
    with pytest.raises(VideoadaptError, match="NaN"):
        recognition_metrics(np.array([[0.0, np.nan]]), np.array([0]))


# ------------------------------------------------------------------------------------------------------- retrieval


def clip4clip_ranks(x: np.ndarray) -> list[int]:
    """CLIP4Clip compute_metrics: 0-based positions of the diagonal value in each descending-sorted row; every
    tied position counts (np.where)."""
    ranks: list[int] = []
    for i in range(x.shape[0]):
        row = sorted(-v for v in x[i])
        ranks.extend(j for j, v in enumerate(row) if v - (-x[i, i]) == 0)
    return ranks


def summarise(ranks: list[int]) -> dict[str, float]:
    r = np.asarray(ranks)
    return {
        "R1": 100.0 * float(np.sum(r == 0)) / len(r),
        "R5": 100.0 * float(np.sum(r < 5)) / len(r),
        "R10": 100.0 * float(np.sum(r < 10)) / len(r),
        "MdR": float(np.median(r)) + 1,
        "MnR": float(np.mean(r)) + 1,
    }


def reference_retrieval(sim: np.ndarray, t2v: np.ndarray) -> dict[str, float]:
    n_text, n_video = sim.shape
    t2v_ranks: list[int] = []
    for i in range(n_text):
        row = sorted((float(v) for v in sim[i]), reverse=True)
        t2v_ranks.extend(j for j, v in enumerate(row) if v == sim[i, t2v[i]])
    # CLIP4Clip multi-sentence v2t: video x caption-group matrix of best-caption similarities.
    groups = sorted(set(t2v.tolist()))
    grouped = np.array([[max(sim[c, v] for c in range(n_text) if t2v[c] == g) for g in groups] for v in groups])
    out = {f"t2v_{k}": v for k, v in summarise(t2v_ranks).items()}
    out.update({f"v2t_{k}": v for k, v in summarise(clip4clip_ranks(grouped)).items()})
    for side in ("t2v", "v2t"):
        out[f"{side}_Rsum"] = out[f"{side}_R1"] + out[f"{side}_R5"] + out[f"{side}_R10"]
    out["Rsum"] = out["t2v_Rsum"] + out["v2t_Rsum"]
    return out


@pytest.mark.parametrize("seed", range(4))
def test_retrieval_square_matches_clip4clip_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 24  # even: the median averages the two middle ranks
    sim = rng.integers(0, 6, size=(n, n)).astype(np.float32)
    got = retrieval_metrics(sim, np.arange(n))
    assert got.keys() == {
        *(f"{s}_{m}" for s in ("t2v", "v2t") for m in ("R1", "R5", "R10", "MdR", "MnR", "Rsum")),
        "Rsum",
    }
    expected_t2v = summarise(clip4clip_ranks(sim))
    expected_v2t = summarise(clip4clip_ranks(sim.T))
    for key in expected_t2v:
        assert got[f"t2v_{key}"] == pytest.approx(expected_t2v[key])
        assert got[f"v2t_{key}"] == pytest.approx(expected_v2t[key])


@pytest.mark.parametrize("seed", range(4))
def test_retrieval_multi_caption_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n_video = 16
    t2v = np.concatenate([np.arange(n_video - 2), rng.integers(0, n_video - 2, size=20)])  # last 2: no caption
    rng.shuffle(t2v)
    sim = rng.normal(size=(len(t2v), n_video))
    sim[rng.random(sim.shape) < 0.3] = 0.25  # deliberate ties
    got = retrieval_metrics(sim, t2v)
    assert got == pytest.approx(reference_retrieval(sim, t2v))


def test_retrieval_continuous_scores_give_one_rank_per_query() -> None:
    rng = np.random.default_rng(3)
    sim = rng.normal(size=(10, 10))
    got = retrieval_metrics(sim, np.arange(10))
    ranks = [int((sim[i] > sim[i, i]).sum()) for i in range(10)]  # 0-based, no ties
    assert got["t2v_MdR"] == pytest.approx(np.median(ranks) + 1)
    assert got["t2v_R1"] == pytest.approx(10.0 * ranks.count(0))


def test_retrieval_hand_computed_3x3() -> None:
    sim = np.array([[0.9, 0.1, 0.3], [0.8, 0.5, 0.2], [0.1, 0.2, 0.3]])
    got = retrieval_metrics(sim, np.arange(3))
    # t2v ranks 1, 2, 1.
    assert got["t2v_R1"] == pytest.approx(200 / 3)
    assert got["t2v_R5"] == 100.0
    assert got["t2v_MdR"] == 1.0
    assert got["t2v_MnR"] == pytest.approx(4 / 3)
    # v2t: videos 0 and 1 rank 1; video 2's 0.3 ties with text 0's 0.3 -> ranks 1 and 2 both count.
    assert got["v2t_R1"] == 75.0
    assert got["v2t_MdR"] == 1.0
    assert got["v2t_MnR"] == pytest.approx(5 / 4)
    assert got["Rsum"] == pytest.approx(got["t2v_Rsum"] + got["v2t_Rsum"])


def test_retrieval_even_median_and_constant_matrix() -> None:
    # Ranks 1 and 2: the median of an even count is their mean.
    got = retrieval_metrics(np.array([[0.9, 0.1], [0.8, 0.5]]), np.arange(2))
    assert got["t2v_MdR"] == 1.5
    # A constant matrix scores chance, not 100%: all 4 tied positions count for each of the 4 queries.
    const = retrieval_metrics(np.ones((4, 4)), np.arange(4))
    assert const["t2v_R1"] == 25.0
    assert const["t2v_MdR"] == 2.5
    assert const["v2t_MnR"] == 2.5


def test_retrieval_v2t_uses_caption_groups() -> None:
    # Video 1's own caption (0.7) is beaten by two captions of video 0 (0.9 and 0.85): CLIP4Clip's group
    # convention gives rank 2 (one better group), not 3 (two better captions).
    sim = np.array([[0.2, 0.9], [0.8, 0.1], [0.3, 0.7], [0.1, 0.85]])
    got = retrieval_metrics(sim, np.array([0, 0, 1, 0]))
    assert got["v2t_R1"] == 50.0
    assert got["v2t_MnR"] == 1.5


def test_retrieval_bad_input() -> None:
    with pytest.raises(VideoadaptError, match="outside"):
        retrieval_metrics(np.eye(2), np.array([0, 2]))
    with pytest.raises(VideoadaptError, match="NaN"):
        retrieval_metrics(np.array([[1.0, np.nan], [0.0, 1.0]]), np.arange(2))
    with pytest.raises(VideoadaptError, match="one entry per text"):
        retrieval_metrics(np.eye(3), np.arange(2))


# -------------------------------------------------------------------------------------------------------------- qa


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Two dogs.", "2 dogs"),
        ("a cat", "cat"),
        ("isnt", "isn't"),
        ("The  Man's hat!", "man's hat"),
        ("couldnt've", "couldn't've"),
        ("couldn'tve", "couldn't've"),
        ("yes, it is", "yes it is"),  # ", " touches a space: deleted
        ("red/blue", "red blue"),  # no space around "/": becomes a space
        ("1,000", "1000"),  # digit,digit comma: punctuation deleted
        ("3.5 m", "3.5 m"),  # a period before a digit stays
        ("none", "0"),
        ("An apple\tand\nTEN pears", "apple and 10 pears"),
        ("dont", "don't"),
        ("its", "its"),  # not in the script's table
    ],
)
def test_normalize_answer_vqa_cases(raw: str, normalized: str) -> None:
    assert normalize_answer(raw) == normalized


def test_qa_accuracies() -> None:
    assert multiple_choice_accuracy(np.array([0, 1, 2, -1]), np.array([0, 2, 2, 1])) == {"accuracy": 50.0}
    got = open_ended_accuracy(["Two dogs.", "a cat", "yes", "blue"], ["2 dogs", "cat", "no", "Blue!"])
    assert got == {"accuracy": 75.0}
    with pytest.raises(VideoadaptError):
        open_ended_accuracy(["a"], ["a", "b"])
    with pytest.raises(VideoadaptError):
        multiple_choice_accuracy(np.array([0.5]), np.array([0]))


# ------------------------------------------------------------------------------------------------------ captioning

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's tokenizer/METEOR need Java")

PREDICTIONS = {
    "v1": "A man is playing a guitar on stage.",
    "v2": "a dog runs in the park",
    "v3": "Someone is cooking food in a kitchen",
}
REFERENCES = {
    "v1": ["A man is playing a guitar on stage.", "Someone plays the guitar."],
    "v2": ["A cat sleeps on a sofa.", "A dog is running in a park.", "the dog runs"],
    "v3": ["A woman cooks pasta in a kitchen.", "Someone is cooking."],
}


@needs_java
def test_caption_metrics_equal_pycocoevalcap() -> None:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # COCOEvalCap.evaluate, step by step, with pycocoevalcap's own wrappers.
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in REFERENCES.items()})
    res = tokenizer.tokenize({k: [{"caption": PREDICTIONS[k]}] for k in REFERENCES})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor_scorer = Meteor()
    meteor, _ = meteor_scorer.compute_score(gts, res)
    meteor_scorer.meteor_p.stdout.close()  # its __del__ closes only stdin
    meteor_scorer.meteor_p.stderr.close()
    del meteor_scorer
    expected = {f"BLEU-{n}": 100 * bleu[n - 1] for n in range(1, 5)}
    expected["METEOR"] = 100 * meteor
    expected["ROUGE-L"] = 100 * Rouge().compute_score(gts, res)[0]
    expected["CIDEr"] = 100 * Cider().compute_score(gts, res)[0]

    got = caption_metrics(PREDICTIONS, REFERENCES)
    assert got == pytest.approx(expected, abs=1e-9)
    assert 0 < got["CIDEr"] and 0 < got["METEOR"] < 100


@needs_java
def test_caption_identical_prediction_scores_bleu_100() -> None:
    refs = {"a": ["a man is slicing a tomato on a board"], "b": ["two children play football in the garden"]}
    got = caption_metrics({k: v[0] for k, v in refs.items()}, refs)
    assert got["BLEU-4"] == pytest.approx(100.0, abs=1e-4)
    assert got["BLEU-1"] == pytest.approx(100.0, abs=1e-4)
    assert got["ROUGE-L"] == pytest.approx(100.0)


def test_caption_mismatched_ids_name_the_item() -> None:
    with pytest.raises(VideoadaptError, match=r"without a prediction \(first: 'v3'\)"):
        caption_metrics({"v1": "x", "v2": "y"}, {k: REFERENCES[k] for k in ("v1", "v2", "v3")})
    with pytest.raises(VideoadaptError, match=r"without references \(first: 'zz'\)"):
        caption_metrics({**PREDICTIONS, "zz": "extra"}, REFERENCES)
    with pytest.raises(VideoadaptError, match="non-empty list"):
        caption_metrics({"v1": "x"}, {"v1": []})


def test_caption_without_java_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(VideoadaptError, match="apt-get install default-jre-headless"):
        caption_metrics(PREDICTIONS, REFERENCES)


@needs_java
def test_meteor_times_out_instead_of_hanging() -> None:
    from videoadapt.metrics.captioning import meteor_score

    # METEOR needs seconds to load its paraphrase table; a tiny deadline must raise and kill the JVM.
    with pytest.raises(VideoadaptError, match="did not answer"):
        meteor_score({"a": ["a dog"]}, {"a": ["a dog"]}, timeout=0.05)


# ------------------------------------------------------------------------ captioning: sums of per-video statistics

TOKENISED_GTS = {
    "a": ["a man is slicing a tomato on a board", "someone cuts a tomato"],
    "b": ["two children play football in the garden", "kids play soccer outside", "children are playing"],
    "c": ["a woman cooks pasta in a kitchen"],
    "d": ["the red star moves to the left"],
    "e": ["a dog runs in a park", "the dog is running"],
}
TOKENISED_RES = {
    "a": ["a man slices a tomato"],
    "b": ["children play in a garden"],
    "c": ["a woman cooks pasta in a kitchen"],  # identical to its reference: METEOR's perfect-segment rule
    "d": ["a red star moves left"],
    "e": ["a cat sleeps"],
}


def resampled(draw: list[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The test set of videos ``draw`` (with repeats), keyed so that a repeated video is a second segment."""
    gts = {f"{key}#{i}": TOKENISED_GTS[key] for i, key in enumerate(draw)}
    res = {f"{key}#{i}": TOKENISED_RES[key] for i, key in enumerate(draw)}
    return gts, res


def test_bleu_from_summed_statistics_is_pycocoevalcaps_corpus_bleu() -> None:
    from pycocoevalcap.bleu.bleu import Bleu

    from videoadapt.metrics.captioning import bleu_from_sums, bleu_statistics

    stats = bleu_statistics(TOKENISED_GTS, TOKENISED_RES)
    for draw in (list(TOKENISED_GTS), ["a", "a", "b", "e", "e"], ["c"], ["e", "d"]):
        gts, res = resampled(draw)
        expected, _ = Bleu(4).compute_score(gts, res, verbose=0)
        weights = np.array([draw.count(key) for key in TOKENISED_GTS], dtype=np.float64)
        np.testing.assert_allclose(bleu_from_sums(weights @ stats), expected, rtol=1e-12, atol=1e-15)
    # "closest" reference length: the hypothesis of "b" has 5 words, its references 7, 4 and 3 -> 4.
    assert stats[1, :2].tolist() == [5, 4]


@needs_java
def test_meteor_from_summed_statistics_is_the_jars_corpus_score_on_resamples() -> None:
    """The jar's own corpus score of a resampled test set equals meteor_from_sums of the resampled statistics
    from one run; without the perfect-segment chunk rule it would not."""
    from videoadapt.metrics.captioning import meteor_from_sums, meteor_statistics

    stats, segments, corpus = meteor_statistics(TOKENISED_GTS, TOKENISED_RES)
    assert stats.shape == (5, 23) and segments.shape == (5,)
    assert meteor_from_sums(stats.sum(axis=0)) == pytest.approx(corpus, abs=1e-12)
    assert stats[2, 20] == 0.0  # "c" matches its reference in one chunk: left out of the corpus sum
    draw = ["c", "c", "a", "d", "d"]
    weights = np.array([draw.count(key) for key in TOKENISED_GTS], dtype=np.float64)
    _, _, jar = meteor_statistics(*resampled(draw))
    assert meteor_from_sums(weights @ stats) == pytest.approx(jar, abs=1e-12)
    naive = stats.copy()
    naive[2, 20] = 1.0
    assert abs(meteor_from_sums(weights @ naive) - jar) > 1e-4
    # One row alone is the jar's segment score, except for the perfect segment (whose chunk was set aside).
    np.testing.assert_allclose(meteor_from_sums(stats[[0, 1, 3, 4]]), segments[[0, 1, 3, 4]], rtol=1e-12)
