"""tf poses across processes: the node (pose_source tf, use_sim_time) in its own process, a tf
peer (tests/ros/peers/tf_peer.py) publishing /tf, /tf_static and /clock, clouds from this one.

The tree has four hops, map -> odom (static) -> base_link (moving) -> mount -> sensor (static),
and a branch the clouds never use. Time is the peer's /clock: it stands still unless the test
moves it, so a cloud waits for its transform however slow the machine is, and the wait ends
exactly when the test moves the clock past `tf_timeout_s`. The tests share the node and run in
file order.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from r2s_model.checkpoint import save_checkpoint
from r2s_ros.pointcloud import decode_cloud, encode_cloud
from tests.model.tiny import tiny_model
from tests.ros.conftest import PEERS, running_node, stop_process
from tests.ros.test_node import Driver, stamp

TIMEOUT_S = 1.0
START_CLOCK_S = 100.0
# (parent, child, x, y, z, yaw, pitch, roll): metres and degrees, intrinsic z-y-x.
STATICS = [
    ("map", "odom", 20.0, 0.0, 0.0, 90.0, 0.0, 0.0),
    ("base_link", "mount", 0.3, 0.0, 0.5, 0.0, 0.0, 0.0),
    ("mount", "sensor", 0.05, 0.0, 0.1, -30.0, 20.0, 0.0),
    ("base_link", "lidar", 0.0, 0.0, 0.8, 0.0, 0.0, 0.0),
]
MOVING_STAMPS = [10.0, 10.5, 11.0, 11.5, 12.0]


def base_in_odom(seconds: float) -> tuple[float, ...]:
    """The moving link at `seconds`: 2 m/s along x, turning 20 degrees/s."""
    return ("odom", "base_link", 2.0 * (seconds - 10.0), 0.0, 0.0, 20.0 * (seconds - 10.0), 0, 0)


def rigid(link: tuple) -> tuple[Rotation, np.ndarray]:
    _, _, x, y, z, yaw, pitch, roll = link
    return Rotation.from_euler("ZYX", [yaw, pitch, roll], degrees=True), np.array([x, y, z])


def sensor_to_map(seconds: float, points: np.ndarray) -> np.ndarray:
    """Where the tree puts sensor points at `seconds`, composed here link by link (the moving
    link interpolated as its motion is linear)."""
    chain = [STATICS[2], STATICS[1], base_in_odom(seconds), STATICS[0]]
    for rotation, translation in map(rigid, chain):
        points = rotation.apply(points) + translation
    return points


CUBE = np.stack(np.meshgrid(*[np.arange(4) * 0.1] * 3, indexing="ij"), -1).reshape(-1, 3)
CLOUD = (CUBE + [2.0, 0.0, 0.0]).astype(np.float32)  # 2 m ahead of the sensor, 0.1 m apart


class TfPeer:
    """The tf peer's process: one command at a time, each acknowledged once published."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(PEERS / "tf_peer.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._expect("tf peer ready")

    def send(self, *words: object) -> None:
        self.process.stdin.write(" ".join(map(str, words)) + "\n")
        self.process.stdin.flush()
        self._expect("done")

    def _expect(self, answer: str) -> None:
        lines = []
        while (line := self.process.stdout.readline()) and line.strip() != answer:
            lines.append(line)
        if not line:
            pytest.fail(f"tf peer exited: {''.join(lines)}")


@pytest.fixture(scope="module")
def node_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen]:
    checkpoint = save_checkpoint(tiny_model(seed=3), tmp_path_factory.mktemp("model") / "tiny")
    overrides = [
        "pose_source:=tf",
        f"tf_timeout_s:={TIMEOUT_S}",
        "use_sim_time:=true",
        "scene_cloud_period_s:=0.1",
        "scene_cloud_max_points:=1000000",
    ]
    with running_node(Path(checkpoint), *overrides) as process:
        yield process


@pytest.fixture(scope="module")
def peer(node_process: subprocess.Popen) -> Iterator[TfPeer]:
    peer = TfPeer()
    try:
        yield peer
    finally:
        peer.process.stdin.close()
        stop_process(peer.process, timeout=10)


