"""The r2s ROS 2 node: accumulates point clouds into a scene and answers instructions on it.

`R2SNode` is the plain node, active from its constructor on; `lifecycle_node.R2SLifecycleNode`
is the managed one. Both run an `R2SRuntime` (runtime.py: threads, endpoints, intake), and
`serve` runs either the way `r2s-node` does, for a process that embeds one.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from r2s_model.checkpoint import CheckpointError
from r2s_model.device import DeviceError
from r2s_ros.params import ParameterError
from r2s_ros.runtime import EXECUTOR_THREADS, R2SRuntime, load
from r2s_ros.worker import SegmentationModel


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
        self.runtime: R2SRuntime | None = None
        self.runtime = R2SRuntime(self, load(self, model))
        self.runtime.activate()
        loaded = self.runtime.loaded
        self.get_logger().info(f"ready: model {loaded.name} on {loaded.device}")

    def destroy_node(self) -> None:
        runtime, self.runtime = self.runtime, None  # rclpy may destroy a node twice
        if runtime is not None:
            runtime.destroy()
        super().destroy_node()


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


def serve(node: Node) -> None:
    """Runs `node`'s callbacks until its context shuts down (Ctrl-C, or the embedding process
    shutting it down), then destroys the node and joins the executor's threads."""
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS, context=node.context)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # The node first: stopping its worker answers every waiting job, so no caller is left
        # without a result.
        node.destroy_node()
        executor.shutdown()


if __name__ == "__main__":
    sys.exit(main())
