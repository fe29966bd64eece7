"""Second process for the interface tests.

`publish TOPIC`: publishes a fully populated SegmentationResult every 100 ms.
`serve SERVICE`: answers Segment requests, echoing the instruction into the result.
Exits by itself after --lifetime seconds so a failed test never leaves it behind.
"""

import argparse
import time

import rclpy
from geometry_msgs.msg import Point, Vector3
from rclpy.node import Node

from r2s_ros.msg import RelevantElement, SegmentationResult
from r2s_ros.srv import Segment


def populated_result(instruction: str, instruction_id: str) -> SegmentationResult:
    """A result with every field set to a value the tests check literally."""
    result = SegmentationResult()
    result.header.frame_id = "map"
    result.header.stamp.sec = 1700000000
    result.header.stamp.nanosec = 250
    result.instruction = instruction
    result.instruction_id = instruction_id
    result.status = SegmentationResult.STATUS_NO_TARGET
    result.error = "no chair left of the bed"
    result.answer = "There is no such chair."
    result.score = 0.125
    result.target_centroid = Point(x=1.0, y=-2.0, z=0.5)
    result.target_size = Vector3(x=0.4, y=0.5, z=0.9)
    result.target_point_count = 1234
    result.relevant = [
        RelevantElement(
            name="bed",
            score=0.75,
            centroid=Point(x=3.0, y=1.0, z=0.25),
            size=Vector3(x=2.0, y=1.5, z=0.5),
            point_count=5000,
        ),
        RelevantElement(name="window", score=0.5, point_count=7),
    ]
    result.scene_version = 2**40 + 3
    result.scene_point_count = 250000
    result.queue_ms = 1.5
    result.encode_ms = 120.0
    result.stage1_ms = 300.0
    result.stage2_ms = 310.0
    result.total_ms = 731.5
    result.scene_encoding_reused = True
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["publish", "serve"])
    parser.add_argument("name")
    parser.add_argument("--lifetime", type=float, default=60.0)
    args = parser.parse_args()

    rclpy.init()
    node = Node("interface_peer")
    if args.mode == "publish":
        publisher = node.create_publisher(SegmentationResult, args.name, 10)
        message = populated_result("the chair left of the bed", "req-7")
        node.create_timer(0.1, lambda: publisher.publish(message))
    else:

        def answer(request: Segment.Request, response: Segment.Response) -> Segment.Response:
            response.result = populated_result(request.instruction, request.instruction_id)
            response.result.answer = f"echo: {request.instruction}"
            return response

        node.create_service(Segment, args.name, answer)
    print("peer ready", flush=True)
    deadline = time.monotonic() + args.lifetime
    while rclpy.ok() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
