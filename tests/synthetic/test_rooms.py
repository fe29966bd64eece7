"""Procedural rooms: deterministic, labelled, physically plausible, scan-like and fast."""

from __future__ import annotations

import time
from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from r2s_model.synthetic.furniture import FURNITURE, STRUCTURE
from r2s_model.synthetic.parts import Part, Shape
from r2s_model.synthetic.rooms import CATEGORIES, Room, SceneObject, generate_room

SEEDS = range(8)
# Surfaces in contact (a cup on a table, a chair leg 3 cm from a table) may touch; anything
# deeper than this is interpenetration.
CONTACT_TOLERANCE = 0.005


@pytest.fixture(scope="module")
def rooms() -> list[Room]:
    return [generate_room(seed) for seed in SEEDS]


def _furniture(room: Room) -> list[SceneObject]:
    return [o for o in room.objects if o.category in FURNITURE]


def test_same_seed_same_room_and_different_seeds_differ(rooms: list[Room]) -> None:
    again = generate_room(SEEDS[1])
    for name in ("points", "colors", "instance", "semantic"):
        assert np.array_equal(getattr(again, name), getattr(rooms[1], name)), name
    assert [(o.category, o.color) for o in again.objects] == [
        (o.category, o.color) for o in rooms[1].objects
    ]
    assert len(rooms[0].points) != len(rooms[1].points)
    assert rooms[0].size != rooms[1].size


def test_categories_structure_first_and_at_least_15_object_categories(rooms: list[Room]) -> None:
    assert CATEGORIES[:4] == ("floor", "wall", "window", "door")
    required = {"chair", "stool", "table", "desk", "bed", "sofa", "cabinet", "shelf", "lamp"}
    required |= {"monitor", "tv", "plant", "trash_can", "box", "cup", "bottle"}
    assert required <= set(CATEGORIES)
    seen = {o.category for room in rooms for o in _furniture(room)}
    assert len(seen) >= 15, sorted(seen)


def test_labels_match_objects_and_every_object_has_points(rooms: list[Room]) -> None:
    for room in rooms:
        count = len(room.points)
        assert room.points.dtype == np.float32 and room.points.shape == (count, 3)
        assert room.colors.dtype == np.float32 and room.colors.shape == (count, 3)
        assert room.colors.min() >= 0.0 and room.colors.max() <= 1.0
        assert room.instance.dtype == np.int32 and room.semantic.dtype == np.int32
        ids = [o.instance_id for o in room.objects]
        assert len(set(ids)) == len(ids) and min(ids) >= 1
        category_of = np.zeros(max(ids) + 1, np.int32)
        for item in room.objects:
            category_of[item.instance_id] = CATEGORIES.index(item.category)
            assert room.object(item.instance_id) is item
        assert np.array_equal(room.semantic, category_of[room.instance])
        points_per_object = np.bincount(room.instance, minlength=max(ids) + 1)[ids]
        assert points_per_object.min() >= 10, room.seed
        assert {o.category for o in room.objects} >= {"floor", "wall"}


def test_room_statistics(rooms: list[Room]) -> None:
    points = [len(room.points) for room in rooms]
    objects = [len(_furniture(room)) for room in rooms]
    print(f"\npoints per room {min(points)}-{max(points)}, objects {min(objects)}-{max(objects)}")
    assert all(60_000 <= n <= 200_000 for n in points), points
    assert all(12 <= n <= 25 for n in objects), objects
    assert sum("window" in {o.category for o in room.objects} for room in rooms) >= 4
    assert sum("door" in {o.category for o in room.objects} for room in rooms) >= 4


def test_several_instances_of_a_category_per_room(rooms: list[Room]) -> None:
    for room in rooms:
        counts = Counter(o.category for o in _furniture(room))
        assert max(counts.values()) >= 2, counts


def _xy_axes(part: Part) -> np.ndarray:
    """(2, 2) unit axes of a part's footprint rectangle (round parts: their bounding square)."""
    yaw = part.yaw if part.shape is Shape.BOX else 0.0
    return np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])


