"""Scoring replayed instructions against a bag's ground truth; offline and live use the same code.

The model only knows what the sensor saw, so it is scored on the ground-truth points that were
OBSERVED: those with an accumulated scene point (a voxel mean) within `radius`, about a voxel,
at the time of the instruction; each stands for its nearest scene point. Truth: the observed
points of the target instances. Prediction: a set of map-frame points (offline, the scene points
under the target mask; live, the node's target cloud) marks the scene points nearest to them
(within `radius`), and so the observed points standing for those. Going through the scene
points rather than marking every ground-truth point near a predicted one keeps a neighbour's
points (the table under a cup) out of a perfect prediction. Relevant elements are point sets
mapped the same way. IoU, Acc@k, no-target accuracy and relevant recall then come from
r2s_model.eval.metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from r2s_model.data.io import SceneArrays
from r2s_model.eval.metrics import SampleResult, score_sample
from r2s_ros.accumulator import SceneSnapshot


def nearest_within(
    reference: np.ndarray, query: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """For query points (Q, 3): whether a reference point (R, 3) lies within radius, (Q,) bool,
    and the index of the nearest one, (Q,) int64 (meaningless where not within radius)."""
    if len(reference) == 0 or len(query) == 0:
        return np.zeros(len(query), bool), np.zeros(len(query), np.int64)
    distances, indices = cKDTree(reference).query(query, distance_upper_bound=radius)
    within = np.isfinite(distances)
    return within, np.where(within, indices, 0)


@dataclass
class InstructionScore:
    """The score of one instruction and its masks over the ground-truth points (N,) bool."""

    result: SampleResult
    observed: np.ndarray
    truth: np.ndarray
    predicted: np.ndarray
    relevant_truth: np.ndarray  # union of the observed relevant instances


class GroundTruthScorer:
    """Scores predictions on one ground-truth scene (points in the map frame)."""

    def __init__(self, scene: SceneArrays, radius: float) -> None:
        if not radius > 0:
            raise ValueError(f"radius must be > 0, got {radius}")
        self.scene = scene
        self.radius = radius
        # (scene version, voxels) -> observed (N,) bool, nearest scene point (N,) int64
        self._cache: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None

    def observed(self, snapshot: SceneSnapshot) -> tuple[np.ndarray, np.ndarray]:
        """Ground-truth points with a scene point within radius, (N,) bool, and the index of
        that nearest scene point, (N,) int64; cached per scene version and size, since
        consecutive instructions usually share the scene."""
        key = (snapshot.version, snapshot.num_voxels)
        if self._cache is None or self._cache[0] != key:
            within, nearest = nearest_within(snapshot.points, self.scene.points, self.radius)
            self._cache = (key, within, nearest)
        return self._cache[1], self._cache[2]

    def score(
        self,
        record: dict[str, Any],
        snapshot: SceneSnapshot,
        predicted_points: np.ndarray | None,
        *,
        relevant_points: Sequence[np.ndarray] = (),
        target_score: float | None = None,
        latency_ms: float | None = None,
    ) -> InstructionScore:
        """Scores one instruction. record: the ground-truth record (sample_id, category,
        target_ids, relevant_ids); snapshot: the scene the model answered on; predicted_points
        (P, 3) map-frame points, or None when the model gave no answer (an error, a dropped
        instruction, a timeout), which scores IoU 0 and a wrong no-target answer;
        relevant_points: (R_i, 3) per predicted relevant element."""
        observed, nearest = self.observed(snapshot)
        instance = self.scene.instance
        truth = observed & np.isin(instance, record["target_ids"])
        relevant_truth = [observed & (instance == i) for i in record["relevant_ids"]]
        relevant_truth = [mask for mask in relevant_truth if mask.any()]  # never-seen ones: out
        relevant_union = np.zeros_like(truth)
        for mask in relevant_truth:
            relevant_union |= mask
        if predicted_points is None:
            predicted = np.zeros_like(truth)
            result = SampleResult(
                sample_id=record["sample_id"],
                category=record["category"],
                iou=0.0,
                is_no_target=not truth.any(),
                predicted_empty=False,  # no answer is not a correct "nothing there"
                relevant_truth=len(relevant_truth),
                latency_ms=latency_ms,
            )
            return InstructionScore(result, observed, truth, predicted, relevant_union)

        def mark(points: np.ndarray) -> np.ndarray:
            """(N,) bool: observed points whose scene point is nearest to one of points."""
            within, closest = nearest_within(snapshot.points, points, self.radius)
            marked = np.zeros(snapshot.num_voxels, bool)
            marked[closest[within]] = True
            return observed & marked[nearest]

        predicted = mark(predicted_points)
        result = score_sample(
            record["sample_id"],
            record["category"],
            predicted,
            truth,
            target_score=target_score,
            relevant_predicted=[mark(points) for points in relevant_points],
            relevant_truth=relevant_truth,
            latency_ms=latency_ms,
        )
        return InstructionScore(result, observed, truth, predicted, relevant_union)
