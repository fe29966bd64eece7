"""R2SModel on tiny random configs (real parser, real LLM code, real spconv): statuses, shapes,
the reused scene prefix, and a model taught one instruction answering it with its proposals."""

import copy

import numpy as np
import pytest
import torch

from r2s_model.config import InputLimits
from r2s_model.model import (
    R2SModel,
    SegmentationStatus,
    _generate,
    _name_target,
    _run,
    _score_options,
)
from r2s_model.prompts import NO_TARGET, REL, SEG, answer_names
from r2s_model.scene import SceneEncoding
from tests.model.tiny import name_objects, teach, tiny_model, tiny_scene

MODES = ["two_stage", "single_stage"]
INSTRUCTION = "the white lamp on the red box"
RELEVANT = {"red box": 2, "chair": 5}  # name (as the instruction states it) -> proposal index
TARGET = ("white lamp", 7)


@pytest.fixture(scope="module")
def scene():
    return tiny_scene(seed=3)


@pytest.fixture(scope="module")
def model() -> R2SModel:
    return tiny_model().eval()


@pytest.fixture(scope="module")
def taught(scene):
    """A tiny model fitted to INSTRUCTION on the scene, and the scene's encoding."""
    model = tiny_model()
    encoded = model.encode_scene(scene.points, scene.colors)
    assert encoded.num_objects > max(TARGET[1], *RELEVANT.values())
    teach(model, encoded, INSTRUCTION, RELEVANT, TARGET)
    # An encoding holds the LLM's cache of the object tokens: encode again with the new weights.
    return model, encode(model, scene)


def encode(model: R2SModel, scene) -> SceneEncoding:
    """The scene encoded, its taught objects named as taught."""
    return name_objects(model.encode_scene(scene.points, scene.colors), RELEVANT, TARGET)


def test_bad_instructions_and_empty_scenes_get_statuses(model: R2SModel, scene) -> None:
    encoded = model.encode_scene(scene.points, scene.colors)
    for bad in ["", "   \n\t", "x" * 10_000, None]:
        result = model.segment(encoded, bad)
        assert result.status == SegmentationStatus.INVALID_INSTRUCTION, bad
        assert result.reason and not result.target_mask.any()
        assert result.target_mask.shape == (len(scene.points),)
    empty = model.encode_scene(np.zeros((0, 3), np.float32), None)
    assert empty.is_empty and model.segment(empty, "the box").status == "empty_scene"
    few = model.encode_scene(scene.points[:10], scene.colors[:10])
    result = model.segment(few, "the box")
    assert result.status == SegmentationStatus.EMPTY_SCENE and result.target_mask.shape == (10,)
    odd = model.segment(encoded, "la chaise près de 🪟\u200d\x00 窓の近く")
    assert odd.status in (SegmentationStatus.OK, SegmentationStatus.NO_TARGET)
    assert "\x00" not in odd.instruction


def test_non_finite_points_are_dropped_and_never_masked(model: R2SModel, scene) -> None:
    points = scene.points.copy()
    points[::7] = np.nan
    points[1::7, 2] = np.inf
    encoded = model.encode_scene(points, scene.colors)
    assert encoded.cloud.dropped_nonfinite == len(points[::7]) + len(points[1::7])
    masks = np.stack([encoded.point_mask(k) for k in range(encoded.num_objects)])
    assert not masks[:, ::7].any() and not masks[:, 1::7].any()
    finite = np.isfinite(points).all(1)
    assert (masks.sum(0)[finite] == 1).all()  # every finite point in exactly one proposal


@pytest.mark.parametrize("mode", MODES)
def test_segment_output_shapes(scene, mode: str) -> None:
    model = tiny_model(mode=mode).eval()
    encoded = model.encode_scene(scene.points, scene.colors)
    assert encoded.prefix_length == encoded.num_objects + 1  # a token per object, a newline
    seen: list = []
    output = model.segment(encoded, "the chair nearest the window", on_relevant=seen.append)
    assert output.status in (SegmentationStatus.OK, SegmentationStatus.NO_TARGET)
    assert output.target_mask.shape == (len(scene.points),) and output.target_mask.dtype == bool
    assert 0.0 <= output.target_score <= 1.0
    assert encoded.prefix.get_seq_length() == encoded.prefix_length
    stages = {"stage1", "stage2"} if mode == "two_stage" else {"stage1"}
    assert set(output.timings_ms) == {"superpoints", "encode", *stages}
    if mode == "two_stage":
        assert seen == [output.relevant]
    else:  # no stage 1: no relevant objects, no call
        assert seen == [] and output.relevant == []
        assert output.generated_tokens <= model.config.stage2_max_new_tokens


