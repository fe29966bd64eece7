"""Calibrating the no-target threshold from an end-to-end report, written to a real checkpoint."""

import json
from pathlib import Path

import pytest

from r2s_model.checkpoint import load_checkpoint, save_checkpoint
from r2s_model.eval.threshold import main, rescore, wilson_lower
from tests.model.tiny import tiny_model


def sample(iou: float, no_target: bool, empty: bool, score: float) -> dict:
    """One sample of an r2s-eval report."""
    return {
        "sample_id": f"s{iou}{no_target}{empty}{score}", "category": "spatial_relation",
        "iou": iou, "is_no_target": no_target, "predicted_empty": empty, "target_score": score,
    }  # fmt: skip


# Two targets found (scores 0.9 and 0.65), one missed; two no-target questions answered with an
# object (0.7 and 0.55), one answered "no target" already.
SAMPLES = [
    sample(1.0, False, False, 0.9),
    sample(1.0, False, False, 0.65),
    sample(0.0, False, True, 0.2),
    sample(0.0, True, False, 0.7),
    sample(0.0, True, False, 0.55),
    sample(1.0, True, True, 0.3),
]


def test_a_higher_threshold_turns_the_targets_below_it_into_no_target() -> None:
    assert rescore(SAMPLES, 0.5) == pytest.approx(
        {"score_threshold": 0.5, "miou": 3 / 6, "acc50": 3 / 6, "no_target_acc": 1 / 3,
         "no_target_count": 3, "no_target_lower": 1 / 3}
    )  # fmt: skip
    at_06 = rescore(SAMPLES, 0.6)  # the 0.55 no-target answer becomes "no target"
    assert at_06["miou"] == pytest.approx(4 / 6) and at_06["no_target_acc"] == pytest.approx(2 / 3)
    at_075 = rescore(SAMPLES, 0.75)  # so does 0.7, and the 0.65 target is lost
    assert at_075["miou"] == pytest.approx(4 / 6) and at_075["no_target_acc"] == 1.0
    assert rescore(SAMPLES, 0.7)["miou"] == pytest.approx(3 / 6)  # the target lost alone


def test_the_best_miou_meeting_the_no_target_floor_is_written_to_the_checkpoint(
    tmp_path: Path,
) -> None:
    checkpoint = save_checkpoint(tiny_model(), tmp_path / "model")
    ran_with = load_checkpoint(checkpoint).config.score_threshold
    report = tmp_path / "val.json"
    report.write_text(
        json.dumps(
            {
                "checkpoint": str(checkpoint),
                "score_threshold": 0.5,
                "samples": SAMPLES,
                "data": {"root": "data", "split": "val"},
            }
        )
    )
    exact = ["--report", str(report), "--z", "0"]
    main([*exact, "--min-no-target", "0.6"])  # 0.6 and 0.75 tie: the lower
    assert load_checkpoint(checkpoint).config.score_threshold == 0.6 != ran_with
    rows = json.loads((checkpoint / "config.json").read_text())["metadata"][
        "score_threshold_calibration"
    ]["rows"]
    assert rows[0]["score_threshold"] == 0.5  # nothing below the threshold the report ran with
    main([*exact, "--min-no-target", "1.0"])  # only 0.7 and above reach it
    assert load_checkpoint(checkpoint).config.score_threshold == 0.75  # their best mIoU
    # One standard error below 2/3 of three samples is 0.39: the floor 0.6 needs all three.
    main(["--report", str(report), "--min-no-target", "0.6"])
    assert load_checkpoint(checkpoint).config.score_threshold == 0.75


def test_the_no_target_bound_tightens_with_more_samples() -> None:
    assert wilson_lower(0.8, 10, 0.0) == pytest.approx(0.8)
    assert wilson_lower(0.8, 0, 1.0) == 0.0
    bounds = [wilson_lower(0.85, count, 1.0) for count in (10, 100, 10_000)]
    assert bounds[0] < bounds[1] < bounds[2] < 0.85
    assert bounds[1] == pytest.approx(0.8108, abs=1e-3) and bounds[2] == pytest.approx(
        0.8464, abs=1e-3
    )
    assert wilson_lower(1.0, 100, 1.0) == pytest.approx(100 / 101)


def test_a_report_rescored_at_a_higher_threshold_is_written_as_if_run_there(tmp_path: Path):
    report = tmp_path / "test.json"
    report.write_text(json.dumps({"checkpoint": "unused", "score_threshold": 0.5, "miou": 0.5,
                                  "samples": SAMPLES, "renders": ["a.png"]}))  # fmt: skip
    out = tmp_path / "at_06.json"
    main(["--report", str(report), "--at", "0.6", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["score_threshold"] == 0.6 and written["renders"] == []
    assert written["miou"] == pytest.approx(4 / 6)
    assert written["no_target_acc"] == pytest.approx(2 / 3)
    assert [s["predicted_empty"] for s in written["samples"]] == [0, 0, 1, 0, 1, 1]
    assert [s["iou"] for s in written["samples"]] == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=r"ran at 0\.5: it cannot score 0\.4"):
        main(["--report", str(report), "--at", "0.4", "--out", str(out)])
