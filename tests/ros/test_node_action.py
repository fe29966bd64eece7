"""The `~/segment_action` action across processes: feedback per stage, results, cancellation.

The node runs in a peer process (tests/ros/peers/node_peer.py) on a tiny model whose stage 1
always names elements, and holds its worker after stage 1 for instructions starting with
"hold:" until the test writes `release`: every wait is for an observed event, never for time.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import rclpy
from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.action.client import ClientGoalHandle
from rclpy.context import Context
from std_msgs.msg import Header

from r2s_ros.action import Segment as SegmentAction
from r2s_ros.msg import SegmentationResult
from r2s_ros.pointcloud import encode_cloud
from r2s_ros.worker import CANCELLED
from tests.model.tiny import tiny_scene
from tests.ros.conftest import PARAMS_FILE, PEERS, stop_process
from tests.ros.test_node import MODEL_STATUSES, Driver

NAMESPACE = "/action"
Feedback = SegmentAction.Feedback


class Peer:
    """The node peer's process; a thread collects its output lines."""

    def __init__(self) -> None:
        overrides = [
            "pose_source:=fixed",
            "voxel_size:=0.05",
            "points_qos:=reliable",
            "device:=cpu",
            "diagnostics_period_s:=0.2",
        ]
        arguments = ["--ros-args", "--params-file", str(PARAMS_FILE), "-r", f"__ns:={NAMESPACE}"]
        for override in overrides:
            arguments += ["-p", override]
        self.process = subprocess.Popen(
            [sys.executable, str(PEERS / "node_peer.py"), *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def release(self) -> None:
        self.process.stdin.write("release\n")
        self.process.stdin.flush()


class Goal:
    """A goal sent through the action client: its handle, feedback and result, as they come."""

    def __init__(self, client: ActionClient, text: str, instruction_id: str = "") -> None:
        self.feedback: list[Feedback] = []
        goal = SegmentAction.Goal(instruction=text, instruction_id=instruction_id)
        self.sent = client.send_goal_async(goal, lambda msg: self.feedback.append(msg.feedback))
        self.handle: ClientGoalHandle | None = None
        self.result = None

    def poll(self) -> None:
        """Collects the handle, then asks for the result once."""
        if self.handle is None and self.sent.done():
            self.handle = self.sent.result()
            self.result = self.handle.get_result_async()

    def stages(self) -> list[int]:
        return [feedback.stage for feedback in self.feedback]


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    peer = Peer()
    try:
        yield peer
    finally:
        stop_process(peer.process, timeout=20)


@pytest.fixture(scope="module")
def driver(peer: Peer) -> Iterator[Driver]:
    """Reads the node's outputs and sends its goals; a scene in the fixed frame is in place."""
    context = Context()
    rclpy.init(context=context, args=["--ros-args", "-r", f"__ns:={NAMESPACE}"])
    driver = Driver(context, peer.process)
    driver.action = ActionClient(driver.node, SegmentAction, "r2s/segment_action")
    try:
        driver.wait_for(lambda: "scene_points" in driver.diagnostics, "the node's diagnostics")
        driver.wait_for(lambda: driver.points.get_subscription_count() > 0, "the node")
        driver.wait_for(driver.action.server_is_ready, "the action server")
        scene = tiny_scene(num_points=3000)
        colors = np.rint(scene.colors * 255).astype(np.uint8)
        driver.points.publish(encode_cloud(scene.points, colors, Header(frame_id="map")))
        driver.wait_for(lambda: driver.count("clouds_accepted") == 1, "the scene")
        yield driver
    finally:
        driver.action.destroy()
        driver.node.destroy_node()
        rclpy.shutdown(context=context)


def send(driver: Driver, text: str, instruction_id: str = "") -> Goal:
    goal = Goal(driver.action, text, instruction_id)
    driver.wait_for(lambda: goal.poll() or goal.handle is not None, f"the goal {text!r} sent")
    assert goal.handle.accepted
    return goal


def finish(driver: Driver, goal: Goal) -> tuple[int, SegmentationResult]:
    """Waits for the goal's result: (its GoalStatus, its SegmentationResult)."""
    driver.wait_for(goal.result.done, "the goal's result")
    response = goal.result.result()
    return response.status, response.result.result


def test_a_goal_reports_each_stage_then_gets_its_result(driver: Driver) -> None:
    goal = send(driver, "the box by the wall", "goal-7")
    status, result = finish(driver, goal)
    assert status == GoalStatus.STATUS_SUCCEEDED
    assert result.status in MODEL_STATUSES, result.error
    assert result.instruction_id == "goal-7"
    # Feedback is a topic and the result a service answer: either may come first.
    driver.wait_for(lambda: len(goal.feedback) == 3, "every stage's feedback")
    stages = [Feedback.STAGE_QUEUED, Feedback.STAGE_ENCODING, Feedback.STAGE_RELEVANT]
    assert goal.stages() == stages
    relevant = goal.feedback[-1].relevant
    # Four [REL]s; each chosen proposal is reported once (random heads may share a choice).
    assert 1 <= len(relevant) <= 4 and all(element.point_count > 0 for element in relevant)
    assert [(e.name, e.point_count) for e in relevant] == [
        (e.name, e.point_count) for e in result.relevant
    ]
    driver.wait_for(lambda: driver.answers("the box by the wall"), "the result on ~/result")

    unnamed = send(driver, "the box, again")
    assert finish(driver, unnamed)[1].instruction_id.startswith("action-")


def test_cancel_answers_a_waiting_goal_at_once_and_a_running_one_at_the_next_check(
    driver: Driver, peer: Peer
) -> None:
    running = send(driver, "hold: the box on the left")
    # Stage 1's elements are out before the worker is held.
    driver.wait_for(lambda: "held hold: the box on the left" in peer.lines, "the held worker")
    driver.wait_for(lambda: Feedback.STAGE_RELEVANT in running.stages(), "stage 1's feedback")
    assert len(running.feedback[-1].relevant) >= 1

    waiting = send(driver, "the box on the right")
    driver.wait_for(lambda: waiting.stages() == [Feedback.STAGE_QUEUED], "the queued goal")
    waiting.handle.cancel_goal_async()
    status, result = finish(driver, waiting)
    assert status == GoalStatus.STATUS_CANCELED
    assert (result.status, result.error) == (SegmentationResult.STATUS_CANCELLED, CANCELLED)
    assert waiting.stages() == [Feedback.STAGE_QUEUED]  # never reached the model
    assert not running.result.done()  # the worker is still held on the first goal

    cancelled = running.handle.cancel_goal_async()
    driver.wait_for(cancelled.done, "the cancel response")
    assert cancelled.result().goals_canceling
    peer.release()
    status, result = finish(driver, running)
    assert status == GoalStatus.STATUS_CANCELED
    assert result.status == SegmentationResult.STATUS_CANCELLED
    # Every goal's result went out on ~/result too, cancelled ones included.
    for text in ("hold: the box on the left", "the box on the right"):
        driver.wait_for(lambda text=text: driver.answers(text), f"{text!r} on ~/result")
        assert driver.answers(text)[0].status == SegmentationResult.STATUS_CANCELLED
