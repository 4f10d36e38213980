"""Rasterising object states into frames, visible instance masks and boxes, all vectorised over ``[T,H,W]``.

Objects are drawn with hard edges in painter's order (later objects on top), so every pixel of an object's
visible mask holds exactly that object's RGB for that frame; masks are *visible* masks (after occlusion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from videoadapt.data.synthworld.shapes import inside


@dataclass
class ObjectStates:
    """Per-frame state of one object. Units are pixels and radians in image coordinates (y down).

    ``center`` [T,2] float64 (x, y) — pixel (col, row) covers [col, col+1) × [row, row+1), so its centre is at
    (col + 0.5, row + 0.5); ``radius`` [T] float64 (0 = absent); ``angle`` [T] float64, positive =
    clockwise on screen; ``rgb`` [T,3] uint8.
    """

    center: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    rgb: np.ndarray

    @property
    def present(self) -> np.ndarray:
        return self.radius > 0

    def at(self, frames: np.ndarray) -> ObjectStates:
        """The states of the given frame indices only (in that order)."""
        return ObjectStates(self.center[frames], self.radius[frames], self.angle[frames], self.rgb[frames])

    def reversed(self) -> ObjectStates:
        return ObjectStates(
            self.center[::-1].copy(), self.radius[::-1].copy(), self.angle[::-1].copy(), self.rgb[::-1].copy()
        )

    def is_static(self) -> bool:
        return bool(
            (self.center == self.center[0]).all()
            and (self.radius == self.radius[0]).all()
            and (self.angle == self.angle[0]).all()
            and (self.rgb == self.rgb[0]).all()
        )

    @classmethod
    def constant(
        cls, frames: int, center: tuple[float, float], radius: float, angle: float, rgb: tuple[int, int, int]
    ) -> ObjectStates:
        return cls(
            np.tile(np.asarray(center, np.float64), (frames, 1)),
            np.full(frames, radius, np.float64),
            np.full(frames, angle, np.float64),
            np.tile(np.asarray(rgb, np.uint8), (frames, 1)),
        )


@lru_cache(maxsize=8)
def _pixel_centres(size: int) -> np.ndarray:
    return np.arange(size, dtype=np.float64) + 0.5


def shape_masks(shape: str, states: ObjectStates, size: int) -> np.ndarray:
    """Full (unoccluded) masks ``[T,H,W]`` of one object; a static object is rasterised once and broadcast."""
    frames = len(states.radius)
    if states.is_static():
        one = ObjectStates(states.center[:1], states.radius[:1], states.angle[:1], states.rgb[:1])
        return np.broadcast_to(_rasterise(shape, one, size), (frames, size, size))
    return _rasterise(shape, states, size)


def _rasterise(shape: str, states: ObjectStates, size: int) -> np.ndarray:
    grid = _pixel_centres(size)
    radius = states.radius
    safe = np.where(radius > 0, radius, 1.0)
    cos = (np.cos(states.angle) / safe)[:, None, None]
    sin = (np.sin(states.angle) / safe)[:, None, None]
    dx = grid[None, None, :] - states.center[:, 0, None, None]  # [T,1,W]
    dy = grid[None, :, None] - states.center[:, 1, None, None]  # [T,H,1]
    # Inverse rotation into the object's frame, already divided by the radius; separable terms keep the
    # [T,H,W] work to two broadcasts.
    u = cos * dx + sin * dy
    v = cos * dy - sin * dx
    mask = inside(shape, u, v)
    if not (radius > 0).all():
        mask &= (radius > 0)[:, None, None]
    return mask


def composite(
    background: np.ndarray, shapes: list[str], states: list[ObjectStates], frames: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Draw objects over a static ``background`` [H,W,3] in list order (last on top).

    Returns frames uint8 [T,H,W,3] and one visible mask bool [T,H,W] per object.
    """
    size = background.shape[0]
    full = [shape_masks(shape, st, size) for shape, st in zip(shapes, states, strict=True)]
    visible: list[np.ndarray] = [np.empty(0)] * len(full)
    covered = np.zeros((frames, size, size), dtype=bool)
    for k in range(len(full) - 1, -1, -1):
        visible[k] = full[k] & ~covered
        covered |= full[k]
    video = np.repeat(background[None], frames, axis=0)
    for mask, st in zip(visible, states, strict=True):
        np.copyto(video, st.rgb[:, None, None, :], where=mask[..., None])
    return video, visible


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight boxes ``[T,4]`` float64 (x1, y1, x2, y2) in pixels, end-exclusive; NaN rows for empty masks."""
    frames, height, width = masks.shape
    rows = masks.any(axis=2)
    cols = masks.any(axis=1)
    boxes = np.stack(
        [
            cols.argmax(axis=1),
            rows.argmax(axis=1),
            width - cols[:, ::-1].argmax(axis=1),
            height - rows[:, ::-1].argmax(axis=1),
        ],
        axis=1,
    ).astype(np.float64)
    boxes[~rows.any(axis=1)] = np.nan
    return boxes


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A static, desaturated background [H,W,3] uint8: dark-to-mid grey with a slight tint, a linear gradient,
    sometimes a vignette, and mild grey noise. Channels stay within ~40 of each other (unlike any object)."""
    base = rng.uniform(35.0, 125.0)
    tint = rng.uniform(-14.0, 14.0, size=3)
    theta = rng.uniform(0.0, 2 * math.pi)
    amplitude = rng.uniform(-35.0, 35.0)
    vignette = rng.uniform(0.0, 30.0) if rng.random() < 0.35 else 0.0
    grid = (_pixel_centres(size) - size / 2) / size  # in [-0.5, 0.5)
    ramp = math.cos(theta) * grid[None, :] + math.sin(theta) * grid[:, None]
    radial = grid[None, :] ** 2 + grid[:, None] ** 2
    noise = rng.normal(0.0, 3.0, size=(size, size))
    grey = base + amplitude * ramp - vignette * radial * 2 + noise
    image = grey[..., None] + tint
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
