"""Fixtures for tests that talk to other processes over real DDS."""

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context

PEERS = Path(__file__).parent / "peers"
PARAMS_FILE = Path(__file__).parents[2] / "config" / "r2s.yaml"


@pytest.fixture
def ros_context() -> Iterator[Context]:
    """An initialised rclpy context of this (the test) process."""
    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture
def spawn_peer() -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts `tests/ros/peers/NAME.py ARGS...` as a separate Python process; stops it after.

    Its stdin is a pipe (a peer may take commands from the test) and its stdout and stderr are
    one text pipe.
    """
    processes: list[subprocess.Popen] = []

    def spawn(name: str, *args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, str(PEERS / f"{name}.py"), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        return process

    yield spawn
    for process in processes:
        with contextlib.suppress(BrokenPipeError):  # a peer that died with commands unread
            process.stdin.close()  # end of commands: a peer reading them exits by itself
        stop_process(process, timeout=10)


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if the process has not exited after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def node_command(*overrides: str, module: str = "r2s_ros.node", namespace: str = "") -> list[str]:
    """`r2s-node` (as a module, so no installed entry point is needed; `r2s_ros.lifecycle_node`
    for the managed one) with the params file, in `namespace`."""
    arguments = ["--ros-args", "--params-file", str(PARAMS_FILE)]
    if namespace:
        arguments += ["-r", f"__ns:={namespace}"]
    for override in overrides:
        arguments += ["-p", override]
    return [sys.executable, "-m", module, *arguments]


@contextlib.contextmanager
def running_node(
    checkpoint: Path, *overrides: str, module: str = "r2s_ros.node", namespace: str = ""
) -> Iterator[subprocess.Popen]:
    """The node in its own process on `checkpoint`, with 5 cm voxels, reliable cloud QoS (no
    lost fragments of large clouds in a test), fast diagnostics and the given overrides."""
    process = subprocess.Popen(
        node_command(
            f"checkpoint:={checkpoint}",
            "voxel_size:=0.05",
            "points_qos:=reliable",
            "diagnostics_period_s:=0.3",
            *overrides,
            module=module,
            namespace=namespace,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        stop_process(process, timeout=20)
