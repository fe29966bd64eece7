"""Live replay: a bag published at its recorded pace to a running r2s node, its outputs recorded.

The bag's clouds, poses (/tf, /tf_static, odometry) and instructions go out on their own topics
as the CDR bytes stored (no re-encoding), `speed` times the recorded pace; with `clock`, /clock
carries the bag time too, for a node running with use_sim_time. The node's `~/result`,
`~/target_cloud`, `~/relevant_markers` and `/diagnostics`, and the instructions as sent, are
recorded to a new rosbag2 (MCAP) with the wall-clock receive time as bag time. One executor
thread: the replay spins it while waiting for the next message's time, so callbacks never race
the recorder.

Results are matched to instructions by text, in order; the node publishes a target cloud before
every result that is not an ERROR, so the k-th target cloud belongs to the k-th such result.
Use a node no one else is talking to. Scoring rebuilds the node's scene from the bag with the
same intake, up to the stamp of the newest cloud in the scene the node answered on.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage
from tqdm import tqdm
from visualization_msgs.msg import MarkerArray

from r2s_ros import outputs
from r2s_ros.accumulator import SceneSnapshot
from r2s_ros.bags import contract
from r2s_ros.bags.reader import BagMessage, ReplayBag
from r2s_ros.bags.report import ERROR, TIMEOUT, Outcome, RelevantOutcome, ReplayError
from r2s_ros.msg import RelevantElement, SegmentationResult
from r2s_ros.params import NodeParameters, parameters_from_values
from r2s_ros.pointcloud import decode_cloud

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(
    depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
INPUT_TYPES = {
    "points": PointCloud2,
    "odometry": Odometry,
    "tf": TFMessage,
    "tf_static": TFMessage,
    "instruction": String,
}
# The inputs a node reads by its pose_source, besides points and instruction.
POSE_ROLES = {"tf": ("tf", "tf_static"), "odometry": ("odometry",), "fixed": ()}
STATUS_NAMES = {code: status.value for status, code in outputs.STATUS.items()}
STATUS_NAMES[SegmentationResult.STATUS_ERROR] = ERROR
INTERFACES = ("RelevantElement", "SegmentationResult")  # dependencies first
RESULT_TYPE = "r2s_ros/msg/SegmentationResult"
MARKERS_TYPE = "visualization_msgs/msg/MarkerArray"
DIAGNOSTICS_TYPE = "diagnostic_msgs/msg/DiagnosticArray"


@dataclass(frozen=True)
class LiveOptions:
    """How to replay: to which node, how fast, how patiently, and where to record."""

    node_name: str = "r2s"  # the node's fully qualified name, or relative to /
    speed: float = 1.0  # times the recorded pace
    timeout_s: float = 60.0  # wait for results this long after the last progress
    discovery_timeout_s: float = 30.0
    record: Path = Path("replay_outputs")  # rosbag2 folder to create
    clock: bool = False  # publish the bag time on /clock (for a node with use_sim_time)


@dataclass
class LiveAnswer:
    """A result and what came with it; received_s is time.perf_counter() at its arrival."""

    result: SegmentationResult
    received_s: float
    target: PointCloud2 | None = None


@dataclass
class LiveRun:
    """What a live replay saw: per instruction its bag message, send time and answer."""

    instructions: list[tuple[BagMessage, float]]
    answers: list[LiveAnswer | None]
    parameters: NodeParameters
    published: dict[str, int]  # messages sent per role
    node_counts: dict[str, int]  # the node's diagnostics counters, change over the run
    unmatched_results: int
    recorded: Path
    timeout_s: float
    node_model: str = ""


def replay_live(bag: ReplayBag, options: LiveOptions) -> LiveRun:
    """Publishes the bag to the node named in options and collects its answers."""
    context = Context()
    rclpy.init(context=context, args=[])
    try:
        with _Session(context, bag, options) as session:
            return session.run()
    finally:
        rclpy.try_shutdown(context=context)


def live_outcomes(run: LiveRun, scenes: list[SceneSnapshot], radius: float) -> list[Outcome]:
    """An Outcome per instruction; scenes[i] is the node's scene rebuilt for answer i."""
    pairs = zip(run.instructions, run.answers, strict=True)
    return [
        _outcome(index, message, sent_s, answer, scenes[index], radius, run.timeout_s)
        for index, ((message, sent_s), answer) in enumerate(pairs)
    ]


