"""Sanity checks: wrong units, wrong up axis, absurd extents, empty and colourless clouds, and the
model frame that fixes what they find."""

from __future__ import annotations

import numpy as np
import pytest

from r2s_ros.segment.checks import UP_CHOICES, SanityError, prepare, up_rotation
from r2s_ros.segment.readers import Cloud, make_cloud
from tests.segment.conftest import Scan


def cloud_of(points: np.ndarray, colors: np.ndarray | None) -> Cloud:
    return make_cloud("scan.ply", "PLY", points, colors)


def test_a_room_in_metres_and_z_up_passes_unchanged(room_scan: Scan) -> None:
    frame, notes = prepare(cloud_of(room_scan.points, room_scan.colors))
    assert (frame.up, frame.scale, notes) == ("z", 1.0, [])
    np.testing.assert_array_equal(frame.apply(room_scan.points), room_scan.points)


@pytest.mark.parametrize(
    ("factor", "message"),
    [
        (1000.0, r"4\d{3}(\.\d+)? m .*it looks like millimetres: pass --scale 0.001"),
        (100.0, r"48\d(\.\d+)? m .*it looks like centimetres: pass --scale 0.01"),
        (
            1e5,
            r"48\d{4}(\.\d+)? m .*crop the cloud or fix its units with --scale \(or --any-extent",
        ),
        (0.01, r"0.04\d* m .*fix its units with --scale"),
    ],
)
def test_extents_no_room_has_are_refused_with_the_fix(
    room_scan: Scan, factor: float, message: str
) -> None:
    cloud = cloud_of(room_scan.points * factor, room_scan.colors)
    with pytest.raises(SanityError, match=r"^scan.ply: the cloud spans " + message):
        prepare(cloud)
    frame, _ = prepare(cloud, any_extent=True)
    assert frame.scale == 1.0
    if factor == 1000.0:
        frame, _ = prepare(cloud, scale=0.001)
        np.testing.assert_allclose(frame.apply(cloud.points), room_scan.points, atol=1e-9)


@pytest.mark.parametrize("up", [choice for choice in UP_CHOICES if choice != "z"])
def test_another_up_axis_is_found_and_turned_z_up(room_scan: Scan, up: str) -> None:
    exported = room_scan.points @ up_rotation(up)  # the room with its up along `up`
    cloud = cloud_of(exported, room_scan.colors)
    with pytest.raises(SanityError, match=rf"its up axis looks like {up}, not z.*--up {up} "):
        prepare(cloud)
    frame, _ = prepare(cloud, up=up)
    np.testing.assert_allclose(frame.apply(exported), room_scan.points, atol=1e-9)
    assert prepare(cloud, up="z")[0].up == "z"  # the override


def test_rotations_are_proper() -> None:
    for up in UP_CHOICES:
        rotation = up_rotation(up)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
    with pytest.raises(SanityError, match="up must be one of"):
        up_rotation("w")


def test_empty_and_colourless_clouds(room_scan: Scan) -> None:
    points = room_scan.points[:60].copy()
    points[:20] = np.nan
    with pytest.raises(SanityError, match=r"^scan.ply: 40 points with finite .*at least 50"):
        prepare(cloud_of(points, None))
    _, notes = prepare(cloud_of(room_scan.points, None))
    assert notes == ["no colour: the model sees every point grey, so colour words cannot help"]
    grey = np.full_like(room_scan.colors, 128)
    _, notes = prepare(cloud_of(room_scan.points, grey))
    assert notes == ["every point has the colour [128, 128, 128]: as good as none"]


def test_a_georeferenced_cloud_is_recentred_for_the_model(room_scan: Scan) -> None:
    shift = np.array([512_345.25, 4_123_456.5, 230.0])
    frame, notes = prepare(cloud_of(room_scan.points + shift, room_scan.colors))
    assert "4123 km from its origin" in notes[0]
    model_points = frame.apply(room_scan.points + shift)
    assert np.abs(model_points).max() < 10.0
    np.testing.assert_allclose(model_points + frame.offset, room_scan.points + shift)
