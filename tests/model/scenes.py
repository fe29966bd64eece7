"""Small deterministic colored point-cloud scenes with instance labels, for model tests.

A 3 m x 3 m floor with one or two walls and a handful of boxes and cylinders of distinct
colors standing on it, some pairs touching. Only visible surfaces are sampled: points that
fall inside another object (floor under a box, faces pressed together) are dropped.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

ROOM_SIZE = 3.0
WALL_HEIGHT = 2.5
POSITION_NOISE = 0.003
COLOR_NOISE = 0.02
HIDDEN_MARGIN = 0.005
FLOOR_COLOR = (0.45, 0.45, 0.45)
WALL_COLOR = (0.8, 0.78, 0.72)


@dataclass(frozen=True)
class _Box:
    low: np.ndarray  # (3,) float64 min corner, z = 0 (standing on the floor)
    high: np.ndarray  # (3,) float64 max corner

    def contains(self, points: np.ndarray) -> np.ndarray:
        return np.all((points > self.low - HIDDEN_MARGIN) & (points < self.high + HIDDEN_MARGIN), 1)

    def visible_area(self) -> float:
        dx, dy, dz = self.high - self.low
        return dx * dy + 2 * (dx + dy) * dz


@dataclass(frozen=True)
class _Cylinder:
    centre: np.ndarray  # (2,) float64 xy of the axis
    radius: float
    height: float

    def contains(self, points: np.ndarray) -> np.ndarray:
        radial = np.linalg.norm(points[:, :2] - self.centre, axis=1)
        return (radial < self.radius + HIDDEN_MARGIN) & (points[:, 2] < self.height + HIDDEN_MARGIN)

    def visible_area(self) -> float:
        return np.pi * self.radius**2 + 2 * np.pi * self.radius * self.height


def _rectangle(
    rng: np.random.Generator, origin: np.ndarray, u: np.ndarray, v: np.ndarray, density: float
) -> np.ndarray:
    count = int(np.linalg.norm(u) * np.linalg.norm(v) * density)
    a, b = rng.random((2, count, 1))
    return origin + a * u + b * v


def _box_faces(rng: np.random.Generator, box: _Box, density: float) -> list[np.ndarray]:
    """Top and four sides, each a separate (M, 3) array so faces can be shaded differently."""
    (x0, y0, z0), (x1, y1, z1) = box.low, box.high
    dx, dy, dz = np.array([x1 - x0, 0, 0]), np.array([0, y1 - y0, 0]), np.array([0, 0, z1 - z0])
    return [
        _rectangle(rng, np.array([x0, y0, z1]), dx, dy, density),
        _rectangle(rng, np.array([x0, y0, z0]), dx, dz, density),
        _rectangle(rng, np.array([x0, y1, z0]), dx, dz, density),
        _rectangle(rng, np.array([x0, y0, z0]), dy, dz, density),
        _rectangle(rng, np.array([x1, y0, z0]), dy, dz, density),
    ]


def _cylinder_faces(rng: np.random.Generator, cyl: _Cylinder, density: float) -> list[np.ndarray]:
    """Top disc and lateral surface."""
    top_count = int(np.pi * cyl.radius**2 * density)
    angle = rng.random(top_count) * 2 * np.pi
    radius = cyl.radius * np.sqrt(rng.random(top_count))
    top = np.column_stack(
        [
            cyl.centre[0] + radius * np.cos(angle),
            cyl.centre[1] + radius * np.sin(angle),
            np.full(top_count, cyl.height),
        ]
    )
    side_count = int(2 * np.pi * cyl.radius * cyl.height * density)
    angle = rng.random(side_count) * 2 * np.pi
    side = np.column_stack(
        [
            cyl.centre[0] + cyl.radius * np.cos(angle),
            cyl.centre[1] + cyl.radius * np.sin(angle),
            rng.random(side_count) * cyl.height,
        ]
    )
    return [top, side]


def _layout(rng: np.random.Generator) -> list[_Box | _Cylinder]:
    """One cluster per floor quadrant so clusters never overlap; touching pairs inside clusters."""
    objects: list[_Box | _Cylinder] = []
    for quadrant in range(4):
        corner = np.array([quadrant % 2, quadrant // 2]) * ROOM_SIZE / 2 + 0.3
        size = rng.uniform(0.25, 0.5, 3)
        low = np.append(corner + rng.uniform(0.0, 0.2, 2), 0.0)
        first = _Box(low, low + size)
        objects.append(first)
        if quadrant == 0:
            size = rng.uniform(0.2, 0.4, 3)
            neighbour_low = np.array([first.high[0], low[1] + 0.05, 0.0])
            objects.append(_Box(neighbour_low, neighbour_low + size))
        elif quadrant == 1:
            radius = rng.uniform(0.1, 0.2)
            centre = np.array([first.high[0] + radius, low[1] + size[1] / 2])
            objects.append(_Cylinder(centre, radius, rng.uniform(0.3, 0.7)))
        elif quadrant == 3:
            radius = rng.uniform(0.08, 0.15)
            centre = np.array([low[0] + size[0] / 2, first.high[1] + radius + 0.1])
            objects.append(_Cylinder(centre, radius, rng.uniform(0.4, 0.9)))
    return objects


def _object_colors(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 3) saturated colors with evenly spaced hues, in a seed-dependent order."""
    hues = (np.arange(count) / count + rng.random()) % 1.0
    rgb = [colorsys.hsv_to_rgb(hue, 0.75, 0.85) for hue in rng.permutation(hues)]
    return np.array(rgb)


