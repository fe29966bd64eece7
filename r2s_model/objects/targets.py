"""Ground truth per superpoint, from the per-point instance labels of a scene."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -100  # cross_entropy's ignore_index: superpoints without a labelled object


@dataclass
class SuperpointTargets:
    """instance (S,) int64 majority instance id (0 = unlabelled); category (S,) and color (S,)
    int64 vocabulary indices of that object, IGNORE where unknown."""

    instance: np.ndarray
    category: np.ndarray
    color: np.ndarray


def majority_instance(
    superpoints: np.ndarray, instance: np.ndarray, num_superpoints: int
) -> np.ndarray:
    """(N,) superpoint ids, (N,) instance ids -> (S,) int64 the commonest instance of each
    superpoint (ties: the smaller id; superpoints without points: 0)."""
    pairs, counts = np.unique(
        np.column_stack([superpoints, instance]).astype(np.int64), axis=0, return_counts=True
    )
    order = np.lexsort((-counts, pairs[:, 0]))
    pairs = pairs[order]
    first = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]
    majority = np.zeros(num_superpoints, dtype=np.int64)
    majority[pairs[first, 0]] = pairs[first, 1]
    return majority


def superpoint_targets(
    superpoints: np.ndarray,
    instance: np.ndarray,
    num_superpoints: int,
    object_ids: np.ndarray,
    object_categories: list[str],
    object_colors: list[str],
    categories: tuple[str, ...],
    colors: tuple[str, ...],
) -> SuperpointTargets:
    """Targets of one scene; names outside the vocabularies become IGNORE."""
    majority = majority_instance(superpoints, instance, num_superpoints)
    size = int(max(object_ids.max(initial=0), majority.max(initial=0))) + 1
    category_of = np.full(size, IGNORE, dtype=np.int64)
    color_of = np.full(size, IGNORE, dtype=np.int64)
    category_index = {name: i for i, name in enumerate(categories)}
    color_index = {name: i for i, name in enumerate(colors)}
    for object_id, category, color in zip(
        object_ids, object_categories, object_colors, strict=True
    ):
        category_of[object_id] = category_index.get(category, IGNORE)
        color_of[object_id] = color_index.get(color, IGNORE)
    return SuperpointTargets(majority, category_of[majority], color_of[majority])
