"""rosbags messages (ROS 2 Kilted types, `contract.typestore()`) of the scan bags: what
r2s-make-bag writes, built here so that tests and tools can write the same messages."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from r2s_model.synthetic.scan_sim import ScanFrame
from r2s_ros.bags import contract
from r2s_ros.message_types import (
    HeaderMessage,
    OdometryMessage,
    PointCloudMessage,
    StringMessage,
    TransformsMessage,
)
from r2s_ros.pointcloud import pack_cloud


def cloud_message(frame: ScanFrame, stamp_ns: int) -> PointCloudMessage:
    """sensor_msgs/PointCloud2 (rosbags) of a frame's points in the sensor frame."""
    types = contract.typestore().types
    packed = pack_cloud(frame.points, frame.colors)
    return types[contract.POINTS_TYPE](
        header=header(stamp_ns, contract.SENSOR_FRAME),
        height=1,
        width=packed.width,
        fields=[
            types["sensor_msgs/msg/PointField"](name=name, offset=offset, datatype=kind, count=1)
            for name, offset, kind in packed.fields
        ],
        is_bigendian=False,
        point_step=packed.point_step,
        row_step=len(packed.data),
        data=np.frombuffer(packed.data, np.uint8),
        is_dense=packed.is_dense,
    )


def odometry_message(frame: ScanFrame, stamp_ns: int) -> OdometryMessage:
    """nav_msgs/Odometry (rosbags): the sensor pose of a frame in the map; zero twist."""
    types = contract.typestore().types
    geometry = "geometry_msgs/msg/"
    pose = types[geometry + "Pose"](
        position=types[geometry + "Point"](*frame.translation.tolist()),
        orientation=_quaternion(frame.rotation),
    )
    zero = types[geometry + "Vector3"](x=0.0, y=0.0, z=0.0)
    return types[contract.ODOM_TYPE](
        header=header(stamp_ns, contract.MAP_FRAME),
        child_frame_id=contract.SENSOR_FRAME,
        pose=types[geometry + "PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
        twist=types[geometry + "TwistWithCovariance"](
            twist=types[geometry + "Twist"](linear=zero, angular=zero), covariance=np.zeros(36)
        ),
    )


def transforms_message(
    parent: str, child: str, translation: np.ndarray, rotation: np.ndarray, stamp_ns: int
) -> TransformsMessage:
    """tf2_msgs/TFMessage (rosbags) of one transform: `child` at translation (3,) and
    rotation (3, 3) in `parent`."""
    types = contract.typestore().types
    geometry = "geometry_msgs/msg/"
    transform = types[geometry + "TransformStamped"](
        header=header(stamp_ns, parent),
        child_frame_id=child,
        transform=types[geometry + "Transform"](
            translation=types[geometry + "Vector3"](*np.asarray(translation).tolist()),
            rotation=_quaternion(rotation),
        ),
    )
    return types[contract.TF_TYPE](transforms=[transform])


def _quaternion(rotation: np.ndarray) -> object:
    """geometry_msgs/Quaternion (rosbags) of a rotation matrix."""
    x, y, z, w = Rotation.from_matrix(rotation).as_quat().tolist()
    return contract.typestore().types["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)


def instruction_message(text: str) -> StringMessage:
    """std_msgs/String (rosbags)."""
    return contract.typestore().types[contract.INSTRUCTION_TYPE](data=text)


def header(stamp_ns: int, frame_id: str) -> HeaderMessage:
    """std_msgs/Header (rosbags) of a bag time in nanoseconds."""
    types = contract.typestore().types
    sec, nanosec = divmod(int(stamp_ns), 10**9)
    stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)
