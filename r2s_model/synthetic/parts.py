"""Primitives that furniture is built from: yawed boxes, vertical cylinders, vertical spheroids."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

ALL_FACES = 0b111111


class Shape(Enum):
    BOX = "box"
    CYLINDER = "cylinder"
    SPHEROID = "spheroid"


@dataclass(frozen=True)
class Part:
    """One primitive, in an object's local frame or in the room frame.

    center: (3,) float64 metres. half: (3,) float64 half-extents along the part's own x, y, z;
    cylinders and spheroids are round in xy with radius half[0] (half[1] == half[0]).
    yaw: radians about z. faces: bitmask of the box faces that can be seen (bit 2*axis for the
    negative face, 2*axis + 1 for the positive one), so walls and the floor show one side only.
    """

    shape: Shape
    center: np.ndarray
    half: np.ndarray
    rgb: tuple[float, float, float]
    yaw: float = 0.0
    faces: int = ALL_FACES

    def placed(self, position: np.ndarray, yaw: float) -> Part:
        """This part after the object it belongs to is turned by `yaw` and moved to `position`."""
        return replace(
            self,
            center=rotate_xy(self.center, yaw) + position,
            yaw=self.yaw + yaw if self.shape is Shape.BOX else 0.0,
        )

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact axis-aligned (min, max), each (3,) float64."""
        if self.shape is Shape.BOX:
            cos, sin = abs(np.cos(self.yaw)), abs(np.sin(self.yaw))
            hx, hy, hz = self.half
            extent = np.array([cos * hx + sin * hy, sin * hx + cos * hy, hz])
        else:
            extent = self.half
        return self.center - extent, self.center + extent

    def contains(self, points: np.ndarray, margin: float) -> np.ndarray:
        """(N,) bool: which of `points` (N, 3) lie inside the part grown by `margin` metres."""
        offset = points - self.center
        if self.shape is Shape.BOX:
            local = rotate_xy(offset, -self.yaw)
            return np.all(np.abs(local) <= self.half + margin, axis=1)
        radius, half_height = self.half[0] + margin, self.half[2] + margin
        radial = (offset[:, 0] ** 2 + offset[:, 1] ** 2) / radius**2
        if self.shape is Shape.CYLINDER:
            return (radial <= 1.0) & (np.abs(offset[:, 2]) <= half_height)
        return radial + (offset[:, 2] / half_height) ** 2 <= 1.0


def rotate_xy(vectors: np.ndarray, yaw: float) -> np.ndarray:
    """Rotate (..., 3) or (..., 2) vectors by `yaw` radians about z (counter-clockwise)."""
    cos, sin = np.cos(yaw), np.sin(yaw)
    rotated = np.array(vectors, dtype=np.float64, copy=True)
    rotated[..., 0] = cos * vectors[..., 0] - sin * vectors[..., 1]
    rotated[..., 1] = sin * vectors[..., 0] + cos * vectors[..., 1]
    return rotated


def box(
    center: tuple[float, float, float],
    size: tuple[float, float, float],
    rgb: tuple[float, float, float],
    faces: int = ALL_FACES,
) -> Part:
    """An axis-aligned (in its frame) box of full side lengths `size`."""
    return Part(Shape.BOX, np.array(center, float), np.array(size, float) / 2, rgb, faces=faces)


def cylinder(
    x: float, y: float, bottom: float, radius: float, height: float, rgb: tuple[float, float, float]
) -> Part:
    """A vertical cylinder standing on z = `bottom`."""
    center = np.array([x, y, bottom + height / 2])
    return Part(Shape.CYLINDER, center, np.array([radius, radius, height / 2]), rgb)


def spheroid(
    x: float, y: float, bottom: float, radius: float, height: float, rgb: tuple[float, float, float]
) -> Part:
    """A vertical spheroid (round in xy) whose lowest point is at z = `bottom`."""
    center = np.array([x, y, bottom + height / 2])
    return Part(Shape.SPHEROID, center, np.array([radius, radius, height / 2]), rgb)


def parts_bounds(parts: list[Part]) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned (min, max) over several parts, each (3,) float64."""
    lows, highs = zip(*(part.bounds() for part in parts), strict=True)
    return np.min(lows, axis=0), np.max(highs, axis=0)
