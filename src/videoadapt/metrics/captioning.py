"""Captioning metrics with pycocoevalcap, computed as its ``COCOEvalCap.evaluate`` does (SPICE left out).

Pipeline (as COCOEvalCap): the references and the predictions are each tokenised by the Stanford PTBTokenizer
(``-preserveLines -lowerCase``, punctuation tokens removed), then scored with ``Bleu(4)``, ``Meteor()``,
``Rouge()`` and ``Cider()``. BLEU is corpus-level with the "closest" reference length; CIDEr is CIDEr-D (sigma
6, clipped n-gram counts, x10), its document frequencies taken from the references of the scored set — so
CIDEr depends on which videos are scored together. Every score is multiplied by 100, as papers report them.

The PTB tokenizer and METEOR are Java programs in pycocoevalcap's package. We run the *same jars with the same
arguments and the same line protocol* through our own small drivers instead of pycocoevalcap's wrappers, because
those can hang or fail in ways a user cannot recover from: its METEOR wrapper pipes stderr without ever reading
it and blocks on ``readline`` forever if the JVM stalls, and its ``__del__`` re-acquires a lock an exception may
still hold; its tokenizer writes a temporary file into the installed package (fails on a read-only install).
Ours read stdout on a thread with a deadline, send stderr to a file, and kill the JVM on timeout or error. The
pure-Python scorers (BLEU, ROUGE-L, CIDEr) are pycocoevalcap's own classes. Tests compare both drivers with
pycocoevalcap's wrappers on the same input.

Per video (:func:`caption_scores`), for confidence intervals over videos: every corpus score is a function of sums
of per-video statistics. BLEU: n-gram matches and totals, hypothesis length and closest reference length, as
``BleuScorer.compute_score`` sums them (:func:`bleu_from_sums`). ROUGE-L and CIDEr: pycocoevalcap averages a score
per video (CIDEr's document frequencies come from the references of the whole scored set and stay fixed).
METEOR: the jar's corpus score is Meteor 1.5's ``computeMetrics`` on the sum of the per-segment statistics lines
it returns (``MeteorStats.addStats``, which leaves out the chunk of a segment that matches its reference
perfectly); :func:`meteor_from_sums` is that formula with the ``-l en`` parameters, and tests check it against the
jar's own corpus score.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videoadapt.errors import VideoadaptError

CONVENTIONS = {
    "pipeline": "pycocoevalcap COCOEvalCap: PTBTokenizer, Bleu(4) 'closest', Meteor 1.5, Rouge-L, CIDEr-D "
    "(document frequencies from the scored references)",
    "units": "x100",
}

JAVA_INSTALL_HINT = (
    "METEOR and the PTB tokenizer of pycocoevalcap are Java programs; install a Java runtime "
    "(e.g. `apt-get install default-jre-headless`) and make sure `java` is on PATH"
)
DEFAULT_TIMEOUT_S = 600.0


def caption_metrics(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr (x100) of one predicted caption per video against its references.

    Args:
        predictions: video id -> predicted caption.
        references: video id -> one or more reference captions; the ids must equal those of ``predictions``.
        timeout: seconds each Java step (tokenising, METEOR) may take before its JVM is killed and an error
            raised.

    Returns:
        ``{"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}``, each x100.

    Raises:
        VideoadaptError: ids differ (the first missing/extra ids are named), a video has no reference, a
            caption is not a string, Java is missing, or a Java step fails or times out.
    """
    return caption_scores(predictions, references, timeout=timeout).metrics()


BLEU_N = 4
# Per video: hypothesis length, closest reference length, then n-gram totals ("guess") and matches ("correct").
BLEU_COLUMNS = ("testlen", "reflen", *(f"guess{n}" for n in range(1, 5)), *(f"correct{n}" for n in range(1, 5)))
METEOR_COLUMNS = 23  # Meteor 1.5's statistics line (MeteorStats.STATS_LENGTH)


