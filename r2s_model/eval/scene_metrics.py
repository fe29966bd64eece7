"""Scene-understanding metrics: point semantics and object proposals against ground truth.

semantic_acc: share of points whose predicted category is right; semantic_macro_acc: mean
over categories of that share among the category's points. instance_recall50: share of
ground-truth objects some proposal covers at IoU >= 0.5; instance_precision50: share of
proposals (of at least `min_points` points) that match an object at IoU >= 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IOU_THRESHOLD = 0.5


@dataclass
class SceneScore:
    """One scene: confusion (C, C) int64 point counts [truth, prediction]; per ground-truth
    object its category index and whether a proposal matched it; proposals counted and
    matched; encode time."""

    scene_id: str
    confusion: np.ndarray
    object_categories: np.ndarray
    object_matched: np.ndarray
    num_proposals: int
    matched_proposals: int
    encode_ms: float


def object_ious(
    instance: np.ndarray, object_ids: np.ndarray, proposal: np.ndarray, num_proposals: int
) -> np.ndarray:
    """(K, P) IoU of every ground-truth object (`object_ids`) with every proposal.

    instance (N,) int ids per point, proposal (N,) int64 in [0, P) per point."""
    row_of = np.full(max(int(instance.max(initial=0)), int(object_ids.max(initial=0))) + 1, -1)
    row_of[object_ids] = np.arange(len(object_ids))
    point_rows = row_of[instance]
    labelled = point_rows >= 0
    intersection = np.zeros((len(object_ids), num_proposals), dtype=np.int64)
    np.add.at(intersection, (point_rows[labelled], proposal[labelled]), 1)
    object_sizes = np.bincount(point_rows[labelled], minlength=len(object_ids))
    proposal_sizes = np.bincount(proposal, minlength=num_proposals)
    union = object_sizes[:, None] + proposal_sizes[None, :] - intersection
    return intersection / np.maximum(union, 1)


def score_scene(
    scene_id: str,
    *,
    semantic: np.ndarray,
    predicted_semantic: np.ndarray,
    instance: np.ndarray,
    object_ids: np.ndarray,
    object_categories: np.ndarray,
    proposal: np.ndarray,
    num_categories: int,
    min_points: int,
    encode_ms: float,
) -> SceneScore:
    """semantic, predicted_semantic (N,) category indices; instance (N,) object ids; object_ids
    and object_categories (K,); proposal (N,) proposal index of each point."""
    confusion = np.bincount(
        semantic.astype(np.int64) * num_categories + predicted_semantic,
        minlength=num_categories**2,
    ).reshape(num_categories, num_categories)
    num_proposals = int(proposal.max()) + 1 if len(proposal) else 0
    ious = object_ious(instance, object_ids, proposal, num_proposals)
    counted = np.bincount(proposal, minlength=num_proposals) >= min_points
    matches = ious >= IOU_THRESHOLD
    return SceneScore(
        scene_id=scene_id,
        confusion=confusion,
        object_categories=object_categories.astype(np.int64),
        object_matched=matches.any(1),
        num_proposals=int(counted.sum()),
        matched_proposals=int((matches.any(0) & counted).sum()),
        encode_ms=encode_ms,
    )


def summarize_scenes(scores: list[SceneScore], categories: tuple[str, ...]) -> dict:
    """The report: overall metrics, p50 encode time and a per-category table."""
    confusion = sum(score.confusion for score in scores)
    truth_points = confusion.sum(1)
    correct = np.diag(confusion)
    present = truth_points > 0
    object_categories = np.concatenate([s.object_categories for s in scores])
    matched = np.concatenate([s.object_matched for s in scores])
    proposals = sum(s.num_proposals for s in scores)
    per_category = {}
    for index, name in enumerate(categories):
        of_category = object_categories == index
        if not present[index] and not of_category.any():
            continue
        per_category[name] = {
            "points": int(truth_points[index]),
            "point_acc": float(correct[index] / truth_points[index]) if present[index] else None,
            "objects": int(of_category.sum()),
            "recall50": float(matched[of_category].mean()) if of_category.any() else None,
        }
    return {
        "num_scenes": len(scores),
        "semantic_acc": float(correct.sum() / max(1, confusion.sum())),
        "semantic_macro_acc": float((correct[present] / truth_points[present]).mean()),
        "instance_recall50": float(matched.mean()) if len(matched) else 0.0,
        "instance_precision50": float(sum(s.matched_proposals for s in scores) / max(1, proposals)),
        "num_objects": len(matched),
        "num_proposals": int(proposals),
        "encode_ms": float(np.median([s.encode_ms for s in scores])) if scores else 0.0,
        "per_category": per_category,
    }
