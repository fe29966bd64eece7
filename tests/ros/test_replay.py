"""r2s-replay on real rosbag2 files from r2s-make-bag, with a tiny random checkpoint: offline
(deterministic, MCAP and sqlite3 alike), bad bags, and live against the node in its own process
over real DDS (the module's last tests, which share one node)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from scipy.spatial import cKDTree
from sensor_msgs.msg import PointCloud2

from r2s_model.checkpoint import save_checkpoint
from r2s_ros.bags import contract
from r2s_ros.bags.make_bag import BagSettings, make_bag
from r2s_ros.bags.messages import instruction_message
from r2s_ros.bags.reader import BagTopics, ReplayBag
from r2s_ros.bags.replay import load_ground_truth, main, scenes_at
from r2s_ros.bags.scoring import GroundTruthScorer
from r2s_ros.ingest import IngestSettings
from r2s_ros.params import NodeParameters
from r2s_ros.pointcloud import decode_cloud
from tests.model.tiny import tiny_model
from tests.ros.conftest import running_node

FRAMES, INSTRUCTIONS = 6, 3
MODEL_STATUSES = {"ok", "no_target"}
METRICS = ("miou", "acc25", "acc50", "no_target_acc", "relevant_recall", "per_category")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tiny_model(seed=3), tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def params_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's voxel size, as the node test uses it too."""
    path = tmp_path_factory.mktemp("params") / "r2s.yaml"
    path.write_text("r2s:\n  ros__parameters:\n    voxel_size: 0.05\n")
    return path


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same scan of room 0 stored both ways."""
    folder = tmp_path_factory.mktemp("bags")
    return {
        storage: make_bag(
            folder / storage,
            BagSettings(seed=0, frames=FRAMES, instructions=INSTRUCTIONS, storage=storage),
            progress=False,
        ).path
        for storage in contract.STORAGES
    }


def offline(bag: Path, out: Path, checkpoint: Path, params_file: Path, *extra: str) -> int:
    arguments = ["--checkpoint", str(checkpoint), "--device", "cpu"]
    return main(
        [str(bag), "--out", str(out), *arguments, "--params-file", str(params_file), *extra]
    )


def outcome_of(report: dict) -> dict:
    """What must not change between runs: metrics and each instruction's answer (no timings)."""
    instructions = [
        {key: entry[key] for key in ("text", "status", "answer", "iou", "predicted_points")}
        | {"scene_points": entry["scene_points"], "relevant": entry["relevant"]}
        for entry in report["instructions"]
    ]
    return {key: report[key] for key in METRICS} | {"instructions": instructions}


def test_bag_messages_come_in_bag_time_order_poses_first(bags: dict[str, Path]) -> None:
    for bag in bags.values():
        messages = list(ReplayBag(bag).messages())
        stamps = [message.stamp_ns for message in messages]
        assert stamps == sorted(stamps)
        roles = [message.role for message in messages]
        scans = ["tf", "odometry", "points"] * FRAMES
        assert roles == ["tf_static", *scans] + ["instruction"] * INSTRUCTIONS


def test_bag_clouds_decode_as_the_same_clouds_over_ros(bags: dict[str, Path]) -> None:
    cloud = next(m for m in ReplayBag(bags["mcap"]).messages() if m.role == "points")
    from_bag = decode_cloud(cloud.message)  # rosbags' message: data is a numpy array
    over_ros = decode_cloud(deserialize_message(cloud.raw, PointCloud2))
    assert from_bag.points.tobytes() == over_ros.points.tobytes()
    assert from_bag.colors.tobytes() == over_ros.colors.tobytes()


def test_perfect_answers_score_almost_one_on_a_scanned_room(bags: dict[str, Path]) -> None:
    """The scoring's own ceiling: predicting exactly the scene voxels whose nearest ground-truth
    point is a target point, at the node's default voxel size, misses IoU 1 only by the voxels
    that straddle an object's boundary."""
    bag = ReplayBag(bags["mcap"])
    truth = load_ground_truth(bag)
    settings = IngestSettings.from_parameters(NodeParameters())
    scenes = scenes_at(bag, settings, [record["stamp_ns"] for record in truth.records])
    scorer = GroundTruthScorer(truth.scene, settings.accumulator.voxel_size)
    for record, scene in zip(truth.records, scenes, strict=True):
        _, nearest = cKDTree(truth.scene.points).query(scene.points)
        perfect = scene.points[np.isin(truth.scene.instance[nearest], record["target_ids"])]
        assert scorer.score(record, scene, perfect).result.iou > 0.98


