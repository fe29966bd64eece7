"""Hand-made superpoint descriptors: color statistics, height above the floor, shape.

They complement the sparse encoder's learned features with cues that are cheap and exact
(the benchmark's probes found pooled color, height and size alone separate categories
better than an untrained encoder) and are invariant to rotation about the vertical axis.
"""

from __future__ import annotations

import torch
from torch import Tensor

from r2s_model.encoder import superpoint_pool

NUM_DESCRIPTORS = 14
# The floor is estimated as this low quantile of each scene's heights, robust to a few points
# of noise below it.
FLOOR_QUANTILE = 0.005


def floor_heights(points: Tensor, batch: Tensor, num_scenes: int) -> Tensor:
    """points (N, 3), batch (N,) int64 sorted -> (B,) float32 floor height of each scene."""
    floors = points.new_zeros(num_scenes)
    counts = torch.bincount(batch, minlength=num_scenes).tolist()
    for scene, heights in enumerate(torch.split(points[:, 2], counts)):
        if len(heights):
            rank = max(1, int(FLOOR_QUANTILE * len(heights)))
            floors[scene] = heights.kthvalue(rank).values
    return floors


def superpoint_descriptors(
    points: Tensor, colors: Tensor, superpoints: Tensor, centroids: Tensor, floor: Tensor
) -> Tensor:
    """points (N, 3) metres, colors (N, 3) in [0, 1], superpoints (N,) int64, centroids (S, 3)
    mean point of each superpoint (the encoder's), floor (N,) the floor height under each
    point -> (S, NUM_DESCRIPTORS) float32:

    mean color (3, in [-1, 1]), color standard deviation (3), centroid / lowest / highest
    height above the floor (3), square roots of the covariance eigenvalues (3, metres,
    ascending), |z| of the normal and of the principal direction (2).
    """
    points = points.float()
    num_superpoints = len(centroids)
    mean_color = superpoint_pool(colors, superpoints, num_superpoints)
    color_spread = superpoint_pool(
        (colors - mean_color[superpoints]) ** 2, superpoints, num_superpoints
    )
    height = (points[:, 2] - floor)[:, None]
    index = superpoints[:, None]
    lowest = height.new_zeros(num_superpoints, 1).scatter_reduce(
        0, index, height, "amin", include_self=False
    )
    highest = height.new_zeros(num_superpoints, 1).scatter_reduce(
        0, index, height, "amax", include_self=False
    )
    offsets = points - centroids[superpoints]
    outer = (offsets[:, :, None] * offsets[:, None, :]).flatten(1)
    covariance = superpoint_pool(outer, superpoints, num_superpoints).view(-1, 3, 3)
    # A tiny ridge keeps eigh stable for single-point and perfectly flat superpoints.
    eigenvalues, eigenvectors = torch.linalg.eigh(
        covariance + 1e-8 * torch.eye(3, device=points.device)
    )
    return torch.cat(
        [
            mean_color * 2 - 1,
            color_spread.clamp_min(0).sqrt(),
            superpoint_pool(height, superpoints, num_superpoints),
            lowest,
            highest,
            eigenvalues.clamp_min(0).sqrt(),
            eigenvectors[:, 2, 0:1].abs(),  # z of the smallest-eigenvalue direction (normal)
            eigenvectors[:, 2, 2:3].abs(),  # z of the principal direction
        ],
        dim=1,
    )
