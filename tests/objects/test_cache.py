"""The object cache: round trip, and stale entries refused."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from r2s_model.data.io import read_scene, write_scene
from r2s_model.eval.calibrate import CANDIDATES
from r2s_model.eval.calibrate import main as calibrate
from r2s_model.objects.cache import ObjectCache, StaleCacheError, build_cache
from r2s_model.objects.checkpoint import load_parser, save_parser
from r2s_model.objects.detect import detect_objects
from r2s_model.objects.parser import SceneParser
from r2s_model.superpoints import SuperpointParams
from tests.objects.conftest import tiny_parser_config


@pytest.fixture
def dataset_copy(small_dataset: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(small_dataset, copy)
    return copy


def saved_parser(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    return save_parser(SceneParser(tiny_parser_config()), folder, {}, dtype=torch.float32)


def test_cache_round_trip_matches_a_fresh_run(dataset_copy: Path, tmp_path: Path) -> None:
    weights = saved_parser(tmp_path / "parser", 0)
    build_cache(dataset_copy, weights, ("val",))
    cached = ObjectCache(dataset_copy, weights).scene("val_00001")
    scene = read_scene(dataset_copy / "scenes" / "val_00001.npz")
    fresh = detect_objects(
        load_parser(weights), scene.points, scene.colors, SuperpointParams(), scene.superpoints
    )
    np.testing.assert_allclose(cached.features, fresh.parsed.features.numpy(), atol=1e-6)
    np.testing.assert_array_equal(
        cached.superpoint_object, fresh.proposals.superpoint_object.numpy()
    )
    np.testing.assert_allclose(cached.object_box_max, fresh.proposals.box_max.numpy())
    assert cached.features.shape[0] == int(scene.superpoints.max()) + 1
    assert len(cached.object_features) == len(fresh.proposals)


def test_stale_entries_are_refused(dataset_copy: Path, tmp_path: Path) -> None:
    weights = saved_parser(tmp_path / "parser", 0)
    with pytest.raises(StaleCacheError, match="run r2s-cache-objects"):
        ObjectCache(dataset_copy, weights)
    build_cache(dataset_copy, weights, ("val",))
    cache = ObjectCache(dataset_copy, weights)
    with pytest.raises(StaleCacheError, match="not in the cache"):
        cache.scene("train_00000")

    other = saved_parser(tmp_path / "other", 1)
    with pytest.raises(StaleCacheError):
        ObjectCache(dataset_copy, other)

    path = dataset_copy / "scenes" / "val_00000.npz"
    scene = read_scene(path)
    scene.colors = 1.0 - scene.colors
    write_scene(path, scene)
    with pytest.raises(StaleCacheError, match="changed after it was cached"):
        cache.scene("val_00000")
    cache.scene("val_00001")  # the untouched scene is still served
    build_cache(dataset_copy, weights, ("val",))  # rebuilding refreshes the changed entry
    ObjectCache(dataset_copy, weights).scene("val_00000")


@pytest.mark.parametrize(
    ("views", "keys"),
    [
        ("full", ("instance_recall50", "instance_precision50")),
        ("both", ("instance_recall50", "instance_precision50", "scan_instance_recall50",
                  "scan_instance_precision50")),
    ],
)  # fmt: skip
def test_calibration_records_the_best_threshold(
    dataset_copy: Path, tmp_path: Path, views: str, keys: tuple[str, ...]
) -> None:
    weights = saved_parser(tmp_path / "parser", 0)
    arguments = ["--parser", str(weights), "--data", str(dataset_copy), "--split", "val"]
    calibrate([*arguments, "--views", views])
    description = json.loads((weights / "config.json").read_text())
    rows = description["metadata"]["link_threshold_sweep"]["rows"]
    assert [row["link_threshold"] for row in rows] == list(CANDIDATES)
    assert all(set(row) == {"link_threshold", *keys} for row in rows)
    best = max(rows, key=lambda r: sum(r[key] for key in keys))
    assert load_parser(weights).config.link_threshold == best["link_threshold"]


def test_a_new_threshold_makes_the_cache_stale(dataset_copy: Path, tmp_path: Path) -> None:
    weights = saved_parser(tmp_path / "parser", 0)
    build_cache(dataset_copy, weights, ("val",))
    path = weights / "config.json"
    description = json.loads(path.read_text())
    description["parser"]["link_threshold"] = 0.35
    path.write_text(json.dumps(description))
    with pytest.raises(StaleCacheError, match="no object cache for the parser"):
        ObjectCache(dataset_copy, weights)
