"""The managed (lifecycle) r2s node: the same runtime as `R2SNode`, driven by transitions.

    configure   reads and validates the parameters, loads the model, creates the outputs, the
                services and the action (requests are answered as dropped until activated)
    activate    starts the intake (clouds, instructions, poses), the worker and the timers
    deactivate  stops them; waiting instructions are answered as dropped; the scene is kept
    cleanup     removes what configure created and frees the model
    shutdown    the same, from any state

A failed transition (bad parameters, a missing checkpoint, any exception) is logged and goes
to error processing, which frees what was made and returns the node to `unconfigured`: the
process stays up, and a later `configure` can succeed (e.g. once the checkpoint exists).
"""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Callable

import rclpy
import torch
from rclpy.context import Context
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from r2s_ros.node import serve
from r2s_ros.runtime import R2SRuntime, load
from r2s_ros.worker import SegmentationModel

Transition = Callable[["R2SLifecycleNode"], None]


def _transition(step: Transition) -> Callable[[R2SLifecycleNode, LifecycleState], object]:
    """A transition callback: SUCCESS after `step`, ERROR (logged) if it raises."""

    @functools.wraps(step)
    def callback(node: R2SLifecycleNode, _state: LifecycleState) -> TransitionCallbackReturn:
        try:
            step(node)
        except Exception as error:
            name = step.__name__.removeprefix("on_")
            node.get_logger().error(f"{name} failed: {type(error).__name__}: {error}")
            return TransitionCallbackReturn.ERROR
        return TransitionCallbackReturn.SUCCESS

    return callback


class R2SLifecycleNode(LifecycleNode):
    """Lifecycle node `r2s`, `unconfigured` when made. `model`: an already loaded model that
    every configure uses as it is (tests); None loads the `checkpoint` parameter's."""

    def __init__(
        self, *, model: SegmentationModel | None = None, context: Context | None = None
    ) -> None:
        super().__init__("r2s", context=context)
        self._given_model = model
        self.runtime: R2SRuntime | None = None

    @_transition
    def on_configure(self) -> None:
        self.runtime = R2SRuntime(self, load(self, self._given_model))
        loaded = self.runtime.loaded
        self.get_logger().info(f"configured: model {loaded.name} on {loaded.device}")

    @_transition
    def on_activate(self) -> None:
        self.runtime.activate()

    @_transition
    def on_deactivate(self) -> None:
        self.runtime.deactivate()

    @_transition
    def on_cleanup(self) -> None:
        self._release()

    @_transition
    def on_shutdown(self) -> None:
        self._release()

    @_transition
    def on_error(self) -> None:
        self._release()

    def destroy_node(self) -> None:
        self._release()
        super().destroy_node()

    def _release(self) -> None:
        """Destroys the runtime; the model goes with the last reference to it, and on CUDA
        the memory it held goes back to the driver for other processes."""
        if self.runtime is None:
            return
        runtime, self.runtime = self.runtime, None
        on_cuda = runtime.loaded.device.startswith("cuda")
        runtime.destroy()
        del runtime
        if on_cuda:
            gc.collect()
            torch.cuda.empty_cache()


def main(args: list[str] | None = None) -> int:
    """Entry point `r2s-lifecycle-node` (`ros2 run r2s_ros r2s_lifecycle_node`)."""
    rclpy.init(args=args)
    try:
        serve(R2SLifecycleNode())
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
