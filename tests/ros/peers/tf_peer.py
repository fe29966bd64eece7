"""Second process for the tf tests: a robot's transform publishers and clock, through stdin.

Waits until the node subscribes to /tf, /tf_static and /clock, then runs one command per line
and answers each with `done` once it is published:
  `static PARENT CHILD X Y Z YAW PITCH ROLL`      adds a static transform and publishes all of
                                                   them on /tf_static (latched, as tf2_ros's
                                                   StaticTransformBroadcaster does)
  `tf SECONDS PARENT CHILD X Y Z YAW PITCH ROLL`  publishes one transform on /tf at SECONDS
  `clock SECONDS`                                  sets the time /clock carries (published
                                                   every CLOCK_PERIOD_S, as a bag player does,
                                                   so a lost message does not matter)
Angles in degrees, intrinsic z-y-x (scipy's "ZYX"). Exits when stdin closes.
"""

import sys
import threading
import time

import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from scipy.spatial.transform import Rotation
from tf2_msgs.msg import TFMessage

MATCH_TIMEOUT_S = 60.0
CLOCK_PERIOD_S = 0.05
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


def stamp(seconds: float) -> Time:
    nanoseconds = round(seconds * 1e9)
    return Time(sec=nanoseconds // 10**9, nanosec=nanoseconds % 10**9)


def transform(seconds: float, words: list[str]) -> TransformStamped:
    parent, child, *numbers = words
    x, y, z, yaw, pitch, roll = map(float, numbers)
    msg = TransformStamped(child_frame_id=child)
    msg.header.stamp, msg.header.frame_id = stamp(seconds), parent
    translation, rotation = msg.transform.translation, msg.transform.rotation
    translation.x, translation.y, translation.z = x, y, z
    quaternion = Rotation.from_euler("ZYX", [yaw, pitch, roll], degrees=True).as_quat()
    rotation.x, rotation.y, rotation.z, rotation.w = quaternion.tolist()
    return msg


def main() -> int:
    rclpy.init()
    node = Node("tf_peer")
    publishers = {
        "tf": node.create_publisher(TFMessage, "/tf", RELIABLE),
        "static": node.create_publisher(TFMessage, "/tf_static", LATCHED),
        "clock": node.create_publisher(Clock, "/clock", RELIABLE),
    }
    deadline = time.monotonic() + MATCH_TIMEOUT_S
    while any(p.get_subscription_count() == 0 for p in publishers.values()):
        if time.monotonic() > deadline:
            print("tf peer: the node never subscribed", flush=True)
            return 1
        time.sleep(0.05)
    print("tf peer ready", flush=True)
    statics: list[TransformStamped] = []
    clock: list[Clock] = []  # the time to publish, once set

    stopping = threading.Event()

    def tick() -> None:
        while not stopping.wait(CLOCK_PERIOD_S):
            if clock:
                publishers["clock"].publish(clock[-1])

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    while line := sys.stdin.readline():
        command, *words = line.split()
        if command == "static":
            statics.append(transform(0.0, words))
            publishers["static"].publish(TFMessage(transforms=statics))
        elif command == "tf":
            message = TFMessage(transforms=[transform(float(words[0]), words[1:])])
            publishers["tf"].publish(message)
        elif command == "clock":
            clock.append(Clock(clock=stamp(float(words[0]))))
            publishers["clock"].publish(clock[-1])
        else:
            print(f"tf peer: unknown command {line!r}", flush=True)
            return 1
        print("done", flush=True)
    stopping.set()
    ticker.join()
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
