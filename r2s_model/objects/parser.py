"""SceneParser: sparse encoder + superpoint context -> categories, colors and same-object links.

The sparse U-Net gives each superpoint local shape features; hand-made descriptors add color,
height and size; a few transformer layers over all superpoints of a scene, with attention
biased towards nearby superpoints (a learned slope per head), give each superpoint the
context of its object and its surroundings. Heads: a category and an object-color name per
superpoint, and a same-object logit per touching pair (`graph.superpoint_adjacency`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from r2s_model.encoder import EncoderConfig, SceneEncoder, pad_by_scene
from r2s_model.objects.descriptors import (
    NUM_DESCRIPTORS,
    floor_heights,
    superpoint_descriptors,
)

# The synthetic benchmark's vocabulary (tests check it against the generator).
CATEGORIES = (
    "floor", "wall", "window", "door", "chair", "stool", "table", "desk", "bed", "sofa",
    "cabinet", "shelf", "lamp", "monitor", "tv", "plant", "trash_can", "box", "cup", "bottle",
)  # fmt: skip
STRUCTURE = ("floor", "wall", "window", "door")
COLORS = (
    "red", "orange", "yellow", "green", "teal", "dark blue", "purple", "pink", "black", "grey",
    "silver", "white", "beige", "wooden brown",
)  # fmt: skip


@dataclass
class ParserConfig:
    """Shape of the SceneParser; saved with its weights."""

    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(
            voxel_size=0.05, widths=(32, 48, 64, 96), blocks_per_level=1
        )
    )
    dim: int = 128
    layers: int = 3
    heads: int = 4
    categories: tuple[str, ...] = CATEGORIES
    colors: tuple[str, ...] = COLORS
    adjacency_cell: float = 0.05  # metres; see graph.superpoint_adjacency
    link_threshold: float = 0.5  # groups merge while their mean same-object probability is above
    # this (proposals.average_linkage); the shipped parser's is calibrated (eval/calibrate.py)


@dataclass
class ParsedScene:
    """Per-superpoint outputs for a batch of scenes (rows follow the global superpoint ids).

    features (S, D) float32 context features; semantic_logits (S, C); color_logits (S, K);
    edges (E, 2) int64 touching pairs; link_logits (E,) same-object logits; centroids (S, 3);
    point_counts (S,) int64; batch (S,) int64 scene of each superpoint.
    """

    features: Tensor
    semantic_logits: Tensor
    color_logits: Tensor
    edges: Tensor
    link_logits: Tensor
    centroids: Tensor
    point_counts: Tensor
    batch: Tensor


class DistanceBiasedLayer(nn.Module):
    """Pre-norm transformer layer whose attention logits fall off linearly with distance."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        # Per-head falloff per metre: 0.5, 2, 8, 32, ... from wide context to the object itself.
        self.log_slopes = nn.Parameter(
            torch.log(0.5 * 4.0 ** torch.arange(heads, dtype=torch.float))
        )

    def forward(self, x: Tensor, distance: Tensor, mask: Tensor) -> Tensor:
        """x (B, S, D), distance (B, S, S) metres, mask (B, S) bool valid -> (B, S, D)."""
        batch, size, dim = x.shape
        q, k, v = (
            self.qkv(self.norm1(x)).view(batch, size, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        )
        bias = -self.log_slopes.exp()[None, :, None, None] * distance[:, None]
        bias = bias.masked_fill(~mask[:, None, None, :], float("-inf"))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        x = x + self.out(attended.transpose(1, 2).reshape(batch, size, dim))
        return x + self.ff(self.norm2(x))


class SceneParser(nn.Module):
    """Colored points with superpoints of a batch of scenes -> ParsedScene."""

    def __init__(self, config: ParserConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = SceneEncoder(config.encoder)
        dim = config.dim
        self.input = nn.Sequential(
            nn.Linear(self.encoder.out_dim + NUM_DESCRIPTORS, dim), nn.GELU(), nn.Linear(dim, dim)
        )
        self.layers = nn.ModuleList(
            DistanceBiasedLayer(dim, config.heads) for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.semantic_head = nn.Linear(dim, len(config.categories))
        self.color_head = nn.Linear(dim, len(config.colors))
        # Pair features: product and difference of the two ends, and their offset (|dxy|, dz).
        self.link_head = nn.Sequential(nn.Linear(2 * dim + 2, dim), nn.GELU(), nn.Linear(dim, 1))

    def forward(
        self, points: Tensor, colors: Tensor, superpoints: Tensor, batch: Tensor, edges: Tensor
    ) -> ParsedScene:
        """points (N, 3) float32 metres, colors (N, 3) float32 in [0, 1], superpoints (N,)
        int64 global ids (contiguous, ordered by scene), batch (N,) int64 sorted, edges (E, 2)
        int64 global superpoint pairs -> ParsedScene."""
        num_scenes = int(batch.max()) + 1 if batch.numel() else 0
        encoded = self.encoder(points, colors, superpoints, batch)
        floor = floor_heights(points, batch, num_scenes)[batch]
        descriptors = superpoint_descriptors(points, colors, superpoints, encoded.centroids, floor)
        tokens = self.input(torch.cat([encoded.features, descriptors], 1))

        padded, mask = pad_by_scene(tokens, encoded.batch, num_scenes)
        centroids, _ = pad_by_scene(encoded.centroids, encoded.batch, num_scenes)
        distance = torch.cdist(centroids, centroids)
        for layer in self.layers:
            padded = layer(padded, distance, mask)
        features = self.norm(padded)[mask]

        first, second = features[edges[:, 0]], features[edges[:, 1]]
        offset = encoded.centroids[edges[:, 0]] - encoded.centroids[edges[:, 1]]
        pair = torch.cat(
            [first * second, (first - second).abs(), offset[:, :2].norm(dim=1, keepdim=True),
             offset[:, 2:].abs()],
            dim=1,
        )  # fmt: skip
        return ParsedScene(
            features=features,
            semantic_logits=self.semantic_head(features),
            color_logits=self.color_head(features),
            edges=edges,
            link_logits=self.link_head(pair).squeeze(1),
            centroids=encoded.centroids,
            point_counts=encoded.point_counts,
            batch=encoded.batch,
        )
