"""SynthWorld's closed vocabulary: shapes, colours, sizes, grid positions, action classes and QA answers.

Everything a caption, query or answer can say comes from here, so tests and later task heads can enumerate it.
Image coordinates are used throughout: x grows to the right, y grows *downwards*, so "up" means decreasing y
and a positive rotation angle turns an object clockwise as seen on screen.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- shapes -------------------------------------------------------------------------------------------------

SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "hourglass",
    "cross",
    "ring",
    "heart",
    "rhombus",
    "crescent",
)
"""Object categories, each an implicit inside-test in the object's rotated local frame (``shapes.py``). No hexagon
or pentagon: at a 7 px radius they are indistinguishable from a circle."""

DEFAULT_HELD_OUT_SHAPES: tuple[str, ...] = ("hourglass", "heart")
"""Categories kept out of every video training split (open-vocabulary evaluation); images show them."""

ROUND_SHAPES: frozenset[str] = frozenset({"circle", "ring"})
"""Shapes whose rotation cannot be seen; never the actor of a rotation event."""

SHAPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("disc", "round dot"),
    "square": ("box", "block"),
    "triangle": ("three-sided shape", "wedge"),
    "star": ("five-pointed star", "starlet"),
    "hourglass": ("bow tie", "sand timer"),
    "cross": ("plus sign", "plus"),
    "ring": ("hoop", "donut"),
    "heart": ("love heart", "heart symbol"),
    "rhombus": ("diamond", "lozenge"),
    "crescent": ("crescent moon", "sickle"),
}

# --- colours ------------------------------------------------------------------------------------------------

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (250, 225, 20),
    "green": (30, 190, 50),
    "cyan": (0, 215, 230),
    "blue": (35, 75, 245),
    "purple": (150, 45, 225),
    "pink": (255, 95, 195),
}
"""Saturated, mutually distant RGB values; backgrounds are desaturated, so never confusable with objects."""

COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

COLOUR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("crimson", "scarlet"),
    "orange": ("amber", "tangerine"),
    "yellow": ("golden", "lemon"),
    "green": ("emerald", "jade"),
    "cyan": ("turquoise", "aqua"),
    "blue": ("azure", "cobalt"),
    "purple": ("violet", "plum"),
    "pink": ("rose", "fuchsia"),
}

# --- sizes --------------------------------------------------------------------------------------------------

SIZES: dict[str, float] = {"small": 0.11, "large": 0.18}
"""Object radius as a fraction of the frame side (0.11·64 ≈ 7 px, 0.18·64 ≈ 11.5 px)."""

SIZE_NAMES: tuple[str, ...] = tuple(SIZES)

SIZE_SYNONYMS: dict[str, tuple[str, ...]] = {"small": ("little", "tiny"), "large": ("big", "huge")}

# --- positions ----------------------------------------------------------------------------------------------

POSITIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
"""3×3 grid cells in row-major order: cell index = 3·row + column, row 0 at the top."""

POSITION_PHRASES: dict[str, str] = {
    "top left": "at the top left",
    "top": "at the top",
    "top right": "at the top right",
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
    "bottom left": "at the bottom left",
    "bottom": "at the bottom",
    "bottom right": "at the bottom right",
}


def position_of(x: float, y: float, size: int) -> str:
    """The grid cell name of pixel position ``(x, y)`` in a ``size``×``size`` frame."""
    col = min(2, max(0, int(3 * x / size)))
    row = min(2, max(0, int(3 * y / size)))
    return POSITIONS[3 * row + col]


# --- actions ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionClass:
    name: str
    partner: str
    """Time-reversal partner: reversing a video of this class gives a valid video of ``partner`` (itself if
    the class is closed under reversal)."""
    canonical: bool
    """The member the generator scripts; the other member of a pair is the canonical one played backwards."""
    actors: int
    """How many objects perform the event (1, or 2 for interactions)."""


def _pair(canonical: str, other: str, actors: int = 1) -> list[ActionClass]:
    return [ActionClass(canonical, other, True, actors), ActionClass(other, canonical, False, actors)]


_ACTIONS: list[ActionClass] = [
    *_pair("move_right", "move_left"),
    *_pair("move_down", "move_up"),
    *_pair("move_down_right", "move_up_left"),
    *_pair("move_up_right", "move_down_left"),
    *_pair("grow", "shrink"),
    *_pair("appear", "disappear"),
    *_pair("rotate_clockwise", "rotate_counterclockwise"),
    *_pair("red_to_blue", "blue_to_red"),
    *_pair("green_to_yellow", "yellow_to_green"),
    *_pair("approach", "separate", actors=2),
    ActionClass("bounce", "bounce", True, 1),
    ActionClass("collide", "collide", True, 2),
]

ACTION_CLASSES: dict[str, ActionClass] = {a.name: a for a in _ACTIONS}
ACTIONS: tuple[str, ...] = tuple(ACTION_CLASSES)
"""Action class names; the index in this tuple is the ``action_id``."""

ACTION_GROUPS: tuple[tuple[str, ...], ...] = tuple(
    (a.name, a.partner) if a.partner != a.name else (a.name,) for a in _ACTIONS if a.canonical
)
"""Reversal groups in draw order. The generator draws a group uniformly, then each member with prob. 1/2."""

MOVE_DIRECTIONS: dict[str, tuple[int, int]] = {
    "right": (1, 0),
    "left": (-1, 0),
    "down": (0, 1),
    "up": (0, -1),
    "down_right": (1, 1),
    "up_left": (-1, -1),
    "up_right": (1, -1),
    "down_left": (-1, 1),
}
"""Unit steps (dx, dy) in image coordinates (y down) of each ``move_<direction>`` class."""

COLOUR_CHANGES: dict[str, tuple[str, str]] = {
    "red_to_blue": ("red", "blue"),
    "blue_to_red": ("blue", "red"),
    "green_to_yellow": ("green", "yellow"),
    "yellow_to_green": ("yellow", "green"),
}


def partner(action: str) -> str:
    """The time-reversal partner of ``action`` (``action`` itself for bounce and collide)."""
    return ACTION_CLASSES[action].partner


def action_id(action: str) -> int:
    return ACTIONS.index(action)


# --- open-ended QA answers ----------------------------------------------------------------------------------

COUNT_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five")

ANSWER_VOCAB: tuple[str, ...] = (
    *COLOUR_NAMES,
    *SHAPES,
    *SIZE_NAMES,
    *POSITIONS,
    *COUNT_WORDS,
    "up",
    "down",
    "up left",
    "up right",
    "down left",
    "down right",
    "clockwise",
    "counterclockwise",
    "grow",
    "shrink",
    "appear",
    "disappear",
    "bounce",
    "approach",
    "separate",
    "collide",
    "yes",
    "no",
)
"""Every open-ended answer is exactly one of these strings (the directions "left" and "right" reuse
the position words)."""

assert len(set(ANSWER_VOCAB)) == len(ANSWER_VOCAB), "answer vocabulary has duplicates"
