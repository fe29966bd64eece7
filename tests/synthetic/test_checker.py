"""The independent checker on hand-built scenes of boxes of points (metres, z up)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import pytest

from r2s_model.synthetic.checker import (
    CheckResult,
    ObjectGeometry,
    ProgramError,
    check_sample,
    evaluate_program,
    object_geometry,
)


@dataclass(frozen=True)
class Box:
    id: int
    category: str
    low: tuple[float, float, float]
    high: tuple[float, float, float]
    color: str = "white"


Scene = tuple[dict[int, ObjectGeometry], dict[int, str], dict[int, str]]


def box_points(low: np.ndarray, high: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Corners (so the box is exact) and a few random points inside, (28, 3) float32."""
    corners = np.array(list(itertools.product(*zip(low, high, strict=True))))
    inside = low + rng.random((20, 3)) * (high - low)
    return np.concatenate([corners, inside]).astype(np.float32)


def build(*boxes: Box) -> Scene:
    """Geometry from points (with an unlabelled floor around everything), categories, colors."""
    rng = np.random.default_rng(0)
    clouds = [box_points(np.array(b.low), np.array(b.high), rng) for b in boxes]
    floor = np.c_[rng.uniform(-10, 10, (200, 2)), np.zeros(200)].astype(np.float32)
    points = np.concatenate([*clouds, floor])
    labels = np.concatenate([np.full(len(c), b.id) for c, b in zip(clouds, boxes, strict=True)])
    instance = np.r_[labels, np.zeros(len(floor), np.int64)]
    order = rng.permutation(len(points))  # the checker must not rely on grouped points
    geometry = object_geometry(points[order], instance[order])
    return geometry, {b.id: b.category for b in boxes}, {b.id: b.color for b in boxes}


def centred(id_: int, category: str, x: float, y: float, color: str = "white") -> Box:
    """A 0.2 m x 0.2 m x 0.8 m box standing on the floor with its centre at (x, y)."""
    return Box(id_, category, (x - 0.1, y - 0.1, 0.0), (x + 0.1, y + 0.1, 0.8), color)


def cat(category: str) -> dict:
    return {"type": "category", "category": category}


def rel(of: dict, relation: str, reference: dict | list, **extra: object) -> dict:
    return {"type": "relation", "of": of, "relation": relation, "reference": reference, **extra}


def sup(of: dict, measure: str, reference: dict | None = None) -> dict:
    program = {"type": "superlative", "of": of, "measure": measure}
    return program if reference is None else {**program, "reference": reference}


def evaluate(program: dict, scene: Scene) -> set[int]:
    return evaluate_program(program, *scene)


def record(program: dict, targets: list[int], relevant: list[int], category: str) -> dict:
    return {
        "question": "?",
        "answer": "",
        "category": category,
        "target_ids": targets,
        "relevant_ids": relevant,
        "program": program,
    }


# A living room: table 1 with cup 2 on it and box 3 under it, chair 4 beside it, chair 5 and
# sofa 6 across the room.
ROOM = build(
    Box(1, "table", (0.0, 0.0, 0.0), (1.2, 0.8, 0.75), "brown"),
    Box(2, "cup", (0.5, 0.3, 0.75), (0.6, 0.4, 0.87), "red"),
    Box(3, "box", (0.3, 0.2, 0.0), (0.6, 0.5, 0.3), "brown"),
    Box(4, "chair", (1.5, 0.1, 0.0), (1.9, 0.5, 0.9), "black"),
    Box(5, "chair", (4.0, 3.0, 0.0), (4.5, 3.5, 0.9), "red"),
    Box(6, "sofa", (0.0, 3.0, 0.0), (2.0, 3.9, 0.8), "grey"),
)


