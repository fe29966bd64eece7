"""Sensor poses in the fixed frame, buffered by stamp so that each cloud gets the pose at which
it was captured.

Frames: a nav_msgs/Odometry message gives the pose of `child_frame_id` (the robot or its sensor)
in `header.frame_id` (the fixed frame, e.g. `odom` or `map`): a point p in the child frame lies
at rotation @ p + translation in the fixed frame. So when a cloud's `header.frame_id` is the
odometry child frame, `transform_points(cloud, buffer.lookup(cloud_stamp, tolerance))` maps it
into the fixed frame. Clouds in any other frame (a camera mounted on the base) are placed through
the tf tree instead (`transforms.TransformBuffer`, which keeps each dynamic link in a PoseBuffer).

Stamps are float seconds (`stamp_seconds`); float64 resolves them to under a microsecond.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from r2s_ros.message_types import OdometryMessage, TimeMessage

# How far a quaternion's squared norm may be from 1 and still be normalised rather than
# rejected: tf2's QUATERNION_NORMALIZATION_TOLERANCE (BufferCore rejects beyond it). A zero or a
# huge quaternion (1e20) is a corrupt message, not a rounding error, and normalising it would
# hide that.
QUATERNION_TOLERANCE = 1e-2
# How far a buffered rotation matrix may be from orthonormal.
ROTATION_TOLERANCE = 1e-6


class PoseError(ValueError):
    """A pose value that cannot be used; `reason` is a short key for drop counters:
    nonfinite_stamp, nonfinite_position, nonfinite_orientation, zero_quaternion,
    denormalized_quaternion or not_a_rotation."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def rotation_from_quaternion(quaternion: list[float] | np.ndarray, what: str) -> np.ndarray:
    """(x, y, z, w) -> (3, 3) rotation matrix; PoseError for a non-finite, zero or (beyond
    QUATERNION_TOLERANCE) unnormalised quaternion. `what` names the pose in the message."""
    with np.errstate(over="ignore", invalid="ignore"):
        quaternion = np.asarray(quaternion, np.float64)
        if not np.isfinite(quaternion).all():
            raise PoseError("nonfinite_orientation", f"{what}: non-finite orientation {quaternion}")
        squared_norm = float(np.dot(quaternion, quaternion))
    if squared_norm == 0.0:
        raise PoseError("zero_quaternion", f"{what}: zero (uninitialised) quaternion")
    if not abs(squared_norm - 1.0) <= QUATERNION_TOLERANCE:  # also catches an overflowed norm
        raise PoseError(
            "denormalized_quaternion",
            f"{what}: quaternion {quaternion} has norm {np.sqrt(squared_norm):.6g}, not 1",
        )
    # ROS and scipy both order quaternions (x, y, z, w); scipy normalises them.
    return Rotation.from_quat(quaternion / np.sqrt(squared_norm)).as_matrix()


def check_pose(pose: Pose, what: str = "pose") -> None:
    """PoseError unless the stamp and translation are finite and the rotation is a proper
    rotation matrix (what a PoseBuffer needs to interpolate without raising)."""
    if not np.isfinite(pose.stamp_s):
        raise PoseError("nonfinite_stamp", f"{what}: non-finite stamp {pose.stamp_s}")
    if not np.isfinite(pose.translation).all():
        raise PoseError("nonfinite_position", f"{what}: non-finite position {pose.translation}")
    rotation = pose.rotation
    if not np.isfinite(rotation).all():
        raise PoseError("nonfinite_orientation", f"{what}: non-finite rotation matrix")
    with np.errstate(over="ignore", invalid="ignore"):
        off = np.abs(rotation @ rotation.T - np.eye(3)).max()
        proper = off <= ROTATION_TOLERANCE and np.linalg.det(rotation) > 0
    if not proper:
        raise PoseError("not_a_rotation", f"{what}: the rotation matrix is not a rotation")


@dataclass
class Pose:
    """The sensor frame in the fixed frame at stamp_s: x_fixed = rotation @ x + translation."""

    stamp_s: float
    translation: np.ndarray  # (3,) float64, metres
    rotation: np.ndarray  # (3, 3) float64, a proper rotation matrix

    def __post_init__(self) -> None:
        self.translation = np.asarray(self.translation, np.float64)
        self.rotation = np.asarray(self.rotation, np.float64)
        if self.translation.shape != (3,) or self.rotation.shape != (3, 3):
            raise ValueError(
                f"translation must be (3,) and rotation (3, 3), "
                f"got {self.translation.shape} and {self.rotation.shape}"
            )


