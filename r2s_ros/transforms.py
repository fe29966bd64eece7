"""A tf2 transform buffer without ROS: the frame tree of /tf and /tf_static, looked up by stamp.

The node uses it where tf2_ros is not installed (the pip ROS here), and the bag replay always
does. It follows tf2's BufferCore: every frame has one parent; a static transform holds at any
time; a dynamic one is interpolated between the two samples around the stamp (translation
linearly, rotation by slerp) and never extrapolated; a lookup composes the links from the source
frame up to the frames' common ancestor and down to the target frame. Simplifications: a frame
whose parent changes forgets its history with the old parent, and there is no "latest" lookup at
time 0 (clouds are always looked up at their own stamp).

Lookups that fail raise `TransformUnavailable`, whose `reason` is the intake's drop counter and
`final` says whether later transforms could still make the lookup succeed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.spatial.transform import Rotation

from r2s_ros.message_types import TransformsMessage, TransformStampedMessage
from r2s_ros.poses import (
    Pose,
    PoseBuffer,
    PoseError,
    check_pose,
    rotation_from_quaternion,
    stamp_seconds,
)

CACHE_S = 10.0  # dynamic transforms kept per frame, seconds before its newest (tf2's default)
NO_PATH = "tf_no_path"
EXTRAPOLATION = "tf_extrapolation"
TIMEOUT = "tf_timeout"


class TransformUnavailable(LookupError):
    """No transform between two frames at a stamp.

    reason: NO_PATH (a frame is unknown or the frames are not connected: a static transform may
    still come), EXTRAPOLATION (the stamp is older than a link's buffered history: final) or
    TIMEOUT (newer than a link's newest transform: it may still come, and when the wait for it
    ends this is the drop's reason).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def final(self) -> bool:
        return self.reason == EXTRAPOLATION


class TransformLookup(Protocol):
    """What the intake asks of a transform buffer (this one, or tf2_ros's behind an adapter)."""

    def lookup(self, target: str, source: str, stamp_s: float) -> Pose:
        """The pose of `source` in `target` at stamp_s; raises TransformUnavailable."""
        ...


@dataclass(frozen=True)
class _Rigid:
    """x_parent = rotation.apply(x_child) + translation."""

    rotation: Rotation
    translation: np.ndarray

    def then(self, inner: _Rigid) -> _Rigid:
        """self ∘ inner: inner's child frame expressed in self's parent frame."""
        return _Rigid(
            self.rotation * inner.rotation,
            self.rotation.apply(inner.translation) + self.translation,
        )

    def inverse(self) -> _Rigid:
        inverse = self.rotation.inv()
        return _Rigid(inverse, -inverse.apply(self.translation))


_IDENTITY = _Rigid(Rotation.identity(), np.zeros(3))


class TransformBuffer:
    """The frame tree: per child frame its parent and its static or dynamic transforms."""

    def __init__(self, cache_s: float = CACHE_S) -> None:
        self.cache_s = cache_s
        self._parent: dict[str, str] = {}
        self._static: dict[str, Pose] = {}
        self._dynamic: dict[str, PoseBuffer] = {}

    def add_message(self, msg: TransformsMessage, *, static: bool) -> list[tuple[str, str]]:
        """Adds every transform of a tf2_msgs/TFMessage; returns (reason, message) for each
        rejected one: `bad_transform` for its frames, `transform_<PoseError.reason>` for its
        values."""
        problems = []
        for transform in msg.transforms:
            try:
                self.add(transform, static=static)
            except PoseError as error:
                problems.append((f"transform_{error.reason}", str(error)))
            except ValueError as error:
                problems.append(("bad_transform", str(error)))
        return problems

    def add(self, msg: TransformStampedMessage, *, static: bool) -> None:
        """Adds one geometry_msgs/TransformStamped; ValueError says why it cannot be used."""
        parent, child = msg.header.frame_id.lstrip("/"), msg.child_frame_id.lstrip("/")
        if not parent or not child or parent == child:
            raise ValueError(f"transform from {parent!r} to {child!r}: frames must differ")
        pose = pose_from_transform(msg)
        check_pose(pose, f"transform {parent} -> {child}")
        if self._parent.get(child) != parent:
            self._static.pop(child, None)
            self._dynamic.pop(child, None)
            self._parent[child] = parent
        if static:
            self._dynamic.pop(child, None)
            self._static[child] = pose
        else:
            self._static.pop(child, None)
            self._dynamic.setdefault(child, PoseBuffer(self.cache_s)).add(pose)

    def clear(self) -> None:
        """Forgets every frame."""
        self._parent.clear()
        self._static.clear()
        self._dynamic.clear()

    def lookup(self, target: str, source: str, stamp_s: float) -> Pose:
        """The pose of `source` in `target` at stamp_s (x_target = rotation @ x_source +
        translation); raises TransformUnavailable."""
        up = self._ancestors(source)
        down = self._ancestors(target)
        common = next((frame for frame in up if frame in down), None)
        if common is None:
            known = ", ".join(sorted({*self._parent, *self._parent.values()})) or "none"
            raise TransformUnavailable(
                NO_PATH, f"no path from {source!r} to {target!r} (known frames: {known})"
            )
        source_in_common = self._chain(up[: up.index(common)], stamp_s)
        target_in_common = self._chain(down[: down.index(common)], stamp_s)
        pose = target_in_common.inverse().then(source_in_common)
        return Pose(stamp_s, pose.translation, pose.rotation.as_matrix())

    def _ancestors(self, frame: str) -> list[str]:
        """frame, its parent, grandparent ... up to the root (a cycle ends it)."""
        frame = frame.lstrip("/")
        chain = [frame]
        while (parent := self._parent.get(chain[-1])) is not None and parent not in chain:
            chain.append(parent)
        return chain

    def _chain(self, frames: list[str], stamp_s: float) -> _Rigid:
        """The first frame of `frames` in the parent of the last one."""
        pose = _IDENTITY
        for frame in reversed(frames):
            pose = pose.then(self._link(frame, stamp_s))
        return pose

    def _link(self, child: str, stamp_s: float) -> _Rigid:
        """child in its parent at stamp_s."""
        pose = self._static.get(child)
        if pose is None:
            history = self._dynamic[child]
            pose = history.between(stamp_s)
            if pose is None:
                link = f"{self._parent[child]} -> {child}"
                oldest, newest = history.oldest_stamp_s, history.newest_stamp_s
                if stamp_s < oldest:
                    message = f"{link} at {stamp_s:.3f} is older than its oldest at {oldest:.3f}"
                    raise TransformUnavailable(EXTRAPOLATION, message)
                message = f"{link} at {stamp_s:.3f} is newer than its newest at {newest:.3f}"
                raise TransformUnavailable(TIMEOUT, message)
        return _Rigid(Rotation.from_matrix(pose.rotation), pose.translation)


def pose_from_transform(msg: TransformStampedMessage) -> Pose:
    """The pose of msg.child_frame_id in msg.header.frame_id at the header stamp; PoseError
    (a ValueError with a `reason`) for a non-finite translation or rotation and for a zero or
    unnormalised quaternion."""
    t, q = msg.transform.translation, msg.transform.rotation
    what = f"transform {msg.header.frame_id} -> {msg.child_frame_id}"
    translation = np.array([t.x, t.y, t.z], np.float64)
    if not np.isfinite(translation).all():
        raise PoseError("nonfinite_position", f"{what}: non-finite translation {translation}")
    rotation = rotation_from_quaternion([q.x, q.y, q.z, q.w], what)
    return Pose(stamp_seconds(msg.header.stamp), translation, rotation)
