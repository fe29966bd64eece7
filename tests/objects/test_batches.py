"""Augmented training views and their batches."""

from pathlib import Path

import numpy as np

from r2s_model.data.io import read_scene
from r2s_model.objects.batches import AugmentConfig, augment, parser_batch
from r2s_model.objects.targets import IGNORE
from r2s_model.synthetic.scanned import ScanViewConfig
from tests.objects.conftest import tiny_parser_config


def test_views_are_partial_rotated_and_consistent(small_dataset: Path) -> None:
    scene = read_scene(small_dataset / "scenes" / "train_00000.npz")
    harsh = AugmentConfig(cut_prob=1.0, hole_prob=1.0, min_keep=0.35)
    heights = np.sort(scene.points[:, 2])
    for seed in range(6):
        points, colors, superpoints, instance = augment(scene, np.random.default_rng(seed), harsh)
        assert 0 < len(points) < len(scene.points)
        assert points.dtype == colors.dtype == np.float32
        assert set(np.unique(superpoints)) == set(range(int(superpoints.max()) + 1))
        assert np.isin(instance, scene.instance).all()
        assert ((colors >= 0) & (colors <= 1)).all()
        # Rotation is about z only: heights keep their range (up to scale and jitter).
        assert abs(points[:, 2].max() - heights[-1]) < 0.1 * heights[-1] + 0.05

    batch = parser_batch(
        [(scene, *augment(scene, np.random.default_rng(s), harsh)) for s in range(2)],
        tiny_parser_config(),
    )
    count = int(batch.superpoints.max()) + 1
    assert len(batch.instance) == len(batch.category) == len(batch.color) == count
    assert (batch.edges[:, 0] < batch.edges[:, 1]).all() and int(batch.edges.max()) < count
    # The second view's ids follow the first's, and no edge joins the two views.
    first = batch.superpoints[batch.batch == 0].max()
    assert ((batch.edges <= first).all(1) | (batch.edges > first).all(1)).all()
    assert (batch.category[batch.instance > 0] != IGNORE).all()


def test_a_scanned_view_is_fused_relabelled_and_still_augmented(small_dataset: Path) -> None:
    scene = read_scene(small_dataset / "scenes" / "train_00000.npz")
    view = ScanViewConfig(min_frames=8, max_frames=8, points_per_m2=600.0)
    scanned = AugmentConfig(scan_prob=1.0, scan=view, scale=0.0, jitter_m=0.0)
    points, colors, superpoints, instance = augment(scene, np.random.default_rng(0), scanned)
    # 2 cm voxels of noisy frames, not the scene's points.
    assert not np.isin(points[:, 2], scene.points[:, 2]).all()
    assert colors.dtype == np.float32 and ((colors >= 0) & (colors <= 1)).all()
    assert set(np.unique(superpoints)) == set(range(int(superpoints.max()) + 1))
    assert np.isin(instance, scene.instance).all()
    # Rotated about z, scale and jitter off: heights keep.
    assert abs(points[:, 2].max() - scene.points[:, 2].max()) < 0.05
    whole = augment(scene, np.random.default_rng(0), AugmentConfig(scale=0.0, jitter_m=0.0))[0]
    assert not np.array_equal(np.sort(whole[:, 2]), np.sort(points[:, 2]))
