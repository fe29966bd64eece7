"""What the scene intake reads of ROS messages, as structural types.

The node hands the intake rclpy messages; r2s-replay hands it messages that rosbags deserialised
from a bag, of other classes (their `data` a numpy array). Both satisfy these protocols, so the
intake, the PointCloud2 decoder and the pose buffer are typed without importing either. Only the
fields read are listed; nothing here writes them.
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from typing import Protocol

import numpy as np

# The bytes of a PointCloud2: array.array from rclpy, a numpy array from rosbags.
CloudData = bytes | bytearray | memoryview | array.array | np.ndarray


class TimeMessage(Protocol):
    """builtin_interfaces/Time."""

    sec: int
    nanosec: int


class HeaderMessage(Protocol):
    """std_msgs/Header."""

    stamp: TimeMessage
    frame_id: str


class PointFieldMessage(Protocol):
    """sensor_msgs/PointField."""

    name: str
    offset: int
    datatype: int
    count: int


class PointCloudMessage(Protocol):
    """sensor_msgs/PointCloud2."""

    header: HeaderMessage
    height: int
    width: int
    fields: Sequence[PointFieldMessage]
    is_bigendian: bool
    point_step: int
    row_step: int
    data: CloudData


class PointMessage(Protocol):
    """geometry_msgs/Point."""

    x: float
    y: float
    z: float


class QuaternionMessage(PointMessage, Protocol):
    """geometry_msgs/Quaternion."""

    w: float


class PoseMessage(Protocol):
    """geometry_msgs/Pose."""

    position: PointMessage
    orientation: QuaternionMessage


class PoseWithCovarianceMessage(Protocol):
    """geometry_msgs/PoseWithCovariance."""

    pose: PoseMessage


class OdometryMessage(Protocol):
    """nav_msgs/Odometry: the pose of the child frame in `header.frame_id`."""

    header: HeaderMessage
    pose: PoseWithCovarianceMessage


class TransformMessage(Protocol):
    """geometry_msgs/Transform: the child frame's origin and axes in the parent frame."""

    translation: PointMessage  # a geometry_msgs/Vector3: the same x, y, z fields
    rotation: QuaternionMessage


class TransformStampedMessage(Protocol):
    """geometry_msgs/TransformStamped: `child_frame_id` in `header.frame_id` at the stamp."""

    header: HeaderMessage
    child_frame_id: str
    transform: TransformMessage


class TransformsMessage(Protocol):
    """tf2_msgs/TFMessage, what /tf and /tf_static carry."""

    transforms: Sequence[TransformStampedMessage]


class StringMessage(Protocol):
    """std_msgs/String."""

    data: str
