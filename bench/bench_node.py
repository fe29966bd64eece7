"""Instruction-to-result latency of the r2s node through real DDS, default LLM on CPU.

The node runs in its own process on a checkpoint of an UNTRAINED model (random, seeded heads)
around the real default LLM, saved to a temporary folder. Untrained heads never stop generating
on their own, so generation is capped at 8 new tokens per stage, as in bench_model.py: what is
measured is the compute and transport path, not answer quality. Procedural room 0, subsampled to
--points, is published in pieces on `points`; once /diagnostics shows the scene, --instructions
instructions are published one at a time, each after the previous result arrived.

Reported: publish -> result receipt latency of the first instruction (it includes the scene
encoding) and the median and p95 of the later ones (encoding reused), the node's own per-stage
timings from the results, and the transport overhead (latency minus the node's total_ms).
Writes bench/results/node_latency.json.

    .venv/bin/python bench/bench_node.py [--points 100000] [--instructions 5]
"""

from __future__ import annotations

import os

from results_file import write_result

# Before rclpy is imported; the node process inherits them. LOCALHOST keeps the traffic on this
# machine; domain 101 (the highest with safe Linux ports) is outside the 1-100 the tests draw
# from, so a concurrent test session cannot talk to this node.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", "101")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spconv's idle threads starve DDS on 2 cores

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header, String

from r2s_model.checkpoint import save_checkpoint
from r2s_model.config import R2SConfig
from r2s_model.model import R2SModel
from r2s_model.synthetic.rooms import generate_room
from r2s_ros.msg import SegmentationResult
from r2s_ros.pointcloud import encode_cloud

ROOT = Path(__file__).parents[1]
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
INSTRUCTIONS = [
    "the chair nearest the window",
    "the tallest box next to the wall",
    "the lamp closest to the bed",
    "the table in the middle of the room",
    "the sofa facing the door",
]
STARTUP_S = 300.0  # the node loads the LLM and the checkpoint
ANSWER_S = 120.0  # per instruction; the first one encodes the scene
STAGES = ("queue_ms", "encode_ms", "stage1_ms", "stage2_ms", "total_ms")


