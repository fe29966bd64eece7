"""The r2s ROS 2 node: accumulates point clouds into a scene and answers instructions on it.

Threads: a MultiThreadedExecutor runs the callbacks; the model runs on the InferenceWorker's
own thread. Cloud, odometry, instruction and timer callbacks share the default (mutually
exclusive) group and only decode, insert and enqueue. `~/segment` sits in a reentrant group of
its own and blocks one executor thread on the job's future until the worker answers, so clouds
keep flowing while a service caller waits. Topics and services: README "Node contract".
`serve` runs a node the way `r2s-node` does, for a process that embeds it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from r2s_model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_model
from r2s_model.device import DeviceError, resolve_device
from r2s_ros import outputs
from r2s_ros.ingest import Drop, IngestSettings, SceneIngest
from r2s_ros.msg import SegmentationResult
from r2s_ros.params import ParameterError, declare_parameters
from r2s_ros.pointcloud import encode_cloud
from r2s_ros.srv import Segment
from r2s_ros.worker import Answer, InferenceWorker, InstructionJob, SegmentationModel

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Deep enough that a burst of instructions, and the burst of results (drop notices) it causes,
# is neither overwritten in the DDS history nor lost before the bounded queue judges it.
BURST = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
WARN_THROTTLE_S = 5.0
EXECUTOR_THREADS = 4


class R2SNode(Node):
    """Node `r2s`; raises ParameterError, DeviceError or CheckpointError when it cannot start.

    `model`: an already loaded model, for a process that embeds the node (composition, tests);
    it is used as it is, and the `checkpoint` and `llm_source` parameters are ignored. None
    loads the `checkpoint` parameter's model onto `device`. `context`: the rclpy context the
    node lives in (its parameters come from that context's arguments); None is the default one.
    """

    def __init__(
        self, *, model: SegmentationModel | None = None, context: Context | None = None
    ) -> None:
        super().__init__("r2s", context=context)
        # rclpy destroys a node whose constructor failed at shutdown, so this must exist first.
        self._worker: InferenceWorker | None = None
        self.parameters = declare_parameters(self)
        self.device = resolve_device(self.parameters.device)
        if model is None:
            checkpoint = Path(self.parameters.checkpoint or DEFAULT_CHECKPOINT)
            model = load_model(checkpoint, self.parameters.llm_source, self.device)
            self.model_name = str(checkpoint)
        else:
            self.model_name = f"{type(model).__name__} (given, not loaded)"
        self._ingest = SceneIngest(IngestSettings.from_parameters(self.parameters))
        self._topic_instructions = 0
        self._last_latency_ms = 0.0
        self._last_scene_cloud_version = -1
        self._rate_mark = (time.monotonic(), 0)  # (time, clouds_received) at last diagnostics

        self._result_pub = self.create_publisher(SegmentationResult, "~/result", BURST)
        self._target_pub = self.create_publisher(PointCloud2, "~/target_cloud", RELIABLE)
        self._markers_pub = self.create_publisher(MarkerArray, "~/relevant_markers", RELIABLE)
        self._scene_pub = self.create_publisher(PointCloud2, "~/scene_cloud", RELIABLE)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE)

        queue_size = self.parameters.instruction_queue_size
        self._worker = InferenceWorker(
            model, self._ingest.snapshot, self._publish_answer, queue_size
        )
        # Created in the order the executor should serve messages that are ready together: a
        # cloud's pose before the cloud, the clouds before an instruction about them.
        if self.parameters.pose_source == "odometry":
            self.create_subscription(
                Odometry, self.parameters.odometry_topic, self._on_odometry, RELIABLE
            )
        points_qos = qos_profile_sensor_data if self.parameters.points_qos == "sensor_data" else 10
        self.create_subscription(PointCloud2, "points", self._on_cloud, points_qos)
        self.create_subscription(String, "instruction", self._on_instruction, BURST)
        self.create_service(
            Segment, "~/segment", self._on_segment, callback_group=ReentrantCallbackGroup()
        )
        self.create_service(Trigger, "~/reset_scene", self._on_reset)
        self.create_timer(self.parameters.diagnostics_period_s, self._publish_diagnostics)
        if self.parameters.scene_cloud_period_s > 0:
            self.create_timer(self.parameters.scene_cloud_period_s, self._publish_scene_cloud)
        self.get_logger().info(f"ready: model {self.model_name} on {self.device}")

    def destroy_node(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        super().destroy_node()

    def _on_cloud(self, msg: PointCloud2) -> None:
        self._warn(self._ingest.add_cloud(msg))

    def _on_odometry(self, msg: Odometry) -> None:
        self._warn(self._ingest.add_odometry(msg))

    def _warn(self, drops: list[Drop]) -> None:
        for drop in drops:
            self.get_logger().warning(drop.message, throttle_duration_sec=WARN_THROTTLE_S)

    def _on_instruction(self, msg: String) -> None:
        self._topic_instructions += 1
        self._worker.submit(InstructionJob(msg.data, f"topic-{self._topic_instructions}"))

    def _on_segment(self, request: Segment.Request, response: Segment.Response) -> Segment.Response:
        job = InstructionJob(request.instruction, request.instruction_id)
        self._worker.submit(job)
        response.result = job.done.result()  # every job is answered, dropped ones included
        return response

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
        values = {
            **counts,
            "cloud_rate_hz": f"{cloud_rate:.2f}",
            "scene_points": scene_points,
            "scene_version": scene_version,
            "queue_depth": self._worker.depth,
            "last_latency_ms": f"{self._last_latency_ms:.1f}",
            "device": self.device,
            "model": self.model_name,
        }
        drops = sum(count for key, count in counts.items() if key.startswith("dropped_"))
        status = DiagnosticStatus(
            level=DiagnosticStatus.WARN if drops else DiagnosticStatus.OK,
            name=f"{self.get_name()}: scene and inference",
            hardware_id=self.device,
            message=f"{drops} inputs dropped" if drops else "ok",
            values=[KeyValue(key=key, value=str(value)) for key, value in values.items()],
        )
        self._diagnostics_pub.publish(
            DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status])
        )


def main(args: list[str] | None = None) -> int:
    """Entry point `r2s-node`; takes the usual `--ros-args` (remaps, -p, --params-file)."""
    rclpy.init(args=args)
    try:
        node = R2SNode()
    except (ParameterError, DeviceError, CheckpointError) as error:
        print(f"r2s: cannot start: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        serve(node)
    finally:
        rclpy.try_shutdown()
    return 0


def serve(node: R2SNode) -> None:
    """Runs `node`'s callbacks until its context shuts down (Ctrl-C, or the embedding process
    shutting it down), then destroys the node and joins the executor's threads."""
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS, context=node.context)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # The node first: stopping its worker answers every job, which releases the `~/segment`
        # callbacks blocked on an executor thread, so the join below cannot wait on them.
        node.destroy_node()
        executor.shutdown()


if __name__ == "__main__":
    sys.exit(main())
