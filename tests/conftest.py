"""Session-wide test environment: offline, and ROS traffic kept on this machine."""

import os

# Set before anything imports rclpy or transformers, and inherited by every peer process.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# A domain of our own per test session keeps parallel runs on one machine from cross-talking.
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
