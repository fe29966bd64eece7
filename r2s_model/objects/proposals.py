"""Object proposals: superpoints grouped into object instances, each described for the LLM.

Grouping is average-linkage agglomeration on the graph of touching superpoints: the two
groups whose links (the parser's same-object probabilities, averaged over every touching pair
between them) are strongest merge first, until no pair of groups averages above the
threshold. Averaging makes one wrong link unable to chain two objects together, and lets an
object whose parts disagree on the category (a shelf board read as a cabinet) still come out
whole; the category is decided afterwards from the whole group. Each proposal carries its
superpoints, pooled features, category and color distributions and its axis-aligned box.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from r2s_model.encoder import superpoint_pool
from r2s_model.objects.parser import ParsedScene


@dataclass
class ObjectProposals:
    """The objects of one scene. K proposals over S superpoints:

    superpoint_object (S,) int64 proposal of each superpoint; features (K, D) float32 pooled
    context features; category_probs (K, C) and color_probs (K, L) float32 point-weighted mean
    probabilities; box_min, box_max (K, 3) float32 metres; point_counts (K,) int64.
    """

    superpoint_object: Tensor
    features: Tensor
    category_probs: Tensor
    color_probs: Tensor
    box_min: Tensor
    box_max: Tensor
    point_counts: Tensor

    def __len__(self) -> int:
        return len(self.features)

    def point_objects(self, superpoints: Tensor) -> Tensor:
        """superpoints (N,) int64 -> (N,) int64 proposal of each point."""
        return self.superpoint_object[superpoints]


def average_linkage(
    num_nodes: int, edges: np.ndarray, weights: np.ndarray, threshold: float
) -> np.ndarray:
    """Agglomerates graph nodes: edges (E, 2) int64, weights (E,) float in [0, 1] -> (N,)
    int64 group ids, ordered by each group's first node. Groups joined by any edge merge in
    order of their mean edge weight while it exceeds `threshold`."""
    parent = np.arange(num_nodes)
    # links[a][b] = [sum of weights, count] between the current groups a and b.
    links: list[dict[int, list[float]]] = [{} for _ in range(num_nodes)]
    for (a, b), weight in zip(edges.tolist(), weights.tolist(), strict=True):
        links[a][b] = links[b][a] = [weight, 1.0]
    heap = [(-w, a, b) for (a, b), w in zip(edges.tolist(), weights.tolist(), strict=True)]
    heap = [entry for entry in heap if -entry[0] > threshold]
    heapq.heapify(heap)
    while heap:
        negative, a, b = heapq.heappop(heap)
        link = links[a].get(b)
        if parent[a] != a or parent[b] != b or link is None or link[0] / link[1] != -negative:
            continue  # an entry made stale by an earlier merge
        if len(links[a]) < len(links[b]):
            a, b = b, a
        parent[b] = a
        del links[a][b], links[b][a]
        for other, (total, count) in links[b].items():
            del links[other][b]
            merged = links[a].setdefault(other, [0.0, 0.0])
            merged[0] += total
            merged[1] += count
            links[other][a] = merged
        links[b] = {}
        for other, (total, count) in links[a].items():
            if total / count > threshold:
                heapq.heappush(heap, (-total / count, min(a, other), max(a, other)))
    roots = parent.copy()
    while not np.array_equal(roots, roots[roots]):
        roots = roots[roots]
    _, first, groups = np.unique(roots, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[groups].astype(np.int64)


def group_superpoints(parsed: ParsedScene, link_threshold: float) -> np.ndarray:
    """(S,) int64 proposal of each superpoint of a one-scene ParsedScene."""
    return average_linkage(
        len(parsed.features),
        parsed.edges.cpu().numpy(),
        parsed.link_logits.sigmoid().float().cpu().numpy(),
        link_threshold,
    )


def build_proposals(
    parsed: ParsedScene, points: Tensor, superpoints: Tensor, link_threshold: float
) -> ObjectProposals:
    """One scene's proposals. points (N, 3) float32, superpoints (N,) int64 in [0, S)."""
    superpoint_object = torch.from_numpy(group_superpoints(parsed, link_threshold)).to(
        points.device
    )
    count = int(superpoint_object.max()) + 1 if len(superpoint_object) else 0
    weights = parsed.point_counts.float()[:, None]

    def pooled(values: Tensor) -> Tensor:
        total = superpoint_pool(values * weights, superpoint_object, count)
        return total / superpoint_pool(weights, superpoint_object, count).clamp_min(1e-9)

    point_object = superpoint_object[superpoints][:, None].expand(-1, 3)
    box_min = points.new_zeros(count, 3).scatter_reduce(
        0, point_object, points, "amin", include_self=False
    )
    box_max = points.new_zeros(count, 3).scatter_reduce(
        0, point_object, points, "amax", include_self=False
    )
    return ObjectProposals(
        superpoint_object=superpoint_object,
        features=pooled(parsed.features),
        category_probs=pooled(parsed.semantic_logits.softmax(1)),
        color_probs=pooled(parsed.color_logits.softmax(1)),
        box_min=box_min,
        box_max=box_max,
        point_counts=torch.bincount(superpoint_object[superpoints], minlength=count),
    )
