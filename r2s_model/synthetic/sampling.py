"""Scan-like surface sampling of parts: uniform points on visible surfaces, noise and shading."""

from __future__ import annotations

import numpy as np

from r2s_model.synthetic.parts import Part, Shape

# Points closer than this to the inside of another part, the floor or a wall are hidden: faces
# pressed together, legs meeting a seat, a cabinet's back 5 mm off the wall.
HIDDEN_MARGIN = 0.01
# Cell side (metres) of the xy grid that finds the points near each part.
_GRID_CELL = 0.3
# Tiny visible faces (handles, bottle caps) still get a few points, as a scanner would see them.
_MIN_POINTS_PER_SURFACE = 2
_LIGHT = np.array([0.3, 0.2, 1.0]) / np.linalg.norm([0.3, 0.2, 1.0])
_BOX_AXES = np.array([0, 0, 1, 1, 2, 2])
_BOX_SIGNS = np.array([-1.0, 1.0, -1.0, 1.0, -1.0, 1.0])


def _counts(areas: np.ndarray, density: float, rng: np.random.Generator) -> np.ndarray:
    """Points per surface: area x density, randomly rounded, at least a few per surface."""
    counts = np.floor(areas * density + rng.random(areas.shape)).astype(np.int64)
    return np.where(areas > 0, np.maximum(counts, _MIN_POINTS_PER_SURFACE), 0)


def _rotate(vectors: np.ndarray, yaws: np.ndarray) -> np.ndarray:
    """(N, 3) vectors each turned about z by its own yaw (N,)."""
    cos, sin = np.cos(yaws), np.sin(yaws)
    x, y = vectors[:, 0], vectors[:, 1]
    return np.stack([cos * x - sin * y, sin * x + cos * y, vectors[:, 2]], axis=1)


def _sample_boxes(parts: list[Part], density: float, rng: np.random.Generator):
    """Points on the visible faces of box parts -> (local offsets, normals, part index, yaws)."""
    half = np.array([p.half for p in parts])
    other1, other2 = (_BOX_AXES + 1) % 3, (_BOX_AXES + 2) % 3
    areas = 4.0 * half[:, other1] * half[:, other2]
    bits = np.array([p.faces for p in parts])[:, None] >> np.arange(6)
    counts = _counts(areas * (bits & 1), density, rng).ravel()
    face = np.repeat(np.arange(counts.size), counts)
    part, side = face // 6, face % 6
    axis, sign = _BOX_AXES[side], _BOX_SIGNS[side]
    rows = np.arange(face.size)
    offsets = (rng.random((face.size, 3)) * 2.0 - 1.0) * half[part]
    offsets[rows, axis] = sign * half[part, axis]
    normals = np.zeros_like(offsets)
    normals[rows, axis] = sign
    yaws = np.array([p.yaw for p in parts])[part]
    return _rotate(offsets, yaws), _rotate(normals, yaws), part


def _sample_cylinders(parts: list[Part], density: float, rng: np.random.Generator):
    """Points on the side and both caps of vertical cylinders."""
    radius = np.array([p.half[0] for p in parts])
    half_height = np.array([p.half[2] for p in parts])
    areas = np.stack([4 * np.pi * radius * half_height, np.pi * radius**2, np.pi * radius**2], 1)
    counts = _counts(areas, density, rng).ravel()
    surface = np.repeat(np.arange(counts.size), counts)
    part, kind = surface // 3, surface % 3
    angle = rng.random(surface.size) * 2 * np.pi
    on_side = kind == 0
    # Caps: sqrt of a uniform radius fraction spreads points evenly over the disc.
    spread = np.where(on_side, 1.0, np.sqrt(rng.random(surface.size))) * radius[part]
    cap_sign = np.where(kind == 1, 1.0, -1.0)
    height = np.where(on_side, rng.random(surface.size) * 2 - 1, cap_sign) * half_height[part]
    offsets = np.stack([spread * np.cos(angle), spread * np.sin(angle), height], axis=1)
    normals = np.where(
        on_side[:, None],
        np.stack([np.cos(angle), np.sin(angle), np.zeros_like(angle)], 1),
        np.stack([np.zeros_like(angle), np.zeros_like(angle), cap_sign], 1),
    )
    return offsets, normals, part


