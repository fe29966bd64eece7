"""SceneIngest, the cloud path of the node and the replay: frames, poses, waiting, drops."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from r2s_ros.ingest import MAX_WAITING_CLOUDS, IngestSettings, SceneIngest
from r2s_ros.params import NodeParameters
from r2s_ros.pointcloud import encode_cloud

POINTS = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]], np.float32)


def stamp(seconds: float) -> Time:
    return Time(sec=int(seconds), nanosec=round(seconds % 1 * 1e9))


def cloud(seconds: float, frame: str = "sensor", points: np.ndarray = POINTS) -> object:
    return encode_cloud(points, None, Header(stamp=stamp(seconds), frame_id=frame))


def odometry(seconds: float, x: float) -> Odometry:
    msg = Odometry(header=Header(stamp=stamp(seconds), frame_id="map"), child_frame_id="sensor")
    msg.pose.pose.position.x = x
    msg.pose.pose.orientation.w = 1.0
    return msg


def settings(pose_source: str) -> IngestSettings:
    parameters = NodeParameters(voxel_size=0.1, pose_source=pose_source, tf_timeout_s=0.5)
    return IngestSettings.from_parameters(parameters)


@pytest.fixture
def ingest() -> SceneIngest:
    return SceneIngest(settings("odometry"))


def test_fixed_frame_cloud_goes_in_as_is(ingest: SceneIngest) -> None:
    assert ingest.add_cloud(cloud(1.0, frame="map")) == []
    np.testing.assert_allclose(ingest.snapshot().points, POINTS)


def test_sensor_cloud_is_moved_by_the_pose_at_its_stamp(ingest: SceneIngest) -> None:
    ingest.add_odometry(odometry(1.0, x=10.0))
    assert ingest.add_cloud(cloud(1.0)) == []
    np.testing.assert_allclose(ingest.snapshot().points, POINTS + [10.0, 0.0, 0.0])


def test_cloud_arriving_before_its_pose_waits_for_it(ingest: SceneIngest) -> None:
    ingest.add_odometry(odometry(1.0, x=10.0))
    assert ingest.add_cloud(cloud(1.2)) == []  # its odometry is still on the way
    assert ingest.snapshot().num_voxels == 0
    assert ingest.add_odometry(odometry(1.2, x=20.0)) == []
    np.testing.assert_allclose(ingest.snapshot().points, POINTS + [20.0, 0.0, 0.0])
    assert ingest.counts["clouds_accepted"] == 1


def test_cloud_far_past_the_odometry_is_dropped_at_once(ingest: SceneIngest) -> None:
    ingest.add_odometry(odometry(1.0, x=0.0))
    (drop,) = ingest.add_cloud(cloud(100.0))
    assert drop.reason == "no_pose"
    assert ingest.counts["dropped_no_pose"] == 1


def test_waiting_is_bounded(ingest: SceneIngest) -> None:
    drops = [drop for i in range(MAX_WAITING_CLOUDS + 1) for drop in ingest.add_cloud(cloud(i))]
    assert [drop.reason for drop in drops] == ["no_pose"]


def test_pose_too_far_from_a_waiting_cloud_drops_it(ingest: SceneIngest) -> None:
    ingest.add_odometry(odometry(1.0, x=0.0))
    ingest.add_cloud(cloud(1.5))
    (drop,) = ingest.add_odometry(odometry(2.0, x=0.0))  # 0.5 s either side: beyond tolerance
    assert drop.reason == "no_pose"


def test_sensor_cloud_without_a_pose_source_is_dropped() -> None:
    ingest = SceneIngest(IngestSettings.from_parameters(NodeParameters(pose_source="fixed")))
    (drop,) = ingest.add_cloud(cloud(1.0))
    assert drop.reason == "wrong_frame"


def test_odometry_in_another_frame_is_dropped(ingest: SceneIngest) -> None:
    msg = odometry(1.0, x=0.0)
    msg.header.frame_id = "odom"
    (drop,) = ingest.add_odometry(msg)
    assert (drop.reason, ingest.counts["dropped_odometry_frame"]) == ("odometry_frame", 1)


def test_malformed_cloud_is_dropped_by_reason(ingest: SceneIngest) -> None:
    broken = cloud(1.0, frame="map")
    broken.width, broken.row_step = 10, 10 * broken.point_step  # data holds 2 points
    (drop,) = ingest.add_cloud(broken)
    assert drop.reason == "data_length"


class Clock:
    """The intake's clock, moved by the test."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def transforms(parent: str, child: str, seconds: float, x: float) -> TFMessage:
    msg = TransformStamped(header=Header(stamp=stamp(seconds), frame_id=parent))
    msg.child_frame_id = child
    msg.transform.translation.x = x
    msg.transform.rotation.w = 1.0
    return TFMessage(transforms=[msg])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tf_ingest(clock: Clock) -> SceneIngest:
    """map -> base (moving) -> sensor (a static 1 m offset along x)."""
    ingest = SceneIngest(settings("tf"), clock=clock)
    assert ingest.add_transforms(transforms("base", "sensor", 0.0, x=1.0), static=True) == []
    for seconds, x in ((1.0, 10.0), (2.0, 20.0)):
        assert ingest.add_transforms(transforms("map", "base", seconds, x), static=False) == []
    return ingest


