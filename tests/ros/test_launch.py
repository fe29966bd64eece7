"""The launch file cannot run here (launch/launch_ros are not installable): its structure is
checked, and what it starts is computed by r2s_ros/launch_args.py, tested for real."""

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from r2s_ros.launch_args import ARGUMENTS, PARAMETER_OVERRIDES, node_spec
from r2s_ros.params import NodeParameters

ROOT = Path(__file__).resolve().parents[2]
SHARE = Path("/opt/ros/share/r2s_ros")
DEFAULTS = {name: default for name, (default, _) in ARGUMENTS.items()}


def test_launch_file_declares_every_argument_and_starts_a_plain_or_a_managed_node() -> None:
    tree = ast.parse((ROOT / "launch" / "r2s.launch.py").read_text())
    functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert {"DeclareLaunchArgument", "ARGUMENTS", "OpaqueFunction", "node_spec"} <= names
    assert {"Node", "LifecycleNode"} <= names
    constants = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)}
    assert {"r2s_ros", "r2s"} <= constants
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for executable in ("r2s_node", "r2s_lifecycle_node"):
        assert (ROOT / "scripts" / executable).is_file()
        assert re.search(rf"install\(PROGRAMS[^)]*scripts/{executable}\b", cmake)


def test_the_issue_asks_for_these_arguments() -> None:
    asked = {"namespace", "params_file", "checkpoint", "device", "pose_source", "managed"}
    assert asked | {"use_sim_time"} <= set(ARGUMENTS)
    fields = {spec.name for spec in dataclasses.fields(NodeParameters)}
    assert set(PARAMETER_OVERRIDES) <= fields


def test_defaults_start_the_plain_node_on_the_params_file_alone() -> None:
    spec = node_spec(DEFAULTS, SHARE)
    assert (spec.executable, spec.managed, spec.namespace) == ("r2s_node", False, "")
    # Nothing but use_sim_time overrides the params file unless asked for.
    assert spec.parameters == [str(SHARE / "config" / "r2s.yaml"), {"use_sim_time": False}]
    assert spec.remappings == [
        ("points", "points"),
        ("instruction", "instruction"),
        ("odom", "odom"),
    ]


def test_arguments_become_overrides_remappings_and_the_managed_node() -> None:
    values = DEFAULTS | {
        "namespace": "perception",
        "params_file": "/robot/r2s.yaml",
        "checkpoint": "/models/r2s",
        "device": "cuda:1",
        "pose_source": "odometry",
        "use_sim_time": "True",
        "managed": "true",
        "autostart": "true",
        "points": "/camera/depth/points",
    }
    spec = node_spec(values, SHARE)
    assert (spec.executable, spec.managed, spec.autostart) == ("r2s_lifecycle_node", True, True)
    assert spec.namespace == "perception"
    assert spec.parameters == [
        "/robot/r2s.yaml",
        {
            "checkpoint": "/models/r2s",
            "device": "cuda:1",
            "pose_source": "odometry",
            "use_sim_time": True,
        },
    ]
    assert ("points", "/camera/depth/points") in spec.remappings


def test_a_boolean_argument_must_be_true_or_false() -> None:
    with pytest.raises(ValueError, match="launch argument managed must be true or false"):
        node_spec(DEFAULTS | {"managed": "yes"}, SHARE)


def test_rviz_config_shows_scene_target_and_markers() -> None:
    config = yaml.safe_load((ROOT / "rviz" / "r2s.rviz").read_text())
    topics = {
        display.get("Topic", {}).get("Value")
        for display in config["Visualization Manager"]["Displays"]
    }
    assert {"/r2s/scene_cloud", "/r2s/target_cloud", "/r2s/relevant_markers"} <= topics
