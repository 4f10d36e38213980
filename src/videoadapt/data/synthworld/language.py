"""Language ground truth: captions, event queries and QA for videos, static captions for images.

Texts are built from the final (possibly reversed) states, so a played-backwards video is described as what it
shows. Every video has distinct shapes, so "the star" always names exactly one object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from videoadapt.data.synthworld.samples import ImageObject, SynthTrack
from videoadapt.data.synthworld.vocabulary import (
    ACTION_CLASSES,
    ACTIONS,
    COLOUR_CHANGES,
    COLOUR_NAMES,
    COLOUR_SYNONYMS,
    COUNT_WORDS,
    MOVE_DIRECTIONS,
    POSITION_PHRASES,
    SHAPE_SYNONYMS,
    SIZE_SYNONYMS,
    position_of,
)

_MOVE_WORDS = {
    "right": ("to the right", "right", "rightwards"),
    "left": ("to the left", "left", "leftwards"),
    "up": ("up", "up", "upwards"),
    "down": ("down", "down", "downwards"),
    "up_left": ("up and to the left", "up and left", "towards the top left"),
    "up_right": ("up and to the right", "up and right", "towards the top right"),
    "down_left": ("down and to the left", "down and left", "towards the bottom left"),
    "down_right": ("down and to the right", "down and right", "towards the bottom right"),
}


def _verb_phrases(action: str) -> list[str]:
    """Paraphrases of what the actor(s) do; the first is the canonical one. ``{a}``/``{b}`` are colours."""
    if action.startswith("move_"):
        canonical, short, adverb = _MOVE_WORDS[action.removeprefix("move_")]
        return [f"moves {canonical}", f"slides {short}", f"travels {adverb}", f"drifts {canonical}"]
    if action in COLOUR_CHANGES:
        return [
            "changes from {a} to {b}",
            "turns from {a} to {b}",
            "goes from {a} to {b}",
            "shifts colour from {a} to {b}",
        ]
    return {
        "grow": ["grows", "gets bigger", "expands", "becomes larger"],
        "shrink": ["shrinks", "gets smaller", "contracts", "becomes smaller"],
        "appear": ["appears", "comes into view", "pops up", "shows up"],
        "disappear": ["disappears", "vanishes", "goes out of view", "disappears from view"],
        "rotate_clockwise": ["rotates clockwise", "spins clockwise", "turns clockwise", "twists clockwise"],
        "rotate_counterclockwise": [
            "rotates counterclockwise",
            "spins anticlockwise",
            "turns counter-clockwise",
            "twists anticlockwise",
        ],
        "bounce": [
            "bounces off the edge",
            "bounces off the wall",
            "rebounds off the border",
            "hits the edge and bounces back",
        ],
        "approach": [
            "move towards each other",
            "approach each other",
            "come closer together",
            "draw near each other",
        ],
        "separate": ["move apart", "move away from each other", "separate", "drift apart"],
        "collide": [
            "collide and bounce apart",
            "bump into each other",
            "crash into each other and rebound",
            "meet and bounce back",
        ],
    }[action]


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _word(rng: np.random.Generator | None, name: str, synonyms: dict[str, tuple[str, ...]]) -> str:
    """``name`` itself without an rng, else the name or one of its synonyms."""
    return name if rng is None else _pick(rng, (name, *synonyms[name]))


def noun_phrase(
    track: SynthTrack | ImageObject,
    *,
    article: str = "the",
    colour: bool = True,
    size: bool = False,
    rng: np.random.Generator | None = None,
) -> str:
    """ "the red star", "a big crimson star", ... (synonyms only when ``rng`` is given)."""
    shape = track.category if isinstance(track, SynthTrack) else track.shape
    words = [article]
    if size:
        words.append(_word(rng, track.size, SIZE_SYNONYMS))
    if colour:
        words.append(_word(rng, track.colour, COLOUR_SYNONYMS))
    words.append(_word(rng, shape, SHAPE_SYNONYMS))
    if article == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words)


def _sentence(action: str, phrase: str, subject: list[str], rng: np.random.Generator | None) -> str:
    if ACTION_CLASSES[action].actors == 2:
        return f"{subject[0]} and {subject[1]} {phrase}"
    if action in COLOUR_CHANGES:
        a, b = COLOUR_CHANGES[action]
        phrase = phrase.format(a=_word(rng, a, COLOUR_SYNONYMS), b=_word(rng, b, COLOUR_SYNONYMS))
    return f"{subject[0]} {phrase}"


def describe_event(
    action: str,
    actors: Sequence[SynthTrack],
    *,
    article: str = "the",
    rng: np.random.Generator | None = None,
    size: bool = False,
) -> str:
    """One sentence for the event; canonical wording without ``rng``, a random paraphrase with it."""
    phrases = _verb_phrases(action)
    phrase = phrases[0] if rng is None else _pick(rng, phrases)
    # A colour-changing actor is named by shape alone: its colour is what the sentence is about.
    colour = action not in COLOUR_CHANGES
    subject = [noun_phrase(t, article=article, colour=colour, size=size, rng=rng) for t in actors]
    return _sentence(action, phrase, subject, rng)


def _context(distractors: Sequence[SynthTrack], size: int, rng: np.random.Generator) -> str:
    if not distractors:
        return _pick(rng, ("on its own", "alone in the scene", "with nothing else around"))
    parts = []
    for t in distractors:
        where = POSITION_PHRASES[position_of(*t.center[0], size)]
        parts.append(f"{noun_phrase(t, article='a', size=bool(rng.random() < 0.5), rng=rng)} {where}")
    stays = "stays still" if len(parts) == 1 else "stay still"
    return f"while {_join(parts)} {stays}"


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def video_captions(
    action: str,
    actors: Sequence[SynthTrack],
    distractors: Sequence[SynthTrack],
    size: int,
    rng: np.random.Generator,
) -> list[str]:
    """Four captions: canonical, two paraphrases with synonyms, one that also describes the static scene."""
    captions = [describe_event(action, actors, article="a")]
    for _ in range(2):
        captions.append(
            describe_event(action, actors, article=_pick(rng, ("a", "the")), rng=rng, size=bool(rng.random() < 0.5))
        )
    captions.append(f"{describe_event(action, actors, article='a', rng=rng)} {_context(distractors, size, rng)}")
    return captions


def event_query(action: str, actors: Sequence[SynthTrack]) -> str:
    """The temporal-grounding query: the canonical sentence with definite articles."""
    return describe_event(action, actors, article="the")


def _option_sentence(action: str, tracks: Sequence[SynthTrack], actors: Sequence[SynthTrack]) -> str:
    """A candidate answer "the star moves to the left": shape-only subjects, which are unique in a video."""
    n = ACTION_CLASSES[action].actors
    pool = list(actors) + [t for t in tracks if t not in actors]
    subject = [noun_phrase(t, colour=False) for t in pool[:n]]
    return _sentence(action, _verb_phrases(action)[0], subject, None)


def _hard_negative(action: str, actor: SynthTrack) -> str:
    """The time-reversal partner; for self-reverse classes the class that matches the event's first half."""
    partner = ACTION_CLASSES[action].partner
    if partner != action:
        return partner
    if action == "collide":
        return "approach"
    # bounce: the move along the first leg of the path
    step = np.diff(actor.center, axis=0)
    first = step[np.abs(step).sum(axis=1) > 0][0]
    for name, (dx, dy) in MOVE_DIRECTIONS.items():
        if (dx, dy) == (int(np.sign(round(first[0], 6))), int(np.sign(round(first[1], 6)))):
            return f"move_{name}"
    raise AssertionError(first)  # pragma: no cover