def _outcome(
    index: int,
    message: BagMessage,
    sent_s: float,
    answer: LiveAnswer | None,
    scene: SceneSnapshot,
    radius: float,
    timeout_s: float,
) -> Outcome:
    text = message.message.data
    if answer is None:
        error = f"no result within the {timeout_s:g} s timeout"
        return Outcome(index, message.stamp_ns, text, TIMEOUT, scene, None, error=error)
    result = answer.result
    status = STATUS_NAMES.get(result.status, ERROR)
    predicted, error = None, result.error
    if status != ERROR and answer.target is not None:
        predicted = decode_cloud(answer.target).points
    elif status != ERROR:
        error = "the target cloud of this result never arrived"
    return Outcome(
        index,
        message.stamp_ns,
        text,
        status,
        scene,
        predicted,
        answer=result.answer,
        error=error,
        target_score=float(result.score) if status != ERROR else None,
        relevant=[_relevant(element, scene, radius) for element in result.relevant],
        latency_ms=(answer.received_s - sent_s) * 1000.0,
        extra={
            "instruction_id": result.instruction_id,
            "node_total_ms": result.total_ms,
            "queue_ms": result.queue_ms,
            "encode_ms": result.encode_ms,
            "stage1_ms": result.stage1_ms,
            "stage2_ms": result.stage2_ms,
            "scene_encoding_reused": result.scene_encoding_reused,
            "node_scene_points": result.scene_point_count,
            "scene_version": result.scene_version,
        },
    )


def scene_cutoffs(run: LiveRun) -> list[int]:
    """Per instruction, the bag time up to which the node's scene is rebuilt: the stamp of the
    newest cloud in the scene it answered on, else the instruction's own bag time."""
    cutoffs = []
    for (message, _), answer in zip(run.instructions, run.answers, strict=True):
        stamp = None if answer is None else answer.result.header.stamp
        has_stamp = stamp is not None and (stamp.sec or stamp.nanosec)
        cutoffs.append(stamp.sec * 10**9 + stamp.nanosec if has_stamp else message.stamp_ns)
    return cutoffs


