"""The managed node: lifecycle transitions driven over lifecycle_msgs services from this process
to the node's own process (`r2s_ros.lifecycle_node`, the `r2s-lifecycle-node` entry point).

One node serves the module and the tests run in file order: a configure that fails (the
checkpoint is missing) goes through error processing back to `unconfigured`, the process alive;
once the checkpoint exists, configure, activate, deactivate, cleanup and shutdown each do what
README "The managed node" says. The model's release at cleanup is checked in-process.
"""

from __future__ import annotations

import gc
import subprocess
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from lifecycle_msgs.msg import State, Transition, TransitionEvent
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.action import ActionClient
from rclpy.context import Context
from std_msgs.msg import Header

from r2s_model.checkpoint import save_checkpoint
from r2s_model.synthetic.rooms import generate_room
from r2s_ros.action import Segment as SegmentAction
from r2s_ros.lifecycle_node import R2SLifecycleNode
from r2s_ros.msg import SegmentationResult
from r2s_ros.pointcloud import encode_cloud
from r2s_ros.runtime import INACTIVE
from r2s_ros.srv import Segment
from tests.model.tiny import tiny_model
from tests.ros.conftest import running_node
from tests.ros.test_node import MODEL_STATUSES, Driver

NAMESPACE = "/managed"


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the node's checkpoint will be: nothing there yet."""
    return tmp_path_factory.mktemp("model") / "tiny"


@pytest.fixture(scope="module")
def node_process(checkpoint_path: Path) -> Iterator[subprocess.Popen]:
    overrides = ("pose_source:=fixed", "device:=cpu")
    module = "r2s_ros.lifecycle_node"
    with running_node(checkpoint_path, *overrides, module=module, namespace=NAMESPACE) as node:
        yield node


class LifecycleDriver(Driver):
    """The node test's driver plus the lifecycle services, transition events and the action."""

    def __init__(self, context: Context, node_process: subprocess.Popen) -> None:
        super().__init__(context, node_process)
        self.change = self.node.create_client(ChangeState, "r2s/change_state")
        self.get = self.node.create_client(GetState, "r2s/get_state")
        self.events: list[TransitionEvent] = []
        self.node.create_subscription(
            TransitionEvent, "r2s/transition_event", self.events.append, 100
        )
        self.action = ActionClient(self.node, SegmentAction, "r2s/segment_action")

    def state(self) -> int:
        return self.call(self.get, GetState.Request()).current_state.id

    def transition(self, transition: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition))
        return self.call(self.change, request).success

    def subscribed(self) -> bool:
        """The node reads both inputs (volatile topics: publish only once it does)."""
        inputs = (self.points, self.instruction)
        return all(publisher.get_subscription_count() > 0 for publisher in inputs)

    def unsubscribed(self) -> bool:
        inputs = (self.points, self.instruction)
        return all(publisher.get_subscription_count() == 0 for publisher in inputs)


@pytest.fixture(scope="module")
def driver(node_process: subprocess.Popen) -> Iterator[LifecycleDriver]:
    context = Context()
    rclpy.init(context=context, args=["--ros-args", "-r", f"__ns:={NAMESPACE}"])
    driver = LifecycleDriver(context, node_process)
    try:
        driver.wait_for(driver.get.service_is_ready, "the lifecycle services")
        yield driver
    finally:
        driver.action.destroy()
        driver.node.destroy_node()
        rclpy.shutdown(context=context)


def test_a_failed_configure_goes_through_error_processing_and_the_process_stays(
    driver: LifecycleDriver,
) -> None:
    assert driver.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert not driver.transition(Transition.TRANSITION_CONFIGURE)  # no checkpoint yet
    driver.wait_for(lambda: len(driver.events) >= 3, "the transition events")
    goals = [event.goal_state.id for event in driver.events]
    assert goals == [
        State.TRANSITION_STATE_CONFIGURING,
        State.TRANSITION_STATE_ERRORPROCESSING,
        State.PRIMARY_STATE_UNCONFIGURED,
    ]
    assert driver.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert driver.process.poll() is None


