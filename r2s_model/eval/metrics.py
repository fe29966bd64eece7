"""Metrics of 3D reasoning segmentation, as reported in its research line.

Per sample: point IoU of the binarised target mask. Over samples: mIoU, Acc@0.25 and Acc@0.5
(share of samples with IoU >= the threshold; an IoU exactly at it counts), the same per reasoning
category, recall and precision of the relevant elements (one-to-one matches at IoU >= 0.5),
no-target accuracy, calibration of the target score and latency percentiles.

A no-target sample (all-False truth) scores IoU 1 when predicted empty and 0 otherwise, which
is what `point_iou` gives, so it counts in mIoU and Acc like any other sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

ACC_THRESHOLDS = {"acc25": 0.25, "acc50": 0.5}
CORRECT_IOU = 0.5
CALIBRATION_BINS = 10


def point_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two (N,) bool masks; 1.0 when both are empty."""
    if predicted.shape != truth.shape or predicted.ndim != 1:
        raise ValueError(f"expected two (N,) masks, got {predicted.shape} and {truth.shape}")
    if predicted.dtype != bool or truth.dtype != bool:
        raise ValueError(f"expected bool masks, got {predicted.dtype} and {truth.dtype}")
    union = np.count_nonzero(predicted | truth)
    return 1.0 if union == 0 else np.count_nonzero(predicted & truth) / union


def iou_matrix(predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> np.ndarray:
    """(P, T) float64 IoU of every predicted mask with every true mask, all (N,) bool."""
    if len(predicted) == 0 or len(truth) == 0:
        return np.zeros((len(predicted), len(truth)))
    left = np.stack(predicted).astype(np.float64)
    right = np.stack(truth).astype(np.float64)
    if left.shape[1] != right.shape[1]:
        raise ValueError(f"masks over {left.shape[1]} and {right.shape[1]} points")
    intersection = left @ right.T
    union = left.sum(1)[:, None] + right.sum(1)[None, :] - intersection
    return np.divide(intersection, union, out=np.ones_like(union), where=union > 0)


def match_relevant(
    predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray], threshold: float = CORRECT_IOU
) -> tuple[int, int, int]:
    """(true_positives, num_predicted, num_truth) of a one-to-one matching of (N,) bool masks.

    A pair can match when its IoU >= threshold; the assignment maximises the number of matches
    (Hungarian on the thresholded IoU), which a greedy best-IoU-first matching can miss.
    """
    allowed = (iou_matrix(predicted, truth) >= threshold).astype(np.float64)
    rows, columns = linear_sum_assignment(allowed, maximize=True)
    return int(allowed[rows, columns].sum()), len(predicted), len(truth)


@dataclass
class SampleResult:
    """The scores of one sample; relevant_* count relevant elements (matches, predicted, true)."""

    sample_id: str
    category: str
    iou: float
    is_no_target: bool
    predicted_empty: bool
    target_score: float | None = None
    relevant_tp: int = 0
    relevant_predicted: int = 0
    relevant_truth: int = 0
    latency_ms: float | None = None


def score_sample(
    sample_id: str,
    category: str,
    predicted: np.ndarray,
    truth: np.ndarray,
    *,
    target_score: float | None = None,
    relevant_predicted: Sequence[np.ndarray] = (),
    relevant_truth: Sequence[np.ndarray] = (),
    latency_ms: float | None = None,
) -> SampleResult:
    """Scores one prediction: predicted, truth (N,) bool target masks (truth all False for a
    no-target sample); target_score in [0, 1]; relevant masks (N,) bool each."""
    if target_score is not None and not 0.0 <= target_score <= 1.0:
        raise ValueError(f"target_score {target_score} is outside [0, 1]")
    tp, num_predicted, num_truth = match_relevant(relevant_predicted, relevant_truth)
    return SampleResult(
        sample_id=sample_id,
        category=category,
        iou=point_iou(predicted, truth),
        is_no_target=not truth.any(),
        predicted_empty=not predicted.any(),
        target_score=None if target_score is None else float(target_score),
        relevant_tp=tp,
        relevant_predicted=num_predicted,
        relevant_truth=num_truth,
        latency_ms=None if latency_ms is None else float(latency_ms),
    )


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else float(numerator / denominator)


def _segmentation(results: list[SampleResult]) -> dict:
    """mIoU, Acc@k, no-target accuracy and count; None where there is no sample to average."""
    ious = np.array([r.iou for r in results])
    no_target = [r.predicted_empty for r in results if r.is_no_target]
    summary: dict = {"miou": _ratio(ious.sum(), len(ious))}
    for name, threshold in ACC_THRESHOLDS.items():
        summary[name] = _ratio(np.count_nonzero(ious >= threshold), len(ious))
    summary["no_target_acc"] = _ratio(sum(no_target), len(no_target))
    summary["num_samples"] = len(results)
    return summary


def expected_calibration_error(scores: np.ndarray, correct: np.ndarray) -> float:
    """ECE over CALIBRATION_BINS equal-width bins of scores (M,) in [0, 1] against correct (M,)
    bool: sum over bins of (share of samples) * |mean score - share correct|."""
    bins = np.minimum((scores * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    score_sums = np.bincount(bins, weights=scores, minlength=CALIBRATION_BINS)
    correct_sums = np.bincount(bins, weights=correct, minlength=CALIBRATION_BINS)
    return float(np.abs(score_sums - correct_sums).sum() / len(scores))


def _calibration(results: list[SampleResult]) -> float | None:
    """ECE of the target score against "a target exists and IoU >= 0.5". On a no-target sample
    the event is false whatever was predicted: the score says there is an object to segment, so
    an empty prediction there should come with a low score, not a high one."""
    scored = [r for r in results if r.target_score is not None]
    if not scored:
        return None
    scores = np.array([r.target_score for r in scored])
    correct = np.array([not r.is_no_target and r.iou >= CORRECT_IOU for r in scored])
    return expected_calibration_error(scores, correct)


def _latency(results: list[SampleResult]) -> dict | None:
    latencies = [r.latency_ms for r in results if r.latency_ms is not None]
    if not latencies:
        return None
    p50, p95 = np.percentile(latencies, [50, 95])
    return {"p50": float(p50), "p95": float(p95)}


def summarize(results: list[SampleResult]) -> dict:
    """Aggregate metrics as plain JSON-serialisable values.

    Keys: miou, acc25, acc50, no_target_acc, num_samples, relevant_recall, relevant_precision,
    calibration_ece, latency_ms ({p50, p95}) and per_category ({category: {miou, acc25, acc50,
    no_target_acc, num_samples}}). An average over nothing is None: every rate with no samples,
    no_target_acc without no-target samples, recall without true relevant elements, precision
    without predicted ones, calibration without scores, latency without timings.
    """
    categories = sorted({r.category for r in results})
    return {
        **_segmentation(results),
        "relevant_recall": _ratio(
            sum(r.relevant_tp for r in results), sum(r.relevant_truth for r in results)
        ),
        "relevant_precision": _ratio(
            sum(r.relevant_tp for r in results), sum(r.relevant_predicted for r in results)
        ),
        "calibration_ece": _calibration(results),
        "latency_ms": _latency(results),
        "per_category": {
            category: _segmentation([r for r in results if r.category == category])
            for category in categories
        },
    }
