"""PromptBuilder with the real tokenizer of the tiny model: user text never becomes special ids
(#14: an instruction containing "<scene>" failed inference; "[SEG]", "[REL]", "<prior>" were fed
to the model as the special tokens)."""

from __future__ import annotations

import pytest

from r2s_model.llm import SPECIAL_TOKENS
from r2s_model.model import R2SModel, SegmentationStatus
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
def scene() -> TinyScene:
    return tiny_scene(seed=3)


def forbidden_ids(model: R2SModel) -> set[int]:
    prompts = model.prompts
    return {*prompts.ids.values(), *prompts.tokenizer.all_special_ids}


@pytest.mark.parametrize("instruction", HOSTILE)
def test_special_token_strings_in_an_instruction_stay_text(model: R2SModel, instruction: str):
    prompts = model.prompts
    assert forbidden_ids(model).isdisjoint(prompts.text(instruction))
    prefix = prompts.prefix(instruction)
    assert prefix.count(prompts.ids["<scene>"]) == model.config.num_scene_tokens
    assert forbidden_ids(model).isdisjoint(prefix[model.config.num_scene_tokens :])
    # The characters survive: the text decodes back to the instruction.
    assert prompts.tokenizer.decode(prompts.text(instruction)) == instruction


def test_plain_text_tokenises_as_before(model: R2SModel) -> None:
    prompts, tokenizer = model.prompts, model.prompts.tokenizer
    for text in ["List the objects related to the question.\nAnswer:", " the chair, bed", "x"]:
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
