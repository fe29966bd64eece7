"""Simulated scans (r2s_ros/bags/scan_sim.py) and the scan bags of r2s-make-bag
(docs/bag_format.md), read back with rosbags as the replay reads them."""

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
from r2s_ros.bags.scan_sim import (
    SensorModel,
    look_rotation,
    orbit_trajectory,
    scan,
    scan_trajectory,
    visible,
)
from r2s_ros.pointcloud import decode_cloud
from r2s_ros.poses import Pose, pose_from_odometry, stamp_seconds, transform_points
from r2s_ros.transforms import TransformBuffer

NOISELESS = SensorModel(noise_m=0.0, noise_quadratic=0.0)
SMALL_BAG = BagSettings(seed=3, frames=6, instructions=3, points_per_m2=500.0)


def grid(xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
    """(N, 3) float32 points of the grid xs * ys * zs."""
    return np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), axis=-1).reshape(-1, 3).astype("f4")


def square(centre: float, half: float) -> np.ndarray:
    return np.arange(centre - half, centre + half + 1e-6, 0.02)


def cube_faces(x: float, y: float, side: float) -> dict[str, np.ndarray]:
    """Faces of a cube at (x, y > 0, 0): front (-x) and side (-y), which a sensor at the origin
    faces, and back (+x), which they hide."""
    h = side / 2
    return {
        "front": grid(np.array([x - h]), square(y, h), square(0.0, h)),
        "side": grid(square(x, h), np.array([y - h]), square(0.0, h)),
        "back": grid(np.array([x + h]), square(y, h), square(0.0, h)),
    }


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


# -- the simulated sensor ------------------------------------------------------------------------


def test_a_near_wall_hides_the_box_behind_it_but_not_the_one_beside_it() -> None:
    wall = grid(np.array([2.0]), square(0.0, 1.0), square(0.0, 1.0))  # 2 m ahead, 2 m wide
    behind, beside = cube_faces(4.0, 0.0, 0.4), cube_faces(4.0, 3.0, 0.4)
    parts = [wall, behind["front"], behind["back"], beside["front"], beside["side"]]
    parts.append(beside["back"])
    points = np.concatenate(parts)
    owner = np.repeat(np.arange(len(parts)), [len(p) for p in parts])

    indices = visible(points, NOISELESS)
    seen = np.bincount(owner[indices], minlength=len(parts)) / np.bincount(owner)
    assert seen[0] > 0.99  # the wall
    assert seen[1] == 0 and seen[2] == 0  # the box behind it, both faces
    assert seen[3] > 0.95 and seen[4] > 0.9  # the box beside it: front and side seen,
    # and they hide its back but for the rim it shares with the side (within depth tolerance).
    back_seen = points[indices[owner[indices] == 5]]
    assert (back_seen[:, 1] <= 2.8 + 0.03).all() and seen[5] < 0.15

    # Without the wall the hidden box's front face is seen: the wall was what hid it.
    no_wall = owner[len(wall) :][visible(points[len(wall) :], NOISELESS)]
    assert (no_wall == 1).sum() > 0.95 * len(behind["front"])


def test_only_points_within_range_and_field_of_view_are_seen() -> None:
    rng = np.random.default_rng(0)
    sensor = SensorModel(min_range_m=0.5, max_range_m=3.0, splat_m=0.0, width=640, height=480)
    # Sparse points in distinct directions, so that hardly any hides another.
    directions = rng.normal(size=(2000, 3)) * [1.0, 0.6, 0.4]
    directions[:, 0] = np.abs(directions[:, 0])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    distance = rng.uniform(0.05, 6.0, len(directions))
    points = (directions * distance[:, None]).astype(np.float32)
    fx, fy = sensor.focal_px
    in_view = (np.abs(points[:, 1] / points[:, 0]) < sensor.width / 2 / fx) & (
        np.abs(points[:, 2] / points[:, 0]) < sensor.height / 2 / fy
    )
    in_range = (distance >= 0.5) & (distance <= 3.0)

    seen = visible(points, sensor)
    assert in_view[seen].all() and in_range[seen].all()
    assert len(seen) > 0.95 * (in_view & in_range).sum()


