"""TransformBuffer: tf2's lookup rules on real geometry_msgs/TransformStamped messages."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
from scipy.spatial.transform import Rotation
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from r2s_ros.poses import Pose
from r2s_ros.transforms import (
    EXTRAPOLATION,
    NO_PATH,
    TIMEOUT,
    TransformBuffer,
    TransformUnavailable,
)


def transform(
    parent: str, child: str, seconds: float, xyz: tuple[float, ...], rotation: Rotation
) -> TransformStamped:
    msg = TransformStamped(
        header=Header(stamp=Time(sec=int(seconds), nanosec=round(seconds % 1 * 1e9))),
        child_frame_id=child,
    )
    msg.header.frame_id = parent
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = xyz
    q = msg.transform.rotation
    q.x, q.y, q.z, q.w = rotation.as_quat().tolist()
    return msg


def yaw(degrees: float) -> Rotation:
    return Rotation.from_euler("z", degrees, degrees=True)


def apply(pose: Pose, points: np.ndarray) -> np.ndarray:
    return points @ pose.rotation.T + pose.translation


@pytest.fixture
def tree() -> TransformBuffer:
    """map -> odom (static), odom -> base_link (moving along x, turning), base_link -> sensor
    (static mount), base_link -> arm (static)."""
    buffer = TransformBuffer()
    statics = [
        transform("map", "odom", 0.0, (10.0, 0.0, 0.0), yaw(90)),
        transform("base_link", "sensor", 0.0, (0.2, 0.0, 1.0), Rotation.from_euler("y", 20, True)),
        transform("base_link", "arm", 0.0, (0.0, 0.3, 0.5), yaw(-90)),
    ]
    assert buffer.add_message(TFMessage(transforms=statics), static=True) == []
    for k in range(11):
        moving = transform("odom", "base_link", 100.0 + k * 0.1, (k * 0.1, 0.0, 0.0), yaw(9 * k))
        assert buffer.add_message(TFMessage(transforms=[moving]), static=False) == []
    return buffer


def test_a_chain_of_hops_composes_static_and_interpolated_links(tree: TransformBuffer) -> None:
    points = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, -1.0]])
    pose = tree.lookup("map", "sensor", 100.55)
    # The same chain, composed independently: map<-odom, odom<-base (interpolated), base<-sensor.
    base = (yaw(90), np.array([10.0, 0.0, 0.0]))
    moving = (yaw(49.5), np.array([0.55, 0.0, 0.0]))
    mount = (Rotation.from_euler("y", 20, True), np.array([0.2, 0.0, 1.0]))
    expected = points
    for rotation, translation in (mount, moving, base):
        expected = rotation.apply(expected) + translation
    np.testing.assert_allclose(apply(pose, points), expected, atol=1e-9)
    assert pose.stamp_s == 100.55


def test_lookups_between_branches_and_upwards(tree: TransformBuffer) -> None:
    sensor_in_arm = tree.lookup("arm", "sensor", 100.3)
    arm_in_map = tree.lookup("map", "arm", 100.3)
    sensor_in_map = tree.lookup("map", "sensor", 100.3)
    point = np.array([[0.5, -0.5, 2.0]])
    np.testing.assert_allclose(
        apply(arm_in_map, apply(sensor_in_arm, point)), apply(sensor_in_map, point), atol=1e-9
    )
    odom_in_sensor = tree.lookup("sensor", "odom", 100.3)
    np.testing.assert_allclose(
        apply(odom_in_sensor, apply(tree.lookup("odom", "sensor", 100.3), point)), point, atol=1e-9
    )
    identity = tree.lookup("sensor", "sensor", 5.0)
    np.testing.assert_allclose(apply(identity, point), point)


@pytest.mark.parametrize(
    ("source", "stamp_s", "reason"),
    [
        ("ghost", 100.5, NO_PATH),  # never heard of
        ("sensor", 99.0, EXTRAPOLATION),  # before the first odom -> base_link transform
        ("sensor", 101.5, TIMEOUT),  # after the newest: may still come
    ],
)
def test_failures_say_why(tree: TransformBuffer, source: str, stamp_s: float, reason: str) -> None:
    with pytest.raises(TransformUnavailable) as failure:
        tree.lookup("map", source, stamp_s)
    assert failure.value.reason == reason
    assert failure.value.final == (reason == EXTRAPOLATION)


def test_disconnected_trees_have_no_path() -> None:
    buffer = TransformBuffer()
    buffer.add(transform("map", "odom", 0.0, (0, 0, 0), yaw(0)), static=True)
    buffer.add(transform("world", "sensor", 0.0, (0, 0, 0), yaw(0)), static=True)
    with pytest.raises(TransformUnavailable, match="no path from 'sensor' to 'map'") as failure:
        buffer.lookup("map", "sensor", 0.0)
    assert failure.value.reason == NO_PATH


def test_a_static_transform_holds_at_any_time_and_a_dynamic_one_only_inside_its_data() -> None:
    buffer = TransformBuffer()
    buffer.add(transform("map", "sensor", 5.0, (1.0, 2.0, 3.0), yaw(30)), static=True)
    for stamp_s in (0.0, 5.0, 1e9):
        np.testing.assert_allclose(buffer.lookup("map", "sensor", stamp_s).translation, [1, 2, 3])
    buffer.add(transform("map", "sensor", 5.0, (1.0, 2.0, 3.0), yaw(30)), static=False)
    np.testing.assert_allclose(buffer.lookup("map", "sensor", 5.0).translation, [1, 2, 3])
    with pytest.raises(TransformUnavailable):
        buffer.lookup("map", "sensor", 5.1)


def test_unusable_transforms_are_rejected_with_a_reason() -> None:
    buffer = TransformBuffer()
    zero = transform("map", "sensor", 1.0, (0, 0, 0), yaw(0))
    zero.transform.rotation.w = 0.0
    loop = transform("map", "map", 1.0, (0, 0, 0), yaw(0))
    nan = transform("map", "sensor", 1.0, (float("nan"), 0, 0), yaw(0))
    problems = buffer.add_message(TFMessage(transforms=[zero, loop, nan]), static=False)
    assert [reason for reason, _ in problems] == [
        "transform_zero_quaternion",
        "bad_transform",
        "transform_nonfinite_position",
    ]
    assert "zero" in problems[0][1] and "frames must differ" in problems[1][1]
    with pytest.raises(TransformUnavailable):
        buffer.lookup("map", "sensor", 1.0)


def test_reparenting_a_frame_replaces_its_link() -> None:
    buffer = TransformBuffer()
    buffer.add(transform("map", "sensor", 1.0, (1.0, 0, 0), yaw(0)), static=False)
    buffer.add(transform("odom", "sensor", 2.0, (0, 1.0, 0), yaw(0)), static=False)
    buffer.add(transform("map", "odom", 0.0, (0, 0, 5.0), yaw(0)), static=True)
    np.testing.assert_allclose(buffer.lookup("map", "sensor", 2.0).translation, [0, 1, 5])
    with pytest.raises(TransformUnavailable):
        buffer.lookup("map", "sensor", 1.0)  # the old parent's history is gone
