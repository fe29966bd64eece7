"""The r2s node's parameters: declared with descriptors, read once at start and validated.

Every parameter is read-only: the node builds its scene map, model and queue from them once.
`config/r2s.yaml` lists them with their defaults. Only `declare_parameters` needs ROS, so the
bag replay builds the node's scene settings from the same dataclass without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from rclpy.node import Node

POSE_SOURCES = ("tf", "odometry", "fixed")
QOS_PROFILES = ("sensor_data", "reliable")
MAX_INSTRUCTION_QUEUE = 64
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class ParameterError(ValueError):
    """A parameter value the node cannot start with."""


@dataclass(frozen=True)
class NodeParameters:
    """Defaults of every parameter; field comments become the descriptors' descriptions."""

    fixed_frame: str = "map"
    voxel_size: float = 0.02
    time_window_s: float = 0.0
    max_scene_points: int = 300_000
    crop_box_min: tuple[float, ...] = (-50.0, -50.0, -5.0)
    crop_box_max: tuple[float, ...] = (50.0, 50.0, 5.0)
    pose_source: str = "tf"
    tf_timeout_s: float = 0.5
    odometry_topic: str = "odom"
    pose_tolerance_s: float = 0.1
    device: str = "auto"
    checkpoint: str = ""
    llm_source: str = ""
    score_threshold: float = 0.0
    points_qos: str = "sensor_data"
    instruction_queue_size: int = 8
    encoding_reuse_fraction: float = 0.1
    max_encoded_points: int = 200_000
    scene_cloud_period_s: float = 2.0
    scene_cloud_max_points: int = 50_000
    diagnostics_period_s: float = 1.0


DESCRIPTIONS = {
    "fixed_frame": "frame of the accumulated scene and of every output",
    "voxel_size": "scene map resolution, metres (> 0)",
    "time_window_s": "drop voxels not seen for this long, seconds; 0 keeps everything",
    "max_scene_points": "cap on scene voxels; the oldest-seen are evicted first (> 0)",
    "crop_box_min": "fixed-frame crop box lower corner [x, y, z], metres",
    "crop_box_max": "fixed-frame crop box upper corner [x, y, z], metres",
    "pose_source": "how clouds outside fixed_frame are placed: " + " | ".join(POSE_SOURCES),
    "tf_timeout_s": "tf: longest wait for a cloud's transform into fixed_frame, seconds (> 0)",
    "odometry_topic": "nav_msgs/Odometry topic giving the sensor pose in fixed_frame",
    "pose_tolerance_s": "max |cloud stamp - pose stamp|, seconds (> 0)",
    "device": "torch device: auto | cpu | cuda | cuda:N",
    "checkpoint": "checkpoint folder; empty = the shipped default model",
    "llm_source": "base LLM source; empty = the one recorded in the checkpoint",
    "score_threshold": (
        "a target scoring below this is answered NO_TARGET (0..1; 0 = the checkpoint's "
        "calibrated value; lower answers more often, and more often wrongly)"
    ),
    "points_qos": "QoS of the points subscription: " + " | ".join(QOS_PROFILES),
    "instruction_queue_size": (
        f"pending instructions; beyond it the oldest gets an ERROR (1..{MAX_INSTRUCTION_QUEUE})"
    ),
    "encoding_reuse_fraction": (
        "reuse the last scene encoding while the voxels added and removed since it was taken "
        "stay at most this share of it (0..1; 0: only while nothing changed)"
    ),
    "max_encoded_points": (
        "at most this many scene points are encoded (a fixed-seed sample); answers still "
        "cover every scene point (> 0)"
    ),
    "scene_cloud_period_s": "period of ~/scene_cloud, seconds; 0 disables it",
    "scene_cloud_max_points": "~/scene_cloud is downsampled to at most this many points (> 0)",
    "diagnostics_period_s": "period of /diagnostics, seconds (> 0)",
}


