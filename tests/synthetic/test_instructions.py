"""Instructions: unambiguous programs, balanced categories, varied phrasing, relevant objects."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import asdict

import numpy as np
import pytest

from r2s_model.synthetic.furniture import SceneObject
from r2s_model.synthetic.instructions import (
    NO_TARGET_ANSWER,
    REASONING_CATEGORIES,
    Sample,
    generate_instructions,
)
from r2s_model.synthetic.programs import Boxes, Evaluator
from r2s_model.synthetic.rooms import Room, generate_room
from r2s_model.synthetic.templates import NOUNS

SEEDS = range(10)
PER_ROOM = 12


@pytest.fixture(scope="module")
def generated() -> list[tuple[Room, list[Sample]]]:
    rooms = [generate_room(seed) for seed in SEEDS]
    return [
        (room, generate_instructions(room, np.random.default_rng(room.seed), PER_ROOM))
        for room in rooms
    ]


def _all(generated: list[tuple[Room, list[Sample]]]) -> list[Sample]:
    return [sample for _, samples in generated for sample in samples]


def test_same_rng_same_samples_and_other_seeds_differ(
    generated: list[tuple[Room, list[Sample]]],
) -> None:
    room, samples = generated[0]
    again = generate_instructions(room, np.random.default_rng(room.seed), PER_ROOM)
    assert [asdict(s) for s in again] == [asdict(s) for s in samples]
    other = generate_instructions(room, np.random.default_rng(room.seed + 1), PER_ROOM)
    assert [s.question for s in other] != [s.question for s in samples]


def test_every_category_appears_and_no_target_is_about_one_in_eight(
    generated: list[tuple[Room, list[Sample]]],
) -> None:
    counts = Counter(sample.category for sample in _all(generated))
    assert set(counts) == set(REASONING_CATEGORIES), counts
    total = sum(counts.values())
    assert total >= 0.9 * PER_ROOM * len(SEEDS)
    assert 0.05 <= counts["no_target"] / total <= 0.22, counts
    for category in REASONING_CATEGORIES[:-1]:
        assert counts[category] >= 0.1 * total, counts


def test_no_duplicate_questions_in_a_room(generated: list[tuple[Room, list[Sample]]]) -> None:
    for _, samples in generated:
        questions = [s.question for s in samples]
        assert len(set(questions)) == len(questions)
        assert len(samples) <= PER_ROOM


def _shape(question: str) -> str:
    """The sentence shape: its first two words (a viewpoint in front counts as a shape)."""
    return " ".join(question.lower().split()[:2])


def test_several_sentence_shapes_per_category(generated: list[tuple[Room, list[Sample]]]) -> None:
    shapes = defaultdict(set)
    for sample in _all(generated):
        shapes[sample.category].add(_shape(sample.question))
    for category in REASONING_CATEGORIES:
        assert len(shapes[category]) >= 3, (category, shapes[category])


def test_programs_are_json_and_match_their_category(
    generated: list[tuple[Room, list[Sample]]],
) -> None:
    for sample in _all(generated):
        program = sample.program
        assert json.loads(json.dumps(program)) == program
        kind = program["type"]
        if sample.category == "spatial_relation":
            assert kind == "relation" and program["of"]["type"] == "category"
        elif sample.category == "comparison":
            assert kind == "superlative"
        elif sample.category == "attribute":
            assert kind == "color"
        elif sample.category == "affordance":
            assert "function" in json.dumps(program)
        elif sample.category == "multi_hop":
            assert program["reference"]["type"] in ("relation", "superlative")
        if "viewpoint" in program:
            assert abs(np.hypot(*program["viewpoint"]["facing"]) - 1) < 1e-3


def test_own_evaluation_selects_exactly_the_targets(
    generated: list[tuple[Room, list[Sample]]],
) -> None:
    for room, samples in generated:
        truth = Evaluator(Boxes.from_objects(room.objects))
        scanned = Evaluator(Boxes.from_points(room.objects, room.points, room.instance))
        for sample in samples:
            for evaluator in (truth, scanned):
                result = evaluator.evaluate(sample.program)
                assert result is not None, sample.question
                assert sorted(result[0]) == sorted(sample.target_ids), sample.question
            assert len(sample.target_ids) == (0 if sample.category == "no_target" else 1)


def _references(program: dict) -> list[dict]:
    """Every reference program inside `program`, recursively (a between list gives two)."""
    found = []
    for key in ("of", "reference"):
        value = program.get(key)
        for part in value if isinstance(value, list) else [value] if value else []:
            if key == "reference":
                found.append(part)
            found += _references(part)
    return found


def test_relevant_objects_hold_targets_and_references(
    generated: list[tuple[Room, list[Sample]]],
) -> None:
    for room, samples in generated:
        truth = Evaluator(Boxes.from_objects(room.objects))
        for sample in samples:
            relevant = sample.relevant_ids
            assert len(set(relevant)) == len(relevant)
            assert relevant[: len(sample.target_ids)] == sample.target_ids
            referenced = {i for ref in _references(sample.program) for i in truth.evaluate(ref)[0]}
            assert referenced <= set(relevant), sample.question
            superlatives = json.dumps(sample.program).count('"superlative"')
            assert len(relevant) <= len(sample.target_ids) + len(referenced) + 6 * superlatives


def _describes(answer: str, item: SceneObject) -> bool:
    return NOUNS[item.category][0] in answer and item.color in answer


def test_answers_name_the_target(generated: list[tuple[Room, list[Sample]]]) -> None:
    for room, samples in generated:
        for sample in samples:
            if sample.category == "no_target":
                assert sample.answer == NO_TARGET_ANSWER and sample.target_ids == []
            else:
                assert _describes(sample.answer, room.object(sample.target_ids[0])), sample.answer


def _boxes(*spec: tuple[str, tuple[float, float, float], tuple[float, float, float]]) -> Boxes:
    return Boxes(
        np.arange(1, len(spec) + 1),
        np.array([low for _, low, _ in spec], float),
        np.array([high for _, _, high in spec], float),
        tuple(category for category, _, _ in spec),
        ("white",) * len(spec),
    )


def _chair_at(x: float, y: float, height: float = 0.9) -> tuple[str, tuple, tuple]:
    return ("chair", (x - 0.2, y - 0.2, 0.0), (x + 0.2, y + 0.2, height))


def _category(category: str) -> dict:
    return {"type": "category", "category": category}


def test_margins_leave_borderline_programs_unsure() -> None:
    bed = ("bed", (0.0, 0.0, 0.0), (1.0, 2.0, 0.5))
    near = {"type": "relation", "of": _category("chair"), "relation": "near"}
    near["reference"] = _category("bed")
    # Footprint gaps 0.3 (clearly near) and 1.5 (clearly not) decide; a gap of 0.55 is unsure.
    clear = Evaluator(_boxes(bed, _chair_at(1.5, 1.0), _chair_at(2.7, 1.0)))
    assert clear.evaluate(near) == ([2], [1])
    assert Evaluator(_boxes(bed, _chair_at(1.75, 1.0), _chair_at(2.7, 1.0))).evaluate(near) is None

    tallest = {"type": "superlative", "of": _category("chair"), "measure": "tallest"}
    assert Evaluator(_boxes(_chair_at(0, 0, 1.2), _chair_at(2, 0, 0.9))).evaluate(tallest)[0] == [1]
    assert Evaluator(_boxes(_chair_at(0, 0, 1.0), _chair_at(2, 0, 0.9))).evaluate(tallest) is None

    viewpoint = {"position": [0.5, -1.0], "facing": [0.0, 1.0]}
    left = {**near, "relation": "left_of", "viewpoint": viewpoint}
    # Facing +y, left is -x: a chair 1 m to the left counts, one diagonal (1, 0.9) is unsure.
    assert Evaluator(_boxes(bed, _chair_at(-0.5, 1.0))).evaluate(left)[0] == [2]
    assert Evaluator(_boxes(bed, _chair_at(-0.5, 1.9))).evaluate(left) is None


def test_instruction_speed(generated: list[tuple[Room, list[Sample]]]) -> None:
    start = time.perf_counter()
    made = sum(
        len(generate_instructions(room, np.random.default_rng(7), PER_ROOM))
        for room, _ in generated
    )
    print(f"\ninstructions: {made / (time.perf_counter() - start):.0f} samples/s")
