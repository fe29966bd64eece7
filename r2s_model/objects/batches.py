"""Training batches of the SceneParser: augmented scenes with superpoint targets and edges.

Augmentation makes full generated rooms look like what a robot accumulates: a share of the
views are simulated scans fused as the node fuses them (`synthetic.scanned`), the others cut-outs
of the whole room (a side cut away, holes where the sensor never looked, fewer points); all are
rotated about the vertical axis, scaled and recolored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from r2s_model.data.io import SceneArrays
from r2s_model.objects.graph import superpoint_adjacency
from r2s_model.objects.parser import ParserConfig
from r2s_model.objects.targets import superpoint_targets
from r2s_model.synthetic.scanned import ScanViewConfig, scanned_view


@dataclass
class AugmentConfig:
    scan_prob: float = 0.0  # share of views that are simulated accumulated scans (`scan`)
    scan: ScanViewConfig = field(default_factory=ScanViewConfig)
    min_keep: float = 0.35  # random subsample keeps this share of the points or more
    max_points: int = 100_000  # and at most this many
    cut_prob: float = 0.4  # chance of cutting the scene along a random vertical plane
    hole_prob: float = 0.5  # chance of 1-3 spherical holes of radius 0.3-1.0 m
    scale: float = 0.05  # isotropic scale in [1 - scale, 1 + scale]
    color_shift: float = 0.04  # per-channel offset in [-shift, shift]
    brightness: float = 0.15  # factor in [1 - b, 1 + b]
    jitter_m: float = 0.005  # Gaussian position noise (metres)


@dataclass
class ParserBatch:
    """points (N, 3), colors (N, 3) float32; superpoints (N,) global ids ordered by scene; batch
    (N,); edges (E, 2); instance, category, color (S,) int64 targets."""

    points: Tensor
    colors: Tensor
    superpoints: Tensor
    batch: Tensor
    edges: Tensor
    instance: Tensor
    category: Tensor
    color: Tensor

    def to(self, device: torch.device) -> ParserBatch:
        return ParserBatch(*(getattr(self, name).to(device) for name in self.__dataclass_fields__))


def augment(
    scene: SceneArrays, rng: np.random.Generator, config: AugmentConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """-> points (M, 3) float32, colors (M, 3) float32, superpoints (M,) int64 contiguous,
    instance (M,) int64: a random view of the scene."""
    if rng.random() < config.scan_prob:
        scene = scanned_view(scene, rng, config.scan)
        indices = np.arange(len(scene.points))
    else:
        indices = _cut_out(scene.points, rng, config)
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    chosen = scene.points[indices].astype(np.float64)
    xy = chosen[:, :2] @ rotation.T
    xyz = np.column_stack([xy, chosen[:, 2]]) * rng.uniform(1 - config.scale, 1 + config.scale)
    xyz += rng.normal(0, config.jitter_m, xyz.shape)
    rgb = scene.colors[indices] * rng.uniform(1 - config.brightness, 1 + config.brightness)
    rgb = np.clip(rgb + rng.uniform(-config.color_shift, config.color_shift, 3), 0, 1)
    _, superpoints = np.unique(scene.superpoints[indices], return_inverse=True)
    return (
        xyz.astype(np.float32),
        rgb.astype(np.float32),
        superpoints.astype(np.int64),
        scene.instance[indices].astype(np.int64),
    )


def _cut_out(points: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Sorted indices (M,) of the (N, 3) points a cut-out view keeps."""
    keep = np.ones(len(points), dtype=bool)
    low, high = points.min(0), points.max(0)
    if rng.random() < config.cut_prob:
        angle = rng.uniform(0, 2 * np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        centre = rng.uniform(
            low[:2] + 0.3 * (high[:2] - low[:2]), high[:2] - 0.3 * (high[:2] - low[:2])
        )
        keep &= (points[:, :2] - centre) @ direction < 0
    if rng.random() < config.hole_prob:
        for _ in range(rng.integers(1, 4)):
            centre = rng.uniform(low, high)
            keep &= np.linalg.norm(points - centre, axis=1) > rng.uniform(0.3, 1.0)
    if keep.sum() < 0.2 * len(points):  # cut and holes together left too little: keep all
        keep[:] = True
    indices = np.flatnonzero(keep)
    count = min(config.max_points, int(len(indices) * rng.uniform(config.min_keep, 1.0)))
    return np.sort(rng.choice(indices, size=max(count, 1), replace=False))


def parser_batch(
    views: list[tuple[SceneArrays, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    config: ParserConfig,
) -> ParserBatch:
    """Collates (scene, points, colors, superpoints, instance) views into one batch."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ParserBatch.__dataclass_fields__}
    offset = 0
    for index, (scene, points, colors, superpoints, instance) in enumerate(views):
        count = int(superpoints.max()) + 1
        targets = superpoint_targets(
            superpoints, instance, count, scene.object_ids, scene.object_categories,
            scene.object_colors, config.categories, config.colors,
        )  # fmt: skip
        edges = superpoint_adjacency(points, superpoints, count, config.adjacency_cell)
        parts["points"].append(points)
        parts["colors"].append(colors)
        parts["superpoints"].append(superpoints + offset)
        parts["batch"].append(np.full(len(points), index, dtype=np.int64))
        parts["edges"].append(edges + offset)
        parts["instance"].append(targets.instance)
        parts["category"].append(targets.category)
        parts["color"].append(targets.color)
        offset += count
    return ParserBatch(*(torch.from_numpy(np.concatenate(parts[name])) for name in parts))