def test_object_geometry_boxes_from_labelled_finite_points() -> None:
    points = np.array(
        [[0, 0, 0], [1, 2, 3], [5, 5, 5], [np.nan, 9, 9], [-1, 0.5, 0.25], [7, 7, 7]], np.float32
    )
    instance = np.array([4, 4, 0, 4, 9, -100])
    geometry = object_geometry(points, instance)
    assert set(geometry) == {4, 9}
    np.testing.assert_array_equal(geometry[4].box_min, [0, 0, 0])
    np.testing.assert_array_equal(geometry[4].box_max, [1, 2, 3])
    np.testing.assert_array_equal(geometry[4].center, [0.5, 1, 1.5])
    assert geometry[4].volume == 6.0 and geometry[4].height == 3.0
    np.testing.assert_array_equal(geometry[9].size, [0, 0, 0])
    assert object_geometry(points[:0], instance[:0]) == {}
    with pytest.raises(ValueError, match="instance"):
        object_geometry(points, instance[:3])


def test_room_geometry_comes_from_points() -> None:
    geometry = ROOM[0]
    assert set(geometry) == {1, 2, 3, 4, 5, 6}  # the unlabelled floor is no object
    np.testing.assert_allclose(geometry[1].box_max, [1.2, 0.8, 0.75], atol=1e-6)


@pytest.mark.parametrize(
    ("program", "expected"),
    [
        (cat("chair"), {4, 5}),
        (cat("piano"), set()),
        ({"type": "color", "category": "chair", "color": "red"}, {5}),
        ({"type": "color", "category": "chair", "color": "brown"}, set()),
        ({"type": "function", "function": "sit"}, {4, 5, 6}),
        ({"type": "function", "function": "put_things_on"}, {1}),
        ({"type": "function", "function": "store_things"}, {3}),
        (rel(cat("chair"), "near", cat("table")), {4}),
        (rel(cat("chair"), "far_from", cat("table")), {5}),
        (rel(cat("cup"), "on", cat("table")), {2}),
        (rel(cat("box"), "on", cat("table")), set()),
        (rel(cat("box"), "under", cat("table")), {3}),
        (rel(cat("cup"), "under", cat("table")), set()),
    ],
)
def test_selections_in_the_room(program: dict, expected: set[int]) -> None:
    assert evaluate(program, ROOM) == expected


@pytest.mark.parametrize(("gap", "near"), [(0.0, True), (0.55, True), (0.65, False)])
def test_near_uses_the_footprint_gap(gap: float, near: bool) -> None:
    scene = build(
        Box(1, "bed", (0, 0, 0), (2, 1.6, 0.5)),
        Box(2, "lamp", (2 + gap, 0, 0), (2.3 + gap, 0.3, 1)),
    )
    assert evaluate(rel(cat("lamp"), "near", cat("bed")), scene) == ({2} if near else set())


@pytest.mark.parametrize(("x", "far"), [(2.4, False), (2.6, True)])
def test_far_from_uses_the_centre_distance(x: float, far: bool) -> None:
    scene = build(centred(1, "bed", 0, 0), centred(2, "lamp", x, 0))
    assert evaluate(rel(cat("lamp"), "far_from", cat("bed")), scene) == ({2} if far else set())


@pytest.mark.parametrize(
    ("low", "on"),
    [
        ((0.4, 0.4, 0.75), True),
        ((0.4, 0.4, 0.80), True),  # 5 cm above the top: resting on it, up to sensor noise
        ((0.4, 0.4, 0.82), False),  # hovering
        ((0.4, 0.4, 0.50), False),  # sunk into it: below the top surface
        ((0.9, 0.4, 0.75), True),  # 60 % of the cup's footprint over the table
        ((1.0, 0.4, 0.75), False),  # 40 %
    ],
)
def test_on_needs_contact_and_half_the_footprint(low: tuple, on: bool) -> None:
    table = Box(1, "table", (0, 0, 0), (1.2, 0.8, 0.75))
    cup = Box(2, "cup", low, (low[0] + 0.5, low[1] + 0.2, low[2] + 0.1))
    assert evaluate(rel(cat("cup"), "on", cat("table")), build(table, cup)) == (
        {2} if on else set()
    )


