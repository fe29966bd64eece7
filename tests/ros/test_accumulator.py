"""SceneAccumulator: voxel fusion, scene version, time window, eviction, crop, input checks."""

import numpy as np
import pytest

from r2s_ros.accumulator import AccumulatorConfig, InsertStats, SceneAccumulator


def _cloud(*xyz: tuple[float, float, float]) -> np.ndarray:
    return np.array(xyz, np.float32).reshape(-1, 3)


def _voxel_xs(accumulator: SceneAccumulator) -> list[int]:
    """The x voxel index of each voxel, for maps of 1 m voxels along x."""
    return np.floor(accumulator.snapshot().points[:, 0]).astype(int).tolist()


def _reference_means(
    points: np.ndarray, colors: np.ndarray, voxel_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Voxel means computed independently; np.unique orders voxels by x, then y, then z index."""
    indices = np.floor(points / np.float32(voxel_size)).astype(np.int64)
    _, inverse = np.unique(indices, axis=0, return_inverse=True)
    counts = np.bincount(inverse)[:, None]
    means = np.stack([np.bincount(inverse, points[:, a]) for a in range(3)], 1) / counts
    mean_colors = np.stack([np.bincount(inverse, colors[:, a]) for a in range(3)], 1) / counts
    return means, np.rint(mean_colors)


def test_voxel_means_and_colors_on_a_hand_case() -> None:
    accumulator = SceneAccumulator(AccumulatorConfig(voxel_size=1.0))
    points = _cloud((0.1, 0.2, 0.3), (1.5, -0.5, 0.5), (0.3, 0.4, 0.5))
    colors = np.array([[10, 20, 30], [200, 100, 0], [20, 40, 60]], np.uint8)
    stats = accumulator.insert(points, colors, stamp_s=3.0)
    assert stats == InsertStats(3, 0, 2, 0, True)
    snapshot = accumulator.snapshot()
    # Voxel (0, 0, 0) sorts before (1, -1, 0): x index first.
    np.testing.assert_allclose(snapshot.points, [[0.2, 0.3, 0.4], [1.5, -0.5, 0.5]], rtol=1e-6)
    np.testing.assert_array_equal(snapshot.colors, [[15, 30, 45], [200, 100, 0]])
    assert snapshot.points.dtype == np.float32 and snapshot.colors.dtype == np.uint8
    assert (snapshot.num_voxels, snapshot.version, snapshot.stamp_s) == (2, 1, 3.0)

    # A colorless point moves the position mean but not the color; a colorless voxel is black.
    accumulator.insert(_cloud((0.8, 0.8, 0.8), (5.5, 5.5, 5.5)), None, stamp_s=2.0)
    snapshot = accumulator.snapshot()
    np.testing.assert_allclose(snapshot.points[0], [0.4, 1.4 / 3, 1.6 / 3], rtol=1e-6)
    np.testing.assert_array_equal(snapshot.colors, [[15, 30, 45], [200, 100, 0], [0, 0, 0]])
    assert snapshot.stamp_s == 3.0  # the newest stamp, not the latest call


def test_many_overlapping_inserts_match_an_independent_reference() -> None:
    rng = np.random.default_rng(0)
    accumulator = SceneAccumulator(AccumulatorConfig(voxel_size=0.1))
    clouds = []
    for offset in range(5):
        points = (rng.uniform(0, 1, (3000, 3)) + [offset * 0.4, 0, -0.5]).astype(np.float32)
        colors = rng.integers(0, 256, (3000, 3), dtype=np.uint8)
        accumulator.insert(points, colors, stamp_s=float(offset))
        clouds.append((points, colors))
    means, colors = _reference_means(*map(np.concatenate, zip(*clouds, strict=True)), 0.1)
    snapshot = accumulator.snapshot()
    np.testing.assert_allclose(snapshot.points, means, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(snapshot.colors, colors)


def test_expiry_keeps_exactly_the_recently_seen_voxels() -> None:
    rng = np.random.default_rng(1)
    accumulator = SceneAccumulator(AccumulatorConfig(voxel_size=0.1, time_window_s=2.0))
    clouds = []
    for stamp in range(5):
        points = (rng.uniform(0, 1, (2000, 3)) + [stamp * 0.3, 0, 0]).astype(np.float32)
        colors = rng.integers(0, 256, (2000, 3), dtype=np.uint8)
        accumulator.insert(points, colors, stamp_s=float(stamp))
        clouds.append((points, colors))
    accumulator.expire(now_s=4.5)  # keeps voxels last seen at stamps 3 and 4

    def voxel_ids(points: np.ndarray) -> np.ndarray:  # coordinates here are in [0, 2.2) m
        return np.ravel_multi_index(np.floor(points / np.float32(0.1)).astype(int).T, (30, 30, 30))

    points, colors = map(np.concatenate, zip(*clouds, strict=True))
    in_recent = np.isin(voxel_ids(points), voxel_ids(np.concatenate([c[0] for c in clouds[3:]])))
    means, mean_colors = _reference_means(points[in_recent], colors[in_recent], 0.1)
    snapshot = accumulator.snapshot()
    np.testing.assert_allclose(snapshot.points, means, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(snapshot.colors, mean_colors)


def test_same_view_twice_keeps_the_version_and_a_new_region_bumps_it() -> None:
    rng = np.random.default_rng(2)
    view = rng.uniform(0, 2, (5000, 3)).astype(np.float32)
    colors = rng.integers(0, 256, view.shape, dtype=np.uint8)
    accumulator = SceneAccumulator(AccumulatorConfig())
    assert accumulator.insert(view, colors, 0.0).version_changed
    assert accumulator.version == 1
    size = accumulator.num_voxels

    again = accumulator.insert(view, colors, 1.0)
    assert (again.new_voxels, again.version_changed, accumulator.version) == (0, False, 1)
    assert accumulator.num_voxels == size

    elsewhere = accumulator.insert(view + np.float32(10), colors, 2.0)
    assert elsewhere.version_changed and accumulator.version == 2
    assert accumulator.snapshot().version == 2


def test_small_changes_add_up_until_they_bump_the_version() -> None:
    accumulator = SceneAccumulator(AccumulatorConfig(voxel_size=1.0, change_fraction=0.1))
    accumulator.insert(_cloud(*[(x + 0.5, 0.5, 0.5) for x in range(100)]), None, 0.0)
    changed = []
    for step in range(3):
        # 4 new voxels per insert: 4/104 and 8/108 stay under 10 %, 12/112 does not.
        new = _cloud(*[(x + 0.5, 1.5, 0.5) for x in range(4 * step, 4 * step + 4)])
        changed.append(accumulator.insert(new, None, 1.0 + step).version_changed)
    assert changed == [False, False, True]
    assert accumulator.version == 2


def test_time_window_expiry() -> None:
    accumulator = SceneAccumulator(AccumulatorConfig(voxel_size=1.0, time_window_s=1.0))
    accumulator.insert(_cloud((0.5, 0.5, 0.5)), None, 0.0)
    accumulator.insert(_cloud((5.5, 0.5, 0.5)), None, 0.5)
    accumulator.insert(_cloud((5.5, 0.5, 0.5)), None, 0.2)  # late: must not age the voxel
    assert accumulator.expire(now_s=1.2) == 1  # x=0 unseen for 1.2 s; x=5 for 0.7 s
    assert _voxel_xs(accumulator) == [5]
    assert accumulator.expire(now_s=1.5) == 0  # exactly the window: kept
    assert accumulator.version == 3  # two inserts and one expiry, each well over 2 %
    accumulator.insert(_cloud((5.5, 0.5, 0.5)), None, 2.0)
    assert accumulator.expire(now_s=2.9) == 0
    assert accumulator.expire(now_s=3.1) == 1
    assert accumulator.num_voxels == 0 and accumulator.version == 4


def test_zero_time_window_keeps_voxels_forever() -> None:
    accumulator = SceneAccumulator(AccumulatorConfig(voxel_size=1.0))
    accumulator.insert(_cloud((0.5, 0.5, 0.5)), None, 0.0)
    assert accumulator.expire(now_s=1e9) == 0
    assert accumulator.num_voxels == 1


def test_eviction_drops_oldest_last_seen_first_ties_by_insertion_order() -> None:
    accumulator = SceneAccumulator(AccumulatorConfig(voxel_size=1.0, max_voxels=3))
    accumulator.insert(_cloud((5.5, 0, 0), (2.5, 0, 0)), None, 1.0)  # 5 is created before 2
    accumulator.insert(_cloud((9.5, 0, 0)), None, 2.0)
    stats = accumulator.insert(_cloud((7.5, 0, 0)), None, 3.0)
    assert (stats.new_voxels, stats.evicted) == (1, 1)
    assert _voxel_xs(accumulator) == [2, 7, 9]  # 5 and 2 tied at t=1; 5 came first

    accumulator.insert(_cloud((2.5, 0, 0)), None, 4.0)  # seen again: now the newest but one
    accumulator.insert(_cloud((1.5, 0, 0)), None, 5.0)
    assert _voxel_xs(accumulator) == [1, 2, 7]  # 9, last seen at t=2, was the oldest


def test_eviction_within_one_cloud_and_of_a_late_cloud() -> None:
    accumulator = SceneAccumulator(AccumulatorConfig(voxel_size=1.0, max_voxels=2))
    stats = accumulator.insert(_cloud((3.5, 0, 0), (1.5, 0, 0), (2.5, 0, 0)), None, 5.0)
    assert (stats.new_voxels, stats.evicted) == (3, 1)
    assert _voxel_xs(accumulator) == [1, 2]  # the cloud's first point made voxel 3 first

    accumulator.insert(_cloud((8.5, 0, 0)), None, 1.0)  # arrives late: older than the map
    assert _voxel_xs(accumulator) == [1, 2]


def test_a_cloud_spanning_the_whole_key_range_is_fused_the_same_way() -> None:
    # 40 km across at 2 cm needs more key bits than the fast sort leaves room for.
    far = 20_000.0
    points = _cloud((far, far, far), (-far, -far, -far), (far, far, far), (-far, -far, -far))
    accumulator = SceneAccumulator(AccumulatorConfig(max_voxels=1))
    stats = accumulator.insert(points, None, 0.0)
    assert (stats.new_voxels, stats.evicted) == (2, 1)
    np.testing.assert_allclose(accumulator.snapshot().points, [[-far, -far, -far]])  # made last


def test_crop_box_is_applied_on_insertion() -> None:
    config = AccumulatorConfig(voxel_size=0.5, crop_min=(0, 0, 0), crop_max=(1, 1, 1))
    accumulator = SceneAccumulator(config)
    points = _cloud((0.5, 0.5, 0.5), (1, 1, 1), (-0.1, 0.5, 0.5), (0.5, 1.2, 0.5))
    stats = accumulator.insert(points, np.zeros((4, 3), np.uint8), 0.0)
    assert (stats.accepted, stats.cropped) == (2, 2)  # bounds are inclusive
    np.testing.assert_allclose(accumulator.snapshot().points, [[0.5, 0.5, 0.5], [1, 1, 1]])

    outside = accumulator.insert(_cloud((5, 5, 5)), None, 1.0)
    assert outside == InsertStats(0, 1, 0, 0, False)
    assert accumulator.snapshot().stamp_s == 0.0

    only_max = SceneAccumulator(AccumulatorConfig(voxel_size=0.5, crop_max=(0, 10, 10)))
    assert only_max.insert(_cloud((-3, 0, 0), (1, 0, 0)), None, 0.0).accepted == 1


def test_reset_clears_and_bumps_the_version() -> None:
    accumulator = SceneAccumulator(AccumulatorConfig(voxel_size=1.0))
    accumulator.insert(_cloud((0.5, 0.5, 0.5), (3.5, 0.5, 0.5)), None, 0.0)
    accumulator.reset()
    snapshot = accumulator.snapshot()
    assert (snapshot.num_voxels, snapshot.version, snapshot.stamp_s) == (0, 2, None)
    accumulator.insert(_cloud((7.5, 0.5, 0.5)), None, 1.0)
    assert _voxel_xs(accumulator) == [7]
    assert accumulator.version == 3


def test_snapshot_is_not_changed_by_later_inserts() -> None:
    accumulator = SceneAccumulator(AccumulatorConfig(voxel_size=1.0))
    accumulator.insert(_cloud((0.5, 0.5, 0.5)), None, 0.0)
    before = accumulator.snapshot()
    for x in range(1, 6):  # enough rebuilds to reuse both internal buffers
        accumulator.insert(_cloud((0.1, 0.1, 0.1), (x + 0.5, 0.5, 0.5)), None, float(x))
    np.testing.assert_allclose(before.points, [[0.5, 0.5, 0.5]])
    assert accumulator.num_voxels == 6


@pytest.mark.parametrize("colors", [None, np.empty((0, 3), np.uint8)])
def test_empty_inputs(colors: np.ndarray | None) -> None:
    accumulator = SceneAccumulator(AccumulatorConfig(time_window_s=1.0))
    assert accumulator.insert(np.empty((0, 3), np.float32), colors, 0.0) == InsertStats(
        0, 0, 0, 0, False
    )
    assert accumulator.expire(now_s=10.0) == 0
    snapshot = accumulator.snapshot()
    assert snapshot.points.shape == (0, 3) and snapshot.points.dtype == np.float32
    assert snapshot.colors.shape == (0, 3) and snapshot.colors.dtype == np.uint8
    assert (snapshot.version, snapshot.stamp_s, snapshot.num_voxels) == (0, None, 0)


@pytest.mark.parametrize(
    ("points", "colors", "stamp_s", "message"),
    [
        (_cloud((0, 0, 0), (np.nan, 0, 0)), None, 0.0, "NaN or inf"),
        (_cloud((0, 0, np.inf)), None, 0.0, "NaN or inf"),
        (_cloud((1e7, 0, 0)), None, 0.0, "beyond"),
        (_cloud((0, 0, 0)), None, float("nan"), "stamp_s"),
        (np.zeros((2, 2), np.float32), None, 0.0, r"\(N, 3\)"),
        (_cloud((0, 0, 0)), np.zeros((1, 3), np.float32), 0.0, "uint8"),
        (_cloud((0, 0, 0)), np.zeros((2, 3), np.uint8), 0.0, "uint8"),
    ],
)
def test_bad_input_is_rejected_and_leaves_the_map_untouched(
    points: np.ndarray, colors: np.ndarray | None, stamp_s: float, message: str
) -> None:
    accumulator = SceneAccumulator(AccumulatorConfig(voxel_size=1.0))
    accumulator.insert(_cloud((0.5, 0.5, 0.5)), None, 0.0)
    with pytest.raises(ValueError, match=message):
        accumulator.insert(points, colors, stamp_s)
    snapshot = accumulator.snapshot()
    assert (snapshot.num_voxels, snapshot.version) == (1, 1)
    assert np.isfinite(snapshot.points).all()


@pytest.mark.parametrize(
    "settings",
    [
        {"voxel_size": 0.0},
        {"time_window_s": -1.0},
        {"max_voxels": 0},
        {"change_fraction": 1.5},
        {"crop_min": (0, 0, 1), "crop_max": (1, 1, 0)},
    ],
)
def test_config_is_validated(settings: dict) -> None:
    with pytest.raises(ValueError):
        AccumulatorConfig(**settings)


def test_snapshots_carry_the_total_of_voxels_added_and_removed() -> None:
    accumulator = SceneAccumulator(AccumulatorConfig(voxel_size=1.0, max_voxels=3))
    accumulator.insert(_cloud((0.5, 0, 0), (1.5, 0, 0)), None, stamp_s=1.0)
    assert accumulator.snapshot().changes == 2
    accumulator.insert(_cloud((0.5, 0, 0), (1.5, 0, 0)), None, stamp_s=2.0)  # seen again
    assert accumulator.snapshot().changes == 2
    accumulator.insert(_cloud((2.5, 0, 0), (3.5, 0, 0)), None, stamp_s=3.0)  # 2 new, 1 evicted
    assert accumulator.snapshot().changes == 5
    accumulator.reset()  # its 3 voxels removed
    assert accumulator.snapshot().changes == 8
