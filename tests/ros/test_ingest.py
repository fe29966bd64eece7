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
