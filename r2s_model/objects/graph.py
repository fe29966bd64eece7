"""Which superpoints touch: the graph the grouping into objects runs on."""

from __future__ import annotations

import numpy as np
from scipy import sparse

# The 13 half-neighbourhood offsets plus the cell itself, so each touching pair is found once.
_OFFSETS = np.array([o for o in np.ndindex(3, 3, 3) if o >= (1, 1, 1)], dtype=np.int64) - 1


def superpoint_adjacency(
    points: np.ndarray, superpoints: np.ndarray, num_superpoints: int, cell: float = 0.05
) -> np.ndarray:
    """Pairs of superpoints with points in the same or 26-adjacent cells of size `cell`.

    points (N, 3) float metres, superpoints (N,) int64 in [0, S) -> (E, 2) int64 with
    edges[:, 0] < edges[:, 1], sorted, each pair once. Gaps up to about `cell` are bridged, so
    a thin object whose parts barely touch in a noisy scan stays connected.
    """
    if len(points) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    cells = np.floor((points - points.min(0)) / cell).astype(np.int64) + 1
    dims = cells.max(0) + 2
    strides = np.array([dims[1] * dims[2], dims[2], 1], dtype=np.int64)
    occupied = np.unique(np.column_stack([cells @ strides, superpoints]), axis=0)
    keys, cell_index = np.unique(occupied[:, 0], return_inverse=True)
    membership = sparse.csr_matrix(
        (np.ones(len(occupied), np.float32), (cell_index, occupied[:, 1])),
        shape=(len(keys), num_superpoints),
    )
    neighbour_keys = (keys[:, None] + _OFFSETS @ strides).ravel()
    found = np.minimum(np.searchsorted(keys, neighbour_keys), len(keys) - 1)
    exists = keys[found] == neighbour_keys
    sources = np.repeat(np.arange(len(keys)), len(_OFFSETS))[exists]
    cell_pairs = sparse.csr_matrix(
        (np.ones(len(sources), np.float32), (sources, found[exists])), shape=(len(keys),) * 2
    )
    touching = (membership.T @ cell_pairs @ membership).tocoo()
    pairs = np.column_stack([touching.row, touching.col]).astype(np.int64)
    pairs = np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1)
    return np.unique(pairs, axis=0)
