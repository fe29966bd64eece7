"""The simulated depth camera (r2s_model/synthetic/scan_sim.py): occlusion, range, noise, poses."""

from __future__ import annotations

import numpy as np

from r2s_model.data.io import color_bytes
from r2s_model.synthetic.rooms import generate_room
from r2s_model.synthetic.scan_sim import (
    SensorModel,
    look_rotation,
    obstacle_boxes,
    orbit_trajectory,
    scan,
    scan_trajectory,
    visible,
)

NOISELESS = SensorModel(noise_m=0.0, noise_quadratic=0.0)


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
        back = frame.points.astype(np.float64) @ frame.rotation.T + frame.translation
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


def test_only_furniture_taller_than_the_sensor_can_pass_over_is_an_obstacle() -> None:
    box_min = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [2.0, 2.0, 0.5]])
    box_max = np.array([[0.5, 0.5, 0.8], [1.5, 1.5, 1.9], [2.5, 2.5, 1.2]])
    boxes = obstacle_boxes(box_min, box_max, height_m=1.5)  # reach: 1.1 m
    assert boxes.shape == (2, 2, 3)
    np.testing.assert_array_equal(boxes[:, 0], box_min[1:])
    np.testing.assert_array_equal(boxes[:, 1], box_max[1:])
    assert obstacle_boxes(box_min, box_max, height_m=2.5).shape == (0, 2, 3)