def interface_typestore() -> Typestore:
    """Kilted's types plus ours, read from the package's msg/*.msg files."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    folder = _interface_folder()
    types = {}
    for name in INTERFACES:
        text = (folder / f"{name}.msg").read_text()
        types |= get_types_from_msg(text, f"r2s_ros/msg/{name}")
    typestore.register(types)
    return typestore


def _interface_folder() -> Path:
    """msg/ of the source tree, else share/r2s_ros/msg of an install prefix."""
    prefixes = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates = [Path(__file__).resolve().parents[2] / "msg"]
    candidates += [prefix / "share" / "r2s_ros" / "msg" for prefix in [Path(sys.prefix), *prefixes]]
    for folder in candidates:
        if (folder / "SegmentationResult.msg").is_file():
            return folder
    raise ReplayError(f"r2s_ros message definitions not found in {candidates}")


def _relevant(element: RelevantElement, scene: SceneSnapshot, radius: float) -> RelevantOutcome:
    """A relevant element from its box: the rebuilt scene's points inside it (grown by radius),
    since the result carries boxes, not masks."""
    centre = np.array([element.centroid.x, element.centroid.y, element.centroid.z])
    half = np.array([element.size.x, element.size.y, element.size.z]) / 2 + radius
    inside = np.all(np.abs(scene.points - centre) <= half, axis=1)
    return RelevantOutcome(element.name, float(element.score), scene.points[inside])


class _Session:
    """The replay's node: publishers for the bag's topics, recorders of the node's outputs."""

    def __init__(self, context: Context, bag: ReplayBag, options: LiveOptions) -> None:
        self.bag, self.options = bag, options
        name = options.node_name
        self.node_path = name if name.startswith("/") else f"/{name}"
        self.node = Node("r2s_replay", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.publishers = {
            role: self.node.create_publisher(
                INPUT_TYPES[role], topic, LATCHED if role == "tf_static" else RELIABLE
            )
            for role, topic in bag.roles.items()
        }
        self.clock = self.node.create_publisher(Clock, "/clock", 10) if options.clock else None
        self.results: list[tuple[SegmentationResult, float]] = []
        self.targets: deque[PointCloud2] = deque()
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_received = 0
        self.last_progress_s = time.perf_counter()

        typestore = interface_typestore()
        self.writer = Writer(options.record, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.connections = {
            bag.topics.instruction: self.writer.add_connection(
                bag.topics.instruction, contract.INSTRUCTION_TYPE, typestore=typestore
            )
        }
        self.subscriptions = []
        for topic, msgtype, kind, handler in [
            (f"{self.node_path}/result", RESULT_TYPE, SegmentationResult, self._on_result),
            (f"{self.node_path}/target_cloud", contract.POINTS_TYPE, PointCloud2, self._on_target),
            (f"{self.node_path}/relevant_markers", MARKERS_TYPE, MarkerArray, None),
            ("/diagnostics", DIAGNOSTICS_TYPE, DiagnosticArray, self._on_diagnostics),
        ]:
            self.connections[topic] = self.writer.add_connection(
                topic, msgtype, typestore=typestore
            )
            callback = self._recorder(topic, kind, handler)
            self.subscriptions.append(
                self.node.create_subscription(kind, topic, callback, RELIABLE, raw=True)
            )

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.close()
        self.node.destroy_node()

    def run(self) -> LiveRun:
        parameters = self._wait_for_node()
        counts_before = dict(self.diagnostics)
        instructions, published = self._publish_bag()
        answers, unmatched = self._collect(instructions)
        # Counters as of after the last result: the node's next diagnostics message.
        seen = self.diagnostics_received
        self._spin_until(lambda: self.diagnostics_received > seen, timeout_s=5.0)
        return LiveRun(
            instructions=instructions,
            answers=answers,
            parameters=parameters,
            published=published,
            node_counts=_count_changes(counts_before, self.diagnostics),
            unmatched_results=unmatched,
            recorded=self.options.record,
            timeout_s=self.options.timeout_s,
            node_model=self.diagnostics.get("model", ""),
        )

    def _wait_for_node(self) -> NodeParameters:
        """Waits until the node is connected and reporting; returns its parameters."""
        deadline = time.perf_counter() + self.options.discovery_timeout_s
        client = AsyncParameterClient(self.node, self.node_path)
        inputs = [self.publishers[role] for role in ("points", "instruction")]

        def connected() -> bool:
            # Both directions matched (markers are published only with results, so not yet).
            subscribed = all(p.get_subscription_count() > 0 for p in inputs)
            outputs = all(s.get_publisher_count() > 0 for s in self.subscriptions[:2])
            reporting = bool(self.diagnostics) and client.services_are_ready()
            return subscribed and outputs and reporting

        if self.clock is not None:  # the node's clock starts with the bag's
            inputs.append(self.clock)
        self._wait(connected, deadline, "publishing /diagnostics")
        if self.clock is not None:
            self._publish_clock(self.bag.start_ns)
        names = list(NodeParameters.__dataclass_fields__)
        future = client.get_parameters(names)
        self.executor.spin_until_future_complete(future, timeout_sec=10.0)
        if not future.done() or future.result() is None:
            raise ReplayError(f"could not read the parameters of {self.node_path}")
        values = {
            n: parameter_value_to_python(v)
            for n, v in zip(names, future.result().values, strict=True)
        }
        parameters = parameters_from_values(values)
        # The pose topics its pose_source reads (what it does not read goes out all the same).
        inputs += [
            self.publishers[role]
            for role in POSE_ROLES[parameters.pose_source]
            if role in self.publishers
        ]
        self._wait(connected, deadline, f"(pose_source {parameters.pose_source})")
        return parameters

    def _publish_clock(self, stamp_ns: int) -> None:
        sec, nanosec = divmod(stamp_ns, 10**9)
        self.clock.publish(Clock(clock=Time(sec=sec, nanosec=nanosec)))

    def _wait(self, done: Callable[[], bool], deadline: float, what: str) -> None:
        """Spins until done(); ReplayError after `deadline`, naming the topics and `what`."""
        while not done():
            if time.perf_counter() > deadline:
                topics = ", ".join(self.bag.roles.values())
                raise ReplayError(
                    f"no node {self.node_path} subscribed to {topics} and {what}"
                    f" within {self.options.discovery_timeout_s:.0f} s; is r2s-node running?"
                )
            self.executor.spin_once(timeout_sec=0.05)

    def _publish_bag(self) -> tuple[list[tuple[BagMessage, float]], dict[str, int]]:
        """Publishes every message at its recorded time (scaled by speed), spinning between."""
        instructions: list[tuple[BagMessage, float]] = []
        published = dict.fromkeys(self.publishers, 0)
        start_s = first_ns = None
        messages = tqdm(self.bag.messages(), total=self.bag.num_messages, desc="publishing")
        for message in messages:
            if start_s is None:
                start_s, first_ns = time.perf_counter(), message.stamp_ns
            due_s = start_s + (message.stamp_ns - first_ns) / 1e9 / self.options.speed
            self._spin_until(lambda: False, timeout_s=due_s - time.perf_counter())  # just wait
            if self.clock is not None:
                self._publish_clock(message.stamp_ns)
            # Stamped before publish(): a local node may receive it before publish() returns.
            sent_s = time.perf_counter()
            self.publishers[message.role].publish(message.raw)
            published[message.role] += 1
            if message.role == "instruction":
                instructions.append((message, sent_s))
                self.writer.write(self.connections[message.topic], time.time_ns(), message.raw)
                self.last_progress_s = sent_s
        return instructions, published

    def _collect(
        self, instructions: list[tuple[BagMessage, float]]
    ) -> tuple[list[LiveAnswer | None], int]:
        """Waits for a result per instruction (timeout after the last progress); pairs them."""

        def answered() -> bool:
            with_target = sum(r.status != SegmentationResult.STATUS_ERROR for r, _ in self.results)
            return len(self.results) >= len(instructions) and len(self.targets) >= with_target

        # The deadline moves with every result: a slow node working through a queue is not late.
        while (
            not answered() and time.perf_counter() < self.last_progress_s + self.options.timeout_s
        ):
            self.executor.spin_once(timeout_sec=0.05)
        waiting: dict[str, deque[int]] = {}
        for index, (message, _) in enumerate(instructions):
            waiting.setdefault(message.message.data, deque()).append(index)
        answers: list[LiveAnswer | None] = [None] * len(instructions)
        unmatched = 0
        for result, received_s in self.results:
            answer = LiveAnswer(result, received_s)
            if result.status != SegmentationResult.STATUS_ERROR and self.targets:
                answer.target = self.targets.popleft()
            queue = waiting.get(result.instruction)
            if queue:
                answers[queue.popleft()] = answer
            else:
                unmatched += 1
        return answers, unmatched

    def _spin_until(self, done: Callable[[], bool], timeout_s: float) -> None:
        """Runs callbacks until done() or timeout_s seconds have passed."""
        end = time.perf_counter() + timeout_s
        while not done() and (left := end - time.perf_counter()) > 0:
            self.executor.spin_once(timeout_sec=min(0.05, left))

    def _recorder(
        self, topic: str, kind: type, handler: Callable[[Any], None] | None
    ) -> Callable[[bytes], None]:
        def record(raw: bytes) -> None:
            self.writer.write(self.connections[topic], time.time_ns(), raw)
            if handler is not None:
                handler(deserialize_message(raw, kind))

        return record

    def _on_result(self, result: SegmentationResult) -> None:
        self.last_progress_s = time.perf_counter()
        self.results.append((result, self.last_progress_s))

    def _on_target(self, cloud: PointCloud2) -> None:
        self.targets.append(cloud)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        prefix = f"{self.node_path.rsplit('/', 1)[-1]}:"
        for status in msg.status:
            if status.name.startswith(prefix):
                self.diagnostics = {value.key: value.value for value in status.values}
                self.diagnostics_received += 1


def _count_changes(before: dict[str, str], after: dict[str, str]) -> dict[str, int]:
    """Change of the node's integer counters (clouds_*, dropped_*) over the replay."""
    keys = [k for k in after if k.startswith(("clouds_", "dropped_"))]
    return {k: int(after[k]) - int(before.get(k, 0)) for k in sorted(keys)}
