"""r2s-segment end to end: a scan file or bag in, one PLY, PNG and JSON per instruction out
(tiny random model; the shipped one where marked slow); bad input exits 2 writing nothing."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from matplotlib.figure import Figure
from plyfile import PlyData, PlyElement

from r2s_ros.segment.checks import up_rotation
from r2s_ros.segment.cli import main
from tests.segment.conftest import Scan
from tests.segment.test_readers import ply_vertices, write_rosbags_bag

RGB = ("red", "green", "blue")


@pytest.fixture(scope="module")
def room_ply(room_scan: Scan, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The room written by plyfile."""
    path = tmp_path_factory.mktemp("scan") / "room.ply"
    return write_ply(path, room_scan.points, room_scan.colors)


def answers(out: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(out.glob("*.json"))]


def test_every_instruction_gets_a_target_ply_a_render_and_a_result(
    room_ply: Path, room_scan: Scan, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    instructions = ["the chair nearest the window", "something to sit on / near the bed"]
    argv = [str(room_ply), *instructions, "--out", str(out), "--checkpoint", str(tiny_checkpoint)]
    assert main([*argv, "--device", "cpu"]) == 0
    stems = ["001_the_chair_nearest_the_window", "002_something_to_sit_on_near_the_bed"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}.{kind}" for stem in stems for kind in ("json", "ply", "png")
    )
    first, second = answers(out)
    assert [first["instruction"], second["instruction"]] == instructions
    for result, stem in zip((first, second), stems, strict=True):
        assert result["status"] in {"ok", "no_target"}
        assert result["input"] == {"source": str(room_ply), "format": "PLY",
                                   "points": len(room_scan.points), "colours": True}  # fmt: skip
        assert result["model_frame"] == {"scale": 1.0, "up": "z", "offset_m": [0.0, 0.0, 0.0]}
        assert set(result["timings_ms"]) >= {"read", "superpoints", "encode", "stage1", "stage2"}
        target = PlyData.read(result["files"]["ply"])["vertex"]
        assert target.count == result["target"]["points"]
        assert (result["target"]["box"] is None) == (target.count == 0)
        for element in result["relevant"]:
            assert element["points"] > 0 and len(element["box"]["centroid"]) == 3
        image = matplotlib.image.imread(out / f"{stem}.png")
        assert image.shape[0] > 400 and image.shape[1] > 800
    assert (first["scene_encoding_reused"], second["scene_encoding_reused"]) == (False, True)
    printed = capsys.readouterr().out
    assert f"{room_ply}: PLY, {len(room_scan.points)} points, with colour" in printed
    assert "[2] 'something to sit on / near the bed': " in printed
    assert str(out / f"{stems[1]}.png") in printed


def test_interactive_answers_lines_from_the_terminal_on_a_bag(
    small_scan: Scan, tiny_checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    write_rosbags_bag(tmp_path / "robot", [("camera", small_scan.points)])
    monkeypatch.setattr(sys, "stdin", io.StringIO("the orange box\nthe largest thing\n"))
    out = tmp_path / "out"
    argv = [str(tmp_path / "robot"), "first", "--interactive", "--topic", "/camera/points"]
    argv += ["--out", str(out), "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    assert main(argv) == 0
    results = answers(out)
    assert [r["instruction"] for r in results] == ["first", "the orange box", "the largest thing"]
    assert results[0]["input"]["format"] == "rosbag2 /camera/points"


def write_ply(path: Path, points: np.ndarray, colors: np.ndarray) -> Path:
    PlyData([PlyElement.describe(ply_vertices(Scan(points, colors), RGB), "vertex")]).write(
        str(path)
    )
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("garbage", r"room.ply: not a readable PLY file \(PlyHeaderParseError: .*expected 'ply'"),
        ("millimetres", r"room.ply: the cloud spans .*looks like millimetres: pass --scale 0.001"),
        ("y-up", r"room.ply: its up axis looks like y, not z: .* Pass --up y to turn it z-up"),
        ("checkpoint", r"checkpoint folder nowhere does not exist"),
    ],
)
def test_unusable_input_exits_2_naming_the_problem_and_writes_nothing(
    room_scan: Scan, tmp_path: Path, capsys, case: str, message: str
) -> None:
    path, extra = tmp_path / "room.ply", []
    if case == "garbage":
        path.write_bytes(b"PLY?\n")
    else:
        scale = 1000.0 if case == "millimetres" else 1.0
        rotation = up_rotation("y") if case == "y-up" else np.eye(3)
        write_ply(path, scale * room_scan.points @ rotation, room_scan.colors)
        extra = ["--checkpoint", "nowhere"] if case == "checkpoint" else []
    out = tmp_path / "out"
    assert main([str(path), "a chair", "--out", str(out), *extra]) == 2
    error = capsys.readouterr().err
    assert error.startswith("r2s-segment: ") and error.count("\n") == 1
    assert re.search(message, error), error
    assert not out.exists()


def test_a_failing_write_leaves_none_of_the_answers_files(
    room_ply: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    def full_disk(self: Figure, *args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    out = tmp_path / "out"
    argv = [str(room_ply), "a chair", "--out", str(out), "--checkpoint", str(tiny_checkpoint)]
    with pytest.raises(OSError, match="No space left"):
        main([*argv, "--device", "cpu"])
    assert list(out.iterdir()) == []


def test_the_console_script_reports_a_missing_file_with_exit_code_2(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("r2s-segment")
    run = subprocess.run(
        [str(script), str(tmp_path / "scan.pcd"), "a chair"], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert run.stderr == f"r2s-segment: {tmp_path / 'scan.pcd'}: no such file\n"


def test_arguments_that_cannot_work_are_usage_errors(room_ply: Path, capsys) -> None:
    for argv, message in (
        ([str(room_ply)], "give at least one instruction, or --interactive"),
        ([str(room_ply), "x", "--scale", "0"], "--scale must be > 0, got 0.0"),
        ([str(room_ply), "x", "--up", "w"], "argument --up: invalid choice: 'w'"),
    ):
        with pytest.raises(SystemExit) as exit_code:
            main(argv)
        assert exit_code.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_the_shipped_model_answers_on_a_generated_room(room_ply: Path, tmp_path: Path) -> None:
    assert main([str(room_ply), "the chair nearest the window", "--out", str(tmp_path)]) == 0
    (result,) = answers(tmp_path)
    assert result["status"] in {"ok", "no_target"} and result["answer"]
    assert np.isfinite(result["score"])
