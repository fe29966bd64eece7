"""PoseBuffer lookups, Odometry conversion and point transforms."""

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from nav_msgs.msg import Odometry

from r2s_ros.poses import (
    Pose,
    PoseBuffer,
    PoseError,
    pose_from_odometry,
    stamp_seconds,
    transform_points,
)


def _yaw(degrees: float) -> np.ndarray:
    """Rotation about z, written out by hand."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _pose(stamp_s: float, x: float = 0.0, yaw_deg: float = 0.0) -> Pose:
    return Pose(stamp_s, np.array([x, 0.0, 0.0]), _yaw(yaw_deg))


def test_lookup_midway_interpolates_translation_and_slerps_rotation() -> None:
    buffer = PoseBuffer()
    buffer.add(Pose(10.0, np.array([0.0, 0.0, 0.0]), _yaw(0)))
    buffer.add(Pose(11.0, np.array([2.0, 4.0, -2.0]), _yaw(90)))
    pose = buffer.lookup(10.5, tolerance_s=0.6)
    assert pose is not None and pose.stamp_s == 10.5
    np.testing.assert_allclose(pose.translation, [1.0, 2.0, -1.0])
    np.testing.assert_allclose(pose.rotation, _yaw(45), atol=1e-12)

    quarter = buffer.lookup(10.25, tolerance_s=0.8)
    assert quarter is not None
    np.testing.assert_allclose(quarter.rotation, _yaw(22.5), atol=1e-12)


def test_lookup_returns_the_nearest_pose_within_tolerance() -> None:
    buffer = PoseBuffer()
    buffer.add(_pose(0.0, x=0.0))
    buffer.add(_pose(1.0, x=1.0))
    near_start = buffer.lookup(0.05, tolerance_s=0.1)  # the pose at 1.0 is too far
    past_end = buffer.lookup(1.05, tolerance_s=0.1)
    before_start = buffer.lookup(-0.05, tolerance_s=0.1)
    exact = buffer.lookup(1.0, tolerance_s=0.0)
    assert near_start is not None and near_start.stamp_s == 0.0 and near_start.translation[0] == 0
    assert past_end is not None and past_end.stamp_s == 1.0 and past_end.translation[0] == 1
    assert before_start is not None and before_start.stamp_s == 0.0
    assert exact is not None and exact.stamp_s == 1.0


def test_lookup_is_none_outside_tolerance() -> None:
    buffer = PoseBuffer()
    assert buffer.lookup(0.0, tolerance_s=1.0) is None
    buffer.add(_pose(0.0))
    buffer.add(_pose(1.0))
    assert buffer.lookup(0.5, tolerance_s=0.1) is None
    assert buffer.lookup(2.0, tolerance_s=0.5) is None
    assert buffer.lookup(-1.0, tolerance_s=0.5) is None


def test_out_of_order_adds_are_sorted_and_same_stamps_replaced() -> None:
    buffer = PoseBuffer()
    for stamp, x in [(1.0, 10.0), (0.0, 0.0), (0.5, 5.0), (0.5, 6.0)]:
        buffer.add(_pose(stamp, x=x))
    assert len(buffer) == 3
    middle = buffer.lookup(0.5, tolerance_s=0.0)
    assert middle is not None and middle.translation[0] == 6.0
    between = buffer.lookup(0.75, tolerance_s=0.3)
    assert between is not None
    np.testing.assert_allclose(between.translation, [8.0, 0.0, 0.0])


def test_old_poses_are_pruned_and_clear_forgets_all() -> None:
    buffer = PoseBuffer(max_age_s=1.0)
    buffer.add(_pose(0.0))
    buffer.add(_pose(0.5))
    buffer.add(_pose(1.2))
    assert len(buffer) == 2  # 0.0 is more than 1 s older than 1.2
    buffer.add(_pose(2.0))
    assert len(buffer) == 2  # 0.5 goes, 1.2 stays
    buffer.add(_pose(0.7))  # too late to be kept
    assert len(buffer) == 2
    assert buffer.lookup(0.7, tolerance_s=0.4) is None

    buffer.clear()
    assert len(buffer) == 0
    buffer.add(_pose(0.7))
    assert buffer.lookup(0.7, tolerance_s=0.0) is not None


def test_pose_from_a_real_odometry_message() -> None:
    msg = Odometry()
    msg.header.stamp = Time(sec=1_700_000_000, nanosec=250_000_000)
    msg.header.frame_id = "odom"
    msg.child_frame_id = "base_link"
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = 1.0, 2.0, 3.0
    half = np.sqrt(0.5)  # 90° about z: (x, y, z, w) = (0, 0, sin 45°, cos 45°)
    msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = half, half
    pose = pose_from_odometry(msg)
    assert pose.stamp_s == pytest.approx(1_700_000_000.25, abs=1e-6)
    assert stamp_seconds(msg.header.stamp) == pose.stamp_s
    np.testing.assert_allclose(pose.translation, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(pose.rotation, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)

    # A point 1 m ahead of the robot (its +x) lies 1 m along the fixed frame's +y.
    ahead = transform_points(np.array([[1.0, 0.0, 0.0]], np.float32), pose)
    np.testing.assert_allclose(ahead, [[1.0, 3.0, 3.0]], atol=1e-6)

    msg.pose.pose.orientation.w = msg.pose.pose.orientation.z = 0.0
    with pytest.raises(ValueError):
        pose_from_odometry(msg)


def test_transform_points_against_a_hand_computed_rotation() -> None:
    # 90° about x: y -> z, z -> -y.
    rotation = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    pose = Pose(0.0, np.array([10.0, 20.0, 30.0]), rotation)
    points = np.array([[1, 2, 3], [0, 0, 0], [-1, 0, 5]], np.float32)
    moved = transform_points(points, pose)
    assert moved.dtype == np.float32 and moved.shape == (3, 3)
    np.testing.assert_allclose(moved, [[11, 17, 32], [10, 20, 30], [9, 15, 30]], atol=1e-5)
    assert transform_points(np.empty((0, 3), np.float32), pose).shape == (0, 3)


def test_pose_shapes_are_checked() -> None:
    with pytest.raises(ValueError):
        Pose(0.0, np.zeros(2), np.eye(3))
    with pytest.raises(ValueError):
        PoseBuffer(max_age_s=0.0)


@pytest.mark.parametrize(
    ("translation", "rotation", "reason"),
    [
        ([np.nan, 0, 0], np.eye(3), "nonfinite_position"),
        ([0, 0, 0], np.full((3, 3), np.nan), "nonfinite_orientation"),
        ([0, 0, 0], np.eye(3) * 1e20, "not_a_rotation"),
        ([0, 0, 0], np.zeros((3, 3)), "not_a_rotation"),
        ([0, 0, 0], -np.eye(3), "not_a_rotation"),  # a reflection
    ],
)
def test_buffer_rejects_degenerate_poses_and_interpolates_around_them(
    translation: list[float], rotation: np.ndarray, reason: str
) -> None:
    buffer = PoseBuffer()
    buffer.add(Pose(1.0, np.zeros(3), np.eye(3)))
    with pytest.raises(PoseError) as raised:
        buffer.add(Pose(1.5, np.array(translation, float), rotation))
    assert raised.value.reason == reason
    buffer.add(Pose(2.0, np.array([2.0, 0, 0]), np.eye(3)))
    assert len(buffer) == 2
    np.testing.assert_allclose(buffer.lookup(1.5, 1.0).translation, [1.0, 0, 0])
    np.testing.assert_allclose(buffer.between(1.5).rotation, np.eye(3), atol=1e-12)
