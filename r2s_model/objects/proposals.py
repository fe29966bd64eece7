"""Object proposals: superpoints grouped into object instances, each described for the LLM.

Touching superpoints join when the parser says they belong to the same object (link
probability above the threshold) and agree on the category; the connected components are
the proposals. Each carries its superpoints, pooled features, category and color
distributions and its axis-aligned box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.csgraph import connected_components
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

    @property
    def centers(self) -> Tensor:
        return (self.box_min + self.box_max) / 2

    @property
    def sizes(self) -> Tensor:
        return self.box_max - self.box_min

    def point_objects(self, superpoints: Tensor) -> Tensor:
        """superpoints (N,) int64 -> (N,) int64 proposal of each point."""
        return self.superpoint_object[superpoints]


def group_superpoints(parsed: ParsedScene, link_threshold: float) -> np.ndarray:
    """(S,) int64 component id of each superpoint of a one-scene ParsedScene, ordered by each
    component's first superpoint."""
    num_superpoints = len(parsed.features)
    category = parsed.semantic_logits.argmax(1)
    edges = parsed.edges
    joined = (parsed.link_logits.sigmoid() > link_threshold) & (
        category[edges[:, 0]] == category[edges[:, 1]]
    )
    kept = edges[joined].cpu().numpy()
    graph = sparse.coo_matrix(
        (np.ones(len(kept)), (kept[:, 0], kept[:, 1])), shape=(num_superpoints,) * 2
    )
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))  # component -> rank of its first superpoint
    return order[labels].astype(np.int64)


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
