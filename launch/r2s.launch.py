"""Starts the r2s node (plain, or managed with `managed:=true`) with config/r2s.yaml.

    ros2 launch r2s_ros r2s.launch.py points:=/camera/points checkpoint:=/path/to/model
    ros2 launch r2s_ros r2s.launch.py namespace:=perception managed:=true autostart:=true

Arguments and what they become: r2s_ros/launch_args.py (ARGUMENTS).
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from r2s_ros.launch_args import ARGUMENTS, node_spec


def _node(context: LaunchContext) -> list[Node]:
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    spec = node_spec(values, Path(get_package_share_directory("r2s_ros")))
    common = {
        "package": "r2s_ros",
        "executable": spec.executable,
        "name": "r2s",
        "namespace": spec.namespace,
        "output": "screen",
        "parameters": spec.parameters,
        "remappings": spec.remappings,
    }
    if spec.managed:
        return [LifecycleNode(**common, autostart=spec.autostart)]
    return [Node(**common)]


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, (default, description) in ARGUMENTS.items()
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_node)])
