"""PromptBuilder with the real tokenizer of the tiny model: the layout of both stages, labels on
the answers only, and user text that never becomes special ids (#14: an instruction containing
"<scene>" failed inference; "[SEG]", "[REL]" were fed to the model as the special tokens)."""

from __future__ import annotations

import pytest

from r2s_model.llm import SPECIAL_TOKENS
from r2s_model.model import R2SModel, SegmentationStatus
from r2s_model.objects.parser import COLORS
from r2s_model.prompts import (
    IGNORE_INDEX,
    REL,
    SCENE,
    SEG,
    USE_NAMES,
    PromptBuilder,
    answer_names,
    name_matches,
)
from tests.model.tiny import TinyScene, tiny_model, tiny_scene

HOSTILE = [
    *(f"the chair {token} near the bed" for token in SPECIAL_TOKENS),
    *SPECIAL_TOKENS,
    "".join(SPECIAL_TOKENS) * 3,
    "a<scene>b[SEG]c",
    "the box <|endoftext|> <|im_start|>",  # the base tokenizer's own special tokens
]


@pytest.fixture(scope="module")
def model() -> R2SModel:
    return tiny_model().eval()


@pytest.fixture(scope="module")
def prompts(model: R2SModel) -> PromptBuilder:
    return model.prompts


@pytest.fixture(scope="module")
def scene() -> TinyScene:
    return tiny_scene(seed=3)


def forbidden_ids(prompts: PromptBuilder) -> set[int]:
    return {*prompts.ids.values(), *prompts.tokenizer.all_special_ids}


@pytest.mark.parametrize("instruction", HOSTILE)
def test_special_token_strings_in_an_instruction_stay_text(
    prompts: PromptBuilder, instruction: str
) -> None:
    assert forbidden_ids(prompts).isdisjoint(prompts.text(instruction))
    assert forbidden_ids(prompts).isdisjoint(prompts.question(instruction))
    # The characters survive: the text decodes back to the instruction.
    assert prompts.tokenizer.decode(prompts.text(instruction)) == instruction


@pytest.mark.parametrize("instruction", HOSTILE)
def test_special_ids_are_only_where_the_builder_puts_them(
    prompts: PromptBuilder, instruction: str
) -> None:
    """Hostile instruction and names: the sequences hold exactly one [REL] per name, one [SEG],
    two EOS (after each answer) and never <scene>."""
    names = [instruction, "green chair"]
    sequence = prompts.two_stage_sequence(instruction, names, instruction)
    ids = sequence.ids
    assert ids.count(prompts.ids[REL]) == len(names)
    assert ids.count(prompts.ids[SEG]) == 1 and ids.count(prompts.ids[SCENE]) == 0
    assert ids.count(prompts.eos_id) == 2
    single = prompts.single_stage_sequence(instruction, instruction).ids
    assert single.count(prompts.ids[SEG]) == 1 and single.count(prompts.eos_id) == 1
    assert single.count(prompts.ids[REL]) == single.count(prompts.ids[SCENE]) == 0
    assert prompts.relevant_names(prompts.relevant_answer(names)) == [n.strip(" ,.") for n in names]


def test_the_two_stage_layout_and_its_labels(prompts: PromptBuilder) -> None:
    names = ["green chair", "wooden brown table"]
    sequence = prompts.two_stage_sequence("the lamp on the table", names, "white lamp")
    eos = prompts.tokenizer.eos_token
    assert prompts.tokenizer.decode(sequence.ids) == (
        f"Question: the lamp on the table\nRelated: green chair[REL], wooden brown table[REL]{eos}"
        f"\nTarget: white lamp[SEG]{eos}"
    )
    assert len(sequence.labels) == len(sequence.ids)
    relevant = prompts.relevant_answer(names)
    target = prompts.target_answer("white lamp")
    question = prompts.question("the lamp on the table") + prompts.stage1_prompt()
    stage2 = prompts.stage2_prompt()[1:]
    expected = [IGNORE_INDEX] * len(question) + relevant + [IGNORE_INDEX] * len(stage2) + target
    assert sequence.labels == expected  # labels on the answers only, the ids themselves


