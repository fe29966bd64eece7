"""The scanned-bag benchmark pools the replayed instructions of several generated bags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r2s_model.checkpoint import save_checkpoint
from r2s_ros.bags.scan_bench import main
from tests.model.tiny import tiny_model


def test_instructions_of_every_bag_are_scored_and_pooled(tmp_path: Path, capsys) -> None:
    checkpoint = save_checkpoint(tiny_model(seed=3), tmp_path / "tiny")
    out = tmp_path / "bench.json"
    argv = ["--seeds", "0", "1", "--frames", "3", "--instructions", "2"]
    argv += ["--checkpoint", str(checkpoint), "--device", "cpu", "--score-threshold", "0.3"]
    main([*argv, "--out", str(out)])

    report = json.loads(out.read_text())
    assert [(bag["seed"], bag["num_samples"]) for bag in report["bags"]] == [(0, 2), (1, 2)]
    assert report["num_samples"] == 4
    assert sum(item["num_samples"] for item in report["per_category"].values()) == 4
    assert 0.0 <= report["miou"] <= 1.0 and report["latency_ms"]["p50"] > 0
    assert report["checkpoint"] == str(checkpoint) and report["score_threshold"] == 0.3
    # Samples as r2s-eval writes them: eval.threshold can sweep or rescore them.
    assert len(report["samples"]) == 4
    assert {"target_score", "is_no_target", "iou"} <= set(report["samples"][0])
    assert "seed 1: Acc@0.5" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--score-threshold", "1.5"], "--score-threshold must be in [0, 1), got 1.5"),
        (["--checkpoint", "/nonexistent"], "checkpoint folder /nonexistent does not exist"),
    ],
)
def test_bad_arguments_stop_with_a_message(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err