def _penetration(a: Part, b: Part) -> float:
    """How deep two parts overlap (separating axis test; <= 0 when apart)."""
    depth = a.half[2] + b.half[2] - abs(a.center[2] - b.center[2])
    axes_a, axes_b = _xy_axes(a), _xy_axes(b)
    offset = b.center[:2] - a.center[:2]
    for axis in (*axes_a, *axes_b):
        reach_a = np.sum(a.half[:2] * np.abs(axes_a @ axis))
        reach_b = np.sum(b.half[:2] * np.abs(axes_b @ axis))
        depth = min(depth, reach_a + reach_b - abs(offset @ axis))
    return depth


def test_no_two_objects_interpenetrate(rooms: list[Room]) -> None:
    for room in rooms:
        solid = [o for o in room.objects if o.category not in ("floor", "wall")]
        for a, b in combinations(solid, 2):
            deepest = max(_penetration(p, q) for p in a.parts for q in b.parts)
            assert deepest < CONTACT_TOLERANCE, (room.seed, a.category, b.category, deepest)


def _under_host(item: SceneObject, host: SceneObject) -> bool:
    """Whether `item` stands in the free space under `host` (a box under a table)."""
    inside = np.all(item.box_min[:2] >= host.box_min[:2]) and np.all(
        item.box_max[:2] <= host.box_max[:2]
    )
    return bool(inside and item.box_max[2] < host.box_max[2] - 0.1)


def test_floor_objects_apart_and_supported_objects_on_their_support(rooms: list[Room]) -> None:
    for room in rooms:
        standing = [o for o in _furniture(room) if o.support is None]
        for a, b in combinations(standing, 2):
            overlap = np.minimum(a.box_max, b.box_max) - np.maximum(a.box_min, b.box_min)
            if np.all(overlap[:2] > CONTACT_TOLERANCE):
                assert _under_host(a, b) or _under_host(b, a), (room.seed, a, b)
        for item in _furniture(room):
            if item.support is None:
                assert abs(item.box_min[2]) < 1e-9
                continue
            support = room.object(item.support)
            assert abs(item.box_min[2] - support.box_max[2]) < 1e-9
            center = (item.box_min[:2] + item.box_max[:2]) / 2
            assert np.all((support.box_min[:2] < center) & (center < support.box_max[:2]))


def test_points_only_on_visible_surfaces(rooms: list[Room]) -> None:
    for room in rooms:
        size = np.array(room.size)
        assert room.points[:, 2].min() > -0.03
        assert np.all(room.points[:, :2] > -0.03) and np.all(room.points[:, :2] < size + 0.03)
        floor = room.points[room.instance == room.objects[0].instance_id]
        assert room.objects[0].category == "floor"
        assert np.abs(floor[:, 2]).max() < 0.03
        # Nothing of the floor is seen under a cabinet or a sofa, which stand on solid bases.
        for item in _furniture(room):
            if item.category in ("cabinet", "sofa") and item.support is None:
                inside = np.all(
                    (floor[:, :2] > item.box_min[:2] + 0.05)
                    & (floor[:, :2] < item.box_max[:2] - 0.05),
                    axis=1,
                )
                axis_aligned = abs(np.sin(2 * item.yaw)) < 1e-6
                assert not axis_aligned or inside.sum() == 0, (room.seed, item.category)


def test_structure_has_no_support_and_ids_skip_zero(rooms: list[Room]) -> None:
    for room in rooms:
        for item in room.objects:
            if item.category in STRUCTURE:
                assert item.support is None
        assert 0 not in set(np.unique(room.instance).tolist())


def test_generation_speed() -> None:
    start = time.perf_counter()
    count = 5
    for seed in range(100, 100 + count):
        generate_room(seed)
    rate = count / (time.perf_counter() - start)
    print(f"\nroom generation: {rate:.1f} rooms/s")


def test_door_swing_stays_free(rooms: list[Room]) -> None:
    for room in rooms:
        for door in (o for o in room.objects if o.category == "door"):
            # A door's front (local -y) faces into the room.
            into_room = np.array([np.sin(door.yaw), -np.cos(door.yaw)])
            swing = np.array([door.box_min[:2], door.box_max[:2]])
            swing = np.concatenate([swing, swing + 0.9 * into_room])
            low, high = swing.min(axis=0), swing.max(axis=0)
            for item in _furniture(room):
                apart = np.any((item.box_min[:2] >= high) | (item.box_max[:2] <= low))
                assert apart, (room.seed, item.category)
