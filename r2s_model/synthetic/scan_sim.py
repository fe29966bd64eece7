"""Simulated depth scans of a point-sampled scene: a sensor moving along a trajectory sees the
scene's points through a pinhole camera, with occlusion, a range limit and range noise.

Frames: the map frame is the scene's (for a generated room: floor at z = 0, walls at 0 and the
room's sides). The `sensor` frame uses the ROS body convention (REP-103), not the optical one:
x forward along the optical axis, y left, z up. A point p in the sensor frame lies at
`rotation @ p + translation` in the map, as in the node's `r2s_ros.poses.Pose`.

Occlusion is a z-buffer over the camera's pixels. A sampled surface has gaps between its points,
so each point occludes a square "splat" about `splat_m` wide (its sampling spacing) rather than
one pixel; otherwise far points would show through near surfaces wherever pixels are finer than
the sampling. A point is seen when its depth is within a tolerance of the nearest depth at its
pixel, so every scene point on the visible surface is returned: a frame is as dense as the scene,
and the resolution only sets how finely occlusion is resolved. Pure numpy; no ROS imports.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Splats are capped so that a point right in front of the lens cannot cost a huge square.
_MAX_SPLAT_PX = 8
# A hand-held or mast-mounted camera, above most furniture.
SENSOR_HEIGHT_M = 1.35
# Furniture reaching this close to the sensor's height is walked around, not through.
OBSTACLE_BELOW_SENSOR_M = 0.4


@dataclass(frozen=True)
class SensorModel:
    """A depth camera. Noise: the measured range is r + N(0, sigma), sigma = noise_m +
    noise_quadratic * r**2 (structured-light and stereo sensors degrade quadratically)."""

    width: int = 160  # pixels of the occlusion raster
    height: int = 120
    hfov_deg: float = 87.0
    vfov_deg: float = 58.0
    min_range_m: float = 0.2  # Euclidean distance from the sensor origin
    max_range_m: float = 6.0
    splat_m: float = 0.03  # occluding footprint of one point, about the scene's point spacing
    depth_tolerance_m: float = 0.03  # seen when depth <= nearest depth at the pixel + tolerance
    depth_tolerance_rel: float = 0.02  # ... + this share of the depth (grazing surfaces)
    noise_m: float = 0.002
    noise_quadratic: float = 0.001  # per metre squared

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"resolution must be positive, got {self.width}x{self.height}")
        if not (0 < self.hfov_deg < 180 and 0 < self.vfov_deg < 180):
            raise ValueError(f"fields of view must be in (0, 180) degrees: {self}")
        if not 0 <= self.min_range_m < self.max_range_m:
            raise ValueError(f"need 0 <= min_range_m < max_range_m: {self}")
        if min(self.splat_m, self.depth_tolerance_m, self.depth_tolerance_rel) < 0:
            raise ValueError(f"splat and tolerances must not be negative: {self}")
        if min(self.noise_m, self.noise_quadratic) < 0:
            raise ValueError(f"noise must not be negative: {self}")

    @property
    def focal_px(self) -> tuple[float, float]:
        """(fx, fy) in pixels."""
        return (
            self.width / 2 / math.tan(math.radians(self.hfov_deg) / 2),
            self.height / 2 / math.tan(math.radians(self.vfov_deg) / 2),
        )


@dataclass
class ScanFrame:
    """One simulated scan. points (M, 3) float32 in the sensor frame, noisy; colors (M, 3) uint8
    RGB; indices (M,) int64 of the scene points seen; translation (3,) and rotation (3, 3)
    float64: the sensor pose in the map, x_map = rotation @ x_sensor + translation."""

    points: np.ndarray
    colors: np.ndarray
    indices: np.ndarray
    translation: np.ndarray
    rotation: np.ndarray


def look_rotation(yaw: float, pitch: float) -> np.ndarray:
    """(3, 3) rotation of a level-horizon sensor: x forward at `yaw` (radians, from map +x
    towards +y) tilted up by `pitch` (radians, negative looks down), y left, z up-ish."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    forward = [cy * cp, sy * cp, sp]
    left = [-sy, cy, 0.0]
    up = [-cy * sp, -sy * sp, cp]
    return np.array([forward, left, up]).T


