"""A scene encoded once: its object proposals and the LLM's cache of their tokens, reused per
instruction."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree
from transformers import DynamicCache

from r2s_model.grounding.objects import ObjectSet
from r2s_model.validation import CleanCloud


@dataclass
class SceneEncoding:
    """What `R2SModel.encode_scene` returns; pass it to `segment` for every instruction.

    `objects` is None for an empty scene (too few valid points). point_objects (M,) int64 is
    the proposal of each cleaned-cloud point; `prefix` the LLM's KV-cache after the scene's
    object tokens (`prefix_length` tokens), which every instruction continues and crops back.
    """

    cloud: CleanCloud
    objects: ObjectSet | None
    point_objects: np.ndarray | None
    prefix: DynamicCache | None
    prefix_length: int
    superpoints_ms: float
    encode_ms: float
    # Each proposal's likeliest (colour, category), as the parser reads it.
    object_labels: list[tuple[str, str]] = field(default_factory=list)
    # Finite input points the size cap removed (indices), and the nearest kept point of each.
    capped: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    capped_nearest: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @property
    def is_empty(self) -> bool:
        return self.objects is None

    @property
    def num_objects(self) -> int:
        return 0 if self.objects is None else len(self.objects)

    def point_mask(self, object_index: int) -> np.ndarray:
        """(N,) bool over the points of the cloud given: the points of one proposal.

        Non-finite input points are False; points removed by the size cap take the value of
        their nearest kept point.
        """
        cloud = self.cloud
        kept_values = self.point_objects == object_index
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