def test_tf_places_a_cloud_with_the_transform_at_its_stamp(tf_ingest: SceneIngest) -> None:
    assert tf_ingest.add_cloud(cloud(1.5)) == []
    np.testing.assert_allclose(tf_ingest.snapshot().points, POINTS + [16.0, 0.0, 0.0])


def test_tf_cloud_waits_for_a_late_transform(tf_ingest: SceneIngest, clock: Clock) -> None:
    assert tf_ingest.add_cloud(cloud(2.5)) == []
    clock.now_s = 0.4
    assert tf_ingest.retry_waiting() == []
    assert tf_ingest.snapshot().num_voxels == 0
    assert tf_ingest.add_transforms(transforms("map", "base", 3.0, 30.0), static=False) == []
    np.testing.assert_allclose(tf_ingest.snapshot().points, POINTS + [26.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("frame", "seconds", "reason"),
    [("ghost", 1.5, "tf_no_path"), ("sensor", 2.5, "tf_timeout")],
)
def test_tf_waiting_ends_after_the_timeout(
    tf_ingest: SceneIngest, clock: Clock, frame: str, seconds: float, reason: str
) -> None:
    assert tf_ingest.add_cloud(cloud(seconds, frame=frame)) == []
    clock.now_s = 0.49
    assert tf_ingest.retry_waiting() == []
    clock.now_s = 0.5
    (drop,) = tf_ingest.retry_waiting()
    assert drop.reason == reason and "after 0.50 s" in drop.message
    assert tf_ingest.counts[f"dropped_{reason}"] == 1
    assert tf_ingest.retry_waiting() == []


def test_tf_cloud_older_than_the_transforms_is_dropped_at_once(tf_ingest: SceneIngest) -> None:
    (drop,) = tf_ingest.add_cloud(cloud(0.5))
    assert drop.reason == "tf_extrapolation"


def test_tf_waiting_is_bounded(tf_ingest: SceneIngest) -> None:
    drops = [d for i in range(MAX_WAITING_CLOUDS + 1) for d in tf_ingest.add_cloud(cloud(3 + i))]
    assert [drop.reason for drop in drops] == ["tf_timeout"]


def test_unusable_transform_is_counted(tf_ingest: SceneIngest) -> None:
    (drop,) = tf_ingest.add_transforms(transforms("map", "map", 1.0, 0.0), static=False)
    assert drop.reason == "bad_transform"


# Hostile pose values (#14): each is rejected at intake and counted by reason, and a cloud whose
# stamp lies across it is still placed from the good poses around it (before, the bad pose was
# buffered and scipy raised inside the interpolation, ending the node).
BAD_POSES = {
    "nan_orientation": ((0.0, 0.0, 0.0), (float("nan"), 0.0, 0.0, 1.0), "nonfinite_orientation"),
    "inf_orientation": ((0.0, 0.0, 0.0), (0.0, 0.0, float("inf"), 1.0), "nonfinite_orientation"),
    "zero_quaternion": ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), "zero_quaternion"),
    "huge_quaternion": ((0.0, 0.0, 0.0), (0.0, 0.0, 1e20, 1e20), "denormalized_quaternion"),
    "overflowing_quaternion": (
        (0.0, 0.0, 0.0),
        (1e200, 0.0, 0.0, 1e200),
        "denormalized_quaternion",
    ),
    "half_quaternion": ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.5), "denormalized_quaternion"),
    "nan_position": ((float("nan"), 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), "nonfinite_position"),
    "inf_position": ((0.0, float("-inf"), 0.0), (0.0, 0.0, 0.0, 1.0), "nonfinite_position"),
}


