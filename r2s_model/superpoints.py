"""Superpoints: over-segmentation of a raw colored point cloud into small coherent regions.

Robots have no mesh, so the cloud is voxelized and segmented on the voxel adjacency graph
(26-neighbourhood), in the spirit of curvature-bounded region growing:

1. Per voxel, a normal and a curvature (surface variation) from the covariance of the points
   in its 3x3x3 neighbourhood.
2. Flat voxels are joined when their normals and colors agree. Curved voxels (creases where
   two surfaces meet) never propagate a region: each one joins at most its most similar flat
   neighbour, so regions cannot leak around an edge into the next surface.
3. Curved voxels left over (thin or strongly curved objects) are grouped among themselves with
   the same normal and color tests.
4. Regions wider than `max_extent` (floors, walls) are cut into even cells.
5. Regions of fewer than `min_voxels` voxels merge into their most similar adjacent region.

Everything is vectorized over voxels and edges; ids are deterministic and ordered by the
first voxel (in x, y, z key order) of each superpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class SuperpointParams:
    """Tuning of `compute_superpoints`.

    Defaults were tuned on room-scale clouds of ~0.7-5k points/m²; keep voxel_size at least
    about twice the mean point spacing so that surfaces stay connected in the voxel graph.
    """

    voxel_size: float = 0.04  # metres; the graph's node size
    max_normal_angle_deg: float = 30.0  # adjacent voxels with a wider normal angle are cut
    max_color_distance: float = 0.12  # Euclidean RGB distance (colors in [0, 1]) for a join
    max_curvature: float = 0.04  # surface variation λ_min / Σλ above which a voxel is curved
    max_extent: float = 0.5  # metres; wider regions are cut into even cells no wider than this
    min_voxels: int = 10  # regions of fewer voxels merge into their most similar neighbour
    merge_passes: int = 3  # bound on the rounds of small-region merging


@dataclass(frozen=True)
class _Voxels:
    coords: np.ndarray  # (V, 3) int64 voxel indices
    colors: np.ndarray  # (V, 3) float64 mean color
    normals: np.ndarray  # (V, 3) float64 unit normal, sign arbitrary
    curvature: np.ndarray  # (V,) float64 in [0, 1/3]; 1 where the neighbourhood is degenerate


# Half of the 26 neighbour offsets, so each undirected edge is found once.
_HALF_OFFSETS = np.array([o for o in np.ndindex(3, 3, 3) if o > (1, 1, 1)], dtype=np.int64) - 1


def compute_superpoints(
    points: np.ndarray, colors: np.ndarray, params: SuperpointParams | None = None
) -> np.ndarray:
    """points (N, 3) float32 metres (finite), colors (N, 3) float32 in [0, 1] -> (N,) int64 ids.

    Ids are contiguous 0..S-1 and follow voxel order, not the order of the points.
    """
    params = params or SuperpointParams()
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    points = np.asarray(points, np.float64)
    # Relative coordinates keep the covariance moments well conditioned far from the origin.
    points = points - points.min(0)
    keys, coords, point_to_voxel, strides = _voxel_keys(points, params.voxel_size)
    edges = _adjacency(keys, strides)
    voxels = _voxel_geometry(points, np.asarray(colors, np.float64), coords, point_to_voxel, edges)

    cos_limit = np.cos(np.radians(params.max_normal_angle_deg))
    cosine = np.abs(np.einsum("ij,ij->i", voxels.normals[edges[:, 0]], voxels.normals[edges[:, 1]]))
    color_distance = np.linalg.norm(voxels.colors[edges[:, 0]] - voxels.colors[edges[:, 1]], axis=1)
    similar = (cosine >= cos_limit) & (color_distance <= params.max_color_distance)
    dissimilarity = (1 - cosine) / (1 - cos_limit) + color_distance / params.max_color_distance

    joins = _region_joins(voxels, edges, similar, dissimilarity, params.max_curvature)
    labels = _components(len(coords), joins)
    labels = _split_wide(labels, voxels, joins, params.max_extent / params.voxel_size)
    labels = _merge_small(labels, voxels, edges, dissimilarity, params)
    return _first_seen_order(labels)[point_to_voxel]


def superpoint_purity(superpoints: np.ndarray, instance: np.ndarray) -> float:
    """Share of points whose superpoint's majority instance equals their own (1.0 = perfect)."""
    if len(superpoints) == 0:
        return 1.0
    pairs, pair_counts = np.unique(
        np.column_stack([superpoints, instance]), axis=0, return_counts=True
    )
    majority = np.zeros(pairs[:, 0].max() + 1, dtype=np.int64)
    np.maximum.at(majority, pairs[:, 0], pair_counts)
    return float(majority.sum() / len(superpoints))


