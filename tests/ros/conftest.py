"""Fixtures for tests that talk to other processes over real DDS."""

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context

PEERS = Path(__file__).parent / "peers"


@pytest.fixture
def ros_context() -> Iterator[Context]:
    """An initialised rclpy context of this (the test) process."""
    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture
def spawn_peer() -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts `tests/ros/peers/NAME.py ARGS...` as a separate Python process; stops it after."""
    processes: list[subprocess.Popen] = []

    def spawn(name: str, *args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, str(PEERS / f"{name}.py"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        return process

    yield spawn
    for process in processes:
        stop_process(process, timeout=10)


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if the process has not exited after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
