"""r2s-eval --task scene: the metrics on known cases, and the report's keys."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from r2s_model.eval.evaluate import main
from r2s_model.eval.scene_metrics import score_scene, summarize_scenes
from r2s_model.objects.checkpoint import save_parser
from r2s_model.objects.parser import SceneParser
from tests.objects.conftest import tiny_parser_config

CATEGORIES = ("floor", "chair", "cup")


def test_metrics_on_a_known_scene() -> None:
    # Ten floor points, six chair points, four cup points; ids 1, 2, 3.
    instance = np.array([1] * 10 + [2] * 6 + [3] * 4)
    semantic = np.array([0] * 10 + [1] * 6 + [2] * 4)
    predicted = semantic.copy()
    predicted[16:] = 1  # the cup is called a chair
    # Proposals: the floor exactly, the chair with two cup points (IoU 6/8), the cup's other
    # two points (IoU 2/4 = 0.5), and a one-point stray proposal taken off the floor.
    proposal = np.array([0] * 9 + [3] + [1] * 6 + [1, 1, 2, 2])
    score = score_scene(
        "s",
        semantic=semantic,
        predicted_semantic=predicted,
        instance=instance,
        object_ids=np.array([1, 2, 3]),
        object_categories=np.array([0, 1, 2]),
        proposal=proposal,
        num_categories=3,
        min_points=2,
        encode_ms=5.0,
    )
    summary = summarize_scenes([score], CATEGORIES)
    assert summary["semantic_acc"] == pytest.approx(16 / 20)
    assert summary["semantic_macro_acc"] == pytest.approx((1 + 1 + 0) / 3)
    # Floor at IoU 0.9, chair at 0.75, cup at exactly 0.5: all three matched.
    assert summary["instance_recall50"] == pytest.approx(1.0)
    # The stray proposal has fewer than min_points and is not counted.
    assert summary["num_proposals"] == 3
    assert summary["instance_precision50"] == pytest.approx(1.0)
    assert summary["per_category"]["cup"] == {
        "points": 4, "point_acc": 0.0, "objects": 1, "recall50": 1.0,
    }  # fmt: skip
    assert summary["encode_ms"] == 5.0


def test_scene_task_report(small_dataset: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = save_parser(
        SceneParser(tiny_parser_config()), tmp_path / "parser", {}, dtype=torch.float32
    )
    out = tmp_path / "scene.json"
    main(["--task", "scene", "--data", str(small_dataset), "--parser", str(weights),
          "--out", str(out), "--device", "cpu"])  # fmt: skip
    report = json.loads(out.read_text())
    for key in ("semantic_acc", "semantic_macro_acc", "instance_recall50", "instance_precision50"):
        assert 0.0 <= report[key] <= 1.0
    assert report["num_scenes"] == 2 and report["encode_ms"] > 0
    assert set(report["per_category"]) >= {"floor", "wall"}
    assert Path(report["render"]).stat().st_size > 10_000


def test_scene_task_names_a_bad_parser_folder(small_dataset: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--task", "scene", "--data", str(small_dataset), "--parser", str(tmp_path)])
    assert exit_.value.code == 2
    assert "cannot read the parser config" in capsys.readouterr().err
