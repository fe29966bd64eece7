"""Replay scoring on hand-built scenes: observed ground truth, point-set predictions, no-target."""

from __future__ import annotations

import numpy as np
import pytest

from r2s_model.data.io import SceneArrays
from r2s_model.eval.metrics import summarize
from r2s_ros.accumulator import SceneSnapshot
from r2s_ros.bags.scoring import GroundTruthScorer, nearest_within

RADIUS = 0.05
# Three 5 x 5 grids of points 10 cm apart (over twice RADIUS, so each ground-truth point is
# matched by its own scene point only), 1 m apart along x: objects 1, 2 and 3.
GRID = np.stack(np.meshgrid(np.arange(5), np.arange(5), indexing="ij"), -1).reshape(-1, 2) * 0.1


def object_points(instance: int) -> np.ndarray:
    return np.column_stack([GRID[:, 0] + instance, GRID[:, 1], np.zeros(len(GRID))])


def ground_truth(
    points: np.ndarray | None = None, instance: np.ndarray | None = None
) -> SceneArrays:
    """The three grids, or the given points (N, 3) of instances (N,)."""
    if points is None:
        points = np.concatenate([object_points(i) for i in (1, 2, 3)])
        instance = np.repeat([1, 2, 3], len(GRID))
    count = len(points)
    return SceneArrays(
        scene_id="hand",
        points=np.asarray(points, np.float32),
        colors=np.full((count, 3), 0.5, np.float32),
        instance=np.asarray(instance, np.int32),
        semantic=np.zeros(count, np.int32),
        superpoints=np.zeros(count, np.int32),
        object_ids=np.array([1, 2, 3], np.int32),
        object_categories=["box", "box", "box"],
        object_colors=["red", "green", "blue"],
    )


def snapshot(points: np.ndarray, version: int = 1) -> SceneSnapshot:
    """A scene map holding points (M, 3), shifted by less than RADIUS as voxel means are."""
    shifted = (points + 0.01).astype(np.float32)
    return SceneSnapshot(shifted, np.zeros(shifted.shape, np.uint8), version, stamp_s=1.0)


def record(target_ids: list[int], relevant_ids: list[int] = ()) -> dict:
    return {
        "sample_id": "s",
        "category": "test",
        "target_ids": target_ids,
        "relevant_ids": list(relevant_ids),
    }


@pytest.fixture
def scorer() -> GroundTruthScorer:
    return GroundTruthScorer(ground_truth(), RADIUS)


ALL_SEEN = snapshot(np.concatenate([object_points(i) for i in (1, 2, 3)]))


def test_nearest_within_the_radius() -> None:
    reference = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    query = np.array([[0.96, 0.0, 0.0], [0.06, 0.0, 0.0]])
    within, nearest = nearest_within(reference, query, RADIUS)
    assert (within.tolist(), nearest[within].tolist()) == ([True, False], [1])
    assert not nearest_within(np.empty((0, 3)), query, RADIUS)[0].any()


def test_perfect_prediction_scores_one(scorer: GroundTruthScorer) -> None:
    score = scorer.score(record([2]), ALL_SEEN, object_points(2) + 0.01)
    assert score.result.iou == 1.0
    assert score.truth.sum() == len(GRID)


def test_disjoint_prediction_scores_zero(scorer: GroundTruthScorer) -> None:
    assert scorer.score(record([2]), ALL_SEEN, object_points(3)).result.iou == 0.0


def test_half_prediction_scores_a_half(scorer: GroundTruthScorer) -> None:
    predicted = np.concatenate([object_points(2), object_points(3)])
    assert scorer.score(record([2]), ALL_SEEN, predicted).result.iou == pytest.approx(0.5)


def test_only_observed_ground_truth_counts(scorer: GroundTruthScorer) -> None:
    """Part of the target was never seen: predicting the seen part is perfect."""
    seen_part = object_points(2)[GRID[:, 0] < 0.15]  # the first two grid columns
    scene = snapshot(np.concatenate([object_points(1), seen_part]))
    score = scorer.score(record([2]), scene, seen_part)
    assert score.truth.sum() == len(seen_part)
    assert score.result.iou == 1.0
    assert score.observed.sum() == len(GRID) + len(seen_part)


def test_no_target_answered_empty_is_correct(scorer: GroundTruthScorer) -> None:
    right = scorer.score(record([]), ALL_SEEN, np.empty((0, 3)))
    wrong = scorer.score(record([]), ALL_SEEN, object_points(1))
    assert (right.result.iou, wrong.result.iou) == (1.0, 0.0)
    assert summarize([right.result, wrong.result])["no_target_acc"] == 0.5


def test_no_answer_scores_zero_even_without_a_target(scorer: GroundTruthScorer) -> None:
    """A timeout or error is not a correct "nothing there"."""
    missing = scorer.score(record([]), ALL_SEEN, None, latency_ms=None)
    assert missing.result.iou == 0.0
    summary = summarize([missing.result])
    assert (summary["miou"], summary["no_target_acc"]) == (0.0, 0.0)


def test_relevant_elements_are_matched_as_point_sets(scorer: GroundTruthScorer) -> None:
    score = scorer.score(
        record([2], relevant_ids=[1, 3]),
        ALL_SEEN,
        object_points(2),
        relevant_points=[object_points(1), object_points(2)],
    )
    assert (score.result.relevant_tp, score.result.relevant_truth) == (1, 2)
    assert score.relevant_truth.sum() == 2 * len(GRID)
    assert summarize([score.result])["relevant_recall"] == 0.5


def test_observed_mask_follows_the_scene(scorer: GroundTruthScorer) -> None:
    first, _ = scorer.observed(snapshot(object_points(1), version=1))
    both = snapshot(np.concatenate([object_points(1), object_points(2)]), version=2)
    second, nearest = scorer.observed(both)
    assert (first.sum(), second.sum()) == (len(GRID), 2 * len(GRID))
    np.testing.assert_array_equal(nearest[second], np.arange(2 * len(GRID)))


def test_a_neighbour_within_the_radius_does_not_spoil_a_perfect_prediction() -> None:
    """A cup on a table: table points 3 cm from the cup's lie within RADIUS of the prediction,
    but their own scene points are not predicted."""
    cup = np.array([[0.0, 0.0, 0.1], [0.03, 0.0, 0.1]], np.float32)
    table = cup - [0.0, 0.0, 0.03]
    truth = ground_truth(np.concatenate([cup, table]), [1, 1, 2, 2])
    scene = SceneSnapshot(truth.points.copy(), np.zeros((4, 3), np.uint8), 1, stamp_s=1.0)
    score = GroundTruthScorer(truth, RADIUS).score(record([1]), scene, cup)
    assert score.result.iou == 1.0
