"""Instruction samples over object proposals: ground truth matched to proposals by point IoU."""

import numpy as np
import pytest

from r2s_model.data.io import SceneArrays
from r2s_model.objects.cache import CachedScene
from r2s_model.train.samples import (
    ASKED,
    MIN_MATCH_IOU,
    UNMATCHED,
    match_objects,
    scene_samples,
    stated_labels,
)

# 14 points. Ground truth: object 1 (points 0-3), object 2 (4-5), object 3 (8), 0 = none.
INSTANCE = np.array([1, 1, 1, 1, 2, 2, 0, 0, 3, 0, 0, 0, 0, 0])
# Proposals: 0 = points 0-2, 1 = points 3-5, 2 = points 6-13 (mostly background).
POINT_OBJECTS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2])


def test_each_object_gets_its_best_overlapping_proposal() -> None:
    matches = match_objects(INSTANCE, POINT_OBJECTS, 3)
    assert set(matches) == {1, 2, 3}  # 0 is no object
    assert matches[1] == (0, pytest.approx(3 / 4))  # 3 shared of 4 | 3 points
    assert matches[2] == (1, pytest.approx(2 / 3))
    # Object 3 shares 1 point with a proposal of 8: IoU 1/8, below the floor: unmatched.
    assert MIN_MATCH_IOU > 1 / 8 and matches[3] == (UNMATCHED, pytest.approx(1 / 8))


def test_a_proposal_can_be_the_best_match_of_no_object() -> None:
    matches = match_objects(INSTANCE, POINT_OBJECTS, 5)  # proposals 3 and 4 are empty
    assert [proposal for proposal, _ in matches.values()] == [0, 1, UNMATCHED]


def scene() -> tuple[SceneArrays, CachedScene]:
    n, k = len(INSTANCE), 3
    arrays = SceneArrays(
        scene_id="train_00000",
        points=np.zeros((n, 3), np.float32),
        colors=np.zeros((n, 3), np.float32),
        instance=INSTANCE,
        semantic=np.zeros(n, np.int32),
        superpoints=np.arange(n) // 2,  # superpoint s = points 2s, 2s + 1
        object_ids=np.array([1, 2, 3]),
        object_categories=["chair", "box", "cup"],
        object_colors=["green", "red", "white"],
    )
    # Superpoints 0, 1 -> proposal 0; 2 -> 1; 3..6 -> 2: points 0-3, 4-5, 6-13.
    superpoint_object = np.array([0, 0, 1, 2, 2, 2, 2])
    zeros = np.zeros((k, 3), np.float32)
    cached = CachedScene(
        np.zeros((7, 4), np.float32), np.zeros((7, 2), np.float32), np.zeros((7, 2), np.float32),
        superpoint_object, np.zeros((k, 4), np.float32), np.zeros((k, 2), np.float32),
        np.zeros((k, 2), np.float32), zeros, zeros, np.array([4, 2, 8]),
    )  # fmt: skip
    return arrays, cached


def record(
    sample_id: str, question: str, relevant: list[int], targets: list[int], program: dict
) -> dict:
    return {
        "sample_id": sample_id, "scene_id": "train_00000", "category": "relation",
        "question": question, "relevant_ids": relevant, "target_ids": targets, "program": program,
    }  # fmt: skip


def node(category: str, color: str | None = None) -> dict:
    return {"type": "color", "category": category, "color": color} if color else {
        "type": "category", "category": category}  # fmt: skip


def asking(category: str, color: str | None = None, reference: dict | None = None) -> dict:
    """The program of "the <color> <category> near <reference>" (the red box by default)."""
    return {"type": "relation", "relation": "near", "of": node(category, color),
            "reference": reference or node("box", "red")}  # fmt: skip


def test_samples_carry_names_proposal_labels_and_target_ious() -> None:
    arrays, cached = scene()
    question = "Which chair is closest to the Red box?"
    records = [
        record("a", question, [2, 3, 1], [1], asking("chair")),
        record("b", "the chair near the red box", [2], [], asking("chair")),
    ]
    with_target, no_target = scene_samples(arrays, cached, records, max_relevant=2)
    assert with_target.question == question and with_target.category == "relation"
    # Named as the question names them: a colour only where it is stated; max_relevant caps.
    assert with_target.relevant_names == ["red box", "cup"]
    assert with_target.target_name == "chair"
    # Object 3 (one point of proposal 2's eight) is unmatched; objects 1, 2 match exactly.
    assert with_target.relevant_objects == [1, UNMATCHED]
    assert with_target.target_object == 0
    np.testing.assert_allclose(with_target.target_ious, [1.0, 0.0, 0.0])
    # No target: its name is what it asks for, a chair, as the scene has chairs, and stage 1
    # names it first as it names a target first, with no annotated object.
    assert no_target.target_object is None and no_target.target_name == "chair"
    assert no_target.relevant_names == ["chair", "red box"]
    assert no_target.relevant_objects == [ASKED, 1]
    np.testing.assert_array_equal(no_target.target_ious, np.zeros(3))
    # The relation fits its target alone: without proposal 0 the question has no target.
    assert with_target.target_parts == (0,) and no_target.target_parts == ()


