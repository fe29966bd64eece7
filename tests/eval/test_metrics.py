"""Segmentation metrics on hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from r2s_model.eval.metrics import (
    SampleResult,
    expected_calibration_error,
    match_relevant,
    point_iou,
    score_sample,
    summarize,
)


def mask(*indices: int, size: int = 10) -> np.ndarray:
    """(size,) bool, True at `indices`."""
    result = np.zeros(size, dtype=bool)
    result[list(indices)] = True
    return result


@pytest.mark.parametrize(
    ("predicted", "truth", "iou"),
    [
        (mask(0, 1), mask(1, 2), 1 / 3),
        (mask(0, 1, 2, 3), mask(0, 1, 2, 3), 1.0),
        (mask(), mask(), 1.0),
        (mask(4), mask(), 0.0),
        (mask(), mask(4), 0.0),
        (mask(0, 1, 2, 3), mask(0), 0.25),
    ],
)
def test_point_iou(predicted: np.ndarray, truth: np.ndarray, iou: float) -> None:
    assert point_iou(predicted, truth) == pytest.approx(iou)


def test_point_iou_rejects_mismatched_or_non_bool_masks() -> None:
    with pytest.raises(ValueError, match="expected two"):
        point_iou(mask(1), mask(1, size=11))
    with pytest.raises(ValueError, match="bool"):
        point_iou(mask(1).astype(np.int64), mask(1))


def test_matching_maximises_matches_where_greedy_does_not() -> None:
    # IoU: p1-t1 1.0, p1-t2 0.67, p2-t1 0.6, p2-t2 0.43. Greedy takes p1-t1 first and leaves
    # p2 with nothing above 0.5 (1 match); Hungarian on raw IoU also prefers p1-t1 + p2-t2
    # (1.43 > 1.27). The best one-to-one matching is p1-t2 and p2-t1: 2 matches.
    truth = [mask(0, 1, 2, 3), mask(0, 1, 2, 3, 4, 5)]
    predicted = [mask(0, 1, 2, 3), mask(0, 1, 2, 9)]
    assert match_relevant(predicted, truth) == (2, 2, 2)


def test_matching_is_one_to_one_and_handles_empty_sides() -> None:
    same = mask(0, 1, 2)
    assert match_relevant([same], [same, same.copy()]) == (1, 1, 2)
    assert match_relevant([same, same.copy()], [same]) == (1, 2, 1)
    assert match_relevant([], [same]) == (0, 0, 1)
    assert match_relevant([same], []) == (0, 1, 0)
    assert match_relevant([mask(0, 1)], [mask(1, 2)]) == (0, 1, 1)  # IoU 1/3
    assert match_relevant([mask(0, 1)], [mask(1, 2)], threshold=0.3) == (1, 1, 1)
    assert match_relevant([mask(0, 1)], [mask(1)]) == (1, 1, 1)  # IoU exactly 0.5 counts


def test_score_sample_marks_no_target_samples() -> None:
    empty = score_sample("a", "no_target", mask(), mask())
    assert (empty.iou, empty.is_no_target, empty.predicted_empty) == (1.0, True, True)
    wrong = score_sample("b", "no_target", mask(3), mask(), target_score=0.9, latency_ms=12)
    assert (wrong.iou, wrong.is_no_target, wrong.predicted_empty) == (0.0, True, False)
    assert (wrong.target_score, wrong.latency_ms) == (0.9, 12.0)
    with pytest.raises(ValueError, match="outside"):
        score_sample("c", "attribute", mask(1), mask(1), target_score=1.5)


def _plain(value: object) -> bool:
    """Only dict / float / int / None all the way down (no numpy scalars)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return value is None or type(value) in (float, int)


@pytest.fixture
def results() -> list[SampleResult]:
    return [
        # IoU 2/4; relevant: 2 predicted, 1 true, 1 match.
        score_sample(
            "a",
            "spatial_relation",
            mask(0, 1, 2, 3),
            mask(0, 1),
            relevant_predicted=[mask(0, 1), mask(5, 6)],
            relevant_truth=[mask(0, 1)],
            latency_ms=100,
        ),
        # IoU 1/4; relevant: 1 predicted, 2 true, 1 match.
        score_sample(
            "b",
            "spatial_relation",
            mask(0),
            mask(0, 1, 2, 3),
            relevant_predicted=[mask(7, 8)],
            relevant_truth=[mask(7, 8), mask(2)],
            latency_ms=200,
        ),
        # IoU 0; relevant: nothing predicted, 1 true.
        score_sample(
            "c", "attribute", mask(2, 3), mask(0, 1), relevant_truth=[mask(4)], latency_ms=300
        ),
        score_sample("d", "no_target", mask(), mask()),  # IoU 1
        score_sample("e", "no_target", mask(5), mask(), latency_ms=400),  # IoU 0
    ]