def test_a_taught_instruction_is_answered_with_its_proposals(taught) -> None:
    """Stage 1 names the relevant objects and picks their proposals, stage 2 the target; every
    mask is exactly one proposal's points."""
    model, encoded = taught
    seen: list = []
    output = model.segment(encoded, INSTRUCTION, on_relevant=seen.append)
    assert output.status == SegmentationStatus.OK and output.answer == TARGET[0]
    assert [e.name for e in output.relevant] == list(RELEVANT)
    assert seen == [output.relevant]
    for element, index in zip(output.relevant, RELEVANT.values(), strict=True):
        assert np.array_equal(element.mask, encoded.point_mask(index))
    assert output.target_score > 0.5
    assert np.array_equal(output.target_mask, encoded.point_mask(TARGET[1]))
    kept = encoded.cloud.kept
    assert np.array_equal(output.target_mask[kept], encoded.point_objects == TARGET[1])


def test_an_answer_naming_what_the_scene_lacks_is_no_target(taught, scene) -> None:
    """The taught model writes "white lamp"; where the parser read no object as white, that
    name fits no object, and the answer is no target however sure the head is."""
    model, _ = taught
    encoded = encode(model, scene)
    encoded.object_labels[:] = [
        ("grey" if color == "white" else color, category)
        for color, category in encoded.object_labels
    ]
    output = model.segment(encoded, INSTRUCTION)
    assert output.answer == TARGET[0]
    assert output.status == SegmentationStatus.NO_TARGET and not output.target_mask.any()
    assert output.reason == "the answer 'white lamp' fits no object in the scene"


