"""The object proposals of one scene as the grounding head reads them, and pairwise geometry.

Boxes are axis-aligned in the scene frame (metres). The relation features between a candidate
and an anchor object are what spatial words are made of: offsets, distances, the gap between
the boxes, vertical stacking and horizontal overlap, relative size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

NUM_RELATION_FEATURES = 12


@dataclass
class ObjectSet:
    """K objects of one scene (or B scenes padded to K, with leading batch dims).

    features (..., K, D) float32 pooled parser features; category_probs (..., K, C) and
    color_probs (..., K, L) float32; box_min, box_max (..., K, 3) float32 metres;
    valid (..., K) bool (False at padding).
    """

    features: Tensor
    category_probs: Tensor
    color_probs: Tensor
    box_min: Tensor
    box_max: Tensor
    valid: Tensor

    def __len__(self) -> int:
        return self.features.shape[-2]

    @property
    def centers(self) -> Tensor:
        return (self.box_min + self.box_max) / 2

    @property
    def sizes(self) -> Tensor:
        return self.box_max - self.box_min

    def labels(self, colors: tuple[str, ...], categories: tuple[str, ...]) -> list[tuple[str, str]]:
        """Each object's likeliest (colour, category) of one scene (no batch dims)."""
        color_index = self.color_probs.argmax(-1).tolist()
        category_index = self.category_probs.argmax(-1).tolist()
        pairs = zip(color_index, category_index, strict=True)
        return [(colors[color], categories[category]) for color, category in pairs]

    def scene_box(self) -> tuple[Tensor, Tensor]:
        """(..., 3) lower and upper corners spanned by the valid boxes."""
        big = torch.finfo(self.box_min.dtype).max
        valid = self.valid[..., None]
        low = torch.where(valid, self.box_min, big).amin(-2)
        high = torch.where(valid, self.box_max, -big).amax(-2)
        return low, high

    def to(self, device: torch.device) -> ObjectSet:
        return ObjectSet(*(getattr(self, name).to(device) for name in self.__dataclass_fields__))

    @staticmethod
    def stack(sets: list[ObjectSet]) -> ObjectSet:
        """B single-scene sets -> one (B, K_max, ...) set padded with invalid objects."""
        size = max(1, max(len(s) for s in sets))

        def padded(name: str) -> Tensor:
            values = [getattr(s, name) for s in sets]
            out = values[0].new_zeros((len(values), size, *values[0].shape[1:]))
            for row, value in enumerate(values):
                out[row, : len(value)] = value
            return out

        return ObjectSet(*(padded(name) for name in ObjectSet.__dataclass_fields__))


def relation_features(candidates: ObjectSet, anchors_min: Tensor, anchors_max: Tensor) -> Tensor:
    """Geometry of every candidate relative to every anchor box.

    candidates (B, K) objects; anchors_min, anchors_max (B, P, 3) -> (B, K, P, 12) float32:
    centre offset xyz, centre distance, horizontal distance, box gap, bottom-minus-anchor-top,
    anchor-bottom-minus-top, horizontal overlap share, log volume ratio, log footprint ratio,
    height difference of the centres relative to the anchor height.
    """
    low, high = candidates.box_min[:, :, None], candidates.box_max[:, :, None]
    anchor_low, anchor_high = anchors_min[:, None], anchors_max[:, None]
    offset = (low + high) / 2 - (anchor_low + anchor_high) / 2
    distance = offset.norm(dim=-1, keepdim=True)
    horizontal = offset[..., :2].norm(dim=-1, keepdim=True)
    separation = (torch.maximum(low - anchor_high, anchor_low - high)).clamp_min(0)
    gap = separation.norm(dim=-1, keepdim=True)
    above = low[..., 2:] - anchor_high[..., 2:]
    below = anchor_low[..., 2:] - high[..., 2:]
    overlap_xy = (torch.minimum(high, anchor_high) - torch.maximum(low, anchor_low))[..., :2]
    overlap = overlap_xy.clamp_min(0).prod(-1, keepdim=True)
    size = (high - low).clamp_min(0.02)
    anchor_size = (anchor_high - anchor_low).clamp_min(0.02)
    footprint = size[..., :2].prod(-1, keepdim=True)
    anchor_footprint = anchor_size[..., :2].prod(-1, keepdim=True)
    overlap_share = overlap / torch.minimum(footprint, anchor_footprint)
    volume_ratio = torch.log(size.prod(-1, keepdim=True) / anchor_size.prod(-1, keepdim=True))
    footprint_ratio = torch.log(footprint / anchor_footprint)
    relative_height = offset[..., 2:] / anchor_size[..., 2:]
    features = [offset, distance, horizontal, gap, above, below, overlap_share]
    features += [volume_ratio / 3, footprint_ratio / 3, relative_height.clamp(-5, 5)]
    return torch.cat(features, dim=-1)