@pytest.mark.parametrize(
    ("low", "high", "under"),
    [
        ((0.3, 0.3, 0), (0.6, 0.6, 0.6), True),
        ((0.3, 0.3, 0), (0.6, 0.6, 0.7), False),  # top within 10 cm of the table top
        ((1.1, 0.3, 0), (1.5, 0.6, 0.3), False),  # centre (1.3, 0.45) outside the footprint
        ((1.0, 0.3, 0), (1.3, 0.6, 0.3), True),  # centre (1.15, 0.45) inside, box sticks out
    ],
)
def test_under_needs_the_centre_below_the_top(low: tuple, high: tuple, under: bool) -> None:
    scene = build(Box(1, "table", (0, 0, 0), (1.2, 0.8, 0.75)), Box(2, "box", low, high))
    assert evaluate(rel(cat("box"), "under", cat("table")), scene) == ({2} if under else set())


# Reference table 1 at the origin; chairs east 2, west 3, north 4, south 5, and two that are in
# no direction: 6 diagonal (|a| = |b|) and 7 too close (0.25 m).
COMPASS = build(
    centred(1, "table", 0, 0),
    centred(2, "chair", 1, 0),
    centred(3, "chair", -1, 0),
    centred(4, "chair", 0, 1),
    centred(5, "chair", 0, -1),
    centred(6, "chair", 1, 1),
    centred(7, "chair", 0.25, 0),
)


@pytest.mark.parametrize(
    ("facing", "expected"),
    [
        ((0, 1), {"right_of": {2}, "left_of": {3}, "behind": {4}, "in_front_of": {5}}),
        ((0, -1), {"right_of": {3}, "left_of": {2}, "behind": {5}, "in_front_of": {4}}),
        ((1, 0), {"right_of": {5}, "left_of": {4}, "behind": {2}, "in_front_of": {3}}),
    ],
)
def test_directions_follow_the_viewer(facing: tuple, expected: dict[str, set[int]]) -> None:
    viewpoint = {"position": [-3 * facing[0], -3 * facing[1]], "facing": list(facing)}
    for relation, ids in expected.items():
        program = rel(cat("chair"), relation, cat("table"), viewpoint=viewpoint)
        assert evaluate(program, COMPASS) == ids, (facing, relation)


# Lamps 1 (red) and 2 (blue) 4 m apart; chair 3 between them, chair 4 near lamp 1 (t = 0.1),
# chair 5 off the segment by 0.7 m.
HALL = build(
    centred(1, "lamp", 0, 0, "red"),
    centred(2, "lamp", 4, 0, "blue"),
    centred(3, "chair", 2, 0.3),
    centred(4, "chair", 0.4, 0),
    centred(5, "chair", 2, 0.7),
)


def color(category: str, name: str) -> dict:
    return {"type": "color", "category": category, "color": name}


@pytest.mark.parametrize(
    "reference", [cat("lamp"), [color("lamp", "red"), color("lamp", "blue")]], ids=["one", "pair"]
)
def test_between_two_references(reference: dict | list) -> None:
    assert evaluate(rel(cat("chair"), "between", reference), HALL) == {3}


def test_between_rejects_a_reference_of_other_than_two() -> None:
    with pytest.raises(ProgramError, match=r"program.reference selects 1 objects \[1\]"):
        evaluate(rel(cat("chair"), "between", color("lamp", "red")), HALL)
    pair = [color("lamp", "red"), cat("lamp")]
    with pytest.raises(ProgramError, match=r"program.reference\[1\] selects 2 objects"):
        evaluate(rel(cat("chair"), "between", pair), HALL)


# Chairs of volume / height: 2: 0.25 m³ / 1.0 m, 3: 0.128 / 0.8, 4: 0.324 / 0.9.
CHAIRS = build(
    Box(1, "table", (0, 0, 0), (1, 1, 0.7)),
    Box(2, "chair", (1.5, 0, 0), (2.0, 0.5, 1.0)),
    Box(3, "chair", (3.0, 0, 0), (3.4, 0.4, 0.8)),
    Box(4, "chair", (0, 2.0, 0), (0.6, 2.6, 0.9)),
)


@pytest.mark.parametrize(
    ("program", "expected"),
    [
        (sup(cat("chair"), "largest"), {4}),
        (sup(cat("chair"), "smallest"), {3}),
        (sup(cat("chair"), "tallest"), {2}),
        (sup(cat("chair"), "shortest"), {3}),
        (sup(cat("chair"), "closest", cat("table")), {2}),  # 1.27 m vs 1.81 and 2.72
        (sup(cat("chair"), "farthest", cat("table")), {3}),
        (sup(cat("chair"), "closest", color("table", "white")), {2}),
    ],
)
def test_superlatives(program: dict, expected: set[int]) -> None:
    assert evaluate(program, CHAIRS) == expected


