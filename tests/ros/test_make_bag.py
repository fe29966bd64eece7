"""The scan bags of r2s-make-bag (docs/bag_format.md), read back with rosbags as the replay
reads them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from scipy.spatial import cKDTree

from r2s_model.data.io import color_bytes
from r2s_model.synthetic.checker import check_sample, object_geometry
from r2s_model.synthetic.generate import checked_records, room_scene
from r2s_model.synthetic.rooms import generate_room
from r2s_ros.bags import contract
from r2s_ros.bags import make_bag as make_bag_module
from r2s_ros.bags.contract import GroundTruthError, read_ground_truth
from r2s_ros.bags.make_bag import BagSettings, main, make_bag
from r2s_ros.pointcloud import decode_cloud
from r2s_ros.poses import pose_from_odometry, stamp_seconds, transform_points
from r2s_ros.transforms import TransformBuffer

SMALL_BAG = BagSettings(seed=3, frames=6, instructions=3, points_per_m2=500.0)


def read_bag(path: Path) -> list[tuple[str, str, int, object]]:
    """(topic, msgtype, bag time, deserialised message) of every message, in bag order."""
    store = contract.typestore()
    with Reader(path) as reader:
        return [
            (c.topic, c.msgtype, t, store.deserialize_cdr(data, c.msgtype))
            for c, t, data in reader.messages()
        ]


def stamp_ns(message: object) -> int:
    return message.header.stamp.sec * 10**9 + message.header.stamp.nanosec


# -- the bag --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bags") / "room3"
    summary = make_bag(out, SMALL_BAG, progress=False)
    assert summary.path == out and summary.frames == 6
    return out


def test_the_bag_holds_the_contracted_topics_types_and_counts(small_bag: Path) -> None:
    _, records = read_ground_truth(small_bag)
    messages = read_bag(small_bag)
    types = {topic: kind for topic, kind, _, _ in messages}
    assert types == {
        "/tf_static": "tf2_msgs/msg/TFMessage",
        "/tf": "tf2_msgs/msg/TFMessage",
        "/odom": "nav_msgs/msg/Odometry",
        "/points": "sensor_msgs/msg/PointCloud2",
        "/instruction": "std_msgs/msg/String",
    }
    topics = [topic for topic, _, _, _ in messages]
    assert topics.count("/tf") == topics.count("/odom") == topics.count("/points") == 6
    assert topics.count("/tf_static") == 1
    assert topics.count("/instruction") == len(records) == 3
    assert sorted(p.name for p in small_bag.iterdir()) == [
        "metadata.yaml",
        "r2s_ground_truth.jsonl",
        "r2s_ground_truth.npz",
        "r2s_storage.sha256",
        "room3.mcap",
    ]


def test_messages_are_in_time_order_with_each_pose_just_before_its_cloud(small_bag: Path) -> None:
    messages = read_bag(small_bag)
    times = [t for _, _, t, _ in messages]
    assert times == sorted(times)
    static_topic, _, static_time, static = messages[0]
    assert (static_topic, static_time) == ("/tf_static", contract.START_NS)
    assert [(t.header.frame_id, t.child_frame_id) for t in static.transforms] == [
        ("base_link", "sensor")
    ]
    scans = [m for m in messages[1:] if m[0] != "/instruction"]
    period_ns = round(1e9 / SMALL_BAG.rate_hz)
    for i in range(6):
        topics, _, bag_times, (tf, odom, cloud) = zip(*scans[3 * i : 3 * i + 3], strict=True)
        assert topics == ("/tf", "/odom", "/points")
        expected = contract.START_NS + i * period_ns
        assert bag_times == (expected,) * 3
        assert stamp_ns(tf.transforms[0]) == stamp_ns(odom) == stamp_ns(cloud) == expected
        (link,) = tf.transforms
        assert (link.header.frame_id, link.child_frame_id) == ("map", "base_link")
        assert (odom.header.frame_id, odom.child_frame_id) == ("map", "sensor")
        assert cloud.header.frame_id == "sensor"
        at = messages.index(scans[3 * i])
        assert messages[at : at + 3] == scans[3 * i : 3 * i + 3]

    _, records = read_ground_truth(small_bag)
    instructions = [(t, m.data) for topic, _, t, m in messages if topic == "/instruction"]
    last_scan = contract.START_NS + 5 * period_ns
    assert [t for t, _ in instructions] == [last_scan + k * 10**9 for k in (1, 2, 3)]
    assert instructions == [(r["stamp_ns"], r["question"]) for r in records]
    assert all(r["topic"] == "/instruction" for r in records)


def test_clouds_decode_and_land_on_the_room_through_their_poses(small_bag: Path) -> None:
    scene, _ = read_ground_truth(small_bag)
    tree = cKDTree(scene.points)
    messages = read_bag(small_bag)
    transforms = TransformBuffer()
    transforms.add_message(messages[0][3], static=True)
    scans = [m[3] for m in messages[1:] if m[0] != "/instruction"]
    for tf, odom, cloud in zip(scans[::3], scans[1::3], scans[2::3], strict=True):
        assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [
            ("x", 0, 7),
            ("y", 4, 7),
            ("z", 8, 7),
            ("rgb", 12, 7),
        ]
        decoded = decode_cloud(cloud)
        assert decoded.num_input == cloud.width > 1000 and decoded.num_nonfinite == 0
        pose = pose_from_odometry(odom)
        assert stamp_seconds(cloud.header.stamp) == pose.stamp_s
        # /tf_static and /tf compose to the very pose /odom gives the sensor.
        transforms.add_message(tf, static=False)
        through_tf = transforms.lookup("map", "sensor", pose.stamp_s)
        np.testing.assert_allclose(through_tf.translation, pose.translation, atol=1e-9)
        np.testing.assert_allclose(through_tf.rotation, pose.rotation, atol=1e-9)
        in_map = transform_points(decoded.points, pose)
        distance, nearest = tree.query(in_map)
        # Range noise (2 mm + 1 mm/m^2 r^2) plus the gap to the nearest ground-truth point.
        assert np.median(distance) < 0.015 and np.percentile(distance, 99) < 0.06
        same_color = (decoded.colors == color_bytes(scene.colors[nearest])).all(axis=1)
        assert same_color.mean() > 0.6  # the nearest point is often a neighbour of another color


def test_the_ground_truth_round_trips_and_passes_the_checker(small_bag: Path) -> None:
    scene, records = read_ground_truth(small_bag)
    room = generate_room(SMALL_BAG.seed, points_per_m2=SMALL_BAG.points_per_m2)
    expected = room_scene(room, "bag_seed3")
    assert scene.scene_id == "bag_seed3"
    np.testing.assert_array_equal(scene.points, expected.points)
    np.testing.assert_array_equal(scene.instance, expected.instance)
    np.testing.assert_array_equal(scene.superpoints, expected.superpoints)
    assert scene.object_categories == expected.object_categories
    generated, _ = checked_records(room, expected, SMALL_BAG.seed, SMALL_BAG.instructions)
    assert [{k: r[k] for k in generated[0]} for r in records] == json.loads(json.dumps(generated))
    geometry = object_geometry(scene.points, scene.instance)
    for record in records:
        assert check_sample(record, geometry, scene.category_of(), scene.color_of()).ok


def test_the_same_settings_give_the_same_bag_bytes(small_bag: Path, tmp_path: Path) -> None:
    again = make_bag(tmp_path / "room3", SMALL_BAG, progress=False).path
    for name in ("room3.mcap", "r2s_ground_truth.jsonl", "metadata.yaml", "r2s_storage.sha256"):
        assert (again / name).read_bytes() == (small_bag / name).read_bytes(), name


def test_sqlite3_storage_and_interleaved_instructions(tmp_path: Path) -> None:
    settings = BagSettings(
        seed=5, frames=4, instructions=2, points_per_m2=300.0, storage="sqlite3", interleave=True
    )
    bag = make_bag(tmp_path / "lite", settings, progress=False).path
    assert (bag / "lite.db3").is_file() and not list(bag.glob("*.mcap"))
    messages = read_bag(bag)
    # Instructions at 1/3 and 2/3 of the 3 frame periods: on the stamps of scans 1 and 2, each
    # stored after that scan's pose and cloud.
    scan = ["/tf", "/odom", "/points"]
    assert [topic for topic, _, _, _ in messages] == (
        ["/tf_static", *scan, *scan, "/instruction", *scan, "/instruction", *scan]
    )
    times = [t for _, _, t, _ in messages]
    period_ns = round(1e9 / settings.rate_hz)
    frames = (0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3)
    assert times == [contract.START_NS + period_ns * n for n in frames]
    _, records = read_ground_truth(bag)
    assert [r["stamp_ns"] for r in records] == [times[7], times[11]]


# -- the CLI and atomic writing ----------------------------------------------------------------


def tree_state(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))}


def test_cli_refuses_an_existing_out_and_bad_arguments(
    small_bag: Path, capsys: pytest.CaptureFixture
) -> None:
    before = tree_state(small_bag.parent)
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(small_bag), "--seed", "1"])
    assert exit_info.value.code == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert tree_state(small_bag.parent) == before

    out = str(small_bag.parent / "never")
    for bad in (["--frames", "0"], ["--storage", "rosbag1"], ["--seed", "-1"], ["--rate-hz", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["--out", out, "--seed", "1", *bad])
        assert exit_info.value.code == 2, bad
    with pytest.raises(SystemExit):
        main(["--out", out])  # no --seed
    assert tree_state(small_bag.parent) == before


def test_cli_writes_and_overwrites_a_bag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    args = ["--out", str(out), "--seed", "5", "--frames", "2", "--instructions", "1"]
    main([*args, "--points-per-m2", "300", "--overwrite"])
    assert "2 scans" in capsys.readouterr().out
    assert not (out / "stale.txt").exists() and (out / "cli.mcap").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli"]  # no staging left


def test_a_failure_mid_write_leaves_nothing_behind(
    small_bag: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def failing_cloud(*args: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return original(*args)

    original = make_bag_module.cloud_message
    monkeypatch.setattr(make_bag_module, "cloud_message", failing_cloud)
    with pytest.raises(RuntimeError, match="disk on fire"):
        make_bag(tmp_path / "new", SMALL_BAG, progress=False)
    assert list(tmp_path.iterdir()) == []

    # Over an existing bag, with --overwrite: the old bag stays as it was.
    before = tree_state(small_bag.parent)
    calls.clear()
    with pytest.raises(RuntimeError, match="disk on fire"):
        make_bag(small_bag, SMALL_BAG, overwrite=True, progress=False)
    assert tree_state(small_bag.parent) == before


def test_make_bag_refuses_an_existing_out_without_overwrite(small_bag: Path) -> None:
    with pytest.raises(FileExistsError, match="--overwrite"):
        make_bag(small_bag, SMALL_BAG, progress=False)


def test_writing_and_reading_bags_needs_no_ros_install() -> None:
    """The bag tools run where only rosbags is installed: none of them imports rclpy or the ROS
    message packages (checked in a fresh interpreter; this one has them loaded)."""
    code = (
        "import sys, r2s_ros.bags.make_bag, r2s_ros.bags.contract, r2s_ros.pointcloud\n"
        "ros = {'rclpy', 'sensor_msgs', 'std_msgs', 'nav_msgs', 'builtin_interfaces'}\n"
        "print(sorted(ros & {name.split('.')[0] for name in sys.modules}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- the ground-truth sidecar --------------------------------------------------------------------


def copy_bag(bag: Path, to: Path) -> Path:
    to.mkdir()
    for path in bag.iterdir():
        (to / path.name).write_bytes(path.read_bytes())
    return to


def test_a_missing_or_corrupt_sidecar_is_a_clear_error(small_bag: Path, tmp_path: Path) -> None:
    bag = copy_bag(small_bag, tmp_path / "bag")
    lines = (bag / contract.RECORDS_FILE).read_text().splitlines()

    record = json.loads(lines[0])
    del record["stamp_ns"]
    (bag / contract.RECORDS_FILE).write_text("\n".join([json.dumps(record), *lines[1:]]))
    with pytest.raises(GroundTruthError, match=r"jsonl:1: stamp_ns"):
        read_ground_truth(bag)

    record = json.loads(lines[1]) | {"target_ids": [999]}
    (bag / contract.RECORDS_FILE).write_text("\n".join([lines[0], json.dumps(record)]))
    with pytest.raises(GroundTruthError, match=r"jsonl:2: ids \[999\]"):
        read_ground_truth(bag)

    (bag / contract.RECORDS_FILE).write_text(lines[0] + "\n{not json\n")
    with pytest.raises(GroundTruthError, match=r"jsonl:2: not JSON"):
        read_ground_truth(bag)

    (bag / contract.SCENE_FILE).write_bytes(b"not a zip")
    with pytest.raises(GroundTruthError, match="unreadable scene file"):
        read_ground_truth(bag)

    (bag / contract.SCENE_FILE).unlink()
    with pytest.raises(GroundTruthError, match=r"r2s_ground_truth\.npz: missing"):
        read_ground_truth(bag)