def _multiple_choice(
    rng: np.random.Generator, question: str, answer: str, negatives: list[str], pool: Sequence[str]
) -> dict[str, Any]:
    """Five options: the answer, the given hard negatives, then random distinct fillers from ``pool``."""
    options = [answer] + [n for n in negatives if n != answer]
    fillers = [p for p in pool if p not in options]
    for k in rng.permutation(len(fillers)):
        if len(options) == 5:
            break
        options.append(fillers[int(k)])
    order = rng.permutation(len(options))
    shuffled = [options[int(k)] for k in order]
    return {"question": question, "options": shuffled, "answer_index": shuffled.index(answer)}


def video_qa(
    action: str,
    tracks: Sequence[SynthTrack],
    actors: Sequence[SynthTrack],
    size: int,
    allowed_shapes: Sequence[str],
    rng: np.random.Generator,
) -> dict[str, list[dict[str, Any]]]:
    """Multiple-choice (5 options) and open-ended QA pairs; every open-ended answer is in ``ANSWER_VOCAB``."""
    actor = actors[0]
    distractors = [t for t in tracks if t.role == "distractor"]
    two = ACTION_CLASSES[action].actors == 2
    changes_colour = action in COLOUR_CHANGES
    count = COUNT_WORDS[len(tracks)]

    # --- multiple choice
    answer = _option_sentence(action, tracks, actors)
    hard = _option_sentence(_hard_negative(action, actor), tracks, actors)
    others = [_option_sentence(a, tracks, actors) for a in ACTIONS if ACTION_CLASSES[a].actors == 1 or two]
    mc = [_multiple_choice(rng, "what happens in the video?", answer, [hard], others)]
    mc.append(_multiple_choice(rng, "how many objects are in the video?", count, [], COUNT_WORDS[1:]))
    if changes_colour:
        first, last = COLOUR_CHANGES[action]
        mc.append(
            _multiple_choice(
                rng,
                f"what colour is the {actor.category} at the end of the video?",
                last,
                [first],
                COLOUR_NAMES,
            )
        )
    else:
        mc.append(_multiple_choice(rng, f"what colour is the {actor.category}?", actor.colour, [], COLOUR_NAMES))

    # --- open ended
    oe: list[dict[str, str]] = []
    if two:
        oe.append(
            {
                "question": f"what do the {actors[0].category} and the {actors[1].category} do?",
                "answer": action,
            }
        )
    elif action.startswith("move_"):
        oe.append(
            {
                "question": f"in which direction does the {actor.category} move?",
                "answer": action.removeprefix("move_").replace("_", " "),
            }
        )
    elif action.startswith("rotate_"):
        oe.append(
            {
                "question": f"in which direction does the {actor.category} rotate?",
                "answer": action.removeprefix("rotate_"),
            }
        )
    elif changes_colour:
        oe.append(
            {
                "question": f"what colour does the {actor.category} turn into?",
                "answer": COLOUR_CHANGES[action][1],
            }
        )
        oe.append(
            {
                "question": f"what colour is the {actor.category} at the beginning?",
                "answer": COLOUR_CHANGES[action][0],
            }
        )
    else:
        oe.append({"question": f"what does the {actor.category} do?", "answer": action})
    oe.append({"question": "how many objects are there?", "answer": count})
    oe.append({"question": "how many objects move or change?", "answer": COUNT_WORDS[len(actors)]})
    if distractors:
        d = distractors[int(rng.integers(len(distractors)))]
        oe.append({"question": f"where is the {d.category}?", "answer": position_of(*d.center[0], size)})
        oe.append({"question": f"what colour is the {d.category}?", "answer": d.colour})
        oe.append({"question": f"is the {d.category} large?", "answer": "yes" if d.size == "large" else "no"})
    stable = [t for t in tracks if len(t.colours) == 1]
    if stable and rng.random() < 0.5:
        t = stable[int(rng.integers(len(stable)))]
        oe.append({"question": f"is there a {t.colour} {t.category}?", "answer": "yes"})
    else:
        present = {t.category for t in tracks}
        absent = [s for s in allowed_shapes if s not in present]
        oe.append({"question": f"is there a {_pick(rng, COLOUR_NAMES)} {_pick(rng, absent)}?", "answer": "no"})
    unique = [t for t in stable if sum(o.colour == t.colour for o in tracks) == 1]
    if unique:
        t = unique[int(rng.integers(len(unique)))]
        oe.append({"question": f"what shape is the {t.colour} object?", "answer": t.category})
    return {"multiple_choice": mc, "open_ended": oe}


# --- images -------------------------------------------------------------------------------------------------


def image_caption(objects: Sequence[ImageObject], rng: np.random.Generator | None = None, lead: str = "") -> str:
    """E.g. "a large red star at the top left and a small blue circle at the bottom"; synonyms with ``rng``.

    The rng is consumed identically whatever the attributes are, so twins drawn with equal rngs differ only in
    the changed attribute's words.
    """
    parts = [f"{noun_phrase(o, article='a', size=True, rng=rng)} {POSITION_PHRASES[o.position]}" for o in objects]
    return lead + _join(parts)


def image_captions(objects: Sequence[ImageObject], rng: np.random.Generator) -> list[str]:
    leads = ("", "there is ", "a picture of ", "an image showing ")
    captions = [image_caption(objects)]
    for _ in range(3):
        captions.append(image_caption(objects, rng, lead=_pick(rng, leads)))
    return captions