def test_closest_to_one_of_its_own_kind_excludes_the_reference() -> None:
    program = sup(cat("chair"), "closest", rel(cat("chair"), "near", cat("table")))
    assert evaluate(program, CHAIRS) == {3}  # 2 is the reference: 3 is 1.45 m away, 4 2.51 m
    program = sup(cat("chair"), "farthest", sup(cat("chair"), "smallest"))
    assert evaluate(program, CHAIRS) == {4}


@pytest.mark.parametrize(
    ("second_high", "measure", "expected"),
    [
        ((2.5, 0.54, 1.0), "largest", {1, 2}),  # 0.27 vs 0.25 m³: 7 % apart, under 12.5 %
        ((2.5, 0.6, 1.0), "largest", {2}),  # 0.30 vs 0.25: 17 %
        ((2.5, 0.5, 0.95), "tallest", {1, 2}),  # 5 cm apart, under 7.5 cm
        ((2.5, 0.5, 0.9), "tallest", {1}),  # 10 cm
        ((2.5, 0.5, 0.9), "shortest", {2}),
    ],
)
def test_a_near_tie_selects_every_contender(
    second_high: tuple, measure: str, expected: set[int]
) -> None:
    scene = build(
        Box(1, "stool", (0, 0, 0), (0.5, 0.5, 1.0)), Box(2, "stool", (2, 0, 0), second_high)
    )
    assert evaluate(sup(cat("stool"), measure), scene) == expected


def test_superlative_needs_two_candidates() -> None:
    with pytest.raises(ProgramError, match=r"program.of selects 1 objects \[1\]; 'largest'"):
        evaluate(sup(cat("table"), "largest"), CHAIRS)
    with pytest.raises(ProgramError, match=r"program\.of selects 0 objects"):
        evaluate(sup(cat("piano"), "tallest"), CHAIRS)


# Two tables with a cup each; table 1 is near the sofa, table 3 is not.
TWO_TABLES = build(
    Box(1, "table", (0, 0, 0), (1, 1, 0.7)),
    Box(2, "cup", (0.4, 0.4, 0.7), (0.5, 0.5, 0.8)),
    Box(3, "table", (5, 0, 0), (6.5, 1.5, 0.7)),
    Box(4, "cup", (5.4, 0.4, 0.7), (5.5, 0.5, 0.8)),
    Box(5, "sofa", (0, 1.3, 0), (2, 2.2, 0.8)),
)
CUP_ON_TABLE_NEAR_SOFA = rel(cat("cup"), "on", rel(cat("table"), "near", cat("sofa")))


def test_multi_hop_through_a_relation_and_a_superlative() -> None:
    assert evaluate(CUP_ON_TABLE_NEAR_SOFA, TWO_TABLES) == {2}
    assert evaluate(rel(cat("cup"), "on", sup(cat("table"), "largest")), TWO_TABLES) == {4}
    sample = record(CUP_ON_TABLE_NEAR_SOFA, [2], [2, 1, 5], "multi_hop")
    assert check_sample(sample, *TWO_TABLES).ok


def test_relevant_ids_must_hold_every_reference_and_target() -> None:
    result = check_sample(record(CUP_ON_TABLE_NEAR_SOFA, [2], [2, 1], "multi_hop"), *TWO_TABLES)
    assert result == CheckResult(False, "relevant_ids lack [5]")
    result = check_sample(record(CUP_ON_TABLE_NEAR_SOFA, [2], [1, 5], "multi_hop"), *TWO_TABLES)
    assert not result.ok and result.reason == "relevant_ids lack [2]"


def test_no_target_passes_with_an_empty_answer() -> None:
    program = rel(cat("chair"), "on", cat("sofa"))
    assert check_sample(record(program, [], [6], "no_target"), *ROOM).ok
    result = check_sample(record(program, [], [6], "spatial_relation"), *ROOM)
    assert not result.ok and result.reason == "category 'spatial_relation' with 0 target(s)"
    result = check_sample(record(program, [4], [4, 6], "no_target"), *ROOM)
    assert not result.ok and result.reason == "answer {} but targets [4]"