def orbit_trajectory(
    room_size: tuple[float, float],
    frames: int,
    *,
    seed: int = 0,
    height_m: float = SENSOR_HEIGHT_M,
    obstacles: np.ndarray | None = None,
    clearance_m: float = 0.25,
) -> tuple[np.ndarray, np.ndarray]:
    """One loop around the centre of a [0, sx] x [0, sy] room, looking roughly at the centre
    while yawing +-30 degrees and nodding between 5 and 30 degrees down, as a person or robot
    sweeping a room with a depth camera would.

    obstacles: (K, 2, 3) axis-aligned boxes (min, max corners) the path should keep
    `clearance_m` away from in x-y (tall furniture the sensor cannot pass over); among loops of
    several sizes the first clear one is taken, else the one with the fewest frames in a box.
    Returns translations (F, 3) and rotations (F, 3, 3), float64, sensor poses in the map.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    rng = np.random.default_rng(seed)
    centre = np.array(room_size, np.float64) / 2
    phase = rng.uniform(0, 2 * np.pi, size=4)
    turns = phase[0] + 2 * np.pi * np.arange(frames) / frames
    unit = np.stack([np.cos(turns), np.sin(turns)], axis=1)  # (F, 2)

    best, best_hits = None, frames + 1
    for fraction in (0.3, 0.25, 0.35, 0.2, 0.4, 0.15):
        xy = centre + fraction * 2 * centre * unit
        hits = _frames_in_boxes(xy, obstacles, clearance_m)
        if hits < best_hits:
            best, best_hits = xy, hits
        if hits == 0:
            break
    assert best is not None
    along = 2 * np.pi * np.arange(frames) / frames
    z = height_m + 0.03 * np.sin(3 * along + phase[1])
    translations = np.column_stack([best, z])

    to_centre = centre - best
    yaws = np.arctan2(to_centre[:, 1], to_centre[:, 0]) + np.radians(30) * np.sin(
        2 * along + phase[2]
    )
    pitches = np.radians(-17.5 + 12.5 * np.sin(5 * along + phase[3]))
    rotations = np.stack([look_rotation(y, p) for y, p in zip(yaws, pitches, strict=True)])
    return translations, rotations


def obstacle_boxes(
    box_min: np.ndarray, box_max: np.ndarray, height_m: float = SENSOR_HEIGHT_M
) -> np.ndarray:
    """(K, 2, 3) float64 boxes, of the (K, 3) furniture boxes given, too tall for a sensor at
    `height_m` to pass over: the `obstacles` of `orbit_trajectory`."""
    box_min, box_max = np.asarray(box_min, np.float64), np.asarray(box_max, np.float64)
    tall = box_max[:, 2] > height_m - OBSTACLE_BELOW_SENSOR_M
    return np.stack([box_min[tall], box_max[tall]], axis=1).reshape(-1, 2, 3)


def _frames_in_boxes(xy: np.ndarray, boxes: np.ndarray | None, clearance: float) -> int:
    """How many of the (F, 2) positions lie within `clearance` of a (K, 2, 3) box footprint."""
    if boxes is None or len(boxes) == 0:
        return 0
    low, high = boxes[None, :, 0, :2] - clearance, boxes[None, :, 1, :2] + clearance
    inside = ((xy[:, None] >= low) & (xy[:, None] <= high)).all(axis=2)  # (F, K)
    return int(inside.any(axis=1).sum())


def visible(points_sensor: np.ndarray, sensor: SensorModel) -> np.ndarray:
    """Indices (M,) int64, ascending, of the (N, 3) sensor-frame points the sensor sees: in the
    field of view, within range, and not behind a nearer surface at their pixel."""
    fx, fy = sensor.focal_px
    in_front = np.flatnonzero(points_sensor[:, 0] > 1e-3)
    x, y, z = (points_sensor[in_front, i].astype(np.float32) for i in range(3))
    u = np.floor(sensor.width / 2 - fx * y / x).astype(np.int64)
    v = np.floor(sensor.height / 2 - fy * z / x).astype(np.int64)

    # Occluders: every point in front whose splat reaches the image; the z-buffer keeps the
    # nearest depth per pixel. One scatter per ring of the splat squares, not per offset.
    zbuffer = np.full(sensor.height * sensor.width, np.inf, np.float32)
    radius = np.minimum(np.rint(sensor.splat_m * fx / (2 * x)), _MAX_SPLAT_PX).astype(np.int64)
    reaches = (u + radius >= 0) & (u - radius < sensor.width)
    reaches &= (v + radius >= 0) & (v - radius < sensor.height)
    occluders = np.flatnonzero(reaches)
    for ring in range(int(radius[occluders].max(initial=0)) + 1):
        members = occluders[radius[occluders] >= ring]
        offsets = _ring_offsets(ring)  # (K, 2)
        pu = (u[members, None] + offsets[:, 0]).ravel()
        pv = (v[members, None] + offsets[:, 1]).ravel()
        depth = np.repeat(x[members], len(offsets))
        inside = (pu >= 0) & (pu < sensor.width) & (pv >= 0) & (pv < sensor.height)
        np.minimum.at(zbuffer, pv[inside] * sensor.width + pu[inside], depth[inside])

    distance = np.sqrt(x * x + y * y + z * z)
    in_image = (u >= 0) & (u < sensor.width) & (v >= 0) & (v < sensor.height)
    in_range = (distance >= sensor.min_range_m) & (distance <= sensor.max_range_m)
    candidates = np.flatnonzero(in_image & in_range)
    nearest = zbuffer[v[candidates] * sensor.width + u[candidates]]
    depth = x[candidates]
    seen = depth <= nearest + sensor.depth_tolerance_m + sensor.depth_tolerance_rel * depth
    return in_front[candidates[seen]]


def _ring_offsets(ring: int) -> np.ndarray:
    """(K, 2) int64 pixel offsets (du, dv) at Chebyshev distance `ring` ((1, 2): the centre,
    for 0)."""
    span = np.arange(-ring, ring + 1)
    du, dv = np.meshgrid(span, span)
    on_ring = np.maximum(abs(du), abs(dv)) == ring
    return np.column_stack([du[on_ring], dv[on_ring]])


def scan(
    points: np.ndarray,
    colors: np.ndarray,
    translation: np.ndarray,
    rotation: np.ndarray,
    sensor: SensorModel,
    rng: np.random.Generator,
) -> ScanFrame:
    """One frame from the pose (translation (3,), rotation (3, 3)) of the (N, 3) map-frame
    points with (N, 3) uint8 colors; range noise is drawn from `rng`."""
    translation = np.asarray(translation, np.float64)
    rotation = np.asarray(rotation, np.float64)
    # The inverse pose takes map points into the sensor frame: x_sensor = R^T (x_map - t).
    local = ((np.asarray(points, np.float64) - translation) @ rotation).astype(np.float32)
    indices = visible(local, sensor)
    seen = local[indices].astype(np.float64)
    distance = np.linalg.norm(seen, axis=1)
    sigma = sensor.noise_m + sensor.noise_quadratic * distance**2
    # Range noise moves each point along its own ray.
    seen *= (1 + rng.normal(0.0, 1.0, len(seen)) * sigma / distance)[:, None]
    return ScanFrame(
        points=seen.astype(np.float32),
        colors=np.asarray(colors)[indices],
        indices=indices,
        translation=translation,
        rotation=rotation,
    )


def scan_trajectory(
    points: np.ndarray,
    colors: np.ndarray,
    translations: np.ndarray,
    rotations: np.ndarray,
    sensor: SensorModel,
    *,
    seed: int,
) -> Iterator[ScanFrame]:
    """Scans along the (F, 3) translations and (F, 3, 3) rotations, one frame per pose.

    points (N, 3) in the map frame; colors (N, 3) uint8. Frame i's noise depends only on
    (seed, i), so any frame can be reproduced alone.
    """
    if colors.dtype != np.uint8 or colors.shape != points.shape:
        raise ValueError(f"colors must be uint8 {points.shape}, got {colors.dtype} {colors.shape}")
    for i, (translation, rotation) in enumerate(zip(translations, rotations, strict=True)):
        rng = np.random.default_rng([seed, i])
        yield scan(points, colors, translation, rotation, sensor, rng)
