"""The r2s node in its own process, driven over real DDS with a tiny random checkpoint.

One node serves the whole module; the tests run in file order and the scene builds up across
them (empty first, reset last).
"""

import functools
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.client import Client
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from r2s_model.checkpoint import save_checkpoint
from r2s_model.synthetic.rooms import generate_room
from r2s_ros.msg import SegmentationResult
from r2s_ros.pointcloud import encode_cloud
from r2s_ros.srv import Segment
from r2s_ros.worker import QUEUE_FULL
from tests.model.tiny import tiny_model
from tests.ros.conftest import node_command, running_node

WAIT_S = 60.0
QUEUE_SIZE = 2
MODEL_STATUSES = {SegmentationResult.STATUS_OK, SegmentationResult.STATUS_NO_TARGET}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tiny_model(seed=3), tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def node_process(checkpoint: Path) -> Iterator[subprocess.Popen]:
    overrides = (f"instruction_queue_size:={QUEUE_SIZE}", "pose_source:=odometry")
    with running_node(checkpoint, *overrides) as process:
        yield process


class Driver:
    """The test side: publishes clouds, poses and instructions; records every node output."""

    def __init__(self, context: Context, node_process: subprocess.Popen) -> None:
        self.process = node_process
        self.node = Node("r2s_test_driver", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.results: list[SegmentationResult] = []
        self.targets: list[PointCloud2] = []
        self.markers: list[MarkerArray] = []
        self.diagnostics: dict[str, str] = {}
        for kind, topic, sink in [
            (SegmentationResult, "r2s/result", self.results.append),
            (PointCloud2, "r2s/target_cloud", self.targets.append),
            (MarkerArray, "r2s/relevant_markers", self.markers.append),
            (DiagnosticArray, "/diagnostics", self._on_diagnostics),
        ]:
            self.node.create_subscription(kind, topic, sink, 100)
        self.points = self.node.create_publisher(PointCloud2, "points", 10)
        self.odometry = self.node.create_publisher(Odometry, "odom", 10)
        self.instruction = self.node.create_publisher(String, "instruction", 50)
        self.segment = self.node.create_client(Segment, "r2s/segment")
        self.reset = self.node.create_client(Trigger, "r2s/reset_scene")

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics = {value.key: value.value for value in status.values}

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(
                    f"node exited ({self.process.returncode}): {self.process.stdout.read()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)

    def count(self, key: str) -> int:
        return int(self.diagnostics.get(key, 0))

    def ask(self, text: str) -> SegmentationResult:
        """Publishes an instruction and waits for its result (instructions are unique texts)."""
        self.instruction.publish(String(data=text))
        self.wait_for(lambda: self.answers(text), f"the result of {text!r}")
        return self.answers(text)[0]

    def answers(self, text: str) -> list[SegmentationResult]:
        return [result for result in self.results if result.instruction == text]

    def call(self, client: Client, request: object) -> object:
        self.wait_for(client.service_is_ready, f"service {client.srv_name}")
        future = client.call_async(request)
        self.wait_for(future.done, f"the answer of {client.srv_name}")
        return future.result()


@contextmanager
def connected_driver(
    node_process: subprocess.Popen, *ready: tuple[Callable[[Driver], bool], str]
) -> Iterator[Driver]:
    """A Driver in its own context, once the node publishes diagnostics, listens for
    instructions and meets every further (condition, what) of `ready`."""
    context = Context()
    rclpy.init(context=context)
    driver = Driver(context, node_process)
    driver.wait_for(lambda: "scene_points" in driver.diagnostics, "the node's diagnostics")
    driver.wait_for(lambda: driver.instruction.get_subscription_count() > 0, "the node")
    for condition, what in ready:
        driver.wait_for(functools.partial(condition, driver), what)
    try:
        yield driver
    finally:
        driver.node.destroy_node()
        rclpy.shutdown(context=context)


@pytest.fixture(scope="module")
def driver(node_process: subprocess.Popen) -> Iterator[Driver]:
    with connected_driver(node_process) as driver:
        yield driver


def stamp(seconds: float) -> Time:
    return Time(sec=int(seconds), nanosec=round(seconds % 1 * 1e9))


def test_empty_scene_and_invalid_instruction(driver: Driver) -> None:
    assert float(driver.diagnostics["cloud_rate_hz"]) == 0.0  # no clouds sent yet
    assert driver.ask("the chair by the window").status == SegmentationResult.STATUS_EMPTY_SCENE
    empty = driver.ask("")
    assert empty.status == SegmentationResult.STATUS_INVALID_INSTRUCTION
    assert empty.error


def test_scene_in_pieces_gets_a_full_answer(driver: Driver) -> None:
    room = generate_room(0, points_per_m2=300)
    colors = np.rint(room.colors * 255).astype(np.uint8)
    pieces = np.array_split(np.arange(len(room.points)), 4)
    for index, piece in enumerate(pieces):
        header = Header(stamp=stamp(100.0 + index), frame_id="map")
        driver.points.publish(encode_cloud(room.points[piece], colors[piece], header))
    driver.wait_for(lambda: driver.count("clouds_accepted") >= len(pieces), "the room's pieces")

    result = driver.ask("the lamp closest to the bed")
    assert result.status in MODEL_STATUSES, result.error
    assert result.instruction_id.startswith("topic-")
    assert result.header.frame_id == "map"
    assert result.header.stamp.sec == 103
    assert result.scene_point_count > 0
    assert result.scene_version > 0
    assert result.total_ms >= result.queue_ms
    assert not result.scene_encoding_reused
    driver.wait_for(lambda: driver.targets and driver.markers, "target cloud and markers")
    assert driver.targets[-1].header.frame_id == "map"
    assert driver.targets[-1].width == result.target_point_count
    assert driver.markers[-1].markers[0].action == Marker.DELETEALL

    again = driver.ask("the lamp closest to the bed, again")
    assert again.scene_encoding_reused
    assert again.encode_ms == 0.0
    assert again.scene_version == result.scene_version


def test_malformed_cloud_is_counted_and_the_node_keeps_working(driver: Driver) -> None:
    cloud = encode_cloud(np.zeros((10, 3), np.float32), None, Header(frame_id="map"))
    cloud.width, cloud.row_step = 20, 20 * cloud.point_step  # data holds half of that
    driver.points.publish(cloud)
    driver.wait_for(lambda: driver.count("dropped_data_length") >= 1, "the drop in diagnostics")
    assert driver.ask("the sofa").status in MODEL_STATUSES


def test_clouds_in_a_sensor_frame_are_placed_by_odometry(driver: Driver) -> None:
    accepted = driver.count("clouds_accepted")
    odometry = Odometry(header=Header(stamp=stamp(200.0), frame_id="map"))
    odometry.child_frame_id = "sensor"
    odometry.pose.pose.position.x = 1.0
    odometry.pose.pose.orientation.w = 1.0
    for offset in (0.0, 0.2):
        odometry.header.stamp = stamp(200.0 + offset)
        driver.odometry.publish(odometry)
    # Far enough from the room that every voxel is new.
    points = np.random.default_rng(0).uniform(10.0, 12.0, (3000, 3)).astype(np.float32)
    points[:, 2] -= 10.0
    driver.points.publish(encode_cloud(points, None, Header(stamp=stamp(200.1), frame_id="sensor")))
    driver.wait_for(lambda: driver.count("clouds_accepted") > accepted, "the sensor-frame cloud")

    driver.points.publish(encode_cloud(points, None, Header(stamp=stamp(300.0), frame_id="sensor")))
    driver.wait_for(lambda: driver.count("dropped_no_pose") >= 1, "the drop without a pose")


def test_instruction_flood_gets_one_result_each(driver: Driver) -> None:
    texts = [f"flood {index}" for index in range(12)]
    for text in texts:
        driver.instruction.publish(String(data=text))
    driver.wait_for(lambda: all(driver.answers(text) for text in texts), "every flood result")
    driver.executor.spin_once(timeout_sec=0.5)  # a duplicate would arrive now
    answers = [driver.answers(text) for text in texts]
    assert all(len(results) == 1 for results in answers)
    dropped = [r[0] for r in answers if r[0].status == SegmentationResult.STATUS_ERROR]
    assert dropped, "12 instructions at once into a queue of 2 must drop some"
    assert all(result.error == QUEUE_FULL for result in dropped)
    assert all(r[0].status in MODEL_STATUSES for r in answers if r[0] not in dropped)


def test_service_answers_and_reset_empties_the_scene(driver: Driver) -> None:
    request = Segment.Request(instruction="the table", instruction_id="caller-42")
    result = driver.call(driver.segment, request).result
    assert result.instruction_id == "caller-42"
    assert result.status in MODEL_STATUSES
    assert driver.answers("the table"), "service answers are published on ~/result too"

    assert driver.call(driver.reset, Trigger.Request()).success
    assert driver.ask("the table after the reset").status == SegmentationResult.STATUS_EMPTY_SCENE


@pytest.mark.parametrize(
    ("override", "message"),
    [("voxel_size:=-0.5", "voxel_size must be > 0"), ("checkpoint:=/nowhere", "/nowhere")],
)
def test_bad_parameter_exits_nonzero_with_a_message(override: str, message: str) -> None:
    finished = subprocess.run(node_command(override), capture_output=True, text=True, timeout=120)
    assert finished.returncode != 0
    assert message in finished.stderr
