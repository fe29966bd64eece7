"""The launch file cannot run here (launch/launch_ros are not installable): check its structure."""

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_launch_file_starts_the_node_with_the_params_file() -> None:
    tree = ast.parse((ROOT / "launch" / "r2s.launch.py").read_text())
    functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    calls = {
        node.func.id: node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    node_call = calls["Node"]
    keywords = {k.arg: k.value for k in node_call.keywords}
    assert ast.literal_eval(keywords["package"]) == "r2s_ros"
    assert ast.literal_eval(keywords["executable"]) == "r2s_node"
    assert ast.literal_eval(keywords["name"]) == "r2s"
    assert {"parameters", "remappings"} <= set(keywords)
    assert (ROOT / "scripts" / "r2s_node").is_file()


def test_rviz_config_shows_scene_target_and_markers() -> None:
    config = yaml.safe_load((ROOT / "rviz" / "r2s.rviz").read_text())
    topics = {
        display.get("Topic", {}).get("Value")
        for display in config["Visualization Manager"]["Displays"]
    }
    assert {"/r2s/scene_cloud", "/r2s/target_cloud", "/r2s/relevant_markers"} <= topics
