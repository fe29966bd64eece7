"""Session-wide test environment: offline, and ROS traffic kept on this machine."""

import os

import pytest

# Set before anything imports rclpy or transformers, and inherited by every peer process.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# spconv's CPU path runs thousands of tiny OpenMP regions; spinning idle threads then starve
# any other process (a DDS peer, a second pytest) on a 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# A domain of our own per test session keeps parallel runs on one machine from cross-talking.
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))


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