def test_summary_of_hand_computed_samples(results: list[SampleResult]) -> None:
    summary = summarize(results)
    assert summary["miou"] == pytest.approx((0.5 + 0.25 + 0 + 1 + 0) / 5)
    assert summary["acc25"] == pytest.approx(3 / 5)  # a, b (exactly 0.25) and d
    assert summary["acc50"] == pytest.approx(2 / 5)  # a (exactly 0.5) and d
    assert summary["no_target_acc"] == pytest.approx(1 / 2)
    assert summary["num_samples"] == 5
    assert summary["relevant_recall"] == pytest.approx(2 / 4)
    assert summary["relevant_precision"] == pytest.approx(2 / 3)
    assert summary["calibration_ece"] is None
    assert summary["latency_ms"] == pytest.approx({"p50": 250.0, "p95": 385.0})
    assert _plain(summary) and json.loads(json.dumps(summary)) == summary


def test_summary_per_category(results: list[SampleResult]) -> None:
    per_category = summarize(results)["per_category"]
    assert list(per_category) == ["attribute", "no_target", "spatial_relation"]
    assert per_category["spatial_relation"] == pytest.approx(
        {"miou": 0.375, "acc25": 1.0, "acc50": 0.5, "no_target_acc": None, "num_samples": 2}
    )
    assert per_category["attribute"] == pytest.approx(
        {"miou": 0.0, "acc25": 0.0, "acc50": 0.0, "no_target_acc": None, "num_samples": 1}
    )
    assert per_category["no_target"] == pytest.approx(
        {"miou": 0.5, "acc25": 0.5, "acc50": 0.5, "no_target_acc": 0.5, "num_samples": 2}
    )


def test_summary_of_nothing() -> None:
    assert summarize([]) == {
        "miou": None,
        "acc25": None,
        "acc50": None,
        "no_target_acc": None,
        "num_samples": 0,
        "relevant_recall": None,
        "relevant_precision": None,
        "calibration_ece": None,
        "latency_ms": None,
        "per_category": {},
    }


def test_summary_of_only_no_target_samples() -> None:
    predictions = [mask(), mask(), mask(1)]
    results = [score_sample(str(i), "no_target", p, mask()) for i, p in enumerate(predictions)]
    summary = summarize(results)
    assert summary["miou"] == summary["acc50"] == summary["no_target_acc"] == pytest.approx(2 / 3)
    assert summary["relevant_recall"] is None and summary["relevant_precision"] is None


def test_expected_calibration_error_on_a_constructed_case() -> None:
    # Bin 9: scores 0.95, 0.95, one correct -> |0.95 - 0.5| * 2/5 = 0.18
    # Bin 1: scores 0.15, 0.15, none correct -> 0.15 * 2/5 = 0.06
    # Bin 5: score 0.55, correct -> 0.45 * 1/5 = 0.09
    scores = np.array([0.95, 0.95, 0.15, 0.15, 0.55])
    correct = np.array([True, False, False, False, True])
    assert expected_calibration_error(scores, correct) == pytest.approx(0.33)
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([True, False])) == 0.0


def test_calibration_counts_a_no_target_sample_as_no_correct_target() -> None:
    results = [
        score_sample("a", "attribute", mask(0, 1), mask(0, 1), target_score=0.95),  # IoU 1
        score_sample("b", "attribute", mask(0, 1), mask(0, 1), target_score=0.95),  # IoU 1
        score_sample("c", "attribute", mask(5), mask(0, 1), target_score=0.15),  # IoU 0
        score_sample("d", "no_target", mask(), mask(), target_score=0.15),  # empty: right
        score_sample("e", "no_target", mask(3), mask(), target_score=0.55),  # wrong
        score_sample("f", "attribute", mask(0), mask(0)),  # no score: not counted
    ]
    # Bin 9: 0.95 vs 1.0 correct -> 0.05 * 2/5; bin 1: 0.15 vs 0 -> 0.15 * 2/5;
    # bin 5: 0.55 vs 0 -> 0.55 / 5.
    expected = 0.05 * 2 / 5 + 0.15 * 2 / 5 + 0.55 / 5
    assert summarize(results)["calibration_ece"] == pytest.approx(expected)
