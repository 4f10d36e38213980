"""Video question answering accuracy: multiple choice and open-ended exact match.

Open-ended answers (MSRVTT-QA, MSVD-QA: one reference answer per question) are compared by exact match after the
answer normalisation of the official VQA evaluation script (``vqaEval.py``, ``processPunctuation`` +
``processDigitArticle``), applied to both the prediction and the reference:

1. newlines and tabs become spaces, the ends are stripped;
2. punctuation: each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted when it touches a space in the
   text (or the text has a digit,digit comma), otherwise replaced by a space; a period not followed by a digit is
   deleted (the script passes ``re.UNICODE`` as the *count* argument of ``re.sub``, so at most 32 periods go —
   kept for fidelity);
3. lower-case, split on whitespace, number words zero..ten and "none" become digits, the articles a/an/the are
   dropped, known contractions written without apostrophe get it back ("isnt" -> "isn't"), words joined by one
   space.

Accuracies are percentages (0–100).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from videoadapt.errors import VideoadaptError

CONVENTIONS = {
    "open_ended": "exact match after VQA answer normalisation (vqaEval.py) of prediction and reference",
    "multiple_choice": "predicted candidate index == gold index",
    "units": "percent",
}

# The script's list; each character is tested against the original text, so their order does not matter.
_PUNCTUATION = list(';/[]"{}()=+\\_-><@`,?!')
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
# vqaEval.py writes "(?!<=\d)(\.)(?!\d)": its first group is a mistyped look-behind that, as a look-ahead at a
# ".", can never match "<=", so it is always true; the effective pattern is "a period not followed by a digit".
_PERIOD = re.compile(r"\.(?!\d)")
_NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})

# The contractions vqaEval.py restores. Its table maps each of these forms, with exactly one of its apostrophes
# left out, back to the form (e.g. "couldnt've" and "couldn'tve" -> "couldn't've"); we generate it that way.
# Its capitalised entries ("I'm", ...) can never match the lower-cased words, exactly as in the script.
_CONTRACTED = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't he'd he'd've
he's how'd how'll how's I'd've I'm I've isn't it'd it'd've it'll ma'am mightn't mightn't've might've mustn't
must've needn't not've o'clock oughtn't 'ow's'at shan't she'd've should've shouldn't shouldn't've somebody'd've
somebody'll somebody's someone'd someone'd've someone'll someone's something'd something'd've something'll that's
there'd there'd've there're there's they'd they'd've they'll they're they've 'twas wasn't we'd've we've weren't
what'll what're what's what've when's where'd where's where've who'd who'd've who'll who's who've why'll why're
why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've
""".split()


def _contraction_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for form in _CONTRACTED:
        for i, char in enumerate(form):
            if char == "'":
                table[form[:i] + form[i + 1 :]] = form
    # The script's one backwards entry (it has no "somebodyd" -> "somebody'd"); reproduced for fidelity.
    table["somebody'd"] = "somebodyd"
    return table


_CONTRACTIONS = _contraction_table()


def normalize_answer(text: str) -> str:
    """Normalise an answer as the official VQA evaluation does (see the module docstring).

    >>> normalize_answer("Two dogs.")
    '2 dogs'
    >>> normalize_answer("a cat")
    'cat'
    >>> normalize_answer("isnt")
    "isn't"
    """
    text = text.replace("\n", " ").replace("\t", " ").strip()
    # processPunctuation: the test looks at the text as it was before any replacement, as the script does.
    out = text
    has_digit_comma = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for p in _PUNCTUATION:
        if p + " " in text or " " + p in text or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD.sub("", out, count=re.UNICODE)
    # processDigitArticle
    words = [_NUMBERS.get(word, word) for word in out.lower().split()]
    words = [_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES]
    return " ".join(words)


def multiple_choice_accuracy(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Percentage of questions whose predicted candidate index equals the gold index.

    A prediction outside the candidates (e.g. -1 for "no answer") is simply wrong.
    """
    predicted = np.asarray(predicted)
    gold = np.asarray(gold)
    if predicted.shape != gold.shape or predicted.ndim != 1 or predicted.size == 0:
        raise VideoadaptError(
            f"multiple-choice predictions and gold must be equal-length non-empty 1-D arrays, "
            f"got shapes {predicted.shape} and {gold.shape}"
        )
    if predicted.dtype.kind not in "iu" or gold.dtype.kind not in "iu":
        raise VideoadaptError("multiple-choice predictions and gold must be integer candidate indices")
    return {"accuracy": 100.0 * float((predicted == gold).mean())}


def open_ended_accuracy(predicted: Sequence[str], gold: Sequence[str]) -> dict[str, float]:
    """Percentage of questions whose normalised predicted answer equals the normalised reference answer.

    One reference answer per question, as MSRVTT-QA and MSVD-QA are scored (not VQA's min(#humans/3, 1)).
    """
    if len(predicted) != len(gold) or len(gold) == 0:
        raise VideoadaptError(
            f"open-ended predictions and gold must be equal-length and non-empty, got {len(predicted)} and {len(gold)}"
        )
    for name, answers in (("prediction", predicted), ("gold answer", gold)):
        for i, answer in enumerate(answers):
            if not isinstance(answer, str):
                raise VideoadaptError(f"{name} {i} must be a string, got {type(answer).__name__}")
    hits = sum(normalize_answer(p) == normalize_answer(g) for p, g in zip(predicted, gold, strict=True))
    return {"accuracy": 100.0 * hits / len(gold)}