def _voxel_keys(
    points: np.ndarray, voxel_size: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sorted voxel keys (V,), coords (V, 3), point_to_voxel (N,) and key strides (3,), int64."""
    # A one-cell margin on every side keeps neighbour keys of boundary voxels from aliasing.
    cells = np.floor(points / voxel_size).astype(np.int64) + 1
    dims = cells.max(0) + 2
    strides = np.array([dims[1] * dims[2], dims[2], 1])
    keys, point_to_voxel = np.unique(cells @ strides, return_inverse=True)
    coords = np.column_stack([keys // strides[0], keys // strides[1] % dims[1], keys % dims[2]])
    return keys, coords, point_to_voxel, strides


def _adjacency(keys: np.ndarray, strides: np.ndarray) -> np.ndarray:
    """(E, 2) int64 pairs of 26-adjacent voxels, each undirected edge once."""
    neighbour_keys = (keys[:, None] + _HALF_OFFSETS @ strides).ravel()
    found = np.minimum(np.searchsorted(keys, neighbour_keys), len(keys) - 1)
    exists = keys[found] == neighbour_keys
    sources = np.repeat(np.arange(len(keys)), len(_HALF_OFFSETS))
    return np.column_stack([sources[exists], found[exists]])


def _voxel_geometry(
    points: np.ndarray,
    colors: np.ndarray,
    coords: np.ndarray,
    point_to_voxel: np.ndarray,
    edges: np.ndarray,
) -> _Voxels:
    """Mean colors, and normals and curvature from each voxel's 3x3x3 neighbourhood."""
    num_voxels, num_points = len(coords), len(points)
    upper = [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]
    moments = np.column_stack(
        [np.ones(num_points), points, points[:, upper[0]] * points[:, upper[1]], colors]
    )
    membership = sparse.csr_matrix(
        (np.ones(num_points), (point_to_voxel, np.arange(num_points))),
        shape=(num_voxels, num_points),
    )
    per_voxel = membership @ moments
    neighbourhood = _symmetric_graph(num_voxels, edges) + sparse.identity(num_voxels, format="csr")
    pooled = neighbourhood @ per_voxel[:, :10]

    count = pooled[:, :1]
    mean = pooled[:, 1:4] / count
    second = pooled[:, 4:10] / count - mean[:, upper[0]] * mean[:, upper[1]]
    covariance = second[:, [[0, 1, 2], [1, 3, 4], [2, 4, 5]]]
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    total = eigenvalues.sum(1)
    # Fewer than three points, or all on one line or spot, give no surface: treat as curved.
    degenerate = (count[:, 0] < 3) | (eigenvalues[:, 1] <= 1e-12 * total)
    curvature = np.where(degenerate, 1.0, eigenvalues[:, 0] / np.where(degenerate, 1.0, total))
    return _Voxels(
        coords=coords,
        colors=per_voxel[:, 10:13] / per_voxel[:, :1],
        normals=eigenvectors[:, :, 0],
        curvature=curvature,
    )


def _region_joins(
    voxels: _Voxels,
    edges: np.ndarray,
    similar: np.ndarray,
    dissimilarity: np.ndarray,
    max_curvature: float,
) -> np.ndarray:
    """(J, 2) edges whose endpoints belong to the same region before size handling."""
    flat = voxels.curvature <= max_curvature
    flat_a, flat_b = flat[edges[:, 0]], flat[edges[:, 1]]
    flat_joins = edges[similar & flat_a & flat_b]

    # A curved voxel joins only its single most similar flat neighbour: it ends the region.
    bridging = similar & (flat_a != flat_b)
    curved_end = np.where(flat_a, edges[:, 1], edges[:, 0])[bridging]
    flat_end = np.where(flat_a, edges[:, 0], edges[:, 1])[bridging]
    best = _argmin_per_group(curved_end, dissimilarity[bridging])
    attachments = np.column_stack([curved_end[best], flat_end[best]])

    loose = ~flat
    loose[curved_end[best]] = False
    curved_joins = edges[similar & loose[edges[:, 0]] & loose[edges[:, 1]]]
    return np.concatenate([flat_joins, attachments, curved_joins])


def _split_wide(
    labels: np.ndarray, voxels: _Voxels, joins: np.ndarray, max_extent_voxels: float
) -> np.ndarray:
    """Cut regions into the fewest even cells no wider than max_extent; pieces stay connected."""
    num_regions = labels.max() + 1
    low = np.full((num_regions, 3), np.iinfo(np.int64).max)
    high = np.full((num_regions, 3), np.iinfo(np.int64).min)
    np.minimum.at(low, labels, voxels.coords)
    np.maximum.at(high, labels, voxels.coords)
    span = high - low + 1
    cells = np.ceil(span / max_extent_voxels).astype(np.int64)
    cell = (voxels.coords - low[labels]) * cells[labels] // span[labels]
    base = cells.max() + 1
    piece = ((labels * base + cell[:, 0]) * base + cell[:, 1]) * base + cell[:, 2]
    inside = piece[joins[:, 0]] == piece[joins[:, 1]]
    return _components(len(labels), joins[inside])


def _merge_small(
    labels: np.ndarray,
    voxels: _Voxels,
    edges: np.ndarray,
    dissimilarity: np.ndarray,
    params: SuperpointParams,
) -> np.ndarray:
    """Merge regions under min_voxels into the neighbour across their most similar edge."""
    for _ in range(params.merge_passes):
        small = np.bincount(labels) < params.min_voxels
        region_a, region_b = labels[edges[:, 0]], labels[edges[:, 1]]
        crossing = region_a != region_b
        from_a, from_b = crossing & small[region_a], crossing & small[region_b]
        if not (from_a.any() or from_b.any()):
            break
        sources = np.concatenate([region_a[from_a], region_b[from_b]])
        targets = np.concatenate([region_b[from_a], region_a[from_b]])
        best = _argmin_per_group(
            sources, np.concatenate([dissimilarity[from_a], dissimilarity[from_b]])
        )
        # Each small region points to one target, so a merged group holds at most one large one.
        merged = _components(len(small), np.column_stack([sources[best], targets[best]]))
        labels = merged[labels]
    return labels


def _argmin_per_group(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the smallest value within each group (ties: lowest index), one per group."""
    order = np.lexsort((values, groups))
    is_first = np.ones(len(order), dtype=bool)
    is_first[1:] = groups[order[1:]] != groups[order[:-1]]
    return order[is_first]


def _symmetric_graph(num_nodes: int, edges: np.ndarray) -> sparse.csr_matrix:
    """(num_nodes, num_nodes) float64 adjacency with both directions of every edge."""
    both = np.concatenate([edges, edges[:, ::-1]])
    weights = np.ones(len(both))
    return sparse.csr_matrix((weights, (both[:, 0], both[:, 1])), shape=(num_nodes, num_nodes))


def _components(num_nodes: int, joins: np.ndarray) -> np.ndarray:
    """(num_nodes,) int64 connected-component label of each node under the given joins."""
    graph = sparse.csr_matrix(
        (np.ones(len(joins)), (joins[:, 0], joins[:, 1])), shape=(num_nodes, num_nodes)
    )
    return connected_components(graph, directed=False)[1].astype(np.int64)


def _first_seen_order(labels: np.ndarray) -> np.ndarray:
    """Relabel to 0..S-1 in order of each label's first occurrence."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse]
