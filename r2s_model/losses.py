"""Per-superpoint mask losses, Hungarian matching and the set loss over decoder outputs.

Losses are computed in float32 whatever the model dtype. Optional per-superpoint weights (e.g.
point counts, 0 at padding) make the losses track point-level rather than superpoint-level masks.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from r2s_model.decoder import DecoderOutput

# Dice smoothing, in units of superpoint weight; keeps empty-mask/empty-target pairs finite.
_DICE_SMOOTH = 1.0


@dataclass
class MaskLossWeights:
    """Loss weights; ``aux`` scales each auxiliary layer's mask loss relative to the final one."""

    bce: float = 2.0
    dice: float = 0.5
    score: float = 0.5
    aux: float = 1.0


def _per_mask_bce(logits: Tensor, targets: Tensor, weights: Tensor | None) -> Tensor:
    """Weighted mean over the last dim of BCE; inputs broadcast to (..., S) -> (...)."""
    logits, targets = torch.broadcast_tensors(logits.float(), targets.float())
    losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if weights is None:
        return losses.mean(dim=-1)
    weights = weights.float()
    return (losses * weights).sum(dim=-1) / weights.sum(dim=-1).clamp_min(1e-6)


def _per_mask_dice(logits: Tensor, targets: Tensor, weights: Tensor | None) -> Tensor:
    """Weighted soft Dice loss over the last dim; inputs broadcast to (..., S) -> (...)."""
    probs = logits.float().sigmoid()
    targets = targets.float()
    weights = torch.ones_like(probs[..., :1]) if weights is None else weights.float()
    intersection = (probs * targets * weights).sum(dim=-1)
    total = (probs * weights).sum(dim=-1) + (targets * weights).sum(dim=-1)
    return 1.0 - (2.0 * intersection + _DICE_SMOOTH) / (total + _DICE_SMOOTH)


def sigmoid_bce_loss(logits: Tensor, targets: Tensor, weights: Tensor | None = None) -> Tensor:
    """logits (K,S), soft targets (K,S) in [0,1], weights (S,) or (K,S) -> scalar mean over K.

    Zero (still attached to ``logits``) when K = 0.
    """
    return _per_mask_bce(logits, targets, weights).sum() / max(logits.shape[0], 1)


def dice_loss(logits: Tensor, targets: Tensor, weights: Tensor | None = None) -> Tensor:
    """logits (K,S), soft targets (K,S) in [0,1], weights (S,) or (K,S) -> scalar mean over K.

    Zero (still attached to ``logits``) when K = 0.
    """
    return _per_mask_dice(logits, targets, weights).sum() / max(logits.shape[0], 1)


@torch.no_grad()
def hungarian_match(
    mask_logits: Tensor, target_masks: Tensor, weights: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Minimum-cost one-to-one assignment of predicted to target masks.

    Args:
        mask_logits: (K, S) float logits.
        target_masks: (G, S) float in [0, 1].
        weights: optional (S,) per-superpoint weights.

    Returns:
        (pred_idx, target_idx), int64 on ``mask_logits.device``, length min(K, G), pred_idx sorted.
        Cost = BCE + Dice of each (prediction, target) pair.
    """
    pairs_logits, pairs_targets = mask_logits[:, None, :], target_masks[None, :, :]
    cost = _per_mask_bce(pairs_logits, pairs_targets, weights) + _per_mask_dice(
        pairs_logits, pairs_targets, weights
    )
    pred_idx, target_idx = linear_sum_assignment(cost.cpu().numpy())
    device = mask_logits.device
    return (
        torch.as_tensor(pred_idx, dtype=torch.int64, device=device),
        torch.as_tensor(target_idx, dtype=torch.int64, device=device),
    )


def set_mask_loss(
    output: DecoderOutput,
    targets: list[Tensor],
    superpoint_weights: Tensor | None,
    weights: MaskLossWeights,
    *,
    match: bool,
) -> dict[str, Tensor]:
    """Mask + existence-score loss of a batch of decoder outputs.

    Args:
        output: decoder output with K query slots over S superpoints; ``output.query_mask`` marks
            valid queries (None = all valid).
        targets: B tensors, targets[b] (G_b, S) float in [0, 1], the fraction of each superpoint's
            points inside object g; G_b = 0 means no object.
        superpoint_weights: (B, S) float, e.g. point counts with 0 at padding; None = uniform
            over all S (padded superpoints then count too, though with zero loss).
        weights: loss weights.
        match: True pairs valid queries with objects by Hungarian matching on the final layer
            (the same pairs are used for the auxiliary layers, since a query's identity is fixed
            by its LLM token); False pairs the i-th valid query with target i.

    Returns:
        {'bce', 'dice', 'score', 'total'} float32 scalars. 'bce'/'dice' are final-layer losses
        averaged over the batch's matched pairs plus ``weights.aux`` times each auxiliary layer's;
        'score' is BCE of score_logits over valid queries, target 1 iff the query is matched.
        Terms with nothing to average are zero but keep the graph attached.
    """
    batch_size, num_queries, _ = output.mask_logits.shape
    query_mask = output.query_mask
    if query_mask is None:
        query_mask = torch.ones(
            batch_size, num_queries, dtype=torch.bool, device=output.mask_logits.device
        )

    batch_idx, query_idx, matched_targets = [], [], []
    for b in range(batch_size):
        valid_queries = query_mask[b].nonzero().squeeze(1)
        sample_targets = targets[b]
        if match:
            sample_weights = None if superpoint_weights is None else superpoint_weights[b]
            pred_idx, target_idx = hungarian_match(
                output.mask_logits[b, valid_queries], sample_targets, sample_weights
            )
            pred_idx = valid_queries[pred_idx]
        else:
            num_pairs = min(len(valid_queries), len(sample_targets))
            pred_idx = valid_queries[:num_pairs]
            target_idx = torch.arange(num_pairs, device=pred_idx.device)
        batch_idx.append(torch.full_like(pred_idx, b))
        query_idx.append(pred_idx)
        matched_targets.append(sample_targets[target_idx])
    batch_idx, query_idx = torch.cat(batch_idx), torch.cat(query_idx)
    matched_targets = torch.cat(matched_targets)
    pair_weights = None if superpoint_weights is None else superpoint_weights[batch_idx]

    bce = dice = output.mask_logits.new_zeros((), dtype=torch.float32)
    layer_weights = [1.0] + [weights.aux] * len(output.aux_mask_logits)
    for layer_weight, layer_logits in zip(
        layer_weights, [output.mask_logits, *output.aux_mask_logits], strict=True
    ):
        pair_logits = layer_logits[batch_idx, query_idx]
        bce = bce + layer_weight * sigmoid_bce_loss(pair_logits, matched_targets, pair_weights)
        dice = dice + layer_weight * dice_loss(pair_logits, matched_targets, pair_weights)

    score_targets = torch.zeros_like(query_mask, dtype=torch.float32)
    score_targets[batch_idx, query_idx] = 1.0
    score = F.binary_cross_entropy_with_logits(
        output.score_logits[query_mask].float(), score_targets[query_mask], reduction="sum"
    ) / max(int(query_mask.sum()), 1)

    total = weights.bce * bce + weights.dice * dice + weights.score * score
    return {"bce": bce, "dice": dice, "score": score, "total": total}