def odometry_with(seconds: float, position: tuple, quaternion: tuple) -> Odometry:
    msg = odometry(seconds, 0.0)
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = position
    o = msg.pose.pose.orientation
    o.x, o.y, o.z, o.w = quaternion
    return msg


@pytest.mark.parametrize("kind", list(BAD_POSES))
def test_bad_odometry_anywhere_in_the_buffer_is_rejected_and_counted(kind: str) -> None:
    position, quaternion, reason = BAD_POSES[kind]
    ingest = SceneIngest(settings("odometry"))
    assert ingest.add_odometry(odometry(1.0, x=10.0)) == []
    (drop,) = ingest.add_odometry(odometry_with(1.05, position, quaternion))
    assert drop.reason == f"odometry_{reason}"
    assert ingest.counts[f"dropped_odometry_{reason}"] == 1
    assert ingest.add_odometry(odometry(1.1, x=11.0)) == []
    # Stamps just before, at and after the rejected pose: interpolated between the good ones.
    for seconds in (1.04, 1.05, 1.06):
        assert ingest.add_cloud(cloud(seconds)) == []
    assert ingest.counts["clouds_accepted"] == 3
    assert np.isfinite(ingest.snapshot().points).all()


def test_nearly_unit_quaternion_is_normalised_not_rejected(ingest: SceneIngest) -> None:
    scale = 1.002  # squared norm 1.004: within tf2's normalisation tolerance
    assert ingest.add_odometry(odometry_with(1.0, (10.0, 0, 0), (0, 0, 0, scale))) == []
    assert ingest.add_cloud(cloud(1.0)) == []
    np.testing.assert_allclose(ingest.snapshot().points, POINTS + [10.0, 0.0, 0.0], atol=1e-5)


def bad_transform(seconds: float, position: tuple, quaternion: tuple) -> TFMessage:
    msg = transforms("map", "base", seconds, 0.0)
    (stamped,) = msg.transforms
    t, q = stamped.transform.translation, stamped.transform.rotation
    t.x, t.y, t.z = position
    q.x, q.y, q.z, q.w = quaternion
    return msg


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("kind", list(BAD_POSES))
def test_bad_transform_values_are_rejected_and_counted(
    tf_ingest: SceneIngest, kind: str, static: bool
) -> None:
    position, quaternion, reason = BAD_POSES[kind]
    (drop,) = tf_ingest.add_transforms(bad_transform(1.5, position, quaternion), static=static)
    assert drop.reason == f"transform_{reason}"
    assert tf_ingest.counts[f"dropped_transform_{reason}"] == 1
    assert tf_ingest.add_cloud(cloud(1.5)) == []  # interpolated between the good ones
    np.testing.assert_allclose(tf_ingest.snapshot().points, POINTS + [16.0, 0.0, 0.0])


# Clouds (#14): one absurd point is dropped, not the cloud; clouds with nothing usable are
# dropped with their own reason instead of counting as accepted.


def test_one_absurd_point_is_dropped_and_counted_the_rest_kept(ingest: SceneIngest) -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(-5, 5, (3000, 3)).astype(np.float32)
    points[1234] = [1e20, 0.0, 0.0]
    assert ingest.add_cloud(cloud(1.0, frame="map", points=points)) == []
    assert ingest.counts["clouds_accepted"] == 1
    assert ingest.counts["points_out_of_range"] == 1
    assert ingest.snapshot().num_voxels > 100
    assert np.abs(ingest.snapshot().points).max() <= 5.0