def test_the_offline_replay_takes_the_params_files_score_threshold(
    bags: dict[str, Path], checkpoint: Path, tmp_path: Path
) -> None:
    """As the node does: a threshold no target reaches answers every instruction "no target"."""
    params = tmp_path / "r2s.yaml"
    params.write_text(
        "r2s:\n  ros__parameters:\n    voxel_size: 0.05\n    score_threshold: 0.9999\n"
    )
    out = tmp_path / "report.json"
    assert offline(bags["mcap"], out, checkpoint, params) == 0
    assert json.loads(out.read_text())["statuses"] == {"no_target": INSTRUCTIONS}


def test_offline_replay_is_deterministic_and_storage_independent(
    bags: dict[str, Path], checkpoint: Path, params_file: Path, tmp_path: Path
) -> None:
    runs = [("first", "mcap"), ("again", "mcap"), ("sqlite", "sqlite3")]
    reports = {}
    for name, storage in runs:
        out = tmp_path / name / "report.json"
        assert offline(bags[storage], out, checkpoint, params_file) == 0
        reports[name] = json.loads(out.read_text())
    first = outcome_of(reports["first"])
    assert outcome_of(reports["again"]) == first
    assert outcome_of(reports["sqlite"]) == first

    report = reports["first"]
    _, records = contract.read_ground_truth(bags["mcap"])
    assert report["num_instructions"] == report["num_samples"] == len(records) == INSTRUCTIONS
    assert report["inputs"] == {"clouds_received": FRAMES, "clouds_accepted": FRAMES}
    assert set(report["latency_ms"]) == {"p50", "p95"}
    for entry, record in zip(report["instructions"], records, strict=True):
        assert entry["text"] == record["question"]
        assert entry["status"] in MODEL_STATUSES
        assert 0.0 <= entry["iou"] <= 1.0
        assert entry["observed_target_points"] > 0  # the scan saw every target
        assert Path(entry["render"]).is_file()
    markdown = (tmp_path / "first" / "report.md").read_text()
    assert all(record["question"] in markdown for record in records)
    assert report["instructions"][1]["scene_encoding_reused"]  # same scene, encoded once


def write_bag(path: Path, topics: list[str]) -> Path:
    """A bag with one std_msgs/String on each topic."""
    store = contract.typestore()
    hello = store.serialize_cdr(instruction_message("hello"), contract.INSTRUCTION_TYPE)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic in topics:
            connection = writer.add_connection(topic, contract.INSTRUCTION_TYPE, typestore=store)
            writer.write(connection, contract.START_NS, hello)
    return path


