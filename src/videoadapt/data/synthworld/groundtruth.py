"""An independent derivation of the action class from per-frame object states.

The generator *scripts* an action; this module *reads* one back from what the objects do (trajectories, radii,
angles, colours), without knowing the script. Tests use it to check that labels match the frames' states and
that a reversed video is a valid video of its partner class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from videoadapt.data.synthworld.vocabulary import COLOUR_CHANGES, COLOURS

_EPS = 1e-6


class HasStates(Protocol):
    center: np.ndarray  # [T,2]
    radius: np.ndarray  # [T]
    angle: np.ndarray  # [T]
    rgb: np.ndarray  # [T,3]


class UnrecognisedAction(ValueError):
    """The states do not show any single SynthWorld action."""


def _changes(x: np.ndarray) -> bool:
    return bool(np.abs(x - x[:1]).max() > _EPS)


def _palette_name(rgb: np.ndarray) -> str:
    names = list(COLOURS)
    table = np.array([COLOURS[n] for n in names], np.int64)
    return names[int(np.abs(table - rgb.astype(np.int64)).sum(axis=1).argmin())]


def _direction(v: np.ndarray) -> str:
    """Name of the direction of displacement ``v`` (x right, y down); an axis counts if it carries ≥ 30%."""
    ax, ay = abs(v[0]), abs(v[1])
    horizontal = "right" if v[0] > 0 else "left"
    vertical = "down" if v[1] > 0 else "up"
    if ay < 0.3 * ax:
        return horizontal
    if ax < 0.3 * ay:
        return vertical
    return f"{vertical}_{horizontal}"


def _reverses(x: np.ndarray) -> bool:
    """The 1-D motion ``x`` [T] goes one way and then the other."""
    signs = np.sign(np.round(np.diff(x), 9))
    signs = signs[signs != 0]
    return bool(len(signs) > 1 and (signs[1:] != signs[:-1]).any())


def action_from_states(tracks: Sequence[HasStates]) -> str:
    """The action class the per-frame states of ``tracks`` show.

    Objects whose state never changes are ignored; one changing object gives a single-object class, two an
    interaction. Raises :class:`UnrecognisedAction` if the states fit no class.
    """
    movers = [
        t
        for t in tracks
        if _changes(t.center) or _changes(t.radius) or _changes(t.angle) or _changes(t.rgb.astype(np.float64))
    ]
    if len(movers) == 2:
        a, b = movers
        if not ((a.radius > 0).all() and (b.radius > 0).all()):
            raise UnrecognisedAction("an interacting object is absent in some frame")
        dist = np.hypot(*(a.center - b.center).T)
        if _reverses(dist):
            return "collide"
        return "approach" if dist[-1] < dist[0] else "separate"
    if len(movers) != 1:
        raise UnrecognisedAction(f"{len(movers)} objects change; expected 1 or 2")
    t = movers[0]
    present = t.radius > 0
    if not present.all():
        if present[-1] and not present[0]:
            return "appear"
        if present[0] and not present[-1]:
            return "disappear"
        raise UnrecognisedAction("the object is absent in the middle of the video")
    if _changes(t.rgb.astype(np.float64)):
        name = f"{_palette_name(t.rgb[0])}_to_{_palette_name(t.rgb[-1])}"
        if name not in COLOUR_CHANGES:
            raise UnrecognisedAction(f"colour change {name} is not a class")
        return name
    if _changes(t.angle):
        return "rotate_clockwise" if t.angle[-1] > t.angle[0] else "rotate_counterclockwise"
    if _changes(t.radius):
        return "grow" if t.radius[-1] > t.radius[0] else "shrink"
    if _reverses(t.center[:, 0]) or _reverses(t.center[:, 1]):
        return "bounce"
    return "move_" + _direction(t.center[-1] - t.center[0])