@dataclass(frozen=True)
class CaptionScores:
    """pycocoevalcap's scores of a scored set and each video's share of them, videos in the order of ``ids``.

    ``bleu``: the corpus BLEU-1..4 of ``Bleu(4)``; ``bleu_stats`` ``[N, 10]`` (:data:`BLEU_COLUMNS`). ``rouge``,
    ``cider``: per-video scores (their corpus value is the mean). ``meteor``: the jar's corpus score;
    ``meteor_segments`` its per-video scores; ``meteor_stats`` ``[N, 23]`` its per-video statistics as the corpus
    score sums them (chunks of a perfectly matching segment set to 0, as ``MeteorStats.addStats`` does). All 0–1.
    """

    ids: list[str]
    bleu: tuple[float, ...]
    bleu_stats: np.ndarray
    rouge: np.ndarray
    cider: np.ndarray
    meteor: float
    meteor_segments: np.ndarray
    meteor_stats: np.ndarray

    def metrics(self) -> dict[str, float]:
        """The corpus scores x100, as :func:`caption_metrics` returns them."""
        result = {f"BLEU-{n}": 100.0 * float(self.bleu[n - 1]) for n in range(1, BLEU_N + 1)}
        result.update(
            {
                "METEOR": 100.0 * float(self.meteor),
                "ROUGE-L": 100.0 * float(np.mean(self.rouge)),
                "CIDEr": 100.0 * float(np.mean(self.cider)),
            }
        )
        return result


def caption_scores(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> CaptionScores:
    """Everything :func:`caption_metrics` computes, per video as well (see :class:`CaptionScores`); the arguments
    and errors are those of :func:`caption_metrics`."""
    _check(predictions, references)
    java = find_java()
    # Keys as strings, in one fixed order, as COCOEvalCap keys both dicts by image id.
    ids = [str(key) for key in references]
    gts = tokenize({str(k): list(v) for k, v in references.items()}, java=java, timeout=timeout)
    res = tokenize({str(k): [predictions[k]] for k in references}, java=java, timeout=timeout)
    gts = {key: gts[key] for key in ids}
    res = {key: res[key] for key in ids}

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    bleu, _ = Bleu(BLEU_N).compute_score(gts, res, verbose=0)  # verbose=0: BLEU otherwise prints to stdout
    _, rouge = Rouge().compute_score(gts, res)
    _, cider = Cider().compute_score(gts, res)
    meteor_stats, meteor_segments, meteor = meteor_statistics(gts, res, java=java, timeout=timeout)
    return CaptionScores(
        ids=ids,
        bleu=tuple(float(b) for b in bleu),
        bleu_stats=bleu_statistics(gts, res),
        rouge=np.asarray(rouge, dtype=np.float64),
        cider=np.asarray(cider, dtype=np.float64),
        meteor=meteor,
        meteor_segments=meteor_segments,
        meteor_stats=meteor_stats,
    )


def bleu_statistics(gts: Mapping[str, Sequence[str]], res: Mapping[str, Sequence[str]]) -> np.ndarray:
    """``[N, 10]`` per video (:data:`BLEU_COLUMNS`), counted by pycocoevalcap's own ``cook_refs``/``cook_test`` with
    the "closest" reference length (the shorter one when two are equally close) that ``Bleu`` asks for."""
    from pycocoevalcap.bleu.bleu_scorer import cook_refs, cook_test

    rows = []
    for key in gts:
        cooked = cook_test(res[key][0], cook_refs(list(gts[key]), n=BLEU_N), eff="closest", n=BLEU_N)
        rows.append([cooked["testlen"], cooked["reflen"], *cooked["guess"], *cooked["correct"]])
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(BLEU_COLUMNS))


