"""Clouds keep being accepted while inference runs (issue #6) and while more callers wait for
answers than the executor has threads (issue #14), without timing assumptions.

The node runs in this process, served by `r2s_ros.node.serve` as `r2s-node` serves it, with the
real tiny model behind a gate: the first `encode_scene` signals that the worker is inside the
model, then blocks until the test opens the gate. Clouds and instructions come from a peer
process over DDS; results and /diagnostics are read by a driver node in a context of its own.
Every wait is for an event or an observed state, never for time to pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from subprocess import Popen

import numpy as np
import pytest
import rclpy
from rclpy.action import ActionClient
from rclpy.context import Context

from r2s_model.model import R2SModel, SegmentationOutput
from r2s_model.scene import SceneEncoding
from r2s_ros.action import Segment as SegmentAction
from r2s_ros.msg import SegmentationResult
from r2s_ros.node import R2SNode, serve
from r2s_ros.runtime import EXECUTOR_THREADS
from r2s_ros.srv import Segment
from r2s_ros.worker import OnRelevant
from tests.model.tiny import tiny_model
from tests.ros.conftest import PARAMS_FILE
from tests.ros.test_node import MODEL_STATUSES, WAIT_S, Driver

NAMESPACE = "/concurrency"  # apart from any other r2s node of the test session
CLOUDS_DURING_INFERENCE = 3
FIRST = "the lamp by the window"  # on the instruction topic
SECOND = "the lamp, asked again"  # through the ~/segment service
# More waiting service callers than the node's executor has threads, and goals besides.
CALLERS = EXECUTOR_THREADS + 4
GOALS = 2


class GatedModel:
    """The real tiny model, except that the first `encode_scene` holds the worker inside it
    until `release` is set (later calls pass once it is)."""

    def __init__(self, model: R2SModel) -> None:
        self._model = model
        self.entered = threading.Event()  # the worker is inside the model
        self.release = threading.Event()  # set by the test: go on
        self.left = threading.Event()  # an encode_scene returned

    def encode_scene(
        self, points: np.ndarray, colors: np.ndarray | None, max_points: int | None
    ) -> SceneEncoding:
        self.entered.set()
        if not self.release.wait(WAIT_S):
            raise RuntimeError("the test never opened the gate")
        try:
            return self._model.encode_scene(points, colors, max_points)
        finally:
            self.left.set()

    def segment(
        self, scene: SceneEncoding, instruction: str, on_relevant: OnRelevant = None
    ) -> SegmentationOutput:
        return self._model.segment(scene, instruction, on_relevant)


@pytest.fixture
def gate() -> GatedModel:
    return GatedModel(tiny_model(seed=3).eval())


@pytest.fixture
def node(gate: GatedModel) -> Iterator[R2SNode]:
    """The node in this process, on its own context, served on a background thread."""
    overrides = {
        "pose_source": "fixed",
        "fixed_frame": "map",
        "voxel_size": "0.05",
        "points_qos": "reliable",  # no lost fragments of a cloud
        "device": "cpu",  # where the tiny model is
        "diagnostics_period_s": "0.1",
        "scene_cloud_period_s": "0.0",
        "instruction_queue_size": str(CALLERS + GOALS + 1),  # every caller waits, none dropped
    }
    arguments = ["--ros-args", "--params-file", str(PARAMS_FILE), "-r", f"__ns:={NAMESPACE}"]
    for name, value in overrides.items():
        arguments += ["-p", f"{name}:={value}"]
    context = Context()
    rclpy.init(context=context, args=arguments)
    try:
        node = R2SNode(model=gate, context=context)
    except BaseException:
        rclpy.shutdown(context=context)
        raise
    server = threading.Thread(target=serve, args=(node,), name="r2s-serve")
    server.start()
    try:
        yield node
    finally:
        gate.release.set()  # a failed test may have left the worker inside the model
        rclpy.shutdown(context=context)  # serve() then destroys the node and joins its threads
        server.join(WAIT_S)
        assert not server.is_alive(), "serve() did not return after the context shut down"


@pytest.fixture
def peer(spawn_peer: Callable[..., Popen]) -> Popen:
    """The sensor peer process (tests/ros/peers/sensor_peer.py), taking commands on stdin."""
    return spawn_peer("sensor_peer", "--namespace", NAMESPACE)


@pytest.fixture
def driver(node: R2SNode, peer: Popen) -> Iterator[Driver]:
    """Reads the node's outputs; its waits fail early, with the peer's output, if it exits."""
    context = Context()
    rclpy.init(context=context, args=["--ros-args", "-r", f"__ns:={NAMESPACE}"])
    driver = Driver(context, peer)
    try:
        driver.wait_for(lambda: "scene_points" in driver.diagnostics, "the node's diagnostics")
        # Results are volatile: the driver must be matched before the first one is published.
        result_topic = node.resolve_topic_name("~/result")
        driver.wait_for(lambda: node.count_subscribers(result_topic) > 0, "the result reader")
        yield driver
    finally:
        driver.node.destroy_node()
        rclpy.shutdown(context=context)


def send(peer: Popen, command: str) -> None:
    peer.stdin.write(f"{command}\n")
    peer.stdin.flush()


def test_clouds_are_accepted_while_the_model_runs(
    gate: GatedModel, driver: Driver, peer: Popen
) -> None:
    send(peer, "cloud 0")
    driver.wait_for(lambda: driver.count("clouds_accepted") == 1, "the first cloud")
    start_points, start_version = driver.count("scene_points"), driver.count("scene_version")

    send(peer, f"instruction {FIRST}")
    assert gate.entered.wait(WAIT_S), "the worker never reached the model"
    # A service caller now waits too, blocking an executor thread on its job's future.
    request = Segment.Request(instruction=SECOND, instruction_id="caller-7")
    driver.wait_for(driver.segment.service_is_ready, "the ~/segment service")
    asked = driver.segment.call_async(request)

    # Diagnostics counting cloud 1 were published after the first job left the queue, so a
    # queue depth of 1 in them is the service's job: the later clouds arrive while it waits.
    send(peer, "cloud 1")
    driver.wait_for(
        lambda: driver.count("clouds_accepted") == 2 and driver.count("queue_depth") == 1,
        "cloud 1 accepted with the service's job queued",
    )
    for index in range(2, CLOUDS_DURING_INFERENCE + 1):
        send(peer, f"cloud {index}")
    accepted = 1 + CLOUDS_DURING_INFERENCE
    driver.wait_for(lambda: driver.count("clouds_accepted") == accepted, "every cloud")
    end_points, end_version = driver.count("scene_points"), driver.count("scene_version")

    # All of that happened with the worker still inside the model on the first instruction.
    assert not gate.release.is_set()
    assert gate.entered.is_set() and not gate.left.is_set()
    assert not driver.answers(FIRST) and not asked.done()
    assert driver.count("queue_depth") == 1
    assert end_points > start_points and end_version > start_version
    assert not any(driver.count(key) for key in driver.diagnostics if key.startswith("dropped_"))

    gate.release.set()
    driver.wait_for(lambda: driver.answers(FIRST), "the first instruction's result")
    first = driver.answers(FIRST)[0]
    assert first.status in MODEL_STATUSES, first.error
    # The worker snapshots the scene when it starts a job: the clouds that came during its
    # inference are not in its answer.
    assert (first.scene_point_count, first.scene_version) == (start_points, start_version)
    assert first.header.stamp.sec == 100  # cloud 0's stamp

    driver.wait_for(asked.done, "the service's answer")
    second = asked.result().result
    assert second.instruction_id == "caller-7"
    assert second.status in MODEL_STATUSES, second.error
    # The next job sees every cloud, and encodes that scene anew.
    assert (second.scene_point_count, second.scene_version) == (end_points, end_version)
    assert second.header.stamp.sec == 100 + CLOUDS_DURING_INFERENCE
    assert not second.scene_encoding_reused
    driver.wait_for(lambda: driver.answers(SECOND), "the service's answer on ~/result")
    assert [result.status for result in driver.answers(SECOND)] == [second.status]
    assert SegmentationResult.STATUS_ERROR not in {r.status for r in driver.results}


def test_waiting_callers_never_block_intake_or_diagnostics(
    gate: GatedModel, driver: Driver, peer: Popen
) -> None:
    send(peer, "cloud 0")
    driver.wait_for(lambda: driver.count("clouds_accepted") == 1, "the first cloud")
    send(peer, f"instruction {FIRST}")
    assert gate.entered.wait(WAIT_S), "the worker never reached the model"

    driver.wait_for(driver.segment.service_is_ready, "the ~/segment service")
    calls = [
        driver.segment.call_async(Segment.Request(instruction=f"call {i}", instruction_id=f"c{i}"))
        for i in range(CALLERS)
    ]
    actions = ActionClient(driver.node, SegmentAction, "r2s/segment_action")
    driver.wait_for(actions.server_is_ready, "the action server")
    sent = [
        actions.send_goal_async(SegmentAction.Goal(instruction=f"goal {i}")) for i in range(GOALS)
    ]
    waiting = CALLERS + GOALS
    driver.wait_for(lambda: driver.count("queue_depth") == waiting, "every caller queued")

    # Every caller waits; clouds still arrive and are counted on a live /diagnostics.
    clouds = CLOUDS_DURING_INFERENCE + 2
    for index in range(1, clouds + 1):
        send(peer, f"cloud {index}")
    driver.wait_for(lambda: driver.count("clouds_accepted") == clouds + 1, "the clouds")
    assert not gate.release.is_set() and not gate.left.is_set()
    assert not any(call.done() for call in calls)
    assert driver.count("queue_depth") == waiting

    gate.release.set()
    driver.wait_for(lambda: all(call.done() for call in calls), "every service answer")
    for index, call in enumerate(calls):
        result = call.result().result
        assert (result.instruction_id, result.status in MODEL_STATUSES) == (f"c{index}", True)
    driver.wait_for(lambda: all(goal.done() for goal in sent), "every goal accepted")
    results = [goal.result().get_result_async() for goal in sent]
    driver.wait_for(lambda: all(result.done() for result in results), "every goal's result")
    assert all(r.result().result.result.status in MODEL_STATUSES for r in results)
    texts = [FIRST] + [f"call {i}" for i in range(CALLERS)] + [f"goal {i}" for i in range(GOALS)]
    driver.wait_for(lambda: all(driver.answers(text) for text in texts), "every ~/result")
    assert all(len(driver.answers(text)) == 1 for text in texts)
    assert len(driver.results) == len(texts)
