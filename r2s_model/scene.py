"""A scene encoded once: superpoints, encoder features and spatial cues, reused per instruction."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from r2s_model.validation import CleanCloud


@dataclass
class SceneTokens:
    """Per-superpoint inputs of the compressor, decoder and prior pooling, padded per scene.

    tokens (B, S, D) float: encoder features + spatial encoding; mask (B, S) bool valid;
    centroids, extents (B, S, 3) float metres; point_counts (B, S) float (0 at padding).
    """

    tokens: Tensor
    mask: Tensor
    centroids: Tensor
    extents: Tensor
    point_counts: Tensor
    scene_min: Tensor
    scene_max: Tensor

    def select(self, index: Tensor) -> SceneTokens:
        """The scenes at `index` (B',) int64, e.g. one entry per instruction sample."""
        return SceneTokens(*(getattr(self, name)[index] for name in self.__dataclass_fields__))


@dataclass
class SceneEncoding:
    """What `R2SModel.encode_scene` returns; pass it to `segment` for every instruction.

    `tokens` is None for an empty scene (too few valid points). superpoints (M,) int64 over the
    cleaned cloud's points.
    """

    cloud: CleanCloud
    superpoints: Tensor | None
    tokens: SceneTokens | None
    superpoints_ms: float
    encode_ms: float
    # Finite input points the size cap removed (indices), and the nearest kept point of each.
    capped: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    capped_nearest: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @property
    def is_empty(self) -> bool:
        return self.tokens is None

    @property
    def num_superpoints(self) -> int:
        return 0 if self.tokens is None else int(self.tokens.mask.sum())

    def point_mask(self, superpoint_mask: Tensor) -> np.ndarray:
        """(S,) bool over superpoints -> (N,) bool over the points of the cloud given.

        Non-finite input points are False; points removed by the size cap take the value of
        their nearest kept point.
        """
        cloud = self.cloud
        kept_values = superpoint_mask.cpu().numpy()[self.superpoints.cpu().numpy()]
        full = np.zeros(cloud.num_input, dtype=bool)
        full[cloud.kept] = kept_values
        full[self.capped] = kept_values[self.capped_nearest]
        return full


def capped_neighbours(points: np.ndarray, cloud: CleanCloud) -> tuple[np.ndarray, np.ndarray]:
    """For the finite points of `points` (N, 3) that the size cap removed: their indices and the
    index of their nearest kept point, so masks can be given back for every input point."""
    if not cloud.subsampled:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    removed = np.isfinite(points).all(axis=1)
    removed[cloud.kept] = False
    nearest = cKDTree(cloud.points).query(points[removed].astype(np.float32), k=1)[1]
    return np.flatnonzero(removed), nearest.astype(np.int64)


def pad_by_scene(values: Tensor, batch: Tensor, num_scenes: int) -> tuple[Tensor, Tensor]:
    """values (S, ...) with scene index batch (S,) sorted -> (B, S_max, ...) zero-padded, mask."""
    counts = torch.bincount(batch, minlength=num_scenes)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(batch), device=batch.device) - starts[batch]
    size = int(counts.max()) if len(counts) else 0
    padded = values.new_zeros((num_scenes, size, *values.shape[1:]))
    padded[batch, slot] = values
    mask = torch.zeros(num_scenes, size, dtype=torch.bool, device=values.device)
    mask[batch, slot] = True
    return padded, mask


def superpoint_fractions(point_masks: Tensor, superpoints: Tensor, num_superpoints: int) -> Tensor:
    """Share of each superpoint's points inside each mask.

    point_masks (K, N) bool, superpoints (N,) int64 -> (K, S) float32 in [0, 1].
    """
    masks = point_masks.float()
    inside = masks.new_zeros(masks.shape[0], num_superpoints).index_add_(1, superpoints, masks)
    sizes = torch.bincount(superpoints, minlength=num_superpoints).clamp_min(1)
    return inside / sizes
