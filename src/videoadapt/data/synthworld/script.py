"""Scenes and scripts: which objects a video holds and how each one's state evolves frame by frame.

Only the *canonical* member of each reversal pair is scripted here; the world plays it backwards for the other
member, so both members share one frame distribution by construction. Actors are drawn last (on top);
distractors are static and placed away from the actors' paths, so the action label is unambiguous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from videoadapt.data.synthworld.render import ObjectStates
from videoadapt.data.synthworld.vocabulary import (
    ACTION_CLASSES,
    COLOUR_CHANGES,
    COLOUR_NAMES,
    COLOURS,
    MOVE_DIRECTIONS,
    POSITIONS,
    ROUND_SHAPES,
    SIZE_NAMES,
    SIZES,
)

MARGIN = 1.0
"""Pixels kept between an object's bounding circle and the frame edge."""


@dataclass
class ObjectPlan:
    shape: str
    role: str  # "actor" or "distractor"
    states: ObjectStates


@dataclass
class Script:
    objects: list[ObjectPlan]
    start: int
    """First frame of the event (the state still equals the initial state there)."""
    end: int
    """Last frame of the event (inclusive; the state reaches its final value there)."""


def event_span(rng: np.random.Generator, frames: int) -> tuple[int, int]:
    """An event lasting 3/8 to 3/4 of the clip (6–12 of 16 frames), placed uniformly; the draw is symmetric
    under time reversal (start ↔ frames - 1 - end)."""
    shortest = max(4, round(0.375 * frames))
    longest = max(shortest, round(0.75 * frames))
    length = int(rng.integers(shortest, longest + 1))
    start = int(rng.integers(0, frames - length + 1))
    return start, start + length - 1


def progress(frames: int, start: int, end: int) -> np.ndarray:
    """Linear ramp [T]: 0 up to ``start``, 1 from ``end`` on."""
    t = np.arange(frames, dtype=np.float64)
    return np.clip((t - start) / (end - start), 0.0, 1.0)


def _radius(size_name: str, size: int) -> float:
    return SIZES[size_name] * size


def _start_1d(rng: np.random.Generator, radius: float, size: int, delta: float) -> float:
    """A start coordinate such that an object of ``radius`` stays inside the frame at start, start + delta."""
    lo = radius + MARGIN + max(0.0, -delta)
    hi = size - radius - MARGIN - max(0.0, delta)
    return float(rng.uniform(lo, hi)) if hi > lo else (lo + hi) / 2


def _states(
    frames: int,
    center: np.ndarray,
    radius: np.ndarray | float,
    angle: np.ndarray | float,
    rgb: np.ndarray | tuple[int, int, int],
) -> ObjectStates:
    center = np.broadcast_to(np.asarray(center, np.float64), (frames, 2)).copy()
    radius = np.broadcast_to(np.asarray(radius, np.float64), (frames,)).copy()
    angle = np.broadcast_to(np.asarray(angle, np.float64), (frames,)).copy()
    rgb = np.broadcast_to(np.asarray(rgb, np.uint8), (frames, 3)).copy()
    return ObjectStates(center, radius, angle, rgb)