def _sample_spheroids(parts: list[Part], density: float, rng: np.random.Generator):
    """Points on vertical spheroids (near-uniform; foliage needs no more)."""
    radius = np.array([p.half[0] for p in parts])
    half_height = np.array([p.half[2] for p in parts])
    # Thomsen's approximation of an ellipsoid's area, within about 1 %.
    p = 1.6075
    mean = ((radius ** (2 * p) + 2 * (radius * half_height) ** p) / 3) ** (1 / p)
    counts = _counts(4 * np.pi * mean, density, rng)
    part = np.repeat(np.arange(len(parts)), counts)
    direction = rng.normal(size=(part.size, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    scale = np.stack([radius, radius, half_height], axis=1)[part]
    normals = direction / scale
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return direction * scale, normals, part


_SAMPLERS = {
    Shape.BOX: _sample_boxes,
    Shape.CYLINDER: _sample_cylinders,
    Shape.SPHEROID: _sample_spheroids,
}


def sample_parts(
    parts: list[Part], density: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform points on the surfaces of `parts` (room frame) at `density` points per m².

    Returns points (N, 3) float64, unit normals (N, 3) float64 and part index (N,) int64.
    """
    points, normals, owners = [], [], []
    for shape, sampler in _SAMPLERS.items():
        index = np.array([i for i, part in enumerate(parts) if part.shape is shape], dtype=np.int64)
        if index.size == 0:
            continue
        offsets, shape_normals, local = sampler([parts[i] for i in index], density, rng)
        centers = np.array([parts[i].center for i in index])
        points.append(offsets + centers[local])
        normals.append(shape_normals)
        owners.append(index[local])
    return np.concatenate(points), np.concatenate(normals), np.concatenate(owners)


def hidden_points(
    points: np.ndarray, owner: np.ndarray, parts: list[Part], is_shell: np.ndarray, size: np.ndarray
) -> np.ndarray:
    """(N,) bool: points a scanner could not see, inside (or pressed against) another part.

    points (N, 3); owner (N,) part index of each point; is_shell (P,) bool marks the floor and
    wall parts, which are flat against the room's boundary: they are never occluders (other
    points near the boundary are hidden by a plane test instead) and their points are only
    hidden by the parts in front of them. size: (2,) room extent in x, y.
    """
    shell_point = is_shell[owner]
    near_boundary = (
        (points[:, 2] < HIDDEN_MARGIN)
        | np.any(points[:, :2] < HIDDEN_MARGIN, axis=1)
        | np.any(points[:, :2] > size - HIDDEN_MARGIN, axis=1)
    )
    hidden = near_boundary & ~shell_point

    cells = np.ceil(size / _GRID_CELL).astype(np.int64)
    ij = np.clip((points[:, :2] // _GRID_CELL).astype(np.int64), 0, cells - 1)
    keys = ij[:, 0] * cells[1] + ij[:, 1]
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    for index, part in enumerate(parts):
        if is_shell[index]:
            continue
        low, high = part.bounds()
        first = np.clip(((low[:2] - HIDDEN_MARGIN) // _GRID_CELL).astype(np.int64), 0, cells - 1)
        last = np.clip(((high[:2] + HIDDEN_MARGIN) // _GRID_CELL).astype(np.int64), 0, cells - 1)
        rows = np.arange(first[0], last[0] + 1) * cells[1]
        starts = np.searchsorted(sorted_keys, rows + first[1], side="left")
        ends = np.searchsorted(sorted_keys, rows + last[1], side="right")
        near = np.concatenate([order[s:e] for s, e in zip(starts, ends, strict=True)])
        near = near[owner[near] != index]
        hidden[near[part.contains(points[near], HIDDEN_MARGIN)]] = True
    return hidden


def scan_colors(
    rgb: np.ndarray, normals: np.ndarray, brightness: float, rng: np.random.Generator
) -> np.ndarray:
    """Observed colors (N, 3) float32 in [0, 1]: base `rgb` (N, 3) under mild directional
    shading (from unit `normals` (N, 3)), times the room's `brightness`, plus sensor noise."""
    lit = 0.72 + 0.28 * np.clip(normals @ _LIGHT, 0.0, 1.0)
    observed = rgb * (brightness * lit)[:, None] + rng.normal(0.0, 0.015, rgb.shape)
    return np.clip(observed, 0.0, 1.0).astype(np.float32)