def bleu_from_sums(sums: np.ndarray) -> np.ndarray:
    """Corpus BLEU-1..4 (0–1) from summed :func:`bleu_statistics` ``[..., 10]`` -> ``[..., 4]``, with
    ``BleuScorer.compute_score``'s arithmetic: the geometric mean of the clipped n-gram precisions (smoothed by
    1e-15 / 1e-9 as there), times the brevity penalty ``exp(1 - reflen / testlen)`` when the summed hypothesis
    length is below the summed closest reference length."""
    sums = np.asarray(sums, dtype=np.float64)
    tiny, small = 1e-15, 1e-9
    testlen, reflen = sums[..., 0], sums[..., 1]
    guess, correct = sums[..., 2 : 2 + BLEU_N], sums[..., 2 + BLEU_N : 2 + 2 * BLEU_N]
    product = np.ones_like(testlen)
    scores = []
    for k in range(BLEU_N):
        product = product * ((correct[..., k] + tiny) / (guess[..., k] + small))
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (testlen + tiny) / (reflen + small)
    with np.errstate(divide="ignore", over="ignore"):
        penalty = np.where(ratio < 1, np.exp(1 - 1 / ratio), 1.0)
    return np.stack([score * penalty for score in scores], axis=-1)


# Meteor 1.5 with `-l en` (the "ranking" task, as the jar prints): alpha, beta, gamma, delta and the weights of its
# four matching stages (exact, stem, synonym, paraphrase).
METEOR_ALPHA, METEOR_BETA, METEOR_GAMMA, METEOR_DELTA = 0.85, 0.2, 0.6, 0.75
METEOR_WEIGHTS = (1.0, 0.6, 0.8, 0.6)


def meteor_from_sums(sums: np.ndarray) -> np.ndarray:
    """Meteor 1.5's score (0–1) from summed statistics lines ``[..., 23]`` -> ``[...]``: ``MeteorScorer.computeMetrics``
    in the jar's order of operations. Columns: test and reference length, test and reference function words, then
    per stage (test content, reference content, test function, reference function) matches, then chunks, test and
    reference word matches."""
    s = np.asarray(sums, dtype=np.float64)
    test_length, ref_length, test_function, ref_function = (s[..., i] for i in range(4))
    stage = [[s[..., 4 + 4 * i + j] for j in range(4)] for i in range(len(METEOR_WEIGHTS))]
    chunks, test_words, ref_words = s[..., 20], s[..., 21], s[..., 22]
    delta = METEOR_DELTA
    test_weighted_length = delta * (test_length - test_function) + (1.0 - delta) * test_function
    ref_weighted_length = delta * (ref_length - ref_function) + (1.0 - delta) * ref_function
    test_matches = np.zeros_like(test_length)
    ref_matches = np.zeros_like(test_length)
    for i, weight in enumerate(METEOR_WEIGHTS):
        test_matches = test_matches + stage[i][0] * weight * delta
    for i, weight in enumerate(METEOR_WEIGHTS):
        ref_matches = ref_matches + stage[i][1] * weight * delta
    for i, weight in enumerate(METEOR_WEIGHTS):
        test_matches = test_matches + stage[i][2] * weight * (1.0 - delta)
    for i, weight in enumerate(METEOR_WEIGHTS):
        ref_matches = ref_matches + stage[i][3] * weight * (1.0 - delta)
    test_total = sum(stage[i][0] + stage[i][2] for i in range(len(METEOR_WEIGHTS)))
    ref_total = sum(stage[i][1] + stage[i][3] for i in range(len(METEOR_WEIGHTS)))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = test_matches / test_weighted_length
        recall = ref_matches / ref_weighted_length
        f_mean = 1.0 / (((1.0 - METEOR_ALPHA) / precision) + (METEOR_ALPHA / recall))
        perfect = (test_total == test_length) & (ref_total == ref_length) & (chunks == 1)
        fragmentation = np.where(perfect, 0.0, chunks / ((test_words + ref_words) / 2))
        penalty = METEOR_GAMMA * np.power(fragmentation, METEOR_BETA)
        score = f_mean * (1.0 - penalty)
    return np.where(np.isnan(score), 0.0, np.maximum(score, 0.0))


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise VideoadaptError(f"Java not found. {JAVA_INSTALL_HINT}")
    return java


