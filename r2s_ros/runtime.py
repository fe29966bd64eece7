"""What the r2s node runs, over any rclpy node: the plain `R2SNode` and the managed
`R2SLifecycleNode` share it step by step.

`load` declares and validates the parameters and loads the model (a lifecycle node's configure);
`R2SRuntime(node, loaded)` creates the scene intake, the outputs and the request interfaces;
`activate` starts the inference worker, the subscriptions (clouds, instructions, poses) and the
timers; `deactivate` stops them, answering every waiting instruction; `destroy` removes from the
node everything the runtime created. Topics, services and the action: README "The node".

Threads: a MultiThreadedExecutor runs the callbacks; the model runs on the InferenceWorker's own
thread. Cloud, pose, instruction and timer callbacks share the node's default (mutually
exclusive) group and only decode, insert and enqueue. `~/segment` and `~/segment_action` sit in
a reentrant group and are coroutines: a request waiting for the worker holds no executor thread
(it is resumed when its job's answer comes), so no number of waiting callers can starve the
intake or /diagnostics. A steady timer takes cancelled goals off the queue.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.subscription import Subscription
from rclpy.task import Future as RosFuture
from rclpy.timer import Timer
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from r2s_model.checkpoint import DEFAULT_CHECKPOINT, load_model
from r2s_model.device import resolve_device
from r2s_ros import outputs
from r2s_ros.action import Segment as SegmentAction
from r2s_ros.ingest import Drop, IngestSettings, SceneIngest
from r2s_ros.msg import SegmentationResult
from r2s_ros.params import NodeParameters, declare_parameters
from r2s_ros.pointcloud import encode_cloud
from r2s_ros.srv import Segment
from r2s_ros.worker import (
    ENCODING,
    RELEVANT,
    Answer,
    EncodingPolicy,
    InferenceWorker,
    InstructionJob,
    Progress,
    SegmentationModel,
)

if TYPE_CHECKING:
    from r2s_ros.tf2_ros_lookup import Tf2RosLookup

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Deep enough that a burst of instructions, and the burst of results (drop notices) it causes,
# is neither overwritten in the DDS history nor lost before the bounded queue judges it.
BURST = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
# What tf2_ros's TransformListener subscribes with.
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
TF_STATIC_QOS = QoSProfile(
    depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
TF_RETRY_S = 0.05  # clouds waiting for their transform are looked up again this often
CANCEL_POLL_S = 0.05  # a waiting goal is taken from the queue this soon after its cancel
WARN_THROTTLE_S = 5.0
# No callback blocks (waiting requests are coroutines): a few threads let the intake, the
# timers and the request callbacks run side by side.
EXECUTOR_THREADS = 4
INACTIVE = "dropped: the node is not active"
ACTION_STAGES = {
    ENCODING: SegmentAction.Feedback.STAGE_ENCODING,
    RELEVANT: SegmentAction.Feedback.STAGE_RELEVANT,
}


@dataclass(frozen=True)
class LoadedModel:
    """The validated parameters and the model they name, on its device."""

    parameters: NodeParameters
    device: str
    model: SegmentationModel
    name: str


def load(node: Node, model: SegmentationModel | None = None) -> LoadedModel:
    """Declares and validates `node`'s parameters (again: a no-op) and loads the `checkpoint`
    parameter's model onto `device`, or takes `model` as it is (composition, tests); raises
    ParameterError, DeviceError or CheckpointError."""
    parameters = declare_parameters(node)
    device = resolve_device(parameters.device)
    if model is not None:
        return LoadedModel(parameters, device, model, f"{type(model).__name__} (given, not loaded)")
    checkpoint = Path(parameters.checkpoint or DEFAULT_CHECKPOINT)
    loaded = load_model(checkpoint, parameters.llm_source, device, parameters.score_threshold)
    return LoadedModel(parameters, device, loaded, str(checkpoint))


class R2SRuntime:
    """The intake, the worker and every endpoint of one r2s node (see the module doc)."""

    def __init__(self, node: Node, loaded: LoadedModel) -> None:
        self.node = node
        self.loaded = loaded
        self.parameters = parameters = loaded.parameters
        self._tf2 = _tf2_ros_lookup(node) if parameters.pose_source == "tf" else None
        self._ingest = SceneIngest(
            IngestSettings.from_parameters(parameters), self._tf2, clock=self._now_s
        )
        self._worker: InferenceWorker | None = None
        self._subscriptions: list[Subscription] = []  # what activate() makes
        self._timers: list[Timer] = []
        self._ids = {kind: itertools.count(1) for kind in ("topic", "service", "action")}
        self._goal_jobs: set[InstructionJob] = set()  # action jobs not answered yet
        self._last_latency_ms = 0.0
        self._last_scene_cloud_version = -1
        self._rate_mark = (time.monotonic(), 0)  # (time, clouds_received) at last diagnostics

        self._result_pub = node.create_publisher(SegmentationResult, "~/result", BURST)
        self._target_pub = node.create_publisher(PointCloud2, "~/target_cloud", RELIABLE)
        self._markers_pub = node.create_publisher(MarkerArray, "~/relevant_markers", RELIABLE)
        self._scene_pub = node.create_publisher(PointCloud2, "~/scene_cloud", RELIABLE)
        self._diagnostics_pub = node.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE)
        self._publishers = [
            self._result_pub,
            self._target_pub,
            self._markers_pub,
            self._scene_pub,
            self._diagnostics_pub,
        ]
        requests = ReentrantCallbackGroup()
        self._services = [
            node.create_service(Segment, "~/segment", self._on_segment, callback_group=requests),
            node.create_service(Trigger, "~/reset_scene", self._on_reset),
        ]
        self._action = ActionServer(
            node,
            SegmentAction,
            "~/segment_action",
            self._execute_goal,
            goal_callback=self._on_goal,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=requests,
        )

    @property
    def active(self) -> bool:
        return self._worker is not None

    def activate(self) -> None:
        """Starts the worker, the subscriptions and the timers."""
        node, parameters = self.node, self.parameters
        self._worker = InferenceWorker(
            self.loaded.model,
            self._ingest.snapshot,
            self._publish_answer,
            parameters.instruction_queue_size,
            EncodingPolicy.from_parameters(parameters),
        )
        # Created in the order the executor should serve messages that are ready together: a
        # cloud's pose before the cloud, the clouds before an instruction about them.
        if parameters.pose_source == "odometry":
            self._subscribe(
                Odometry, parameters.odometry_topic, self._ingest.add_odometry, RELIABLE
            )
        elif self._tf2 is not None:
            self._tf2.listen()
        elif parameters.pose_source == "tf":
            add = self._ingest.add_transforms
            self._subscribe(TFMessage, "/tf", functools.partial(add, static=False), TF_QOS)
            self._subscribe(
                TFMessage, "/tf_static", functools.partial(add, static=True), TF_STATIC_QOS
            )
        points_qos = qos_profile_sensor_data if parameters.points_qos == "sensor_data" else 10
        self._subscribe(PointCloud2, "points", self._ingest.add_cloud, points_qos)
        self._subscriptions.append(
            node.create_subscription(String, "instruction", self._on_instruction, BURST)
        )
        timers = [(parameters.diagnostics_period_s, self._publish_diagnostics)]
        if parameters.scene_cloud_period_s > 0:
            timers.append((parameters.scene_cloud_period_s, self._publish_scene_cloud))
        if parameters.pose_source == "tf":  # clouds waiting for a transform time out too
            timers.append((TF_RETRY_S, self._retry_waiting))
        timers.append((CANCEL_POLL_S, self._cancel_requested_goals))
        # On the steady clock: under use_sim_time the node clock stands still without /clock.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._timers = [node.create_timer(p, f, clock=steady) for p, f in timers]

    def deactivate(self) -> None:
        """Stops the intake and the timers, then the worker: the job in progress is finished
        and the waiting ones are answered as dropped. The scene is kept."""
        for subscription in self._subscriptions:
            self.node.destroy_subscription(subscription)
        for timer in self._timers:
            self.node.destroy_timer(timer)
        self._subscriptions, self._timers = [], []
        if self._tf2 is not None:
            self._tf2.stop()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()

    def destroy(self) -> None:
        """Deactivates, then removes the publishers, services and action server."""
        self.deactivate()
        self._action.destroy()
        for service in self._services:
            self.node.destroy_service(service)
        for publisher in self._publishers:
            self.node.destroy_publisher(publisher)

    def _subscribe(
        self, kind: type, topic: str, add: Callable[[object], list[Drop]], qos: object
    ) -> None:
        """An intake subscription whose drops are logged (throttled)."""
        callback = lambda msg: self._warn(add(msg))  # noqa: E731
        self._subscriptions.append(self.node.create_subscription(kind, topic, callback, qos))

    def _retry_waiting(self) -> None:
        self._warn(self._ingest.retry_waiting())

    def _warn(self, drops: list[Drop]) -> None:
        for drop in drops:
            self.node.get_logger().warning(drop.message, throttle_duration_sec=WARN_THROTTLE_S)

    def _now_s(self) -> float:
        """The node's clock (simulated time under use_sim_time), seconds."""
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _pose_source(self) -> str:
        source = self.parameters.pose_source
        if source != "tf":
            return source
        return "tf (tf2_ros)" if self._tf2 is not None else "tf (r2s_ros.transforms)"

    def _on_instruction(self, msg: String) -> None:
        self._worker.submit(InstructionJob(msg.data, f"topic-{next(self._ids['topic'])}"))

    async def _on_segment(
        self, request: Segment.Request, response: Segment.Response
    ) -> Segment.Response:
        instruction_id = request.instruction_id or f"service-{next(self._ids['service'])}"
        response.result = await self._answer(InstructionJob(request.instruction, instruction_id))
        return response

    def _on_goal(self, _goal: SegmentAction.Goal) -> GoalResponse:
        return GoalResponse.ACCEPT if self.active else GoalResponse.REJECT

    async def _execute_goal(self, goal: ServerGoalHandle) -> SegmentAction.Result:
        """Runs one goal: feedback at each stage, then the result; CANCELED when it was
        cancelled, ABORTED when it was dropped or failed, else SUCCEEDED."""
        request = goal.request
        instruction_id = request.instruction_id or f"action-{next(self._ids['action'])}"

        def feedback(progress: Progress) -> None:
            relevant = outputs.relevant_elements(progress.scene, progress.relevant)
            stage = ACTION_STAGES[progress.stage]
            goal.publish_feedback(SegmentAction.Feedback(stage=stage, relevant=relevant))

        # The worker's checks see a cancel request once the goal is CANCELING, never before.
        job = InstructionJob(
            request.instruction,
            instruction_id,
            on_progress=feedback,
            cancel_requested=lambda: goal.is_cancel_requested,
        )
        goal.publish_feedback(SegmentAction.Feedback(stage=SegmentAction.Feedback.STAGE_QUEUED))
        self._goal_jobs.add(job)
        try:
            result = await self._answer(job)
        finally:
            self._goal_jobs.discard(job)
        if result.status == SegmentationResult.STATUS_CANCELLED:
            goal.canceled()
        elif result.status == SegmentationResult.STATUS_ERROR:
            goal.abort()
        else:
            goal.succeed()
        return SegmentAction.Result(result=result)

    async def _answer(self, job: InstructionJob) -> SegmentationResult:
        """Submits a request's job and waits, without holding an executor thread, for its
        result (published on ~/result too). An inactive node answers the job as dropped."""
        # The worker resolves job.done on its thread; the executor resumes this coroutine
        # when the rclpy future resolves (a done callback wakes it).
        answered = RosFuture(executor=self.node.executor)
        answered.add_done_callback(lambda _future: None)
        job.done.add_done_callback(lambda done: answered.set_result(done.result()))
        worker = self._worker
        if worker is None:
            self._publish_answer(Answer(job, error=INACTIVE))
        else:
            worker.submit(job)
        return await answered

    def _cancel_requested_goals(self) -> None:
        """Answers the waiting goals whose cancel was requested (a running one is stopped at
        the worker's next check)."""
        worker = self._worker
        for job in list(self._goal_jobs):
            if job.cancel_requested() and worker is not None:
                worker.cancel(job)

    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        version = self._ingest.reset()
        response.success, response.message = True, f"scene cleared (version {version})"
        return response

    def _publish_answer(self, answer: Answer) -> None:
        """Runs on the worker thread: publishes every output of one answer, then resolves it."""
        result = outputs.result_message(answer, self.parameters.fixed_frame)
        if answer.output is not None:
            self._target_pub.publish(outputs.target_cloud(answer, result.header))
            self._markers_pub.publish(outputs.relevant_markers(result))
        result.total_ms = (time.perf_counter() - answer.job.received_s) * 1000.0
        self._last_latency_ms = result.total_ms
        self._result_pub.publish(result)
        answer.job.done.set_result(result)

    def _publish_scene_cloud(self) -> None:
        if self._scene_pub.get_subscription_count() == 0:
            return
        scene = self._ingest.snapshot()
        if scene.version == self._last_scene_cloud_version:
            return
        self._last_scene_cloud_version = scene.version
        points, colors = outputs.downsample(
            scene.points, scene.colors, self.parameters.scene_cloud_max_points
        )
        header = outputs.scene_header(scene, self.parameters.fixed_frame)
        self._scene_pub.publish(encode_cloud(points, colors, header))

    def _publish_diagnostics(self) -> None:
        scene_points, scene_version = self._ingest.size()
        counts = self._ingest.counts
        # Measured, not configured: the timer period is only nominal under executor load.
        now, received = time.monotonic(), counts["clouds_received"]
        cloud_rate = (received - self._rate_mark[1]) / (now - self._rate_mark[0])
        self._rate_mark = (now, received)
        device = self.loaded.device
        values = {
            **counts,
            "cloud_rate_hz": f"{cloud_rate:.2f}",
            "scene_points": scene_points,
            "scene_version": scene_version,
            "queue_depth": self._worker.depth,
            "last_latency_ms": f"{self._last_latency_ms:.1f}",
            "pose_source": self._pose_source(),
            "device": device,
            "model": self.loaded.name,
        }
        drops = sum(count for key, count in counts.items() if key.startswith("dropped_"))
        status = DiagnosticStatus(
            level=DiagnosticStatus.WARN if drops else DiagnosticStatus.OK,
            name=f"{self.node.get_name()}: scene and inference",
            hardware_id=device,
            message=f"{drops} inputs dropped" if drops else "ok",
            values=[KeyValue(key=key, value=str(value)) for key, value in values.items()],
        )
        stamp = self.node.get_clock().now().to_msg()
        self._diagnostics_pub.publish(DiagnosticArray(header=Header(stamp=stamp), status=[status]))


def _tf2_ros_lookup(node: Node) -> Tf2RosLookup | None:
    """tf2_ros's buffer where tf2_ros is installed (robots), else None: the intake's own."""
    if importlib.util.find_spec("tf2_ros") is None:
        return None
    from r2s_ros.tf2_ros_lookup import Tf2RosLookup

    return Tf2RosLookup(node)
