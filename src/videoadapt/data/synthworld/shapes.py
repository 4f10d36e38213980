"""Implicit shapes: ``inside(shape, u, v)`` says which points of the local frame belong to a shape.

``u, v`` are coordinates in the object's own rotated frame, divided by its radius, so every shape fits in the
unit disk and is centred on the origin (v points down, like image y). Everything is elementwise numpy, so one
call rasterises a whole clip ``[T,H,W]`` at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def _regular_star(points: int, inner: float, phase: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Star polygon with ``points`` outer vertices on the unit circle and inner vertices at radius ``inner``.

    ``inner = cos(pi / points)`` gives the convex regular polygon. The test folds the angle into the
    half-sector between an outer vertex and the next inner vertex, where the boundary is one straight edge.
    """
    sector = 2 * math.pi / points
    half = sector / 2
    ax, ay = 1.0, 0.0  # outer vertex
    bx, by = inner * math.cos(half), inner * math.sin(half)  # inner vertex
    ex, ey = bx - ax, by - ay

    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        rho = np.hypot(u, v)
        a = np.mod(np.arctan2(v, u) - phase, sector)
        a = np.minimum(a, sector - a)
        px, py = rho * np.cos(a), rho * np.sin(a)
        # The origin lies on the positive side of the edge A→B; inside means the same side (the small
        # tolerance keeps points exactly on an edge consistently inside despite rounding in the angle fold).
        return ex * (py - ay) - ey * (px - ax) >= -1e-9

    return inside


def _circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 0.92


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.75


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.32) & (av <= 0.95)) | ((av <= 0.32) & (au <= 0.95))


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u * u + v * v
    return (r2 <= 0.95) & (r2 >= 0.30)


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # The classic sextic (x²+y²−1)³ − x²y³ ≤ 0 has y up; flip v and shift so the shape sits in the unit disk.
    x = u * 1.25
    y = -v * 1.25 + 0.2
    q = x * x + y * y - 1
    return q * q * q - x * x * y * y * y <= 0


def _hourglass(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Two triangles meeting at a waist (kept 0.3 wide so that a small object does not break in two).
    av = np.abs(v)
    return (av <= 0.85) & (np.abs(u) <= 0.15 + 0.75 * av)


def _rhombus(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Elongated (aspect 1 : 0.55) so that it is never a rotated square, since rotation events exist.
    return np.abs(u) + np.abs(v) / 0.55 <= 0.98


def _crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    outer = u * u + v * v <= 0.95
    bite = (u - 0.45) ** 2 + v * v <= 0.62
    return outer & ~bite


SHAPE_TESTS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": _circle,
    "square": _square,
    "triangle": _regular_star(3, 0.5, -math.pi / 2),  # apex up (v negative is up)
    "star": _regular_star(5, 0.5, -math.pi / 2),
    "hourglass": _hourglass,
    "cross": _cross,
    "ring": _ring,
    "heart": _heart,
    "rhombus": _rhombus,
    "crescent": _crescent,
}


def inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean array: which local points ``(u, v)`` (in radii, rotated frame) lie inside ``shape``."""
    return SHAPE_TESTS[shape](u, v)