def _package_dir() -> Path:
    import pycocoevalcap

    # pycocoevalcap is a namespace package (no __init__.py), so __file__ is None.
    return Path(next(iter(pycocoevalcap.__path__)))


def tokenize(
    captions: Mapping[str, Sequence[str]], *, java: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
) -> dict[str, list[str]]:
    """pycocoevalcap's ``PTBTokenizer.tokenize`` on plain strings (id -> captions), with a timeout.

    Same jar, arguments and post-processing (lines preserved, lower-cased, pycocoevalcap's punctuation tokens
    dropped); the sentences go through a temporary file outside the installed package.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, STANFORD_CORENLP_3_4_1_JAR

    java = java or find_java()
    owners = [key for key, texts in captions.items() for _ in texts]
    sentences = "\n".join(text.replace("\n", " ") for texts in captions.values() for text in texts)
    jar = _package_dir() / "tokenizer" / STANFORD_CORENLP_3_4_1_JAR
    with tempfile.TemporaryDirectory(prefix="videoadapt-ptb-") as tmp:
        path = Path(tmp) / "sentences.txt"
        path.write_bytes(sentences.encode())
        cmd = [java, "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]
        try:
            done = subprocess.run(
                [*cmd, str(path)], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as error:
            raise VideoadaptError(f"the PTB tokenizer (Java) did not finish within {timeout:g} s") from error
    if done.returncode != 0:
        raise VideoadaptError(
            f"the PTB tokenizer (Java) failed with exit status {done.returncode}: {_tail(done.stderr.decode())}"
        )
    lines = done.stdout.decode().split("\n")
    if len(lines) < len(owners):
        raise VideoadaptError(f"the PTB tokenizer returned {len(lines)} lines for {len(owners)} captions")
    out: dict[str, list[str]] = {}
    for key, line in zip(owners, lines, strict=False):
        out.setdefault(key, []).append(" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS))
    return out


def meteor_score(
    gts: Mapping[str, Sequence[str]],
    res: Mapping[str, Sequence[str]],
    *,
    java: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> float:
    """Corpus METEOR (0–1) as pycocoevalcap's ``Meteor.compute_score``, run under a deadline."""
    return meteor_statistics(gts, res, java=java, timeout=timeout)[2]