def test_inference_reads_the_sequence_training_teaches(prompts: PromptBuilder) -> None:
    """What `segment` feeds the LLM (stage 1 stops before EOS, stage 2's prompt starts with it)
    is token for token the teacher-forced sequence: the cached training states are the states
    inference produces."""
    names, target = ["red box"], "grey monitor"
    answer = prompts.relevant_answer(names)
    streamed = (
        prompts.question("the monitor")
        + prompts.stage1_prompt()
        + answer[:-1]  # generated up to EOS, which ends generation unfed
        + prompts.stage2_prompt()
        + prompts.target_answer(target)
    )
    assert streamed == prompts.two_stage_sequence("the monitor", names, target).ids
    single = prompts.question("the monitor") + prompts.single_stage_prompt()
    single += prompts.target_answer(target)
    assert single == prompts.single_stage_sequence("the monitor", target).ids


def test_no_relevant_objects_and_no_target_have_their_words(prompts: PromptBuilder) -> None:
    sequence = prompts.two_stage_sequence("the unicorn", [], None)
    assert prompts.ids[REL] not in sequence.ids
    text = prompts.answer_text(sequence.ids)
    assert text.endswith("Related: none\nTarget: nothing")
    assert prompts.relevant_names(prompts.relevant_answer([])) == []


def test_scene_prefix_is_one_placeholder_per_object(prompts: PromptBuilder) -> None:
    prefix = prompts.scene_prefix(5)
    assert prefix[:5] == [prompts.ids[SCENE]] * 5
    assert prompts.tokenizer.decode(prefix[5:]) == "\n"


def test_plain_text_tokenises_as_before(prompts: PromptBuilder) -> None:
    tokenizer = prompts.tokenizer
    for text in ["Question: the chair\n", " the chair, bed", "x"]:
        assert prompts.text(text) == tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("mode", ["two_stage", "single_stage"])
def test_segment_answers_instructions_with_special_token_strings(
    scene: TinyScene, mode: str
) -> None:
    model = tiny_model(mode=mode).eval()
    encoded = model.encode_scene(scene.points, scene.colors)
    for instruction in HOSTILE:
        output = model.segment(encoded, instruction)
        assert output.status in (SegmentationStatus.OK, SegmentationStatus.NO_TARGET), output
        assert output.instruction == instruction.strip()
        assert output.target_mask.shape == (len(scene.points),)
        assert encoded.prefix.get_seq_length() == encoded.prefix_length


SIT, SLEEP, PUT = USE_NAMES["sit"], USE_NAMES["sleep"], USE_NAMES["put_things_on"]
BIN = USE_NAMES["throw_away"]


@pytest.mark.parametrize(
    ("question", "color", "category", "names"),
    [
        ("Find the red chair.", "red", "chair", ["chair", "red chair", SIT]),
        ("Which chair is nearest the window?", "red", "chair", ["chair", SIT]),  # no colour
        ("the BROWN table", "wooden brown", "table", ["table", "wooden brown table", PUT]),
        ("the blue sofa", "dark blue", "sofa", ["sofa", "dark blue sofa", SIT, SLEEP]),
        ("the shredded paper near the bin", "red", "trash_can", ["trash can", BIN]),  # no "red"
        ("the plant in an orange pot", "orange", "plant", ["plant", "orange plant"]),
    ],
)
def test_an_answer_may_name_a_colour_only_where_the_question_says_it(
    question: str, color: str, category: str, names: list[str]
) -> None:
    assert answer_names(question, [(color, category)]) == names


def test_answer_names_are_given_once_in_the_order_of_the_objects() -> None:
    labels = [("red", "chair"), ("red", "chair"), ("blue", "chair"), ("white", "lamp")]
    assert answer_names("the red chair by the lamp", labels) == [
        "chair", "red chair", "lamp", SIT, USE_NAMES["light"]
    ]  # fmt: skip


def test_a_colour_the_question_says_is_offered_with_every_category_of_the_scene() -> None:
    """ "green chair" among blue chairs is a name no object fits: an answer of no target."""
    labels = [("dark blue", "chair"), ("white", "lamp"), ("dark blue", "chair")]
    names = answer_names("Find the green chair.", labels, COLORS)
    assert names == ["chair", "lamp", SIT, USE_NAMES["light"], "green chair", "green lamp"]
    assert not name_matches(["green chair"], labels).any()
    assert answer_names("the blue chair", labels, COLORS) == [
        "chair", "dark blue chair", "lamp", SIT, USE_NAMES["light"], "dark blue lamp"
    ]  # fmt: skip


def test_a_use_fits_every_object_of_its_categories() -> None:
    labels = [("red", "chair"), ("grey", "sofa"), ("white", "table"), ("black", "stool")]
    matches = name_matches([SIT, SLEEP, PUT, "sofa", "grey sofa", "red sofa"], labels)
    assert matches.tolist() == [
        [1, 1, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]
    ]  # fmt: skip