def bad_bag(kind: str, bags: dict[str, Path], folder: Path) -> Path:
    """A bag (or not) that the replay must refuse, by `kind`."""
    if kind == "missing_topic":
        return write_bag(folder / "bag", ["/instruction"])
    if kind == "wrong_type":
        return write_bag(folder / "bag", ["/points", "/odom", "/instruction"])
    if kind == "not_a_bag":
        (folder / "notes.txt").write_text("not a bag")
        return folder
    storage_kind = "sqlite3" if kind.endswith("sqlite3") else "mcap"
    bag = Path(shutil.copytree(bags[storage_kind], folder / "bag"))
    storage = next(path for path in bag.iterdir() if path.suffix in (".mcap", ".db3"))
    data = bytearray(storage.read_bytes())
    if kind == "truncated":  # as another recorder would leave it: no checksums to compare
        storage.write_bytes(data[: len(data) // 2])
        (bag / contract.CHECKSUMS_FILE).unlink()
    elif kind.startswith("corrupt_chunk"):  # bytes that still parse: inside a cloud's data
        middle = len(data) // 2
        data[middle : middle + 4096] = np.random.default_rng(0).bytes(4096)
        storage.write_bytes(data)
    elif kind == "lost_messages":  # the storage holds fewer messages than its metadata lists
        metadata = (bag / "metadata.yaml").read_text()
        points = f"- message_count: {FRAMES}\n    topic_metadata:\n      name: /points"
        assert points in metadata
        (bag / "metadata.yaml").write_text(metadata.replace(points, points.replace("6", "7")))
    elif kind == "bad_ground_truth":
        (bag / contract.RECORDS_FILE).write_text("{not json\n")
    return bag


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing_topic", "no topic /points for the points (available: /instruction (std_msgs"),
        ("wrong_type", "topic /points has type std_msgs/msg/String, but the points must be"),
        ("truncated", "truncated or corrupt"),
        ("corrupt_chunk_mcap", "corrupt storage: mcap.mcap no longer matches the SHA-256"),
        ("corrupt_chunk_sqlite3", "corrupt storage: sqlite3.db3 no longer matches the SHA-256"),
        ("lost_messages", "6 of the 7 messages on /points its metadata lists could be read"),
        ("not_a_bag", "is not a rosbag2 folder: it has no metadata.yaml"),
        ("bad_ground_truth", "unusable ground truth"),
    ],
)
def test_bad_bag_gets_a_clear_error_and_no_report(
    kind: str,
    message: str,
    bags: dict[str, Path],
    checkpoint: Path,
    params_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    bag = bad_bag(kind, bags, source)
    out = tmp_path / "out" / "report.json"
    assert offline(bag, out, checkpoint, params_file) == 2
    error = capsys.readouterr().err
    assert message in error
    assert str(bag) in error
    assert not (tmp_path / "out").exists()


def test_live_without_a_node_says_so(
    bags: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    arguments = ["--live", "--node-name", "nobody", "--wait-for-node", "1"]
    assert main([str(bags["mcap"]), "--out", str(out), *arguments]) == 2
    assert "no node /nobody" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def node_process(checkpoint: Path) -> Iterator[subprocess.Popen]:
    """Placing clouds by the bag's /tf, on the bag's time (the replay's --clock). Reliable
    clouds: every cloud arrives, so the rebuilt scene must equal the node's."""
    with running_node(checkpoint, "pose_source:=tf", "use_sim_time:=true") as process:
        yield process


def test_live_replay_answers_every_instruction(
    node_process: subprocess.Popen, bags: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "live" / "report.json"
    arguments = ["--live", "--clock", "--speed", "4", "--wait-for-node", "120"]
    assert main([str(bags["mcap"]), "--out", str(out), *arguments]) == 0, node_process.poll()
    report = json.loads(out.read_text())
    assert report["mode"] == "live"
    assert report["num_instructions"] == INSTRUCTIONS
    published = {"points": FRAMES, "tf": FRAMES, "odometry": FRAMES, "instruction": 3}
    assert report["inputs"]["published"] == published | {"tf_static": 1}
    assert report["inputs"]["node"]["clouds_accepted"] == FRAMES, report["inputs"]
    assert report["unmatched_results"] == 0
    for entry in report["instructions"]:
        assert entry["status"] in MODEL_STATUSES, entry["error"]
        assert entry["instruction_id"].startswith("topic-")
        assert entry["latency_ms"] >= entry["node_total_ms"] > 0
        # The replay rebuilt the scene the node answered on with the node's own intake.
        assert entry["scene_points"] == entry["node_scene_points"]
        assert 0.0 <= entry["iou"] <= 1.0
    assert (tmp_path / "live" / "report.md").is_file()

    recorded = Path(report["recorded_bag"])
    with AnyReader([recorded]) as reader:
        counts = {topic: info.msgcount for topic, info in reader.topics.items()}
        results, diagnostics = (
            [
                reader.deserialize(raw, connection.msgtype)
                for connection, _, raw in reader.messages()
                if connection.topic == topic
            ]
            for topic in ("/r2s/result", "/diagnostics")
        )
    assert counts["/r2s/result"] == counts["/instruction"] == INSTRUCTIONS
    assert counts["/r2s/target_cloud"] == counts["/r2s/relevant_markers"] == INSTRUCTIONS
    assert counts["/diagnostics"] > 0
    # The node ran on the bag's time (use_sim_time, /clock from the replay), not the wall's.
    bag_end_s = contract.START_NS / 1e9 + 60
    late = [d for d in diagnostics[1:] if d.header.stamp.sec > bag_end_s]
    assert diagnostics[-1].header.stamp.sec >= contract.START_NS // 10**9 and not late
    assert [r.instruction for r in results] == [e["text"] for e in report["instructions"]]
    # Our reader reads it too (the target clouds in the role of points).
    outputs = BagTopics(points="/r2s/target_cloud", odometry="", instruction="/instruction")
    assert sum(1 for _ in ReplayBag(recorded, outputs).messages()) == 2 * INSTRUCTIONS


def test_live_replay_accounts_for_instructions_left_unanswered(
    node_process: subprocess.Popen, bags: dict[str, Path], tmp_path: Path
) -> None:
    """Everything published within milliseconds and no patience: the first answer alone takes
    longer (it encodes the scene), so some instructions time out, and all are reported."""
    out = tmp_path / "report.json"
    arguments = ["--live", "--clock", "--speed", "1000", "--timeout", "0.01"]
    arguments += ["--wait-for-node", "120"]
    assert main([str(bags["mcap"]), "--out", str(out), *arguments]) == 0
    entries = json.loads(out.read_text())["instructions"]
    assert len(entries) == INSTRUCTIONS
    timed_out = [entry for entry in entries if entry["status"] == "timeout"]
    assert timed_out
    assert all(entry["error"].startswith("no result within") for entry in timed_out)
    assert all(entry["iou"] == 0.0 for entry in timed_out)