class PoseBuffer:
    """Poses sorted by stamp, covering the max_age_s before the newest one."""

    def __init__(self, max_age_s: float = 30.0) -> None:
        if not max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0, got {max_age_s}")
        self.max_age_s = max_age_s
        self.clear()

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def newest_stamp_s(self) -> float | None:
        """The stamp of the newest pose, None when the buffer is empty."""
        return float(self._stamps[-1]) if len(self._stamps) else None

    @property
    def oldest_stamp_s(self) -> float | None:
        """The stamp of the oldest pose, None when the buffer is empty."""
        return float(self._stamps[0]) if len(self._stamps) else None

    def add(self, pose: Pose) -> None:
        """Adds a pose in stamp order, replacing one with the same stamp, and drops the poses
        more than max_age_s older than the newest (this one too, if it came that late).

        Raises PoseError (see `check_pose`), leaving the buffer untouched, for a non-finite or
        degenerate pose: only usable poses are buffered, so lookups never fail on one."""
        check_pose(pose)
        at = int(np.searchsorted(self._stamps, pose.stamp_s))
        if at < len(self._stamps) and self._stamps[at] == pose.stamp_s:
            self._translations[at], self._rotations[at] = pose.translation, pose.rotation
            return
        self._stamps = np.insert(self._stamps, at, pose.stamp_s)
        self._translations = np.insert(self._translations, at, pose.translation, axis=0)
        self._rotations = np.insert(self._rotations, at, pose.rotation, axis=0)
        first_kept = int(np.searchsorted(self._stamps, self._stamps[-1] - self.max_age_s))
        self._stamps = self._stamps[first_kept:]
        self._translations = self._translations[first_kept:]
        self._rotations = self._rotations[first_kept:]

    def clear(self) -> None:
        """Forgets every pose. Call it when the clock jumps back (a looping bag): the poses from
        before the jump would otherwise make every new one look too old to keep."""
        self._stamps = np.empty(0)  # (K,) float64, increasing
        self._translations = np.empty((0, 3))
        self._rotations = np.empty((0, 3, 3))

    def lookup(self, stamp_s: float, tolerance_s: float) -> Pose | None:
        """The pose at stamp_s, or None when no pose lies within tolerance_s of it.

        Interpolated (translation linearly, rotation by slerp) when the poses just before and
        just after stamp_s both lie within tolerance_s; otherwise the one of them that does, with
        its own stamp.
        """
        after = int(np.searchsorted(self._stamps, stamp_s))  # the first pose at or after stamp_s
        if after < len(self) and self._stamps[after] == stamp_s:
            return self._pose(after)
        near_before = after > 0 and stamp_s - self._stamps[after - 1] <= tolerance_s
        near_after = after < len(self) and self._stamps[after] - stamp_s <= tolerance_s
        if near_before and near_after:
            return self._interpolate(after - 1, stamp_s)
        if near_before:
            return self._pose(after - 1)
        if near_after:
            return self._pose(after)
        return None

    def between(self, stamp_s: float) -> Pose | None:
        """The pose at stamp_s interpolated between the poses around it, however far apart
        (tf2's rule); None outside [oldest, newest]: nothing is extrapolated."""
        after = int(np.searchsorted(self._stamps, stamp_s))
        if after < len(self) and self._stamps[after] == stamp_s:
            return self._pose(after)
        if after == 0 or after == len(self):
            return None
        return self._interpolate(after - 1, stamp_s)

    def _pose(self, index: int) -> Pose:
        return Pose(
            float(self._stamps[index]),
            self._translations[index].copy(),
            self._rotations[index].copy(),
        )

    def _interpolate(self, before: int, stamp_s: float) -> Pose:
        """The pose at stamp_s, between poses `before` and `before + 1`."""
        stamps = self._stamps[before : before + 2]
        fraction = (stamp_s - stamps[0]) / (stamps[1] - stamps[0])
        start, end = self._translations[before : before + 2]
        rotations = Rotation.from_matrix(self._rotations[before : before + 2])
        rotation = Slerp(stamps, rotations)(stamp_s).as_matrix()
        return Pose(stamp_s, (1 - fraction) * start + fraction * end, rotation)


def stamp_seconds(stamp: TimeMessage) -> float:
    """A builtin_interfaces/Time as float seconds; use it for cloud and pose stamps alike."""
    return stamp.sec + stamp.nanosec * 1e-9


def pose_from_odometry(msg: OdometryMessage) -> Pose:
    """The pose of msg.child_frame_id in msg.header.frame_id at the header stamp.

    Raises PoseError (a ValueError; `reason` for the drop counter) for a non-finite position
    or orientation and for a zero or unnormalised quaternion (see rotation_from_quaternion).
    """
    position, orientation = msg.pose.pose.position, msg.pose.pose.orientation
    what = f"odometry of {msg.child_frame_id!r}"
    translation = np.array([position.x, position.y, position.z], np.float64)
    if not np.isfinite(translation).all():
        raise PoseError("nonfinite_position", f"{what}: non-finite position {translation}")
    quaternion = [orientation.x, orientation.y, orientation.z, orientation.w]
    rotation = rotation_from_quaternion(quaternion, what)
    return Pose(stamp_seconds(msg.header.stamp), translation, rotation)


def transform_points(points: np.ndarray, pose: Pose) -> np.ndarray:
    """points (N, 3) float32 in the sensor frame -> (N, 3) float32 in the fixed frame."""
    points = np.asarray(points, np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {points.shape}")
    rotation, translation = pose.rotation.astype(np.float32), pose.translation.astype(np.float32)
    moved = np.empty_like(points)
    # A finite point far enough out may overflow to inf once moved; the intake drops those.
    with np.errstate(over="ignore", invalid="ignore"):
        _move(points, rotation, translation, moved)
    return moved


def _move(
    points: np.ndarray, rotation: np.ndarray, translation: np.ndarray, moved: np.ndarray
) -> None:
    for row in range(3):
        # Written out: numpy's matmul hands (N, 3) @ (3, 3) to BLAS, measured 30 times slower.
        moved[:, row] = (
            points[:, 0] * rotation[row, 0]
            + points[:, 1] * rotation[row, 1]
            + points[:, 2] * rotation[row, 2]
            + translation[row]
        )
