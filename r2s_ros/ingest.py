"""Scene intake shared by the node and the bag replay: clouds and poses in, the scene map out.

One path for both, so a replayed bag builds exactly the scene the node builds from the same
messages: decode -> for a cloud outside the fixed frame, its pose at its stamp -> transform ->
`SceneAccumulator.insert` -> `expire`. A message that cannot be used is dropped and counted by
reason (`dropped_<reason>`), the counters the node publishes on /diagnostics.

Poses (`pose_source`): `tf`, the cloud frame's transform into the fixed frame from /tf and
/tf_static (`transforms.TransformBuffer`, or tf2_ros's buffer on a robot); `odometry`, the pose
of a nav_msgs/Odometry child frame; `fixed`, none (clouds must be in the fixed frame).

A cloud whose pose has not arrived yet waits (at most MAX_WAITING_CLOUDS of them): over DDS a
cloud and the pose of its instant arrive on separate subscriptions in either order. With tf it
waits up to `tf_timeout_s` on the `clock` given (the node's: simulated time under use_sim_time)
and is placed as soon as its transform can be looked up; it is then dropped as `tf_no_path`
(the frames are not connected), `tf_timeout` (no transform as new as the cloud came) or, at
once, `tf_extrapolation` (older than the buffered transforms). With odometry it waits while the
odometry is less than MAX_POSE_WAIT_S behind it, then is dropped as `no_pose`; odometry is
assumed to arrive in stamp order. Odometry places only clouds in its `child_frame_id`: a cloud in
another frame is dropped as `wrong_frame` (placing it with that pose would put it in the wrong
place). An odometry whose child frame differs from the buffered poses' is dropped as
`odometry_child_frame`, unless those poses are over MAX_POSE_WAIT_S older (the stream moved to
another frame): the buffer then starts over with it.

Messages are typed structurally (`message_types`): rclpy messages and messages that rosbags
deserialised from a bag both work, and nothing here imports ROS.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from r2s_ros.accumulator import AccumulatorConfig, SceneAccumulator, SceneSnapshot
from r2s_ros.message_types import OdometryMessage, PointCloudMessage, TransformsMessage
from r2s_ros.params import NodeParameters
from r2s_ros.pointcloud import CloudError, decode_cloud
from r2s_ros.poses import (
    PoseBuffer,
    PoseError,
    check_pose,
    pose_from_odometry,
    stamp_seconds,
    transform_points,
)
from r2s_ros.transforms import TransformBuffer, TransformLookup, TransformUnavailable

MAX_WAITING_CLOUDS = 16  # beyond this, the oldest waiting cloud is dropped
# A cloud waits only while the odometry is this close behind it; a longer gap means no odometry
# is coming for it (the stream stopped), and it is dropped at once.
MAX_POSE_WAIT_S = 1.0


@dataclass(frozen=True)
class IngestSettings:
    """How clouds become scene voxels: the fixed frame, where poses come from, the map."""

    fixed_frame: str
    pose_source: str  # "tf" | "odometry" | "fixed" (clouds elsewhere: dropped, `wrong_frame`)
    pose_tolerance_s: float  # odometry
    tf_timeout_s: float
    accumulator: AccumulatorConfig

    @classmethod
    def from_parameters(cls, parameters: NodeParameters) -> IngestSettings:
        return cls(
            fixed_frame=parameters.fixed_frame,
            pose_source=parameters.pose_source,
            pose_tolerance_s=parameters.pose_tolerance_s,
            tf_timeout_s=parameters.tf_timeout_s,
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
    """A decoded cloud: points (N, 3) float32 in `frame`, colors (N, 3) uint8 or None."""

    points: np.ndarray
    colors: np.ndarray | None
    stamp_s: float
    frame: str


@dataclass
class _Waiting:
    """A cloud waiting for its pose since `since_s` (clock time); if it is dropped, it is for
    `reason`, with `message`."""

    cloud: _SensorCloud
    since_s: float
    reason: str
    message: str


class SceneIngest:
    """The scene map and the poses behind it, with drop counters.

    `transforms`: where tf lookups go; None keeps a TransformBuffer fed by `add_transforms`.
    `clock`: seconds, for the tf wait. `add_*` and `retry_waiting` are called from one thread
    at a time (the node's mutually exclusive callback group); `snapshot`, `reset` and `size`
    may come from any thread.
    """

    def __init__(
        self,
        settings: IngestSettings,
        transforms: TransformLookup | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.counts: Counter[str] = Counter()  # clouds_received, clouds_accepted, dropped_*
        self._scene = SceneAccumulator(settings.accumulator)
        self._scene_lock = threading.Lock()  # the inference worker snapshots while clouds insert
        self._poses = PoseBuffer()
        self._odometry_frame = ""  # child frame of the buffered odometry poses
        self._buffer = TransformBuffer() if transforms is None else None
        self._transforms = transforms or self._buffer
        self._clock = clock
        self._waiting: deque[_Waiting] = deque()  # in arrival order

    def add_cloud(self, msg: PointCloudMessage) -> list[Drop]:
        """Fuses a PointCloud2 into the scene, now or once its pose came; returns the drops."""
        self.counts["clouds_received"] += 1
        try:
            decoded = decode_cloud(msg)
        except CloudError as error:
            return [self._drop(error.reason, f"malformed cloud: {error}")]
        if decoded.num_nonfinite:
            self.counts["points_nonfinite"] += decoded.num_nonfinite
        if len(decoded.points) == 0:
            if decoded.num_input == 0:
                return [self._drop("empty_cloud", "the cloud has no points")]
            message = f"all {decoded.num_input} points of the cloud are NaN or inf"
            return [self._drop("all_nonfinite", message)]
        frame = msg.header.frame_id
        cloud = _SensorCloud(decoded.points, decoded.colors, stamp_seconds(msg.header.stamp), frame)
        if frame == self.settings.fixed_frame:
            return self._insert(cloud.points, cloud.colors, cloud.stamp_s)
        if self.settings.pose_source == "tf":
            return self._wait(cloud, "", "") + self.retry_waiting()
        if self.settings.pose_source == "fixed":
            return [self._drop("wrong_frame", f"cloud in {frame!r}, no pose source")]
        if self._odometry_frame and frame.lstrip("/") != self._odometry_frame:
            return [self._wrong_odometry_frame(cloud)]
        newest = self._poses.newest_stamp_s
        if newest is not None and cloud.stamp_s <= newest:
            return self._place_by_odometry(cloud)
        if newest is not None and cloud.stamp_s - newest > MAX_POSE_WAIT_S:
            message = f"no odometry pose near {cloud.stamp_s:.3f}; the newest is at {newest:.3f}"
            return [self._drop("no_pose", message)]
        message = f"no odometry pose came for the cloud at {cloud.stamp_s:.3f}"
        return self._wait(cloud, "no_pose", message)

    def add_odometry(self, msg: OdometryMessage) -> list[Drop]:
        """Buffers the pose of a nav_msgs/Odometry and places the clouds that waited for it;
        returns the drops."""
        if msg.header.frame_id != self.settings.fixed_frame:
            frame = msg.header.frame_id
            return [self._drop("odometry_frame", f"odometry in {frame!r}, not fixed_frame")]
        child = msg.child_frame_id.lstrip("/")
        if not child:
            return [self._drop("odometry_child_frame", "odometry without a child_frame_id")]
        try:
            pose = pose_from_odometry(msg)
            check_pose(pose, f"odometry of {child!r}")
        except PoseError as error:
            return [self._drop(f"odometry_{error.reason}", f"unusable odometry: {error}")]
        if child != self._odometry_frame:
            newest = self._poses.newest_stamp_s
            if newest is not None and pose.stamp_s - newest <= MAX_POSE_WAIT_S:
                message = f"odometry of {child!r} while that of {self._odometry_frame!r} comes"
                return [self._drop("odometry_child_frame", message)]
            self._poses.clear()
            self._odometry_frame = child
        self._poses.add(pose)
        drops = []
        newest = self._poses.newest_stamp_s
        while self._waiting and self._waiting[0].cloud.stamp_s <= newest:
            drops += self._place_by_odometry(self._waiting.popleft().cloud)
        return drops

    def add_transforms(self, msg: TransformsMessage, *, static: bool) -> list[Drop]:
        """Adds a tf2_msgs/TFMessage of /tf (static: of /tf_static) to the buffer and places
        the clouds that waited for it; returns the drops (`bad_transform`: unusable frames,
        `transform_<reason>`: unusable values, see `poses.PoseError`)."""
        if self._buffer is None:
            raise RuntimeError("this intake looks transforms up elsewhere (tf2_ros)")
        problems = self._buffer.add_message(msg, static=static)
        drops = [self._drop(reason, f"unusable transform: {p}") for reason, p in problems]
        return drops + self.retry_waiting()

    def retry_waiting(self) -> list[Drop]:
        """tf: places the waiting clouds whose transform can now be looked up, in arrival
        order, and drops those it never will be or that waited tf_timeout_s; returns the
        drops. Call it when transforms may have come (on a timer with tf2_ros)."""
        if self.settings.pose_source != "tf":
            return []
        now, drops, still = self._clock(), [], deque()
        for waiting in self._waiting:
            cloud = waiting.cloud
            try:
                pose = self._transforms.lookup(
                    self.settings.fixed_frame, cloud.frame, cloud.stamp_s
                )
            except TransformUnavailable as error:
                waited = now - waiting.since_s
                if error.final or waited >= self.settings.tf_timeout_s:
                    message = f"no transform for the cloud in {cloud.frame!r} after {waited:.2f} s"
                    drops.append(self._drop(error.reason, f"{message}: {error}"))
                else:
                    waiting.reason, waiting.message = error.reason, str(error)
                    still.append(waiting)
                continue
            except PoseError as error:  # tf2_ros handed back a transform with unusable values
                drops.append(
                    self._drop(f"transform_{error.reason}", f"unusable transform: {error}")
                )
                continue
            drops += self._insert(transform_points(cloud.points, pose), cloud.colors, cloud.stamp_s)
        self._waiting = still
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

    def _wait(self, cloud: _SensorCloud, reason: str, message: str) -> list[Drop]:
        """Queues a cloud for its pose; over MAX_WAITING_CLOUDS the oldest is dropped."""
        self._waiting.append(_Waiting(cloud, self._clock(), reason, message))
        if len(self._waiting) <= MAX_WAITING_CLOUDS:
            return []
        oldest = self._waiting.popleft()
        full = f"{MAX_WAITING_CLOUDS} newer clouds wait"
        return [self._drop(oldest.reason, f"{oldest.message} ({full})")]

    def _place_by_odometry(self, cloud: _SensorCloud) -> list[Drop]:
        """Moves a sensor-frame cloud into the fixed frame with the odometry at its stamp."""
        if cloud.frame.lstrip("/") != self._odometry_frame:
            return [self._wrong_odometry_frame(cloud)]
        pose = self._poses.lookup(cloud.stamp_s, self.settings.pose_tolerance_s)
        if pose is None:
            message = f"no odometry pose within tolerance of {cloud.stamp_s:.3f}"
            return [self._drop("no_pose", message)]
        return self._insert(transform_points(cloud.points, pose), cloud.colors, cloud.stamp_s)

    def _wrong_odometry_frame(self, cloud: _SensorCloud) -> Drop:
        message = f"cloud in {cloud.frame!r}; the odometry places {self._odometry_frame!r}"
        return self._drop("wrong_frame", message)

    def _insert(self, points: np.ndarray, colors: np.ndarray | None, stamp_s: float) -> list[Drop]:
        """Inserts a fixed-frame cloud. Points the scene map cannot hold (beyond its key range,
        or made non-finite by the transform) are dropped and counted in `points_out_of_range`,
        the rest kept; a cloud left with no point, or with none inside the crop box, is dropped
        (`all_out_of_range`, `outside_crop`) rather than counted as accepted."""
        limit = self._scene.max_abs_coordinate
        with np.errstate(invalid="ignore"):
            magnitude = np.abs(points)
            usable = (magnitude[:, 0] < limit) & (magnitude[:, 1] < limit)
            usable &= magnitude[:, 2] < limit  # NaN compares False: dropped too
        num_out = len(points) - int(np.count_nonzero(usable))
        if num_out:
            self.counts["points_out_of_range"] += num_out
            kept = np.flatnonzero(usable)
            points = points.take(kept, axis=0)
            colors = None if colors is None else colors.take(kept, axis=0)
            if len(points) == 0:
                message = f"all {num_out} points lie beyond ±{limit:.0f} m, the scene map's range"
                return [self._drop("all_out_of_range", message)]
        with self._scene_lock:
            try:
                stats = self._scene.insert(points, colors, stamp_s)
            except ValueError as error:  # bad shapes or stamp: not expected after the checks
                return [self._drop("rejected", f"cloud rejected by the scene map: {error}")]
            self._scene.expire(stamp_s)
        if stats.accepted == 0:
            message = f"all {stats.cropped} points of the cloud lie outside the crop box"
            return [self._drop("outside_crop", message)]
        self.counts["clouds_accepted"] += 1
        return []

    def _drop(self, reason: str, message: str) -> Drop:
        self.counts[f"dropped_{reason}"] += 1
        return Drop(reason, message)
