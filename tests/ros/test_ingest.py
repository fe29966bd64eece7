"""SceneIngest, the cloud path of the node and the replay: frames, poses, waiting, drops."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from nav_msgs.msg import Odometry
from std_msgs.msg import Header

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


@pytest.fixture
def ingest() -> SceneIngest:
    return SceneIngest(IngestSettings.from_parameters(NodeParameters(voxel_size=0.1)))


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
