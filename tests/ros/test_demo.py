"""`make demo` end to end (r2s-demo): bag, node process, live replay, summary, node stopped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from r2s_model.checkpoint import save_checkpoint
from tests.model.tiny import tiny_model


def test_demo_replays_a_bag_to_the_node_and_stops_it(tmp_path: Path) -> None:
    checkpoint = save_checkpoint(tiny_model(seed=3), tmp_path / "tiny")
    work = tmp_path / "demo"
    command = [sys.executable, "-m", "r2s_ros.bags.demo", "--checkpoint", str(checkpoint)]
    command += ["--frames", "4", "--instructions", "2", "--speed", "4", "--work", str(work)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    report = json.loads((work / "report.json").read_text())
    assert report["num_instructions"] == 2
    assert all(entry["status"] in {"ok", "no_target"} for entry in report["instructions"])
    summary = finished.stdout
    assert "R2S replay (live)" in summary and "mIoU" in summary and "latency p50" in summary
    assert report["renders"][0] in summary.replace("\n", "")  # rich may fold a long path
    assert "node stopped (exit code 0)" in finished.stdout
