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
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

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

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)  # verbose=0: BLEU otherwise prints to stdout
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    meteor = meteor_score(gts, res, java=java, timeout=timeout)
    result = {f"BLEU-{n}": 100.0 * float(bleu[n - 1]) for n in range(1, 5)}
    result.update({"METEOR": 100.0 * float(meteor), "ROUGE-L": 100.0 * float(rouge), "CIDEr": 100.0 * float(cider)})
    return result


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
    """Corpus METEOR (0–1) as pycocoevalcap's ``Meteor.compute_score``, run under a deadline.

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
            for _ in ids:  # per-video scores, not used
                read()
            score_line = read()
            try:
                return float(score_line)
            except ValueError:
                raise VideoadaptError(f"METEOR (Java) returned {score_line!r} instead of a score") from None
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
