"""Second process for the node concurrency test: a sensor and a user, driven through stdin.

Waits until the node subscribes to `points` and `instruction` in --namespace, then runs one
command per stdin line, in order:
  `cloud INDEX`       publishes block INDEX of a scene in --frame, stamped 100 + INDEX s; each
                      block lies 3 m beyond the previous one, so every block adds new voxels
  `instruction TEXT`  publishes TEXT as an instruction
Exits when stdin closes, so a failed test never leaves it behind.
"""

import argparse
import sys
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header, String

from r2s_ros.pointcloud import encode_cloud

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
MATCH_TIMEOUT_S = 30.0
BLOCK_POINTS = 3000


def block(index: int, frame: str) -> PointCloud2:
    """A 2 x 2 x 1 m block of coloured points, 3 m along x per index."""
    rng = np.random.default_rng(index)
    points = rng.uniform((0.0, 0.0, 0.0), (2.0, 2.0, 1.0), (BLOCK_POINTS, 3)).astype(np.float32)
    points[:, 0] += 3.0 * index
    colors = rng.integers(0, 256, (BLOCK_POINTS, 3), dtype=np.uint8)
    return encode_cloud(points, colors, Header(stamp=Time(sec=100 + index), frame_id=frame))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--frame", default="map")
    args = parser.parse_args()

    rclpy.init()
    node = Node("sensor_peer", namespace=args.namespace)
    points = node.create_publisher(PointCloud2, "points", RELIABLE)
    instruction = node.create_publisher(String, "instruction", RELIABLE)
    # Volatile topics: whatever is published before the node's readers match is lost.
    deadline = time.monotonic() + MATCH_TIMEOUT_S
    while points.get_subscription_count() == 0 or instruction.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            print("sensor peer: the node never subscribed", flush=True)
            return 1
        time.sleep(0.05)
    print("sensor peer ready", flush=True)
    while line := sys.stdin.readline():
        command, _, argument = line.strip().partition(" ")
        if command == "cloud":
            points.publish(block(int(argument), args.frame))
        elif command == "instruction":
            instruction.publish(String(data=argument))
        else:
            print(f"sensor peer: unknown command {line!r}", flush=True)
            return 1
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
