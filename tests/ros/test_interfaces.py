"""The generated r2s_ros interfaces carry every field across processes over real DDS; the
tf2_msgs the node reads /tf with is a robot's, or a stand-in of the same type."""

import json
import site
import sys
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from r2s_ros.bags import contract
from r2s_ros.msg import RelevantElement, SegmentationResult
from r2s_ros.srv import Segment

WAIT_S = 30.0


def test_status_constants_are_distinct() -> None:
    statuses = {
        SegmentationResult.STATUS_OK,
        SegmentationResult.STATUS_NO_TARGET,
        SegmentationResult.STATUS_EMPTY_SCENE,
        SegmentationResult.STATUS_INVALID_INSTRUCTION,
        SegmentationResult.STATUS_ERROR,
        SegmentationResult.STATUS_CANCELLED,
    }
    assert statuses == {0, 1, 2, 3, 4, 5}


def test_result_received_from_another_process(ros_context: Context, spawn_peer) -> None:
    peer = spawn_peer("interface_peer", "publish", "peer/result")
    node = Node("result_listener", context=ros_context)
    received: list[SegmentationResult] = []
    node.create_subscription(SegmentationResult, "peer/result", received.append, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)

    deadline = time.monotonic() + WAIT_S
    while not received and time.monotonic() < deadline and peer.poll() is None:
        executor.spin_once(timeout_sec=0.1)
    assert received, f"no result from the peer process (exit code {peer.poll()})"

    result = received[0]
    assert result.header.frame_id == "map"
    assert (result.header.stamp.sec, result.header.stamp.nanosec) == (1700000000, 250)
    assert result.instruction == "the chair left of the bed"
    assert result.instruction_id == "req-7"
    assert result.status == SegmentationResult.STATUS_NO_TARGET
    assert result.error == "no chair left of the bed"
    assert result.score == pytest.approx(0.125)
    assert (result.target_centroid.x, result.target_centroid.y) == (1.0, -2.0)
    assert result.target_size.z == pytest.approx(0.9)
    assert result.target_point_count == 1234
    assert [element.name for element in result.relevant] == ["bed", "window"]
    bed = result.relevant[0]
    assert isinstance(bed, RelevantElement)
    assert (bed.score, bed.point_count, bed.size.x) == (0.75, 5000, 2.0)
    assert result.scene_version == 2**40 + 3
    assert result.scene_point_count == 250000
    assert result.total_ms == pytest.approx(731.5)
    assert result.scene_encoding_reused is True
    node.destroy_node()


@pytest.mark.parametrize(
    "instruction",
    ["the chair nearest the window", "la chaise près de la fenêtre 🪟 — 窓の近くの椅子", ""],
)
def test_segment_service_across_processes(
    ros_context: Context, spawn_peer, instruction: str
) -> None:
    peer = spawn_peer("interface_peer", "serve", "peer/segment")
    node = Node("segment_client", context=ros_context)
    client = node.create_client(Segment, "peer/segment")
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)

    deadline = time.monotonic() + WAIT_S
    while not client.service_is_ready() and time.monotonic() < deadline:
        assert peer.poll() is None, f"peer exited early: {peer.stdout.read()}"
        executor.spin_once(timeout_sec=0.1)
    assert client.service_is_ready(), "the peer's Segment service never appeared"

    future = client.call_async(Segment.Request(instruction=instruction, instruction_id="id-42"))
    executor.spin_until_future_complete(future, timeout_sec=WAIT_S)
    assert future.done(), "no response from the peer's Segment service"
    result = future.result().result
    assert result.instruction == instruction
    assert result.instruction_id == "id-42"
    assert result.answer == f"echo: {instruction}"
    assert result.status == SegmentationResult.STATUS_NO_TARGET
    assert len(result.relevant) == 2
    node.destroy_node()


def test_rclpy_is_real_dds() -> None:
    """Guards against a stand-in rclpy on the path: the Fast DDS middleware must be loaded."""
    from rclpy.utilities import get_rmw_implementation_identifier

    assert get_rmw_implementation_identifier() == "rmw_fastrtps_cpp"
    assert rclpy.__file__.endswith("rclpy/__init__.py")


def test_tf2_msgs_is_installed_or_a_stand_in_of_the_same_type_that_shadows_nothing() -> None:
    import tf2_msgs
    from tf2_msgs.msg import TFMessage

    location = Path(tf2_msgs.__path__[0]).parent
    share = location.parents[2] / "share" / "tf2_msgs"  # PREFIX/lib/<python or ours>/site-packages
    hashes = json.loads((share / "msg" / "TFMessage.json").read_text())["type_hashes"]
    ours = next(h["hash_string"] for h in hashes if h["type_name"] == "tf2_msgs/msg/TFMessage")
    # The same RIHS01 type hash as ROS 2 Kilted's own tf2_msgs (rosbags carries its definitions):
    # a robot's /tf publishers and the stand-in talk to each other.
    assert ours == contract.typestore().hash_rihs01(contract.TF_TYPE)
    assert TFMessage().transforms == []
    if location.parts[-2] == "r2s_fallback_interfaces":  # setup_env.sh built the stand-in
        # ... after the interpreter's own site-packages, where an installed tf2_msgs would be.
        entries = [Path(entry) for entry in sys.path]
        packages = [entries.index(Path(p)) for p in site.getsitepackages() if Path(p) in entries]
        assert entries.index(location) > max(packages)
