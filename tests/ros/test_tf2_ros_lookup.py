"""Tf2RosLookup: tf2_ros's buffer behind the intake's lookup, with the same drop reasons as the
in-repo buffer (tests/ros/test_transforms.py). Runs where tf2_ros is installed (a robot's ROS 2);
the pip ROS wheels have none, so here it is skipped."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.context import Context
from rclpy.node import Node
from scipy.spatial.transform import Rotation

from r2s_ros.transforms import EXTRAPOLATION, NO_PATH, TIMEOUT, TransformUnavailable
from tests.ros.test_transforms import transform, yaw

pytest.importorskip("tf2_ros", reason="tf2_ros is not installed (the pip ROS wheels lack it)")

from r2s_ros.tf2_ros_lookup import Tf2RosLookup


@pytest.fixture
def lookup(ros_context: Context) -> Tf2RosLookup:
    lookup = Tf2RosLookup(Node("tf2_ros_lookup_test", context=ros_context))
    mount = transform("base_link", "sensor", 0.0, (0.2, 0.0, 1.0), Rotation.identity())
    lookup.buffer.set_transform_static(mount, "test")
    for k in range(3):
        moving = transform("map", "base_link", 10.0 + k, (float(k), 0.0, 0.0), yaw(10 * k))
        lookup.buffer.set_transform(moving, "test")
    return lookup


def test_an_interpolated_chain(lookup: Tf2RosLookup) -> None:
    pose = lookup.lookup("map", "sensor", 10.5)
    assert pose.stamp_s == 10.5
    expected = yaw(5).apply([0.2, 0.0, 1.0]) + [0.5, 0.0, 0.0]
    np.testing.assert_allclose(pose.translation, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("source", "stamp_s", "reason"),
    [("ghost", 10.5, NO_PATH), ("sensor", 5.0, EXTRAPOLATION), ("sensor", 20.0, TIMEOUT)],
)
def test_failures_have_the_intakes_reasons(
    lookup: Tf2RosLookup, source: str, stamp_s: float, reason: str
) -> None:
    with pytest.raises(TransformUnavailable) as failure:
        lookup.lookup("map", source, stamp_s)
    assert failure.value.reason == reason