def meteor_statistics(
    gts: Mapping[str, Sequence[str]],
    res: Mapping[str, Sequence[str]],
    *,
    java: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> tuple[np.ndarray, np.ndarray, float]:
    """METEOR as pycocoevalcap's ``Meteor.compute_score`` runs it, with what it returns per video: the summable
    statistics ``[N, 23]`` (chunks of a perfectly matching segment set to 0, as the jar's corpus sum leaves them
    out), the per-video scores ``[N]`` and the corpus score (0–1), in the order of ``gts``.

    Same jar and arguments (``-stdio -l en -norm``) and the same protocol: one ``SCORE ||| refs ||| hypothesis``
    line per video returns its statistics, then one ``EVAL ||| stats ||| ...`` line returns a score per video and
    the corpus score (the last line).
    """
    from pycocoevalcap.meteor.meteor import METEOR_JAR

    java = java or find_java()
    meteor_dir = _package_dir() / "meteor"
    cmd = [java, "-jar", "-Xmx2G", METEOR_JAR, "-", "-", "-stdio", "-l", "en", "-norm"]
    ids = list(gts)
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(cmd, cwd=meteor_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        lines: queue.Queue[bytes | None] = queue.Queue()

        def pump() -> None:  # drains stdout so that neither side can block on a full pipe
            assert process.stdout is not None
            for raw in process.stdout:
                lines.put(raw)
            lines.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()

        def read() -> str:
            try:
                raw = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise VideoadaptError(f"METEOR (Java) did not answer within {timeout:g} s") from None
            if raw is None:
                process.wait()
                stderr.seek(0)
                raise VideoadaptError(
                    f"METEOR (Java) stopped with exit status {process.returncode}: "
                    f"{_tail(stderr.read().decode(errors='replace'))}"
                )
            return raw.decode().strip()

        def write(line: str) -> None:
            assert process.stdin is not None
            try:
                process.stdin.write(f"{line}\n".encode())
                process.stdin.flush()
            except BrokenPipeError:
                pass  # the JVM is gone; read() reports its exit status and stderr

        try:
            for key in ids:
                # As pycocoevalcap: "|||" is the field separator, so it is removed from the hypothesis.
                hypothesis = res[key][0].replace("|||", "").replace("  ", " ")
                write(" ||| ".join(("SCORE", " ||| ".join(gts[key]), hypothesis)))
            stats = [read() for _ in ids]
            write("EVAL ||| " + " ||| ".join(stats))
            segments = [_number(read(), "a segment score") for _ in ids]
            score = _number(read(), "a score")
        finally:
            if process.stdin is not None:
                try:
                    process.stdin.close()
                except BrokenPipeError:
                    pass
            process.kill()
            process.wait()
            reader.join(timeout=5)  # the killed JVM's stdout reaches EOF; then the pipe can be closed
            if process.stdout is not None and not reader.is_alive():
                process.stdout.close()
    return _summable(stats), np.asarray(segments, dtype=np.float64), score


def _number(line: str, what: str) -> float:
    try:
        return float(line)
    except ValueError:
        raise VideoadaptError(f"METEOR (Java) returned {line!r} instead of {what}") from None


def _summable(lines: Sequence[str]) -> np.ndarray:
    """Statistics lines as numbers ``[N, 23]``, with the chunk of a perfect segment (every word matched, one chunk)
    set to 0: the jar's corpus sum (``MeteorStats.addStats``) leaves it out, so that a perfect segment adds no
    fragmentation."""
    try:
        rows = np.asarray([[float(v) for v in line.split()] for line in lines], dtype=np.float64)
    except ValueError:
        raise VideoadaptError(f"METEOR (Java) returned statistics that are not numbers: {lines[0]!r}") from None
    rows = rows.reshape(len(lines), -1)
    if rows.shape[1] != METEOR_COLUMNS:
        raise VideoadaptError(f"METEOR (Java) returned {rows.shape[1]} statistics per line, not {METEOR_COLUMNS}")
    test_total = rows[:, 4:20:2].sum(axis=1)  # test content and function matches of the four stages
    ref_total = rows[:, 5:20:2].sum(axis=1)
    perfect = (test_total == rows[:, 0]) & (ref_total == rows[:, 1]) & (rows[:, 20] == 1)
    rows[perfect, 20] = 0.0
    return rows


def _tail(text: str, limit: int = 500) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _check(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> None:
    missing = [key for key in references if key not in predictions]
    extra = [key for key in predictions if key not in references]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} video(s) without a prediction (first: {_first(missing)})")
        if extra:
            parts.append(f"{len(extra)} predicted video(s) without references (first: {_first(extra)})")
        raise VideoadaptError("captioning ids do not match: " + "; ".join(parts))
    if not references:
        raise VideoadaptError("no captions to score")
    for key, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, Sequence) or len(refs) == 0:
            raise VideoadaptError(f"video {key!r}: references must be a non-empty list of strings")
        if not all(isinstance(r, str) for r in refs):
            raise VideoadaptError(f"video {key!r}: every reference must be a string")
        if not isinstance(predictions[key], str):
            raise VideoadaptError(f"video {key!r}: the prediction must be a string")


def _first(ids: Sequence[object], n: int = 3) -> str:
    return ", ".join(repr(i) for i in ids[:n])
