"""Session-wide test environment: offline, and ROS traffic kept on this machine."""

import os
import random
import time

import pytest

# Set before anything imports rclpy or transformers, and inherited by every peer process.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# spconv's CPU path runs thousands of tiny OpenMP regions; spinning idle threads then starve
# any other process (a DDS peer, a second pytest) on a 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _free_ros_domain(tries: int = 8, listen_s: float = 1.5) -> int:
    """A random ROS domain (1-100) where no other node answers within `listen_s`.

    Parallel test runs on one host (CI jobs sharing its network) must not cross-talk: a
    pid-derived domain collided there, since fresh containers start pytest at similar pids.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    candidates = random.SystemRandom().sample(range(1, 101), tries)
    for domain in candidates:
        context = Context()
        rclpy.init(context=context, domain_id=domain)
        try:
            probe = Node("r2s_domain_probe", context=context)
            deadline = time.monotonic() + listen_s
            while time.monotonic() < deadline and len(probe.get_node_names()) <= 1:
                time.sleep(0.1)
            busy = len(probe.get_node_names()) > 1
            probe.destroy_node()
        finally:
            rclpy.shutdown(context=context)
        if not busy:
            return domain
    return candidates[-1]


# A domain of our own per test session keeps parallel runs on one host from cross-talking.
if "ROS_DOMAIN_ID" not in os.environ:
    os.environ["ROS_DOMAIN_ID"] = str(_free_ros_domain())


SMALL_DATASET = {
    "seed": 7,
    "scenes": {"train": 3, "val": 2},
    "samples_per_scene": 6,
    "points_per_m2": 600.0,
}


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory):
    """A tiny generated benchmark (3 train scenes, 2 val), shared by the data and eval tests."""
    from r2s_model.synthetic.generate import generate_dataset

    out = tmp_path_factory.mktemp("benchmark") / "r2s"
    generate_dataset(out, workers=2, **SMALL_DATASET)
    return out
