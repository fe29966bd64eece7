"""Scene encoder: a sparse 3D U-Net over voxels (SPFormer / Reason3D style) pooled to superpoints.

Points are voxelized per scene, encoded by submanifold sparse convolutions with stride-2
down-sampling and skip-connected up-sampling, and the voxel features are gathered back to the
points and averaged per superpoint.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import spconv.pytorch as spconv
import torch
from torch import Tensor, nn

from r2s_model.spconv_compat import patch_spconv_cpu_backward, patch_spconv_cpu_scatter

patch_spconv_cpu_backward()
patch_spconv_cpu_scatter()

# rgb scaled to [-1, 1] + xyz relative to the scene's centre.
IN_CHANNELS = 6


@dataclass
class EncoderConfig:
    """Sparse U-Net shape; widths[i] is the channel count at stride 2**i."""

    voxel_size: float = 0.02  # metres
    widths: tuple[int, ...] = (32, 64, 96, 128, 160)
    blocks_per_level: int = 2


@dataclass
class VoxelGrid:
    """Voxels of a batch of scenes, each scene gridded from its own minimum corner."""

    coords: Tensor  # (V, 4) int32 [batch, x, y, z] voxel indices, non-negative
    features: Tensor  # (V, C) float32 mean of point features in the voxel
    point_to_voxel: Tensor  # (N,) int64
    spatial_shape: list[int]  # [X, Y, Z], one more than the largest index on each axis
    batch_size: int


@dataclass
class SuperpointFeatures:
    """Per-superpoint encoder output; rows follow the global superpoint ids."""

    features: Tensor  # (S, D) float32, D = widths[0]
    centroids: Tensor  # (S, 3) float32 mean xyz (metres, input frame)
    extents: Tensor  # (S, 3) float32 max - min xyz per superpoint
    point_counts: Tensor  # (S,) int64
    batch: Tensor  # (S,) int64 scene index of each superpoint


def voxelize(points: Tensor, features: Tensor, batch: Tensor, voxel_size: float) -> VoxelGrid:
    """points (N, 3) float32, features (N, C) float32, batch (N,) int64 scene index -> VoxelGrid."""
    device = points.device
    if points.shape[0] == 0:
        return VoxelGrid(
            coords=torch.zeros(0, 4, dtype=torch.int32, device=device),
            features=features.new_zeros(0, features.shape[1]),
            point_to_voxel=torch.zeros(0, dtype=torch.int64, device=device),
            spatial_shape=[1, 1, 1],
            batch_size=0,
        )
    batch_size = int(batch.max()) + 1
    scene_min = points.new_full((batch_size, 3), float("inf"))
    scene_min = scene_min.scatter_reduce(0, batch[:, None].expand(-1, 3), points, "amin")
    cells = torch.floor((points - scene_min[batch]) / voxel_size).long()
    shape = cells.max(0).values + 1
    keys = ((batch * shape[0] + cells[:, 0]) * shape[1] + cells[:, 1]) * shape[2] + cells[:, 2]
    voxel_keys, point_to_voxel = torch.unique(keys, return_inverse=True)

    coords = torch.stack(
        [
            voxel_keys // (shape[0] * shape[1] * shape[2]),
            voxel_keys // (shape[1] * shape[2]) % shape[0],
            voxel_keys // shape[2] % shape[1],
            voxel_keys % shape[2],
        ],
        dim=1,
    )
    return VoxelGrid(
        coords=coords.int(),
        features=superpoint_pool(features, point_to_voxel, len(voxel_keys)),
        point_to_voxel=point_to_voxel,
        spatial_shape=shape.tolist(),
        batch_size=batch_size,
    )


def superpoint_pool(values: Tensor, superpoints: Tensor, num_superpoints: int) -> Tensor:
    """values (N, D), superpoints (N,) int64 in [0, S) -> (S, D) mean per id (empty ids -> 0)."""
    sums = values.new_zeros(num_superpoints, values.shape[1]).index_add(0, superpoints, values)
    counts = torch.bincount(superpoints, minlength=num_superpoints).clamp(min=1)
    return sums / counts[:, None].to(values.dtype)


def _norm(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=1e-4, momentum=0.1)


class ResidualBlock(spconv.SparseModule):
    """Pre-activation residual block of two 3x3x3 submanifold convolutions."""

    def __init__(self, in_channels: int, out_channels: int, indice_key: str) -> None:
        super().__init__()
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Linear(in_channels, out_channels, bias=False)
        )
        self.body = spconv.SparseSequential(
            _norm(in_channels),
            nn.ReLU(),
            spconv.SubMConv3d(
                in_channels, out_channels, 3, padding=1, bias=False, indice_key=indice_key
            ),
            _norm(out_channels),
            nn.ReLU(),
            spconv.SubMConv3d(
                out_channels, out_channels, 3, padding=1, bias=False, indice_key=indice_key
            ),
        )

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        out = self.body(x)
        return out.replace_feature(out.features + self.shortcut(x.features))


class SparseUNet(nn.Module):
    """(V, 6) voxel features -> (V, widths[0]) voxel features, same voxels and order.

    BatchNorm in training mode needs more than one voxel at the coarsest level (stride
    2**(len(widths) - 1)), which any real scene has.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        widths, blocks = cfg.widths, cfg.blocks_per_level
        self.stride = 2 ** (len(widths) - 1)
        self.stem = spconv.SubMConv3d(
            IN_CHANNELS, widths[0], 3, padding=1, bias=False, indice_key="subm0"
        )
        self.encoders = nn.ModuleList(
            spconv.SparseSequential(*[ResidualBlock(w, w, f"subm{i}") for _ in range(blocks)])
            for i, w in enumerate(widths)
        )
        # Each up-sampling reuses its down-sampling's indice_key, so it restores exactly the
        # finer level's voxels in the same order and the skip features concatenate row-wise.
        self.downs = nn.ModuleList(
            spconv.SparseSequential(
                _norm(fine),
                nn.ReLU(),
                spconv.SparseConv3d(fine, coarse, 2, stride=2, bias=False, indice_key=f"down{i}"),
            )
            for i, (fine, coarse) in enumerate(itertools.pairwise(widths))
        )
        self.ups = nn.ModuleList(
            spconv.SparseSequential(
                _norm(coarse),
                nn.ReLU(),
                spconv.SparseInverseConv3d(coarse, fine, 2, bias=False, indice_key=f"down{i}"),
            )
            for i, (fine, coarse) in enumerate(itertools.pairwise(widths))
        )
        self.decoders = nn.ModuleList(
            spconv.SparseSequential(
                ResidualBlock(2 * w, w, f"subm{i}"),
                *[ResidualBlock(w, w, f"subm{i}") for _ in range(blocks - 1)],
            )
            for i, w in enumerate(widths[:-1])
        )
        self.head = nn.Sequential(_norm(widths[0]), nn.ReLU())

    def forward(self, grid: VoxelGrid) -> Tensor:
        # Stride-2 convolutions drop a trailing odd row, so pad the grid to the total stride.
        shape = [-(-size // self.stride) * self.stride for size in grid.spatial_shape]
        x = spconv.SparseConvTensor(grid.features, grid.coords, shape, grid.batch_size)
        x = self.stem(x)
        skips = []
        for encoder, down in zip(self.encoders[:-1], self.downs, strict=True):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.encoders[-1](x)
        for up, decoder, skip in reversed(list(zip(self.ups, self.decoders, skips, strict=True))):
            x = up(x)
            x = decoder(x.replace_feature(torch.cat([skip.features, x.features], 1)))
        return self.head(x.features)


class SceneEncoder(nn.Module):
    """Colored points of a batch of scenes -> per-superpoint features and geometry."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.out_dim = cfg.widths[0]
        self.unet = SparseUNet(cfg)

    def forward(
        self, points: Tensor, colors: Tensor, superpoints: Tensor, batch: Tensor
    ) -> SuperpointFeatures:
        """points (N, 3) float32 metres, colors (N, 3) float32 in [0, 1], superpoints (N,) int64
        global ids contiguous over the batch, batch (N,) int64 sorted -> SuperpointFeatures."""
        num_superpoints = int(superpoints.max()) + 1 if superpoints.numel() else 0
        num_scenes = int(batch.max()) + 1 if batch.numel() else 0
        scene_batch = _scene_of_each_superpoint(superpoints, batch, num_superpoints)

        centres = superpoint_pool(points, batch, num_scenes)
        features = torch.cat([colors * 2 - 1, points - centres[batch]], 1)
        if points.shape[0]:
            grid = voxelize(points, features, batch, self.cfg.voxel_size)
            point_features = self.unet(grid)[grid.point_to_voxel]
        else:
            point_features = points.new_zeros(0, self.out_dim)

        index = superpoints[:, None].expand(-1, 3)
        low = points.new_zeros(num_superpoints, 3)
        high = points.new_zeros(num_superpoints, 3)
        return SuperpointFeatures(
            features=superpoint_pool(point_features, superpoints, num_superpoints),
            centroids=superpoint_pool(points, superpoints, num_superpoints),
            extents=high.scatter_reduce(0, index, points, "amax", include_self=False)
            - low.scatter_reduce(0, index, points, "amin", include_self=False),
            point_counts=torch.bincount(superpoints, minlength=num_superpoints),
            batch=scene_batch,
        )


def _scene_of_each_superpoint(superpoints: Tensor, batch: Tensor, num_superpoints: int) -> Tensor:
    """(S,) int64 scene index per superpoint; raises if one id spans several scenes."""
    first = batch.new_zeros(num_superpoints).scatter_reduce(
        0, superpoints, batch, "amin", include_self=False
    )
    last = batch.new_zeros(num_superpoints).scatter_reduce(
        0, superpoints, batch, "amax", include_self=False
    )
    if bool((first != last).any()):
        raise ValueError("superpoint ids must be global: an id occurs in more than one scene")
    return first


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