class Client:
    """The bench side of DDS: publishes clouds and instructions, records results on receipt."""

    def __init__(self, context: Context, node_process: subprocess.Popen, log: Path) -> None:
        self.process, self.log = node_process, log
        self.node = Node("r2s_bench_client", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.results: list[tuple[float, SegmentationResult]] = []  # (receipt time, result)
        self.diagnostics: dict[str, str] = {}
        self.node.create_subscription(SegmentationResult, "r2s/result", self._on_result, 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.points = self.node.create_publisher(PointCloud2, "points", RELIABLE)
        self.instruction = self.node.create_publisher(String, "instruction", RELIABLE)

    def _on_result(self, msg: SegmentationResult) -> None:
        self.results.append((time.perf_counter(), msg))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics = {value.key: value.value for value in status.values}

    def wait_for(self, condition: Callable[[], bool], what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.process.poll() is not None:
                sys.exit(f"node exited ({self.process.returncode}):\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                sys.exit(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.01)

    def ask(self, text: str) -> tuple[float, SegmentationResult]:
        """Publishes `text` and returns (publish -> receipt ms, result)."""
        seen = len(self.results)
        start = time.perf_counter()
        self.instruction.publish(String(data=text))
        self.wait_for(lambda: len(self.results) > seen, f"the result of {text!r}", ANSWER_S)
        received, result = self.results[seen]
        if result.instruction != text:
            sys.exit(f"expected the result of {text!r}, got one for {result.instruction!r}")
        return (received - start) * 1000.0, result


def publish_room(client: Client, num_points: int, pieces: int) -> int:
    """Publishes room 0, subsampled to `num_points`, in `pieces` clouds; returns points sent."""
    room = generate_room(0)
    keep = np.sort(np.random.default_rng(0).permutation(len(room.points))[:num_points])
    points, colors = room.points[keep], np.rint(room.colors[keep] * 255).astype(np.uint8)
    for index, piece in enumerate(np.array_split(np.arange(len(points)), pieces)):
        header = Header(stamp=Time(sec=100 + index), frame_id="map")
        client.points.publish(encode_cloud(points[piece], colors[piece], header))
    return len(points)


def percentile(samples: list[float], q: float) -> float:
    return round(float(np.percentile(samples, q)), 1)


def stage_medians(results: list[SegmentationResult]) -> dict[str, float]:
    return {
        stage: round(statistics.median(getattr(r, stage) for r in results), 1) for stage in STAGES
    }


def run(num_points: int, num_instructions: int, pieces: int, workdir: Path) -> dict:
    torch.manual_seed(0)
    model = R2SModel.build(R2SConfig(stage1_max_new_tokens=8, stage2_max_new_tokens=8))
    checkpoint = save_checkpoint(model, workdir / "untrained")
    llm = model.llm_bundle.source
    del model  # the node process loads its own copy; two on a 2-core, RAM-bound box would skew

    log = workdir / "node.log"
    command = [sys.executable, "-m", "r2s_ros.node", "--ros-args"]
    command += ["--params-file", str(ROOT / "config" / "r2s.yaml")]
    for override in (f"checkpoint:={checkpoint}", "points_qos:=reliable", "device:=cpu"):
        command += ["-p", override]
    with log.open("w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
    context = Context()
    rclpy.init(context=context)
    try:
        client = Client(context, process, log)
        started = time.perf_counter()
        client.wait_for(lambda: "scene_points" in client.diagnostics, "node start", STARTUP_S)
        startup_s = time.perf_counter() - started
        client.wait_for(
            lambda: (
                client.points.get_subscription_count() > 0
                and client.instruction.get_subscription_count() > 0
            ),
            "the node's subscriptions",
            STARTUP_S,
        )
        sent = publish_room(client, num_points, pieces)
        client.wait_for(
            lambda: int(client.diagnostics.get("clouds_accepted", 0)) >= pieces,
            "the room in /diagnostics",
            ANSWER_S,
        )
        texts = [f"{INSTRUCTIONS[i % len(INSTRUCTIONS)]} ({i})" for i in range(num_instructions)]
        answers = [client.ask(text) for text in texts]
        diagnostics = client.diagnostics
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        rclpy.shutdown(context=context)

    (first_ms, first), later = answers[0], answers[1:]
    later_ms = [ms for ms, _ in later]
    return {
        "benchmark": "node_latency",
        "device": "cpu",
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "llm": llm,
        "model": "untrained R2S heads, generation capped at 8 new tokens per stage",
        "rmw": os.environ.get("RMW_IMPLEMENTATION", "default"),
        "points_sent": sent,
        "cloud_pieces": pieces,
        "scene_points": int(diagnostics["scene_points"]),
        "node_startup_s": round(startup_s, 1),
        "first_instruction": {
            "latency_ms": round(first_ms, 1),
            "status": first.status,
            "node": stage_medians([first]),
        },
        "later_instructions": {
            "count": len(later),
            "latency_median_ms": percentile(later_ms, 50),
            "latency_p95_ms": percentile(later_ms, 95),
            "node_median": stage_medians([r for _, r in later]),
            "transport_median_ms": round(statistics.median(ms - r.total_ms for ms, r in later), 1),
            "all_reused_encoding": all(r.scene_encoding_reused for _, r in later),
            "statuses": [r.status for _, r in later],
        },
        "latencies_ms": [round(ms, 1) for ms, _ in answers],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--instructions", type=int, default=5)
    parser.add_argument("--pieces", type=int, default=4)
    args = parser.parse_args()
    if args.instructions < 2:
        parser.error("--instructions must be >= 2: the first one is reported on its own")
    with tempfile.TemporaryDirectory(prefix="r2s-bench-node-") as workdir:
        report = run(args.points, args.instructions, args.pieces, Path(workdir))
    path = write_result("node_latency", report)
    print(json.dumps(report, indent=2))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