def _pick(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def script_video(
    rng: np.random.Generator, action: str, shapes: tuple[str, ...], size: int, frames: int, n_objects: int
) -> Script:
    """Script a video of the canonical ``action`` with ``n_objects`` objects (fewer if distractors do not fit)
    drawn from ``shapes``; every object has a distinct shape, so "the star" always names one object."""
    cls = ACTION_CLASSES[action]
    assert cls.canonical, f"{action} is played backwards from {cls.partner}, not scripted"
    start, end = event_span(rng, frames)
    p = progress(frames, start, end)
    order = [shapes[i] for i in rng.permutation(len(shapes))]
    if action.startswith("rotate"):
        # Rotation of a round shape is invisible, so the actor must come first among the non-round shapes.
        k = next(i for i, s in enumerate(order) if s not in ROUND_SHAPES)
        order.insert(0, order.pop(k))
    actors = _script_actors(rng, action, order[: cls.actors], size, frames, p, end - start)
    distractors = _place_distractors(rng, order[cls.actors : n_objects], actors, size, frames)
    return Script(objects=distractors + actors, start=start, end=end)


def _script_actors(
    rng: np.random.Generator,
    action: str,
    shapes: list[str],
    size: int,
    frames: int,
    p: np.ndarray,
    steps: int,
) -> list[ObjectPlan]:
    angle0 = rng.uniform(0.0, 2 * math.pi, size=len(shapes))
    colours = [_pick(rng, COLOUR_NAMES) for _ in shapes]
    sizes = [_pick(rng, SIZE_NAMES) for _ in shapes]
    if action == "grow":
        sizes[0] = "small"
    radii = [_radius(s, size) for s in sizes]
    rgb: list[np.ndarray | tuple[int, int, int]] = [COLOURS[c] for c in colours]

    if action.startswith("move_"):
        dx, dy = MOVE_DIRECTIONS[action.removeprefix("move_")]
        span = rng.uniform(0.35, 0.55) if dx == 0 or dy == 0 else rng.uniform(0.3, 0.45)
        delta = np.array([dx, dy], np.float64) * span * size
        c0 = np.array([_start_1d(rng, radii[0], size, d) for d in delta])
        center = c0 + p[:, None] * delta
        return [ObjectPlan(shapes[0], "actor", _states(frames, center, radii[0], angle0[0], rgb[0]))]

    if action == "bounce":
        return [ObjectPlan(shapes[0], "actor", _bounce(rng, radii[0], size, frames, p, angle0[0], rgb[0]))]

    if action in ("approach", "collide"):
        return _pair_motion(rng, action, shapes, radii, rgb, angle0, size, frames, p)

    # Remaining single-actor events change the object in place.
    cell_center = _cell_center(rng, int(rng.integers(9)), size)
    center = _clamp_inside(cell_center, max(radii[0], _radius("large", size)), size)
    radius: np.ndarray | float = radii[0]
    angle: np.ndarray | float = angle0[0]
    colour: np.ndarray | tuple[int, int, int] = rgb[0]
    if action == "grow":
        small, large = _radius("small", size), _radius("large", size)
        radius = small + p * (large - small)
    elif action == "appear":
        # Zooms in from nothing; the frames before (and at) the start hold no object at all.
        radius = p * radii[0]
    elif action == "rotate_clockwise":
        step = math.radians(rng.uniform(12.0, 20.0))  # < half of any symmetry period (60°), so never ambiguous
        angle = angle0[0] + p * step * steps
    elif action in COLOUR_CHANGES:
        first, last = COLOUR_CHANGES[action]
        a = np.asarray(COLOURS[first], np.float64)
        b = np.asarray(COLOURS[last], np.float64)
        colour = np.rint(a + p[:, None] * (b - a)).astype(np.uint8)
    else:  # pragma: no cover - every canonical class is handled above
        raise AssertionError(action)
    return [ObjectPlan(shapes[0], "actor", _states(frames, center, radius, angle, colour))]


def _bounce(
    rng: np.random.Generator,
    radius: float,
    size: int,
    frames: int,
    p: np.ndarray,
    angle: float,
    rgb: tuple[int, int, int] | np.ndarray,
) -> ObjectStates:
    """Travel towards a wall, touch it and come back: the velocity component normal to the wall flips once."""
    dx, dy = MOVE_DIRECTIONS[_pick(rng, tuple(MOVE_DIRECTIONS))]
    axes = [a for a, d in ((0, dx), (1, dy)) if d != 0]
    axis = axes[int(rng.integers(len(axes)))]
    sign = (dx, dy)[axis]
    wall = size - radius - MARGIN if sign > 0 else radius + MARGIN
    travel = rng.uniform(0.45, 0.7) * size
    room = size - 2 * (radius + MARGIN)
    to_wall = min(rng.uniform(0.3, 0.7) * travel, room)
    back = min(travel - to_wall, room)
    travel = to_wall + back
    center = np.empty((frames, 2))
    center[:, axis] = wall - sign * np.abs(to_wall - travel * p)
    other = 1 - axis
    if (dx, dy)[other] != 0:
        delta = (dx, dy)[other] * rng.uniform(0.2, 0.35) * size
        center[:, other] = _start_1d(rng, radius, size, delta) + p * delta
    else:
        center[:, other] = _start_1d(rng, radius, size, 0.0)
    return _states(frames, center, radius, angle, rgb)


def _pair_motion(
    rng: np.random.Generator,
    action: str,
    shapes: list[str],
    radii: list[float],
    rgb: list,
    angle0: np.ndarray,
    size: int,
    frames: int,
    p: np.ndarray,
) -> list[ObjectPlan]:
    """Two objects moving symmetrically along one line: approach (to a gap) or collide (touch, rebound)."""
    ra, rb = radii[0], radii[1]
    room = size - ra - rb - 2 * MARGIN  # the largest centre offset along one axis that fits both objects
    touch = 0.95 * (ra + rb)
    near = 1.25 * (ra + rb) if action == "approach" else touch
    for _ in range(200):
        theta = rng.uniform(0.0, 2 * math.pi)
        n = np.array([math.cos(theta), math.sin(theta)])
        far_max = min(room / max(abs(n[0]), 1e-9), room / max(abs(n[1]), 1e-9), near + 0.4 * size)
        far_min = near + 0.2 * size
        if far_max >= far_min:
            break
    else:  # pragma: no cover - only for frames far smaller than the supported minimum
        raise RuntimeError("cannot fit a two-object event in the frame")
    d0 = rng.uniform(far_min, far_max)
    if action == "approach":
        dist = d0 + p * (near - d0)
    else:
        d1 = rng.uniform(far_min, far_max)
        total = (d0 - near) + (d1 - near)
        dist = near + np.abs((d0 - near) - total * p)
    dmax = float(dist.max())
    mid = np.empty(2)
    for k in range(2):
        half = n[k] * dmax / 2
        lo = max(ra + MARGIN + half, rb + MARGIN - half)
        hi = min(size - ra - MARGIN + half, size - rb - MARGIN - half)
        mid[k] = rng.uniform(lo, hi) if hi > lo else (lo + hi) / 2
    ca = mid - n * (dist[:, None] / 2)
    cb = mid + n * (dist[:, None] / 2)
    return [
        ObjectPlan(shapes[0], "actor", _states(frames, ca, ra, angle0[0], rgb[0])),
        ObjectPlan(shapes[1], "actor", _states(frames, cb, rb, angle0[1], rgb[1])),
    ]


def _cell_center(rng: np.random.Generator, cell: int, size: int) -> np.ndarray:
    row, col = divmod(cell, 3)
    jitter = rng.uniform(-0.04, 0.04, size=2) * size
    return np.array([(col + 0.5) * size / 3, (row + 0.5) * size / 3]) + jitter


def _clamp_inside(center: np.ndarray, radius: float, size: int) -> np.ndarray:
    return np.clip(center, radius + MARGIN, size - radius - MARGIN)


def _place_distractors(
    rng: np.random.Generator, shapes: list[str], actors: list[ObjectPlan], size: int, frames: int
) -> list[ObjectPlan]:
    """Static objects in distinct grid cells, kept clear of every actor's path and of one another; a
    distractor that fits nowhere is dropped."""
    placed: list[ObjectPlan] = []
    cells = [int(c) for c in rng.permutation(len(POSITIONS))]
    for shape in shapes:
        colour = COLOURS[_pick(rng, COLOUR_NAMES)]
        radius = _radius(_pick(rng, SIZE_NAMES), size)
        angle = rng.uniform(0.0, 2 * math.pi)
        for i, cell in enumerate(cells):
            center = _clamp_inside(_cell_center(rng, cell, size), radius, size)
            if _clear(center, radius, actors + placed):
                placed.append(
                    ObjectPlan(
                        shape,
                        "distractor",
                        ObjectStates.constant(frames, tuple(center), radius, angle, colour),
                    )
                )
                del cells[i]
                break
    return placed


def _clear(center: np.ndarray, radius: float, others: list[ObjectPlan]) -> bool:
    for other in others:
        st = other.states
        gap = np.hypot(*(st.center - center).T) - 0.9 * (st.radius + radius)
        if (gap[st.radius > 0] < 0).any():
            return False
    return True


# --- grounding scenes ---------------------------------------------------------------------------------------

GROUNDING_ACTIONS: tuple[str, ...] = (
    *(f"move_{direction}" for direction in MOVE_DIRECTIONS),
    "bounce",
    "grow",
    "shrink",
    "rotate_clockwise",
    "rotate_counterclockwise",
)
"""Single-object events an actor of a grounding scene may perform: the object stays visible and keeps its colour
throughout, so its colour + shape names it in every frame and its tube has a box on every frame of its span."""

GROUNDING_MAX_TIOU = 0.2
"""The two events of a grounding scene overlap in time by at most this IoU, so a span found for the wrong
sentence scores low."""

_GROUNDING_TRIES = 1000


@dataclass
class GroundingScript:
    """A grounding scene: two actors of one shape and different colours, each with its own event and span."""

    objects: list[ObjectPlan]
    """Distractors first, then the two actors (drawn on top)."""
    actors: list[int]
    """Indices into ``objects`` of the actors, in the order of their events (earlier start first)."""
    actions: list[str]
    colours: list[str]
    spans: list[tuple[int, int]]
    """Inclusive ``(start_frame, end_frame)`` of each actor's event."""


def grounding_span_lengths(frames: int) -> tuple[int, int]:
    """Shortest and longest event of a grounding scene: 3–8 frames of 16, scaled with the clip length."""
    shortest = max(3, round(3 * frames / 16))
    longest = max(shortest, round(8 * frames / 16))
    return shortest, longest


def span_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """The larger of two temporal IoUs of inclusive frame spans: as seconds windows ``[start, end]`` (what a
    grounding metric scores) and as whole frames ``[start, end + 1)`` (what a tube covers)."""
    ious = []
    for extra in (0, 1):
        inter = min(a[1], b[1]) + extra - max(a[0], b[0])
        union = max(a[1], b[1]) + extra - min(a[0], b[0])
        ious.append(max(0.0, inter) / union)
    return max(ious)


def script_grounding(
    rng: np.random.Generator, shapes: tuple[str, ...], size: int, frames: int, max_distractors: int
) -> GroundingScript:
    """Script a grounding scene from ``shapes``: the category alone never decides which actor a sentence means,
    its colour does, and the two events happen at different times. Draws are retried (deterministically, from
    ``rng``) until the actors' paths stay apart in every frame."""
    shape = _pick(rng, shapes)
    actions = [a for a in GROUNDING_ACTIONS if shape not in ROUND_SHAPES or not a.startswith("rotate")]
    chosen = [_pick(rng, actions) for _ in range(2)]
    first, second = (int(k) for k in rng.choice(len(COLOUR_NAMES), size=2, replace=False))
    colours = [COLOUR_NAMES[first], COLOUR_NAMES[second]]
    spans = _grounding_spans(rng, frames)
    for _ in range(_GROUNDING_TRIES):
        actors = [
            _grounding_actor(rng, action, shape, colour, span, size, frames)
            for action, colour, span in zip(chosen, colours, spans, strict=True)
        ]
        if _apart(actors[0].states, actors[1].states) and all(_inside(a.states, size) for a in actors):
            break
    else:  # pragma: no cover - the frame sizes validate() allows always fit two objects
        raise RuntimeError("cannot keep the two actors of a grounding scene apart")
    others = [s for s in shapes if s != shape]
    n_distractors = int(rng.integers(0, max_distractors + 1))
    distractor_shapes = [others[int(k)] for k in rng.permutation(len(others))[:n_distractors]]
    distractors = _place_distractors(rng, distractor_shapes, actors, size, frames)
    return GroundingScript(
        objects=distractors + actors,
        actors=[len(distractors), len(distractors) + 1],
        actions=chosen,
        colours=colours,
        spans=spans,
    )


def _grounding_spans(rng: np.random.Generator, frames: int) -> list[tuple[int, int]]:
    """Two spans sorted by start, overlapping by at most :data:`GROUNDING_MAX_TIOU`. The first actor gets the
    earlier span; its action and colour were drawn independently of that, so which event comes first is random."""
    shortest, longest = grounding_span_lengths(frames)
    for _ in range(_GROUNDING_TRIES):
        spans = []
        for _ in range(2):
            length = int(rng.integers(shortest, longest + 1))
            start = int(rng.integers(0, frames - length + 1))
            spans.append((start, start + length - 1))
        if span_iou(spans[0], spans[1]) <= GROUNDING_MAX_TIOU:
            return sorted(spans)
    raise RuntimeError(  # pragma: no cover - a 3-frame event fits twice in the shortest clip validate() allows
        f"cannot place two events {shortest}-{longest} frames long in {frames} frames"
    )


def _grounding_actor(
    rng: np.random.Generator,
    action: str,
    shape: str,
    colour: str,
    span: tuple[int, int],
    size: int,
    frames: int,
) -> ObjectPlan:
    """One actor performing ``action`` over ``span``. A non-canonical action is its canonical partner scripted
    over the mirrored span and played backwards: only this actor's states are reversed, not the video."""
    cls = ACTION_CLASSES[action]
    start, end = span if cls.canonical else (frames - 1 - span[1], frames - 1 - span[0])
    (plan,) = _script_actors(
        rng, action if cls.canonical else cls.partner, [shape], size, frames, progress(frames, start, end), end - start
    )
    states = plan.states if cls.canonical else plan.states.reversed()
    states.rgb = np.tile(np.asarray(COLOURS[colour], np.uint8), (frames, 1))
    return ObjectPlan(shape, "actor", states)


def _apart(a: ObjectStates, b: ObjectStates) -> bool:
    """The bounding circles never touch, so neither actor ever hides any part of the other."""
    distance = np.hypot(*(a.center - b.center).T)
    return bool((distance >= a.radius + b.radius + MARGIN).all())


def _inside(states: ObjectStates, size: int) -> bool:
    """The bounding circle stays in the frame, so the object is whole and visible in every frame."""
    low = states.center - states.radius[:, None]
    high = states.center + states.radius[:, None]
    return bool((states.radius > 0).all() and (low >= 0).all() and (high <= size).all())


TRACKING_SAME_SHAPE = 0.5
"""Chance that a tracking scene holds two objects of one shape (different colours): the category alone then
cannot keep their identities apart, their appearance must."""
TRACKING_ENTER_LEAVE = 0.3
"""Chance, per object of a tracking scene, that it enters after the first frame or leaves before the last."""


def script_tracking(
    rng: np.random.Generator, shapes: tuple[str, ...], size: int, frames: int, n_objects: int
) -> list[ObjectPlan]:
    """Script a tracking scene: ``n_objects`` objects (at least two), each moving in a straight line at its own
    speed between two random points of the frame, so that paths cross and the later-drawn object hides the
    earlier one where they meet (occlusion, by list order); some enter late or leave early (absent frames have
    radius 0). Objects of one shape always differ in colour. Every object is present for at least half the clip.
    """
    n_objects = max(2, n_objects)
    chosen: list[str] = []
    for _ in range(n_objects):
        if chosen and rng.random() < TRACKING_SAME_SHAPE and chosen.count(chosen[-1]) == 1:
            chosen.append(chosen[-1])
        else:
            chosen.append(_pick(rng, [s for s in shapes if s not in chosen] or list(shapes)))
    objects = []
    colours_of: dict[str, list[str]] = {}
    for shape in chosen:
        used = colours_of.setdefault(shape, [])
        colour = _pick(rng, [c for c in COLOUR_NAMES if c not in used])
        used.append(colour)
        radius = _radius(_pick(rng, SIZE_NAMES), size)
        lo, hi = radius + MARGIN, size - radius - MARGIN
        start, end = rng.uniform(lo, hi, size=2), rng.uniform(lo, hi, size=2)
        t = np.linspace(0.0, 1.0, frames)[:, None]
        center = start + (end - start) * t
        angle = float(rng.uniform(0, 2 * math.pi)) + float(rng.uniform(-1, 1)) * np.linspace(0.0, math.pi / 2, frames)
        states = _states(frames, center, radius, angle, COLOURS[colour])
        if rng.random() < TRACKING_ENTER_LEAVE:
            stay = int(rng.integers((frames + 1) // 2, frames))
            first = int(rng.integers(0, frames - stay + 1))
            states.radius[:first] = 0.0
            states.radius[first + stay :] = 0.0
        objects.append(ObjectPlan(shape, "actor", states))
    return objects