def test_a_correct_sample_passes() -> None:
    sample = record(rel(cat("chair"), "near", cat("table")), [4], [4, 1], "spatial_relation")
    assert check_sample(sample, *ROOM).ok and check_sample(sample, *ROOM).reason == ""


def test_ambiguous_and_wrong_answers_fail() -> None:
    function = {"type": "function", "function": "sit"}
    result = check_sample(record(function, [4], [4], "affordance"), *ROOM)
    assert not result.ok and result.reason == "answer {4, 5, 6} but targets [4]"
    near = rel(cat("chair"), "near", cat("table"))
    result = check_sample(record(near, [5], [1, 5], "spatial_relation"), *ROOM)
    assert not result.ok and result.reason == "answer {4} but targets [5]"
    result = check_sample(record(near, [4, 4], [1, 4], "spatial_relation"), *ROOM)
    assert not result.ok and "duplicates" in result.reason


def test_a_tie_is_reported_as_an_ambiguous_answer() -> None:
    scene = build(
        Box(1, "stool", (0, 0, 0), (0.5, 0.5, 1)), Box(2, "stool", (2, 0, 0), (2.5, 0.5, 0.97))
    )
    result = check_sample(record(sup(cat("stool"), "tallest"), [1], [1, 2], "comparison"), *scene)
    assert not result.ok
    assert result.reason == (
        "answer {1, 2} but targets [1]; program: 'tallest' is a tie between {1: 1.000, 2: 0.970}"
    )


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (cat("piano"), r"program.reference selects 0 objects \[\], expected exactly 1"),
        (cat("chair"), r"program.reference selects 2 objects \[4, 5\], expected exactly 1"),
    ],
)
def test_a_reference_must_select_exactly_one_object(reference: dict, message: str) -> None:
    program = rel(cat("cup"), "near", reference)
    with pytest.raises(ProgramError, match=message):
        evaluate(program, ROOM)
    result = check_sample(record(program, [], [], "no_target"), *ROOM)
    assert not result.ok and result.reason.startswith("invalid program: program.reference")


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ("chair", "program: expected a program object, got str"),
        ({"category": "chair"}, "program: missing 'type'"),
        ({"type": "everything"}, "program: unknown program type 'everything'"),
        ({"type": "category", "category": 3}, "program.category: expected a string, got 3"),
        ({"type": "color", "category": "chair"}, "program: missing 'color'"),
        ({"type": "function", "function": "fly"}, "program: unknown function 'fly'"),
        ({"type": "relation", "relation": "near", "reference": cat("table")}, "missing 'of'"),
        ({"type": "relation", "of": cat("cup"), "relation": "on"}, "missing 'reference'"),
        (rel(cat("cup"), "inside", cat("table")), "unknown relation 'inside'"),
        (rel(cat("cup"), "left_of", cat("table")), "needs a 'viewpoint' object"),
        (
            rel(
                cat("cup"),
                "left_of",
                cat("table"),
                viewpoint={"position": [0, 0], "facing": [1, 1]},
            ),
            "program.viewpoint.facing: [1.0, 1.0] is not a unit vector",
        ),
        (
            rel(cat("cup"), "behind", cat("table"), viewpoint={"facing": [1, 0]}),
            "program.viewpoint.position: expected",
        ),
        (rel(cat("chair"), "between", [cat("table")]), "a list of 1 programs, expected 2"),
        (sup(cat("chair"), "prettiest"), "unknown measure 'prettiest'"),
        (sup(cat("chair"), "closest"), "program: missing 'reference'"),
        (rel(cat("cup"), "on", {"type": "relation"}), "program.reference: missing 'relation'"),
    ],
)
def test_malformed_programs_raise_a_clear_error(program: object, message: str) -> None:
    with pytest.raises(ProgramError, match=re.escape(message)):
        evaluate(program, ROOM)


def test_a_record_without_a_program_fails() -> None:
    result = check_sample({"target_ids": [], "relevant_ids": []}, *ROOM)
    assert not result.ok and result.reason == "record lacks ['program']"