def test_configure_loads_the_model_and_makes_the_interfaces_without_intake(
    driver: LifecycleDriver, checkpoint_path: Path
) -> None:
    save_checkpoint(tiny_model(seed=3), checkpoint_path)
    assert driver.transition(Transition.TRANSITION_CONFIGURE)
    assert driver.state() == State.PRIMARY_STATE_INACTIVE
    # Requests are answered, as dropped: nothing takes clouds or runs the model yet.
    request = Segment.Request(instruction="the table", instruction_id="early")
    result = driver.call(driver.segment, request).result
    assert (result.status, result.error) == (SegmentationResult.STATUS_ERROR, INACTIVE)
    driver.wait_for(driver.action.server_is_ready, "the action server")
    sent = driver.action.send_goal_async(SegmentAction.Goal(instruction="the table"))
    driver.wait_for(sent.done, "the goal's answer")
    assert not sent.result().accepted
    assert driver.unsubscribed()


def test_activate_starts_intake_and_outputs(driver: LifecycleDriver) -> None:
    assert driver.transition(Transition.TRANSITION_ACTIVATE)
    assert driver.state() == State.PRIMARY_STATE_ACTIVE
    driver.wait_for(driver.subscribed, "the input subscriptions")
    driver.wait_for(lambda: "scene_points" in driver.diagnostics, "diagnostics")
    room = generate_room(1, points_per_m2=150)
    colors = np.rint(room.colors * 255).astype(np.uint8)
    driver.points.publish(encode_cloud(room.points, colors, Header(frame_id="map")))
    driver.wait_for(lambda: driver.count("clouds_accepted") == 1, "the room")
    assert driver.ask("the bed by the window").status in MODEL_STATUSES


def test_deactivate_stops_intake_and_keeps_the_scene(driver: LifecycleDriver) -> None:
    before = driver.answers("the bed by the window")[0].scene_point_count
    assert driver.transition(Transition.TRANSITION_DEACTIVATE)
    assert driver.state() == State.PRIMARY_STATE_INACTIVE
    driver.wait_for(driver.unsubscribed, "the input subscriptions gone")
    result = driver.call(driver.segment, Segment.Request(instruction="the bed")).result
    assert result.error == INACTIVE

    assert driver.transition(Transition.TRANSITION_ACTIVATE)
    driver.wait_for(driver.subscribed, "the input subscriptions back")
    assert driver.ask("the bed, once more").scene_point_count == before


def test_cleanup_removes_the_interfaces_and_shutdown_finalizes(driver: LifecycleDriver) -> None:
    assert driver.transition(Transition.TRANSITION_DEACTIVATE)
    assert driver.transition(Transition.TRANSITION_CLEANUP)
    assert driver.state() == State.PRIMARY_STATE_UNCONFIGURED
    driver.wait_for(lambda: not driver.segment.service_is_ready(), "~/segment removed")
    assert driver.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    assert driver.state() == State.PRIMARY_STATE_FINALIZED
    assert driver.process.poll() is None


def test_cleanup_frees_the_model(tmp_path: Path) -> None:
    """In-process, transitions triggered directly: after cleanup nothing holds the model."""
    checkpoint = save_checkpoint(tiny_model(seed=3), tmp_path / "tiny")
    context = Context()
    arguments = ["--ros-args", "-r", "__ns:=/freed", "-p", f"checkpoint:={checkpoint}"]
    rclpy.init(context=context, args=[*arguments, "-p", "device:=cpu"])
    node = R2SLifecycleNode(context=context)
    try:
        node.trigger_configure()
        model = weakref.ref(node.runtime.loaded.model)
        node.trigger_activate()
        node.trigger_deactivate()
        node.trigger_cleanup()
        gc.collect()
        assert model() is None
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