def test_points_pushed_out_of_range_by_the_pose_are_dropped(ingest: SceneIngest) -> None:
    points = np.array([[0.0, 0.0, 0.0], [3e38, 0.0, 0.0]], np.float32)  # inf once moved
    ingest.add_odometry(odometry(1.0, x=3e38))
    (drop,) = ingest.add_cloud(cloud(1.0, points=points))
    assert drop.reason == "all_out_of_range"
    assert ingest.counts["points_out_of_range"] == 2
    assert ingest.counts["clouds_accepted"] == 0


def test_all_nan_cloud_is_dropped_not_accepted(ingest: SceneIngest) -> None:
    points = np.full((50, 3), np.nan, np.float32)
    (drop,) = ingest.add_cloud(cloud(1.0, frame="map", points=points))
    assert drop.reason == "all_nonfinite"
    assert ingest.counts["dropped_all_nonfinite"] == 1
    assert ingest.counts["points_nonfinite"] == 50
    assert ingest.counts["clouds_accepted"] == 0
    (drop,) = ingest.add_cloud(cloud(1.0, frame="map", points=np.empty((0, 3), np.float32)))
    assert drop.reason == "empty_cloud"


def test_cloud_entirely_outside_the_crop_box_is_dropped_not_accepted() -> None:
    parameters = NodeParameters(
        voxel_size=0.1, pose_source="odometry", crop_box_min=(-1, -1, -1), crop_box_max=(1, 1, 1)
    )
    ingest = SceneIngest(IngestSettings.from_parameters(parameters))
    (drop,) = ingest.add_cloud(cloud(1.0, frame="map", points=POINTS + 50))
    assert drop.reason == "outside_crop"
    assert ingest.counts["dropped_outside_crop"] == 1
    assert ingest.counts["clouds_accepted"] == 0
    assert ingest.add_cloud(cloud(1.0, frame="map")) == []  # partly inside: accepted
    assert ingest.counts["clouds_accepted"] == 1


# Frames (#14): odometry places only clouds in its child frame.


def test_cloud_in_another_frame_than_the_odometry_child_is_dropped(ingest: SceneIngest) -> None:
    ingest.add_odometry(odometry(1.0, x=10.0))
    (drop,) = ingest.add_cloud(cloud(1.0, frame="camera"))
    assert (drop.reason, ingest.counts["dropped_wrong_frame"]) == ("wrong_frame", 1)
    assert ingest.add_cloud(cloud(1.0, frame="/sensor")) == []  # a leading slash is the same
    assert ingest.counts["clouds_accepted"] == 1


def test_waiting_cloud_in_another_frame_is_dropped_once_odometry_comes(
    ingest: SceneIngest,
) -> None:
    assert ingest.add_cloud(cloud(1.0, frame="camera")) == []  # no odometry yet: it waits
    (drop,) = ingest.add_odometry(odometry(1.0, x=0.0))
    assert drop.reason == "wrong_frame"
    assert ingest.snapshot().num_voxels == 0


def test_odometry_of_a_second_child_frame_is_dropped_until_the_first_stops(
    ingest: SceneIngest,
) -> None:
    assert ingest.add_odometry(odometry(1.0, x=10.0)) == []
    other = odometry(1.1, x=50.0)
    other.child_frame_id = "camera"
    (drop,) = ingest.add_odometry(other)
    assert drop.reason == "odometry_child_frame"
    assert ingest.add_cloud(cloud(1.0)) == []  # still placed by the sensor's odometry
    np.testing.assert_allclose(ingest.snapshot().points, POINTS + [10.0, 0.0, 0.0])
    nameless = odometry(1.2, x=0.0)
    nameless.child_frame_id = ""
    assert [d.reason for d in ingest.add_odometry(nameless)] == ["odometry_child_frame"]

    other.header.stamp = stamp(5.0)  # the sensor's odometry stopped 4 s ago: the stream moved
    assert ingest.add_odometry(other) == []
    assert [d.reason for d in ingest.add_cloud(cloud(5.0))] == ["wrong_frame"]
    assert ingest.add_cloud(cloud(5.0, frame="camera")) == []
    assert ingest.counts["dropped_odometry_child_frame"] == 2
