"""Scanned views of generated scenes (r2s_model/synthetic/scanned.py): what the node accumulates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from r2s_model.data.io import read_scene
from r2s_model.synthetic.scanned import ScanViewConfig, majority, scanned_view, voxel_means

VIEW = ScanViewConfig(min_frames=8, max_frames=12, points_per_m2=600.0)


def test_voxel_means_average_each_occupied_cell() -> None:
    points = np.array([[0.001, 0.0, 0.0], [0.015, 0.01, 0.0], [0.05, 0.0, 0.0], [-0.01, 0, 0]])
    colors = np.array([[1.0, 0, 0], [0.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    means, mean_colors, voxel_of = voxel_means(points, colors, 0.02)
    assert len(means) == 3 and voxel_of.tolist() == [1, 1, 2, 0]  # cells in key order
    np.testing.assert_allclose(means[1], [0.008, 0.005, 0.0])
    np.testing.assert_allclose(mean_colors[1], [0.5, 0.0, 0.0])
    np.testing.assert_allclose(means[[0, 2]], points[[3, 2]])


def test_majority_takes_the_most_frequent_label_and_breaks_ties_low() -> None:
    groups = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    labels = np.array([5, 3, 5, 7, 2, 4, 9, 9, 4])
    assert majority(groups, labels, 3).tolist() == [5, 2, 4]
    with pytest.raises(ValueError, match="1 groups have no label"):
        majority(groups, labels, 4)


def test_a_scanned_view_is_labelled_from_the_scene_it_scans(small_dataset: Path) -> None:
    scene = read_scene(small_dataset / "scenes" / "train_00000.npz")
    view = scanned_view(scene, np.random.default_rng(3), VIEW)

    assert view.points.dtype == view.colors.dtype == np.float32
    assert len(view.points) == len(view.instance) == len(view.semantic) == len(view.superpoints)
    assert set(np.unique(view.superpoints)) == set(range(int(view.superpoints.max()) + 1))
    # Voxels of a 2 cm map: no two closer than a voxel's diagonal allows, all in the room.
    assert len(np.unique(np.floor(view.points / 0.02), axis=0)) > 0.9 * len(view.points)
    low, high = scene.points.min(0), scene.points.max(0)
    assert ((view.points > low - 0.1) & (view.points < high + 0.1)).all()
    # Each voxel carries the label of the scene points around it (range noise moves a few
    # across object borders) and the category of its object.
    distance, nearest = cKDTree(scene.points).query(view.points)
    assert np.median(distance) < 0.02
    assert (view.instance == scene.instance[nearest]).mean() > 0.95
    assert (view.semantic == scene.semantic[nearest]).mean() > 0.95
    category_of = scene.category_of()
    category_index = {name: int(scene.semantic[scene.instance == i][0]) for i, name in
                      category_of.items()}  # fmt: skip
    labelled = view.instance > 0
    expected = [category_index[category_of[int(i)]] for i in view.instance[labelled]]
    np.testing.assert_array_equal(view.semantic[labelled], expected)
    # Only the objects the scan saw are listed, with their names.
    assert set(view.object_ids.tolist()) == set(np.unique(view.instance[labelled]).tolist())
    assert view.category_of() == {i: category_of[i] for i in view.object_ids.tolist()}
    # The floor and most of the room were seen; not every point (occlusion, a partial loop).
    seen_objects = len(view.object_ids) / len(scene.object_ids)
    assert 0.7 < seen_objects <= 1.0

    again = scanned_view(scene, np.random.default_rng(3), VIEW)
    np.testing.assert_array_equal(again.points, view.points)
    other = scanned_view(scene, np.random.default_rng(4), VIEW)
    assert len(other.points) != len(view.points)


def test_the_view_config_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="min_frames"):
        ScanViewConfig(min_frames=5, max_frames=4)
    with pytest.raises(ValueError, match="min_height_m"):
        ScanViewConfig(min_height_m=0.0)
    with pytest.raises(ValueError, match="voxel_size"):
        ScanViewConfig(voxel_size=0.0)