def test_inference_states_are_the_teacher_forced_states(taught) -> None:
    """The grounding head trains on teacher-forced states (r2s-cache-states, which skips the LM
    head); generation must produce the same word, [REL] and [SEG] states on the shared prefix
    cache."""
    model, encoded = taught
    prompts = model.prompts
    sequence = prompts.two_stage_sequence(INSTRUCTION, list(RELEVANT), TARGET[0])
    objects = encoded.objects
    with torch.no_grad():
        tokens = model.scene_tokens(objects.category_probs, objects.color_probs)
        _, hidden, ids = model.teacher_forced(tokens, [sequence])
        _, without_loss, _ = model.teacher_forced(tokens, [sequence], with_loss=False)
        cache, _ = model.run_prefix(objects)
        question = prompts.question(INSTRUCTION)
        hidden_question, logits = _run(model, question + prompts.stage1_prompt(), None, cache)
        words = hidden_question[: len(question)]
        generated, relevant = _generate(model, logits, cache, 20, REL, 4)
        assert generated == prompts.relevant_answer(list(RELEVANT))[:-1]
        names = answer_names(INSTRUCTION, encoded.object_labels)
        length = cache.get_seq_length()
        _, logits = _run(model, prompts.stage2_prompt(), None, cache)
        named, target, name = _name_target(model, logits, cache, names)
        assert named == prompts.target_answer(TARGET[0])[:-1] and name == TARGET[0]
        assert cache.get_seq_length() == length + len(prompts.stage2_prompt())
    expected_relevant = hidden[0][model.state_slots(ids[0], REL)]
    expected_target = hidden[0][model.state_slots(ids[0], SEG)]
    torch.testing.assert_close(words, hidden[0][: len(question)], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(relevant, expected_relevant, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(target, expected_target, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(without_loss, hidden)  # the state cache's path (no LM head)


@pytest.mark.parametrize("seed", range(4))
def test_stage2_naming_scores_fewer_options_yet_picks_the_likeliest(scene, seed: int) -> None:
    """The branch and bound of `_name_target` writes the option that scoring every option
    picks, with the same [SEG] state, on random models where many options compete."""
    model = tiny_model(seed=seed).eval()
    encoded = model.encode_scene(scene.points, scene.colors)
    prompts = model.prompts
    names = ["chair", "red box", "white lamp", "lamp", "something to sit on", "table", "box"]
    cache = encoded.prefix
    with torch.no_grad():
        _, logits = _run(
            model, prompts.question("the thing by the door") + prompts.stage2_prompt(), None, cache
        )
        length = cache.get_seq_length()
        written, state, name = _name_target(model, logits, cache, names)
        assert cache.get_seq_length() == length
        candidates = [*names, NO_TARGET]
        options = [prompts.text(" " + n) + [prompts.ids[SEG]] for n in candidates]
        rest, states = _score_options(model, cache, options)
    first = logits.float().log_softmax(-1)
    totals = [float(first[o[0]]) + r for o, r in zip(options, rest, strict=True)]
    best = int(np.argmax(totals))
    assert name == candidates[best] and written == options[best]
    torch.testing.assert_close(state, states[best : best + 1], atol=1e-4, rtol=1e-4)


def test_teacher_forcing_rows_do_not_see_each_others_padding(model: R2SModel, scene) -> None:
    """Sequences of different lengths in one call (right-padded) give each row's states alone."""
    encoded = model.encode_scene(scene.points, scene.colors)
    prompts = model.prompts
    short = prompts.single_stage_sequence("the box", "red box")
    long = prompts.two_stage_sequence("the lamp left of the tall cabinet", ["cabinet"], None)
    objects = encoded.objects
    with torch.no_grad():
        tokens = model.scene_tokens(objects.category_probs, objects.color_probs)
        _, together, _ = model.teacher_forced(tokens, [short, long])
        _, alone, _ = model.teacher_forced(tokens, [short])
    torch.testing.assert_close(together[0, : len(short.ids)], alone[0], atol=1e-5, rtol=1e-5)


def test_reused_encoding_gives_identical_results_and_is_cropped_back(taught, scene) -> None:
    model, encoded = taught
    length = encoded.prefix_length
    first = model.segment(encoded, INSTRUCTION)
    assert encoded.prefix.get_seq_length() == length
    model.segment(encoded, "the box left of the wall")
    assert encoded.prefix.get_seq_length() == length

    class Stop(Exception):
        pass

    def stop(_relevant: list) -> None:
        raise Stop

    with pytest.raises(Stop):
        model.segment(encoded, INSTRUCTION, on_relevant=stop)
    assert encoded.prefix.get_seq_length() == length
    again = model.segment(encoded, INSTRUCTION)
    fresh = model.segment(encode(model, scene), INSTRUCTION)
    for other in (again, fresh):
        assert np.array_equal(other.target_mask, first.target_mask)
        assert other.target_score == pytest.approx(first.target_score, abs=1e-6)
        assert other.answer == first.answer
        assert [e.name for e in other.relevant] == [e.name for e in first.relevant]


def test_bfloat16_llm_with_float32_heads(taught, scene) -> None:
    model, encoded = taught
    reference = model.segment(encoded, INSTRUCTION)
    half = copy.deepcopy(model)
    half.llm.to(torch.bfloat16)
    assert half.grounding.kind.weight.dtype == torch.float32
    output = half.segment(encode(half, scene), INSTRUCTION)
    assert output.status == SegmentationStatus.OK and output.answer == reference.answer
    assert np.array_equal(output.target_mask, reference.target_mask)
    assert abs(output.target_score - reference.target_score) < 0.05


def test_oversized_cloud_is_subsampled_and_masks_cover_every_point(scene) -> None:
    model = tiny_model(limits=InputLimits(max_points=2000)).eval()
    encoded = model.encode_scene(scene.points, scene.colors)
    assert encoded.cloud.subsampled and len(encoded.cloud.points) == 2000
    masks = np.stack([encoded.point_mask(k) for k in range(encoded.num_objects)])
    assert masks.shape[1] == len(scene.points)
    assert (masks.sum(0) == 1).all()  # every input point in exactly one proposal's mask
    output = model.segment(encoded, "the box")
    assert output.target_mask.shape == (len(scene.points),)


def test_the_answer_loss_reaches_lora_and_special_rows_only(scene) -> None:
    """Stage 1 of the recipe trains the LLM's LoRA and special-token rows; the parser is
    frozen and the grounding head is not in the LM loss."""
    model = tiny_model(llm_mode="lora").train()
    encoded = model.encode_scene(scene.points, scene.colors)
    objects = encoded.objects
    tokens = model.scene_tokens(objects.category_probs, objects.color_probs)
    sequence = model.prompts.two_stage_sequence("the box", ["red box"], "green box")
    model.teacher_forced(tokens, [sequence])[0].backward()
    assert not any(p.requires_grad for p in model.parser.parameters())
    assert all(p.grad is None for p in model.grounding.parameters())
    for part in ("lora_B", "special_rows"):  # lora_A's gradient is 0 while lora_B starts at 0
        grads = [p.grad for n, p in model.llm.named_parameters() if part in n]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), part
    assert not model.parser.training  # frozen statistics too


def test_model_builds_from_config_on_the_tiny_llm(model: R2SModel) -> None:
    assert R2SModel.build(model.config).llm_bundle.source == model.config.llm_source