def test_range_noise_follows_the_ray_with_its_sigma_and_the_seed() -> None:
    wall = grid(np.array([2.0]), square(0.0, 1.0), square(0.0, 1.0))
    colors = np.zeros(wall.shape, np.uint8)
    sensor = SensorModel(noise_m=0.01, noise_quadratic=0.0)
    pose = (np.zeros(3), np.eye(3))

    def frame(seed: int):
        return scan(wall, colors, *pose, sensor, np.random.default_rng(seed))

    first, again, other = frame(1), frame(1), frame(2)
    np.testing.assert_array_equal(first.points, again.points)
    assert not np.array_equal(first.points, other.points)

    truth = wall[first.indices].astype(np.float64)
    radial = np.linalg.norm(first.points, axis=1) - np.linalg.norm(truth, axis=1)
    assert abs(radial.std() - 0.01) < 0.001 and abs(radial.mean()) < 0.001
    # Along the ray: the noisy point is parallel to the true one.
    sideways = np.linalg.norm(np.cross(first.points, truth), axis=1) / np.linalg.norm(truth, axis=1)
    assert sideways.max() < 1e-4


def test_frames_are_in_the_sensor_frame_of_their_pose_and_cover_the_room() -> None:
    room = generate_room(3, points_per_m2=500.0)
    translations, rotations = orbit_trajectory(room.size, 24, seed=3)
    sensor = SensorModel(splat_m=1.2 / np.sqrt(500.0), noise_m=0.0, noise_quadratic=0.0)
    colors = color_bytes(room.colors)
    frames = list(scan_trajectory(room.points, colors, translations, rotations, sensor, seed=3))

    seen = np.zeros(len(room.points), bool)
    for frame in frames:
        back = transform_points(frame.points, Pose(0.0, frame.translation, frame.rotation))
        np.testing.assert_allclose(back, room.points[frame.indices], atol=1e-4)
        np.testing.assert_array_equal(frame.colors, colors[frame.indices])
        # x forward: every point seen is ahead of the sensor, none beyond the range limit.
        assert (frame.points[:, 0] > 0).all()
        assert (np.linalg.norm(frame.points, axis=1) <= sensor.max_range_m + 1e-4).all()
        seen[frame.indices] = True
    # Most of the room; what is left is under desks, inside shelves, behind furniture.
    assert seen.mean() > 0.7
    counts = np.bincount(room.instance)[1:]  # instance ids start at 1
    per_object = np.bincount(room.instance[seen], minlength=len(counts) + 1)[1:] / counts
    assert per_object.min() > 0.2, per_object  # every object, at least in part


def test_the_trajectory_looks_at_the_room_from_inside_it_and_avoids_obstacles() -> None:
    size = (4.0, 5.0)
    translations, rotations = orbit_trajectory(size, 30, seed=1)
    assert ((translations[:, :2] > 0.5) & (translations[:, :2] < np.array(size) - 0.5)).all()
    assert np.allclose(translations[:, 2], 1.35, atol=0.05)
    np.testing.assert_allclose(
        rotations @ rotations.transpose(0, 2, 1), np.eye(3)[None].repeat(30, 0), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0)
    forward = rotations[:, :, 0]
    to_centre = np.array(size) / 2 - translations[:, :2]
    cosine = (forward[:, :2] * to_centre).sum(1) / np.linalg.norm(forward[:, :2], axis=1)
    cosine /= np.linalg.norm(to_centre, axis=1)
    assert (cosine > np.cos(np.radians(31))).all()  # yaw within +-30 degrees of the centre
    assert (forward[:, 2] < 0).all()  # looking down
    np.testing.assert_allclose(look_rotation(0.0, 0.0), np.eye(3), atol=1e-12)

    # A wardrobe on the default loop: the loop changes size to keep clear of it.
    first = translations[0, :2]
    box = np.array([[[first[0] - 0.3, first[1] - 0.3, 0.0], [first[0] + 0.3, first[1] + 0.3, 2.0]]])
    moved, _ = orbit_trajectory(size, 30, seed=1, obstacles=box)
    low, high = box[0, 0, :2] - 0.25, box[0, 1, :2] + 0.25
    assert not ((moved[:, :2] >= low) & (moved[:, :2] <= high)).all(axis=1).any()


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
