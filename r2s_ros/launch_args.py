"""What launch/r2s.launch.py starts, computed from its arguments as plain data.

No launch import: the launch file only turns a `NodeSpec` into a launch_ros `Node` or
`LifecycleNode`, and the logic here is tested where launch is not installable. Arguments left
empty keep the value of the params file (a launch default never overrides it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# name: (default, description)
ARGUMENTS = {
    "namespace": ("", "namespace of the node, its topics, services and action"),
    "params_file": ("", "node parameters; empty: the package's config/r2s.yaml"),
    "checkpoint": ("", "model checkpoint folder; empty: the params file's"),
    "device": ("", "auto | cpu | cuda | cuda:N; empty: the params file's"),
    "pose_source": ("", "tf | odometry | fixed; empty: the params file's"),
    "use_sim_time": ("false", "true: follow /clock (bag replay, simulation)"),
    "managed": ("false", "true: the lifecycle node, unconfigured until configured"),
    "autostart": ("false", "managed only, true: configure and activate it at once"),
    "points": ("points", "PointCloud2 input topic"),
    "instruction": ("instruction", "std_msgs/String instruction topic"),
    "odom": ("odom", "nav_msgs/Odometry topic (pose_source odometry)"),
}
# Arguments that override the node parameter of the same name when not empty.
PARAMETER_OVERRIDES = ("checkpoint", "device", "pose_source")
REMAPPED_TOPICS = ("points", "instruction", "odom")


@dataclass(frozen=True)
class NodeSpec:
    """The node to start: executable, lifecycle, names, parameters and remappings."""

    executable: str
    managed: bool
    autostart: bool
    namespace: str
    parameters: list[Any]  # the params file, then a dict of overrides
    remappings: list[tuple[str, str]]


def node_spec(values: dict[str, str], share: Path) -> NodeSpec:
    """The spec for launch argument `values` (every name of ARGUMENTS); `share` is the
    package's share directory. ValueError names an argument that is not true or false."""
    overrides: dict[str, Any] = {name: values[name] for name in PARAMETER_OVERRIDES if values[name]}
    overrides["use_sim_time"] = _boolean(values, "use_sim_time")
    managed = _boolean(values, "managed")
    return NodeSpec(
        executable="r2s_lifecycle_node" if managed else "r2s_node",
        managed=managed,
        autostart=_boolean(values, "autostart"),
        namespace=values["namespace"],
        parameters=[values["params_file"] or str(share / "config" / "r2s.yaml"), overrides],
        remappings=[(topic, values[topic]) for topic in REMAPPED_TOPICS],
    )


def _boolean(values: dict[str, str], name: str) -> bool:
    value = values[name].strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"launch argument {name} must be true or false, got {values[name]!r}")
    return value == "true"
