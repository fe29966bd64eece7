"""The repository is a real ROS 2 package, and the model library stays free of ROS."""

import os
import pkgutil
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import r2s_model

ROOT = Path(__file__).resolve().parents[1]
ROS_MODULE_PREFIXES = ("rclpy", "rcl_", "rosidl", "rmw", "r2s_ros", "builtin_interfaces")


def _is_ros_module(name: str) -> bool:
    return name.startswith(ROS_MODULE_PREFIXES) or name.split(".")[0].endswith("_msgs")


def test_r2s_model_imports_no_ros_module() -> None:
    """Imports every r2s_model module in a clean interpreter and lists what ROS it pulled in."""
    modules = sorted(m.name for m in pkgutil.walk_packages(r2s_model.__path__, "r2s_model."))
    script = textwrap.dedent(
        f"""
        import importlib, sys
        import r2s_model
        for name in {modules!r}:
            importlib.import_module(name)
        print("\\n".join(sorted(sys.modules)))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = run.stdout.split()
    assert "r2s_model" in loaded
    assert [name for name in loaded if _is_ros_module(name)] == []


@pytest.mark.slow
def test_colcon_builds_the_workspace(tmp_path: Path) -> None:
    """`colcon build` on a workspace holding this repository, as on a robot; then the installed
    interfaces and Python packages import from the install tree, not from the source tree."""
    source = tmp_path / "src" / "r2s_ros"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    for relative in filter(None, tracked):
        target = source / relative.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative.decode(), target)

    venv = Path(sys.prefix)
    env = dict(os.environ)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["AMENT_PREFIX_PATH"] = str(venv)
    env["CMAKE_PREFIX_PATH"] = str(venv)
    build = subprocess.run(
        ["colcon", "build", "--event-handlers", "console_cohesion+",
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]

    install = tmp_path / "install" / "r2s_ros"
    site = install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    env["PYTHONPATH"] = str(site / "site-packages")
    env["LD_LIBRARY_PATH"] = f"{install / 'lib'}{os.pathsep}{env.get('LD_LIBRARY_PATH', '')}"
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    check = textwrap.dedent(
        """
        import r2s_model, r2s_ros
        from r2s_model.checkpoint import DEFAULT_CHECKPOINT
        from r2s_ros.msg import RelevantElement, SegmentationResult
        from r2s_ros.srv import Segment
        from r2s_ros.action import Segment as SegmentAction
        assert SegmentAction.Feedback.STAGE_RELEVANT == 2
        import r2s_ros.lifecycle_node, r2s_ros.launch_args
        result = SegmentationResult(relevant=[RelevantElement(name="bed")])
        print(r2s_ros.__file__)
        print(r2s_model.__file__)
        print(Segment.Response(result=result).result.relevant[0].name)
        print(DEFAULT_CHECKPOINT)
        """
    )
    imported = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    ros_file, model_file, name, shipped = imported.stdout.split()
    assert ros_file.startswith(str(install)), ros_file
    assert model_file.startswith(str(install)), model_file
    assert name == "bed"
    # The shipped model is installed with the package and found there.
    assert shipped.startswith(str(install)), shipped
    assert (Path(shipped) / "model.safetensors").is_file()
    assert (Path(shipped) / "config.json").is_file()
    assert (install / "share" / "r2s_ros" / "package.xml").is_file()
    assert (install / "share" / "r2s_ros" / "config" / "r2s.yaml").is_file()
    assert (install / "share" / "r2s_ros" / "launch" / "r2s.launch.py").is_file()
    for executable in ("r2s_node", "r2s_lifecycle_node"):
        assert os.access(install / "lib" / "r2s_ros" / executable, os.X_OK)
