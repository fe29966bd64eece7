"""Starts the r2s node with config/r2s.yaml; topics remappable from the command line.

ros2 launch r2s_ros r2s.launch.py points:=/camera/points checkpoint:=/path/to/model
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

REMAPPABLE = {"points": "points", "instruction": "instruction", "odom": "odom"}


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("r2s_ros"))
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=str(share / "config" / "r2s.yaml"),
            description="parameters",
        ),
        DeclareLaunchArgument(
            "checkpoint", default_value="", description="model checkpoint folder"
        ),
        *[
            DeclareLaunchArgument(name, default_value=topic, description=f"{name} topic")
            for name, topic in REMAPPABLE.items()
        ],
    ]
    node = Node(
        package="r2s_ros",
        executable="r2s_node",
        name="r2s",
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {"checkpoint": LaunchConfiguration("checkpoint")},
        ],
        remappings=[(name, LaunchConfiguration(name)) for name in REMAPPABLE],
    )
    return LaunchDescription([*arguments, node])
