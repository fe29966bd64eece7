"""Pretraining losses of the SceneParser."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from r2s_model.objects.parser import ParsedScene
from r2s_model.objects.targets import IGNORE


@dataclass
class ParserLossWeights:
    semantic: float = 1.0
    color: float = 0.5
    link: float = 1.0


def parser_losses(
    parsed: ParsedScene,
    instance: Tensor,
    category: Tensor,
    color: Tensor,
    class_weights: Tensor,
    weights: ParserLossWeights,
) -> dict[str, Tensor]:
    """instance, category, color (S,) int64 superpoint targets; class_weights (C,) float32.

    semantic: class-weighted cross-entropy; color: cross-entropy of the object's color name;
    link: binary cross-entropy of same-object on touching pairs, positives and negatives
    weighted equally (most touching pairs are the same object). Returns every term and "total".
    """
    semantic = F.cross_entropy(
        parsed.semantic_logits, category, weight=class_weights, ignore_index=IGNORE
    )
    color_loss = F.cross_entropy(parsed.color_logits, color, ignore_index=IGNORE)
    first, second = instance[parsed.edges[:, 0]], instance[parsed.edges[:, 1]]
    labelled = (first > 0) & (second > 0)
    same = (first == second)[labelled].float()
    logits = parsed.link_logits[labelled]
    positives = same.sum().clamp_min(1)
    negatives = (1 - same).sum().clamp_min(1)
    pair_weights = torch.where(same > 0, 0.5 / positives, 0.5 / negatives)
    link = (
        F.binary_cross_entropy_with_logits(logits, same, weight=pair_weights, reduction="sum")
        if len(same)
        else parsed.link_logits.sum() * 0
    )
    total = weights.semantic * semantic + weights.color * color_loss + weights.link * link
    return {"semantic": semantic, "color": color_loss, "link": link, "total": total}
