"""Scanned views of generated scenes: what the node accumulates when a depth camera sweeps a room.

A generated scene is complete and evenly sampled; the node sees something else: a few dozen
noisy depth frames (`scan_sim`) fused into a 2 cm voxel map, with occluded parts missing, every
surface a little thick where frames disagree, and superpoints computed on that map. The parser
pretrains on such views (`objects.batches.augment`) and is scored on them (`eval.scene_eval`),
so that what it learns holds on the robot's clouds, not only on the benchmark's rooms.

Each voxel takes the mean position and colour of the points that fell in it, and the most
frequent (instance, category) label among them; objects with no voxel are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from r2s_model.data.io import SceneArrays, color_bytes
from r2s_model.superpoints import SuperpointParams, compute_superpoints
from r2s_model.synthetic.furniture import STRUCTURE
from r2s_model.synthetic.scan_sim import (
    SensorModel,
    obstacle_boxes,
    orbit_trajectory,
    scan_trajectory,
)


@dataclass(frozen=True)
class ScanViewConfig:
    """How a scanned view is simulated: one loop around the room with `min_frames` to
    `max_frames` depth frames from a height in [min_height_m, max_height_m], fused at the
    node's voxel size (config/r2s.yaml, scene.voxel_size)."""

    min_frames: int = 10
    max_frames: int = 40
    min_height_m: float = 1.1
    max_height_m: float = 1.6
    voxel_size: float = 0.02
    points_per_m2: float = 1500.0  # the scenes' sampling density: sizes the occlusion splats

    def __post_init__(self) -> None:
        if not 1 <= self.min_frames <= self.max_frames:
            raise ValueError(f"need 1 <= min_frames <= max_frames: {self}")
        if not 0 < self.min_height_m <= self.max_height_m:
            raise ValueError(f"need 0 < min_height_m <= max_height_m: {self}")
        if not (self.voxel_size > 0 and self.points_per_m2 > 0):
            raise ValueError(f"voxel_size and points_per_m2 must be > 0: {self}")


def scanned_view(
    scene: SceneArrays, rng: np.random.Generator, config: ScanViewConfig
) -> SceneArrays:
    """A simulated accumulated scan of `scene` (map frame: the scene's), labelled from it, with
    superpoints computed on it as at inference. Deterministic given the state of `rng`."""
    low, high = scene.points.min(0).astype(np.float64), scene.points.max(0).astype(np.float64)
    height = rng.uniform(config.min_height_m, config.max_height_m)
    frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    boxes = _furniture_boxes(scene) - np.array([low[0], low[1], 0.0])
    translations, rotations = orbit_trajectory(
        (high[0] - low[0], high[1] - low[1]),
        frames,
        seed=int(rng.integers(2**31)),
        height_m=height,
        obstacles=obstacle_boxes(boxes[:, 0], boxes[:, 1], height),
    )
    translations[:, :2] += low[:2]
    sensor = SensorModel(splat_m=1.2 / np.sqrt(config.points_per_m2))
    scans = list(
        scan_trajectory(
            scene.points,
            color_bytes(scene.colors),
            translations,
            rotations,
            sensor,
            seed=int(rng.integers(2**31)),
        )
    )
    points = np.concatenate([f.points @ f.rotation.T + f.translation for f in scans])
    seen = np.concatenate([f.indices for f in scans])
    colors = np.concatenate([f.colors for f in scans]).astype(np.float64) / 255.0
    voxel_points, voxel_colors, voxel_of = voxel_means(points, colors, config.voxel_size)
    num_categories = int(scene.semantic.max()) + 1
    label = scene.instance[seen].astype(np.int64) * num_categories + scene.semantic[seen]
    voxel_label = majority(voxel_of, label, len(voxel_points))
    instance = (voxel_label // num_categories).astype(np.int32)
    present = np.isin(scene.object_ids, instance)
    voxel_points = voxel_points.astype(np.float32)
    voxel_colors = voxel_colors.astype(np.float32)
    return SceneArrays(
        scene_id=f"{scene.scene_id}_scan",
        points=voxel_points,
        colors=voxel_colors,
        instance=instance,
        semantic=(voxel_label % num_categories).astype(np.int32),
        superpoints=compute_superpoints(voxel_points, voxel_colors, SuperpointParams()).astype(
            np.int32
        ),
        object_ids=scene.object_ids[present],
        object_categories=[c for c, p in zip(scene.object_categories, present, strict=True) if p],
        object_colors=[c for c, p in zip(scene.object_colors, present, strict=True) if p],
    )


def voxel_means(
    points: np.ndarray, colors: np.ndarray, size: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """points (N, 3), colors (N, 3) -> mean points (V, 3) and colors (V, 3) float64 of the
    occupied voxels of edge `size` (in key order), and the voxel (N,) int64 of each point."""
    cells = np.floor(points / size).astype(np.int64)
    cells -= cells.min(0)
    dims = cells.max(0) + 1
    keys = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    _, voxel_of, counts = np.unique(keys, return_inverse=True, return_counts=True)
    means = [
        np.column_stack([np.bincount(voxel_of, values[:, axis]) for axis in range(3)])
        / counts[:, None]
        for values in (points, colors)
    ]
    return means[0], means[1], voxel_of


def majority(groups: np.ndarray, labels: np.ndarray, num_groups: int) -> np.ndarray:
    """(num_groups,) int64: the most frequent of the (N,) int64 `labels` in each of the (N,)
    `groups` (every group must occur); labels must not be negative; ties go to the smaller label."""
    span = int(labels.max()) + 1 if len(labels) else 1
    pairs, counts = np.unique(groups * span + labels, return_counts=True)
    group, label = pairs // span, pairs % span
    order = np.lexsort((label, -counts, group))
    first = np.unique(group[order], return_index=True)[1]
    if len(first) != num_groups:
        raise ValueError(f"{num_groups - len(first)} groups have no label")
    return label[order[first]]


def _furniture_boxes(scene: SceneArrays) -> np.ndarray:
    """(K, 2, 3) float64 min and max corners of the scene's non-structure objects."""
    boxes = []
    for object_id, category in zip(scene.object_ids, scene.object_categories, strict=True):
        if category in STRUCTURE:
            continue
        members = scene.points[scene.instance == object_id]
        if len(members):
            boxes.append((members.min(0), members.max(0)))
    return np.array(boxes, np.float64).reshape(-1, 2, 3)