def declare_parameters(node: Node) -> NodeParameters:
    """Declares every parameter on `node` (those declared already keep their values: a
    lifecycle node configures more than once) and returns their validated values."""
    from rcl_interfaces.msg import ParameterDescriptor

    values: dict[str, Any] = {}
    for spec in fields(NodeParameters):
        if node.has_parameter(spec.name):
            values[spec.name] = node.get_parameter(spec.name).value
            continue
        default = spec.default
        descriptor = ParameterDescriptor(description=DESCRIPTIONS[spec.name], read_only=True)
        declared = list(default) if isinstance(default, tuple) else default
        try:
            value = node.declare_parameter(spec.name, declared, descriptor).value
        except Exception as error:  # rclpy raises several types for a wrongly typed override
            raise ParameterError(f"parameter {spec.name!r}: {error}") from error
        values[spec.name] = value
    return parameters_from_values(values)


def parameters_from_values(values: dict[str, Any]) -> NodeParameters:
    """Validated parameters from plain values (a params file, a running node's answers);
    missing names keep their defaults, unknown names raise ParameterError."""
    known = {spec.name: spec for spec in fields(NodeParameters)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ParameterError(f"unknown parameters {unknown}; known: {sorted(known)}")
    converted = {
        name: tuple(value) if isinstance(known[name].default, tuple) else value
        for name, value in values.items()
    }
    parameters = NodeParameters(**converted)
    validate(parameters)
    return parameters


def parameters_from_file(path: Path, node_name: str = "r2s") -> NodeParameters:
    """The node's parameters in a ROS params file (config/r2s.yaml): the `ros__parameters` of
    its `node_name` section, else of a `/**` section; ParameterError names what is wrong."""
    try:
        content = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ParameterError(f"{path}: unreadable params file ({error})") from error
    for section in (node_name, f"/{node_name}", "/**"):
        values = content.get(section) if isinstance(content, dict) else None
        if isinstance(values, dict) and isinstance(values.get("ros__parameters"), dict):
            return parameters_from_values(values["ros__parameters"])
    raise ParameterError(f"{path}: no `{node_name}: ros__parameters:` section")


def validate(parameters: NodeParameters) -> None:
    """Raises ParameterError naming the first unusable value."""
    problems = []
    for name in ("voxel_size", "pose_tolerance_s", "tf_timeout_s", "diagnostics_period_s"):
        if not getattr(parameters, name) > 0:
            problems.append(f"{name} must be > 0, got {getattr(parameters, name)}")
    for name in ("time_window_s", "scene_cloud_period_s"):
        if getattr(parameters, name) < 0:
            problems.append(f"{name} must be >= 0, got {getattr(parameters, name)}")
    for name in ("max_scene_points", "scene_cloud_max_points", "max_encoded_points"):
        if getattr(parameters, name) <= 0:
            problems.append(f"{name} must be > 0, got {getattr(parameters, name)}")
    if not 1 <= parameters.instruction_queue_size <= MAX_INSTRUCTION_QUEUE:
        problems.append(
            f"instruction_queue_size must be in 1..{MAX_INSTRUCTION_QUEUE}, "
            f"got {parameters.instruction_queue_size}"
        )
    if not 0 <= parameters.score_threshold < 1:
        problems.append(f"score_threshold must be in [0, 1), got {parameters.score_threshold}")
    if not 0 <= parameters.encoding_reuse_fraction <= 1:
        problems.append(
            f"encoding_reuse_fraction must be in [0, 1], got {parameters.encoding_reuse_fraction}"
        )
    low, high = parameters.crop_box_min, parameters.crop_box_max
    if len(low) != 3 or len(high) != 3 or any(a > b for a, b in zip(low, high, strict=True)):
        problems.append(f"crop_box_min {list(low)} must be 3 values <= crop_box_max {list(high)}")
    if parameters.pose_source not in POSE_SOURCES:
        problems.append(
            f"pose_source must be one of {POSE_SOURCES}, got {parameters.pose_source!r}"
        )
    if parameters.points_qos not in QOS_PROFILES:
        problems.append(f"points_qos must be one of {QOS_PROFILES}, got {parameters.points_qos!r}")
    if not _DEVICE.fullmatch(parameters.device):
        problems.append(f"device must be auto, cpu, cuda or cuda:N, got {parameters.device!r}")
    if not parameters.fixed_frame:
        problems.append("fixed_frame must not be empty")
    if problems:
        raise ParameterError("; ".join(problems))