def make_box_scene(
    seed: int, num_points: int = 40_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic scene from `seed`.

    Returns points (N, 3) float32 metres, colors (N, 3) float32 in [0, 1] and instance
    (N,) int64 (0 floor, then walls, then objects), N = num_points, in random order.
    """
    rng = np.random.default_rng(seed)
    objects = _layout(rng)
    num_walls = 1 + seed % 2
    area = ROOM_SIZE**2 + num_walls * ROOM_SIZE * WALL_HEIGHT
    area += sum(obj.visible_area() for obj in objects)
    # Oversample so that enough points survive hidden-surface removal.
    density = 1.3 * num_points / area

    side, up, zero = np.array([ROOM_SIZE, 0, 0]), np.array([0, 0, WALL_HEIGHT]), np.zeros(3)
    surfaces = [[_rectangle(rng, zero, side, side[[1, 0, 2]], density)]]
    surface_colors = [np.array([FLOOR_COLOR])]
    for wall_axis in range(num_walls):
        along = side if wall_axis else side[[1, 0, 2]]
        surfaces.append([_rectangle(rng, zero, along, up, density)])
        surface_colors.append(np.array([WALL_COLOR]))
    for obj, color in zip(objects, _object_colors(rng, len(objects)), strict=True):
        if isinstance(obj, _Box):
            faces = _box_faces(rng, obj, density)
        else:
            faces = _cylinder_faces(rng, obj, density)
        surfaces.append(faces)
        # Top faces are lit more than sides, as in real captures.
        shading = np.array([1.0] + [0.85] * (len(faces) - 1))
        surface_colors.append(color * shading[:, None])

    points = np.concatenate([np.concatenate(faces) for faces in surfaces])
    colors = np.concatenate(
        [
            np.repeat(face_colors, [len(face) for face in faces], axis=0)
            for faces, face_colors in zip(surfaces, surface_colors, strict=True)
        ]
    )
    instance = np.repeat(
        np.arange(len(surfaces)), [sum(len(face) for face in faces) for faces in surfaces]
    )
    first_object = len(surfaces) - len(objects)
    visible = np.ones(len(points), dtype=bool)
    for index, obj in enumerate(objects):
        visible &= ~(obj.contains(points) & (instance != first_object + index))
    keep = rng.permutation(np.flatnonzero(visible))[:num_points]

    points = points[keep] + rng.normal(0.0, POSITION_NOISE, (len(keep), 3))
    colors = np.clip(colors[keep] + rng.normal(0.0, COLOR_NOISE, (len(keep), 3)), 0.0, 1.0)
    return points.astype(np.float32), colors.astype(np.float32), instance[keep].astype(np.int64)