class TfDriver(Driver):
    """The node test's driver, also reading the scene cloud and the diagnostics' stamps."""

    def __init__(self, context: Context, node_process: subprocess.Popen) -> None:
        self.diagnostics_stamps: list[float] = []
        super().__init__(context, node_process)
        self.scenes: list[PointCloud2] = []
        self.node.create_subscription(PointCloud2, "r2s/scene_cloud", self.scenes.append, 10)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        # One subscription for the values and the stamps: a second reader of /diagnostics in
        # this node was sometimes never matched, and the values then never came.
        super()._on_diagnostics(msg)
        self.diagnostics_stamps.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)

    def cloud(self, seconds: float, frame: str = "sensor") -> None:
        header = Header(stamp=stamp(seconds), frame_id=frame)
        self.points.publish(encode_cloud(CLOUD, None, header))

    def receive(self, count: int) -> None:
        """Waits until the node has received `count` clouds in all."""
        self.wait_for(lambda: self.count("clouds_received") == count, f"{count} clouds")

    def wait_for_reports(self, count: int) -> None:
        """Waits for `count` more diagnostics (0.3 s apart on the wall clock)."""
        goal = len(self.diagnostics_stamps) + count
        self.wait_for(lambda: len(self.diagnostics_stamps) >= goal, f"{count} diagnostics")

    def scene_points(self, accepted: int) -> np.ndarray:
        """The scene cloud once it holds every point of `accepted` clouds."""
        expected = accepted * len(CLOUD)
        self.wait_for(lambda: self.scenes and self.scenes[-1].width >= expected, "the scene cloud")
        return decode_cloud(self.scenes[-1]).points


@pytest.fixture(scope="module")
def driver(node_process: subprocess.Popen, peer: TfPeer) -> Iterator[TfDriver]:
    context = Context()
    rclpy.init(context=context)
    driver = TfDriver(context, node_process)
    try:
        driver.wait_for(lambda: driver.points.get_subscription_count() > 0, "the node")
        peer.send("clock", START_CLOCK_S)
        driver.wait_for(
            lambda: driver.diagnostics_stamps and driver.diagnostics_stamps[-1] == START_CLOCK_S,
            "the node on the peer's clock",
        )
        yield driver
    finally:
        driver.node.destroy_node()
        rclpy.shutdown(context=context)


def assert_placed(scene: np.ndarray, seconds: float) -> None:
    distance, _ = cKDTree(scene).query(sensor_to_map(seconds, CLOUD.astype(np.float64)))
    assert distance.max() < 1e-3, f"cloud at {seconds}: {distance.max():.4f} m off"


def test_clouds_are_placed_through_static_and_moving_hops(driver: TfDriver, peer: TfPeer) -> None:
    assert driver.diagnostics["pose_source"] == "tf (r2s_ros.transforms)"  # no tf2_ros here
    for link in STATICS:
        peer.send("static", *link)
    for seconds in MOVING_STAMPS:
        peer.send("tf", seconds, *base_in_odom(seconds))
    # Between moving samples: interpolated. Sent after the transforms, but over another
    # connection: a cloud that overtakes them waits for them (the clock stands still).
    stamps = [10.25, 11.0, 11.75]
    for seconds in stamps:
        driver.cloud(seconds)
    driver.wait_for(lambda: driver.count("clouds_accepted") == 3, "three clouds placed")
    scene = driver.scene_points(accepted=3)
    for seconds in stamps:
        assert_placed(scene, seconds)
    assert not [key for key in driver.diagnostics if key.startswith("dropped_")]


def test_a_late_transform_is_waited_for(driver: TfDriver, peer: TfPeer) -> None:
    driver.cloud(12.75)  # the newest moving transform is at 12.0
    driver.receive(4)
    # More than tf_timeout_s of wall time passes; the node's (simulated) clock does not move.
    driver.wait_for_reports(5)
    assert driver.count("clouds_accepted") == 3
    assert not [key for key in driver.diagnostics if key.startswith("dropped_")]

    peer.send("tf", 13.0, *base_in_odom(13.0))
    driver.wait_for(lambda: driver.count("clouds_accepted") == 4, "the late cloud placed")
    assert_placed(driver.scene_points(accepted=4), 12.75)


def test_missing_and_outdated_transforms_are_dropped_by_reason(
    driver: TfDriver, peer: TfPeer
) -> None:
    driver.cloud(5.0)  # older than the moving link's history: never placeable
    driver.wait_for(lambda: driver.count("dropped_tf_extrapolation") == 1, "the outdated drop")

    driver.cloud(12.5, frame="ghost_camera")  # no transform names this frame
    driver.cloud(30.0)  # newer than every transform, and none comes
    driver.receive(7)
    peer.send("clock", START_CLOCK_S + TIMEOUT_S / 2)
    driver.wait_for(
        lambda: driver.diagnostics_stamps[-1] == START_CLOCK_S + TIMEOUT_S / 2, "the clock"
    )
    driver.wait_for_reports(2)
    assert driver.count("dropped_tf_no_path") == driver.count("dropped_tf_timeout") == 0

    peer.send("clock", START_CLOCK_S + TIMEOUT_S)
    driver.wait_for(
        lambda: driver.count("dropped_tf_no_path") == driver.count("dropped_tf_timeout") == 1,
        "both drops once the clock passed the timeout",
    )
    assert driver.count("clouds_accepted") == 4
