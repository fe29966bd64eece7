"""Scene intake shared by the node and the bag replay: clouds and odometry in, the scene map out.

One path for both, so a replayed bag builds exactly the scene the node builds from the same
messages: decode -> for a cloud outside the fixed frame, the odometry pose at its stamp ->
transform -> `SceneAccumulator.insert` -> `expire`. A message that cannot be used is dropped and
counted by reason (`dropped_<reason>`), the counters the node publishes on /diagnostics.

A cloud a little newer than every pose so far waits for its pose (at most MAX_WAITING_CLOUDS of
them): over DDS a cloud and the odometry of its instant arrive on separate subscriptions in
either order, and looking the pose up at once would drop the cloud whenever it came first.
Odometry is assumed to arrive in stamp order.

Messages are typed structurally (`message_types`): rclpy messages and messages that rosbags
deserialised from a bag both work (PointCloud2 and nav_msgs/Odometry fields), and nothing here
imports ROS.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from r2s_ros.accumulator import AccumulatorConfig, SceneAccumulator, SceneSnapshot
from r2s_ros.message_types import OdometryMessage, PointCloudMessage
from r2s_ros.params import NodeParameters
from r2s_ros.pointcloud import CloudError, decode_cloud
from r2s_ros.poses import PoseBuffer, pose_from_odometry, stamp_seconds, transform_points

MAX_WAITING_CLOUDS = 8  # beyond this, the oldest waiting cloud is dropped as `no_pose`
# A cloud waits only while the odometry is this close behind it; a longer gap means no odometry
# is coming for it (the stream stopped), and it is dropped at once.
MAX_POSE_WAIT_S = 1.0


@dataclass(frozen=True)
class IngestSettings:
    """How clouds become scene voxels: the fixed frame, where poses come from, the map."""

    fixed_frame: str
    use_odometry: bool  # False: clouds outside fixed_frame are dropped as `wrong_frame`
    pose_tolerance_s: float
    accumulator: AccumulatorConfig

    @classmethod
    def from_parameters(cls, parameters: NodeParameters) -> IngestSettings:
        return cls(
            fixed_frame=parameters.fixed_frame,
            use_odometry=parameters.pose_source == "odometry",
            pose_tolerance_s=parameters.pose_tolerance_s,
            accumulator=AccumulatorConfig(
                voxel_size=parameters.voxel_size,
                time_window_s=parameters.time_window_s,
                max_voxels=parameters.max_scene_points,
                crop_min=parameters.crop_box_min,
                crop_max=parameters.crop_box_max,
            ),
        )


@dataclass(frozen=True)
class Drop:
    """A message that was not used: `reason` is the counter key, `message` says why."""

    reason: str
    message: str


@dataclass(frozen=True)
class _SensorCloud:
    """A decoded cloud in the sensor frame: points (N, 3) float32, colors (N, 3) uint8 or None."""

    points: np.ndarray
    colors: np.ndarray | None
    stamp_s: float


class SceneIngest:
    """The scene map and the pose buffer behind it, with drop counters.

    `add_cloud` and `add_odometry` are called from one thread at a time (the node's mutually
    exclusive callback group); `snapshot`, `reset` and `size` may come from any thread.
    """

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.counts: Counter[str] = Counter()  # clouds_received, clouds_accepted, dropped_*
        self._scene = SceneAccumulator(settings.accumulator)
        self._scene_lock = threading.Lock()  # the inference worker snapshots while clouds insert
        self._poses = PoseBuffer()
        self._waiting: deque[_SensorCloud] = deque()  # stamps newer than every pose, in order

    def add_cloud(self, msg: PointCloudMessage) -> list[Drop]:
        """Fuses a PointCloud2 into the scene, now or once its pose came; returns the drops."""
        self.counts["clouds_received"] += 1
        try:
            cloud = decode_cloud(msg)
        except CloudError as error:
            return [self._drop(error.reason, f"malformed cloud: {error}")]
        stamp_s = stamp_seconds(msg.header.stamp)
        if msg.header.frame_id == self.settings.fixed_frame:
            return self._insert(cloud.points, cloud.colors, stamp_s)
        if not self.settings.use_odometry:
            frame = msg.header.frame_id
            return [self._drop("wrong_frame", f"cloud in {frame!r}, no pose source")]
        sensor_cloud = _SensorCloud(cloud.points, cloud.colors, stamp_s)
        newest = self._poses.newest_stamp_s
        if newest is not None and stamp_s <= newest:
            return self._place(sensor_cloud)
        if newest is not None and stamp_s - newest > MAX_POSE_WAIT_S:
            message = f"no odometry pose near {stamp_s:.3f}; the newest is at {newest:.3f}"
            return [self._drop("no_pose", message)]
        self._waiting.append(sensor_cloud)
        if len(self._waiting) > MAX_WAITING_CLOUDS:
            oldest = self._waiting.popleft()
            message = f"no odometry pose came for the cloud at {oldest.stamp_s:.3f}"
            return [self._drop("no_pose", message)]
        return []

    def add_odometry(self, msg: OdometryMessage) -> list[Drop]:
        """Buffers the pose of a nav_msgs/Odometry and places the clouds that waited for it;
        returns the drops."""
        if msg.header.frame_id != self.settings.fixed_frame:
            frame = msg.header.frame_id
            return [self._drop("odometry_frame", f"odometry in {frame!r}, not fixed_frame")]
        try:
            self._poses.add(pose_from_odometry(msg))
        except ValueError as error:
            return [self._drop("bad_odometry", f"unusable odometry: {error}")]
        drops = []
        newest = self._poses.newest_stamp_s
        while self._waiting and self._waiting[0].stamp_s <= newest:
            drops += self._place(self._waiting.popleft())
        return drops

    def snapshot(self) -> SceneSnapshot:
        with self._scene_lock:
            return self._scene.snapshot()

    def reset(self) -> int:
        """Clears the scene; returns its new version."""
        with self._scene_lock:
            self._scene.reset()
            return self._scene.version

    def size(self) -> tuple[int, int]:
        """(voxels, version) of the scene now."""
        with self._scene_lock:
            return self._scene.num_voxels, self._scene.version

    def _place(self, cloud: _SensorCloud) -> list[Drop]:
        """Moves a sensor-frame cloud into the fixed frame with the pose at its stamp."""
        pose = self._poses.lookup(cloud.stamp_s, self.settings.pose_tolerance_s)
        if pose is None:
            message = f"no odometry pose within tolerance of {cloud.stamp_s:.3f}"
            return [self._drop("no_pose", message)]
        return self._insert(transform_points(cloud.points, pose), cloud.colors, cloud.stamp_s)

    def _insert(self, points: np.ndarray, colors: np.ndarray | None, stamp_s: float) -> list[Drop]:
        with self._scene_lock:
            try:
                self._scene.insert(points, colors, stamp_s)
            except ValueError as error:  # e.g. points beyond the voxel key range
                return [self._drop("rejected", f"cloud rejected by the scene map: {error}")]
            self._scene.expire(stamp_s)
        self.counts["clouds_accepted"] += 1
        return []

    def _drop(self, reason: str, message: str) -> Drop:
        self.counts[f"dropped_{reason}"] += 1
        return Drop(reason, message)
