"""tf2_ros behind the intake's TransformLookup, for robots with a full ROS 2 install.

The node uses it wherever `tf2_ros` imports: its buffer and listener then serve /tf and
/tf_static exactly as for every other tf2 user on the robot. The pip ROS wheels have no tf2_ros,
so here the node uses `transforms.TransformBuffer` instead, and this module is tested only where
tf2_ros is installed (tests/ros/test_tf2_ros_lookup.py).
"""

from __future__ import annotations

import tf2_ros
from rclpy.clock import ClockType
from rclpy.node import Node
from rclpy.time import Time

from r2s_ros.poses import Pose
from r2s_ros.transforms import (
    EXTRAPOLATION,
    NO_PATH,
    TIMEOUT,
    TransformUnavailable,
    pose_from_transform,
)


class Tf2RosLookup:
    """A tf2_ros Buffer (made now) and its TransformListener (made by `listen`)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.buffer = tf2_ros.Buffer(node=node)
        self._listener: tf2_ros.TransformListener | None = None

    def listen(self) -> None:
        """Subscribes to /tf and /tf_static."""
        self._listener = tf2_ros.TransformListener(self.buffer, self._node)

    def stop(self) -> None:
        """Unsubscribes; the buffer keeps what it has."""
        if self._listener is not None:
            self._listener.unregister()
            self._listener = None

    def lookup(self, target: str, source: str, stamp_s: float) -> Pose:
        """The pose of `source` in `target` at stamp_s; raises TransformUnavailable."""
        stamp = Time(nanoseconds=round(stamp_s * 1e9), clock_type=ClockType.ROS_TIME)
        try:
            transform = self.buffer.lookup_transform(target, source, stamp)
        except tf2_ros.ExtrapolationException as error:
            # tf2 says "extrapolation into the past" when the stamp precedes the buffered data.
            reason = EXTRAPOLATION if "into the past" in str(error) else TIMEOUT
            raise TransformUnavailable(reason, str(error)) from error
        except (tf2_ros.LookupException, tf2_ros.ConnectivityException) as error:
            raise TransformUnavailable(NO_PATH, str(error)) from error
        pose = pose_from_transform(transform)
        pose.stamp_s = stamp_s
        return pose
