"""Hostile and malformed input over real DDS at the node in its own process (issue #14).

One node (tiny random checkpoint, odometry poses of the `sensor` frame) takes more than 30 kinds
of bad input on every interface: malformed, empty, non-finite, absurd and misplaced clouds;
corrupt odometry; empty, huge, odd-unicode and special-token instructions, a flood, and the
same through the service and the action. The node must stay alive, count every dropped input by
its reason on /diagnostics, answer every instruction exactly once, and still answer a plain one
on the scene it built from the good inputs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from nav_msgs.msg import Odometry
from rclpy.action import ActionClient
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header, String

from r2s_model.checkpoint import save_checkpoint
from r2s_ros.action import Segment as SegmentAction
from r2s_ros.msg import SegmentationResult
from r2s_ros.pointcloud import encode_cloud
from r2s_ros.srv import Segment
from tests.model.tiny import tiny_model
from tests.ros.conftest import running_node
from tests.ros.test_node import MODEL_STATUSES, Driver, connected_driver, stamp

QUEUE_SIZE = 64  # the flood is answered, not dropped, so "exactly one result" is about answers
POINTS = np.random.default_rng(0).uniform(-1.0, 1.0, (2000, 3)).astype(np.float32)
COLORS = np.random.default_rng(1).integers(0, 256, (2000, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def node_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen]:
    checkpoint = save_checkpoint(tiny_model(seed=3), tmp_path_factory.mktemp("model") / "tiny")
    overrides = (f"instruction_queue_size:={QUEUE_SIZE}", "pose_source:=odometry")
    with running_node(Path(checkpoint), *overrides) as process:
        yield process


@pytest.fixture(scope="module")
def driver(node_process: subprocess.Popen) -> Iterator[Driver]:
    odometry_reader = (lambda d: d.odometry.get_subscription_count() > 0, "the odometry reader")
    with connected_driver(node_process, odometry_reader) as driver:
        yield driver


def cloud(seconds: float, points: np.ndarray = POINTS, frame: str = "sensor") -> PointCloud2:
    colors = COLORS[: len(points)] if len(points) <= len(COLORS) else None
    return encode_cloud(points, colors, Header(stamp=stamp(seconds), frame_id=frame))


def odometry(seconds: float, child: str = "sensor", frame: str = "map") -> Odometry:
    msg = Odometry(header=Header(stamp=stamp(seconds), frame_id=frame), child_frame_id=child)
    msg.pose.pose.orientation.w = 1.0
    return msg


def with_quaternion(msg: Odometry, x: float, y: float, z: float, w: float) -> Odometry:
    o = msg.pose.pose.orientation
    o.x, o.y, o.z, o.w = x, y, z, w
    return msg


def edited(msg: PointCloud2, change: Callable[[PointCloud2], None]) -> PointCloud2:
    change(msg)
    return msg


def _short_data(msg: PointCloud2) -> None:
    msg.data = msg.data[: len(msg.data) // 2]


def _no_xyz(msg: PointCloud2) -> None:
    msg.fields = [f for f in msg.fields if f.name != "z"]


def _bad_datatype(msg: PointCloud2) -> None:
    msg.fields[0].datatype = 42


def _huge(msg: PointCloud2) -> None:
    msg.width, msg.height = 100_000, 100_000


def _zero_step(msg: PointCloud2) -> None:
    msg.point_step = 0


def _duplicate_field(msg: PointCloud2) -> None:
    msg.fields = [*msg.fields, msg.fields[0]]


def _field_past_point(msg: PointCloud2) -> None:
    msg.fields[2].offset = msg.point_step


def _field_count(msg: PointCloud2) -> None:
    msg.fields[0].count = 3


def _short_row_step(msg: PointCloud2) -> None:
    msg.row_step = msg.point_step


def _int_color(msg: PointCloud2) -> None:
    (rgb,) = [f for f in msg.fields if f.name == "rgb"]
    rgb.datatype = PointField.INT16


def _absurd_point() -> np.ndarray:
    points = POINTS.copy()
    points[7] = (1e20, 0.0, 0.0)
    return points


def _nan_rows() -> np.ndarray:
    points = POINTS.copy()
    points[::2] = np.nan
    return points


# (name, what goes wrong, the drop counter it must raise) — clouds at t = 10 s, placed by the
# odometry at 10 s published first.
BAD_CLOUDS: list[tuple[str, Callable[[], PointCloud2], str]] = [
    ("short_data", lambda: edited(cloud(10.0), _short_data), "dropped_data_length"),
    ("no_z_field", lambda: edited(cloud(10.0), _no_xyz), "dropped_missing_xyz"),
    ("unknown_datatype", lambda: edited(cloud(10.0), _bad_datatype), "dropped_unknown_datatype"),
    ("ten_billion_points", lambda: edited(cloud(10.0), _huge), "dropped_too_large"),
    ("zero_point_step", lambda: edited(cloud(10.0), _zero_step), "dropped_bad_step"),
    ("duplicate_field", lambda: edited(cloud(10.0), _duplicate_field), "dropped_duplicate_field"),
    ("field_past_point", lambda: edited(cloud(10.0), _field_past_point), "dropped_field_overflow"),
    ("field_count_3", lambda: edited(cloud(10.0), _field_count), "dropped_field_count"),
    ("row_step_too_short", lambda: edited(cloud(10.0), _short_row_step), "dropped_bad_step"),
    ("int16_packed_rgb", lambda: edited(cloud(10.0), _int_color), "dropped_color_datatype"),
    ("empty", lambda: cloud(10.0, np.empty((0, 3), np.float32)), "dropped_empty_cloud"),
    ("all_nan", lambda: cloud(10.0, np.full((50, 3), np.nan, np.float32)), "dropped_all_nonfinite"),
    ("all_inf", lambda: cloud(10.0, np.full((50, 3), np.inf, np.float32)), "dropped_all_nonfinite"),
    ("one_point_at_1e20", lambda: cloud(10.0, _absurd_point()), "points_out_of_range"),
    ("half_nan", lambda: cloud(10.0, _nan_rows()), "points_nonfinite"),
    ("outside_crop", lambda: cloud(10.0, POINTS + np.float32(500.0)), "dropped_outside_crop"),
    ("another_frame", lambda: cloud(10.0, frame="camera"), "dropped_wrong_frame"),
    ("far_future_stamp", lambda: cloud(1e6), "dropped_no_pose"),
]
BAD_ODOMETRY: list[tuple[str, Callable[[], Odometry], str]] = [
    (
        "nan_quaternion",
        lambda: with_quaternion(odometry(10.05), np.nan, 0, 0, 1),
        "dropped_odometry_nonfinite_orientation",
    ),
    (
        "zero_quaternion",
        lambda: with_quaternion(odometry(10.06), 0, 0, 0, 0),
        "dropped_odometry_zero_quaternion",
    ),
    (
        "huge_quaternion",
        lambda: with_quaternion(odometry(10.07), 0, 0, 1e20, 1e20),
        "dropped_odometry_denormalized_quaternion",
    ),
    (
        "half_quaternion",
        lambda: with_quaternion(odometry(10.08), 0, 0, 0, 0.5),
        "dropped_odometry_denormalized_quaternion",
    ),
    ("inf_position", lambda: _inf_position(odometry(10.09)), "dropped_odometry_nonfinite_position"),
    ("other_parent_frame", lambda: odometry(10.1, frame="odom"), "dropped_odometry_frame"),
    ("no_child_frame", lambda: odometry(10.11, child=""), "dropped_odometry_child_frame"),
    ("second_child", lambda: odometry(10.12, child="camera"), "dropped_odometry_child_frame"),
]
BAD_INSTRUCTIONS = [
    "",
    "   \t\n  ",
    "x" * 100_000,
    "<scene> [SEG] [REL] <prior> </s> <|endoftext|> <|im_start|>",
    "🪑🛋️ ‮the chair‬ ​​ \u200f\u202e",
    "\x01\x02\x1b[31m control \x7f",
    "the chair " * 2000,
    "椅子在窗户旁边 🤖 كرسي بجانب النافذة",
]
FLOOD = 30


def _inf_position(msg: Odometry) -> Odometry:
    msg.pose.pose.position.y = float("-inf")
    return msg


def test_hostile_inputs_are_counted_and_every_instruction_is_answered_once(
    driver: Driver, node_process: subprocess.Popen
) -> None:
    driver.odometry.publish(odometry(10.0))
    driver.odometry.publish(odometry(10.2))
    driver.points.publish(cloud(10.0))  # one good cloud: the scene the answers are about
    driver.wait_for(lambda: driver.count("clouds_accepted") == 1, "the good cloud")

    # One at a time, each seen counted before the next (no DDS history overwritten).
    for name, make, counter in BAD_ODOMETRY + BAD_CLOUDS:
        before, message = driver.count(counter), make()
        publisher = driver.odometry if isinstance(message, Odometry) else driver.points
        publisher.publish(message)
        driver.wait_for(lambda c=counter, b=before: driver.count(c) > b, f"{name} in {counter}")

    # Instructions by every route, a flood among them; each text is unique (tagged).
    texts = [f"{text}#{index}" for index, text in enumerate(BAD_INSTRUCTIONS)]
    texts += [f"flood {index}" for index in range(FLOOD)]
    for text in texts:
        driver.instruction.publish(String(data=text))
    calls = [
        driver.segment.call_async(Segment.Request(instruction="", instruction_id="")),
        driver.segment.call_async(
            Segment.Request(instruction="<scene>", instruction_id="i" * 5000)
        ),
    ]
    actions = ActionClient(driver.node, SegmentAction, "r2s/segment_action")
    driver.wait_for(actions.server_is_ready, "the action server")
    goal = actions.send_goal_async(SegmentAction.Goal(instruction="[SEG]" * 5000))
    driver.wait_for(lambda: all(call.done() for call in calls) and goal.done(), "the requests")
    handle = goal.result()
    assert handle.accepted
    driver.wait_for(handle.get_result_async().done, "the goal's result")

    driver.wait_for(lambda: all(driver.answers(text) for text in texts), "every topic answer")
    last = driver.ask("the chair nearest the window")  # after everything else in the queue
    assert last.status in MODEL_STATUSES, last.error
    assert last.scene_point_count > 0
    driver.executor.spin_once(timeout_sec=0.5)  # a duplicate would arrive now
    for text in texts:
        assert len(driver.answers(text)) == 1, text[:40]
    assert len(driver.results) == len(texts) + len(calls) + 1 + 1  # + the goal, + the last
    assert all(r.status != SegmentationResult.STATUS_ERROR for r in driver.results), [
        r.error for r in driver.results if r.error
    ]
    assert node_process.poll() is None, "the node must stay alive"
    assert len(BAD_CLOUDS) + len(BAD_ODOMETRY) + len(BAD_INSTRUCTIONS) + 4 >= 30
