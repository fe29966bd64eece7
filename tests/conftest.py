"""Session-wide test environment: offline, and ROS traffic kept on this machine."""

import os

# Set before anything imports rclpy or transformers, and inherited by every peer process.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# spconv's CPU path runs thousands of tiny OpenMP regions; spinning idle threads then starve
# any other process (a DDS peer, a second pytest) on a 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# A domain of our own per test session keeps parallel runs on one machine from cross-talking.
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