def test_target_parts_are_the_proposals_mostly_on_a_sole_fitting_target() -> None:
    """A proposal with half its points or more on the target is part of it (the chair's
    proposal 0, all chair; not proposal 2, one cup point of eight); a superlative's target has
    no parts (without it, another object is the largest), nor has a relation to a relation."""
    arrays, cached = scene()
    largest = {"type": "superlative", "of": node("chair"), "measure": "largest"}
    nested = asking("chair", reference=asking("box", reference=node("cup", "white")))
    records = [
        record("r", "the chair near the red box", [], [1], asking("chair")),
        record("c", "the green chair", [], [1], node("chair", "green")),
        record("s", "the largest chair", [], [1], largest),
        record("u", "the cup near the red box", [], [3], asking("cup")),
        record("n", "the chair near the box by the white cup", [], [1], nested),
    ]
    relation, color, superlative, cup, multi_hop = scene_samples(arrays, cached, records, 2)
    assert relation.target_parts == (0,) and color.target_parts == (0,)
    assert superlative.target_parts == () and cup.target_parts == ()
    assert multi_hop.target_parts == ()  # a nested reference: stage 1's likeliest mistake


def test_a_question_without_target_is_answered_with_what_it_asks_for_where_the_scene_has_it():
    arrays, cached = scene()  # a green chair, a red box, a white cup

    def name(question: str, program: dict) -> str | None:
        (sample,) = scene_samples(arrays, cached, [record("x", question, [], [], program)], 4)
        return sample.target_name

    assert name("the cup near the red box", asking("cup")) == "cup"
    assert name("the white cup near the red box", asking("cup", "white")) == "white cup"
    assert name("the green cup near the red box", asking("cup", "green")) is None  # no such cup
    assert name("the lamp near the red box", asking("lamp")) is None  # no lamp at all
    sit = {"type": "relation", "of": {"type": "function", "function": "sit"}}
    assert name("somewhere to sit near the red box", sit) == "something to sit on"  # the chair
    drink = {"type": "relation", "of": {"type": "function", "function": "drink_from"}}
    assert name("a mug by the red box", drink) == "something to drink from"  # the cup
    sleep = {"type": "relation", "of": {"type": "function", "function": "sleep"}}
    assert name("a bed by the red box", sleep) is None  # nothing to sleep on


def test_a_colour_is_named_only_for_the_objects_the_question_states_it_for() -> None:
    arrays, cached = scene()  # a green chair, a red box, a white cup
    # "the cup near the white table": "white" is the table's; the white cup is just a cup.
    program = asking("cup", reference=node("table", "white"))
    (sample,) = scene_samples(
        arrays, cached, [record("x", "the cup near the white table", [3], [3], program)], 4
    )
    assert sample.target_name == "cup" and sample.relevant_names == ["cup"]
    chain = {"type": "relation", "of": node("box"), "reference": [
        node("chair", "green"), {"type": "superlative", "of": node("cup", "white")}]}  # fmt: skip
    assert stated_labels(chain) == {("green", "chair"), ("white", "cup")}


def test_a_question_asking_for_a_use_names_the_objects_of_that_use_by_it() -> None:
    """ "somewhere to sit, the farthest from the red box": the answer does not guess whether the
    seat is a chair or a sofa; compared seats are named by the use too, references by kind."""
    arrays, cached = scene()  # a green chair, a red box, a white cup
    program = {"type": "superlative", "measure": "farthest", "reference": node("box", "red"),
               "of": {"type": "function", "function": "sit"}}  # fmt: skip
    question = "somewhere to sit, the farthest from the red box"
    (sample,) = scene_samples(arrays, cached, [record("x", question, [1, 2], [1], program)], 4)
    assert sample.target_name == "something to sit on"
    assert sample.relevant_names == ["something to sit on", "red box"]
