"""R2SModel end to end on tiny random configs: shapes, gradients, learning, reuse, bad input."""

import numpy as np
import pytest
import torch
from transformers import DynamicCache

from r2s_model.config import AugmentationConfig, InputLimits
from r2s_model.model import R2SModel, SegmentationStatus, _relevant_elements, _run
from tests.model.tiny import object_ids, tiny_model, tiny_scene, training_batch

MODES = ["two_stage", "single_stage"]


@pytest.fixture(scope="module")
def scene():
    return tiny_scene(seed=3)


def _iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(predicted, truth).sum()
    return float(np.logical_and(predicted, truth).sum() / union) if union else 1.0


@pytest.mark.parametrize("mode", MODES)
def test_forward_returns_finite_losses(scene, mode: str) -> None:
    model = tiny_model(mode=mode)
    ids = object_ids(scene)
    losses = model(training_batch(scene, target=ids[1], relevant=[ids[2], ids[1]]))
    expected = {"total", "lm_stage1", "lm_stage2", "target_bce", "target_dice", "target_score"}
    assert expected <= set(losses)
    assert all(torch.isfinite(value) for value in losses.values())
    assert losses["total"].requires_grad
    if mode == "two_stage":
        assert {"relevant_bce", "relevant_dice", "relevant_score"} <= set(losses)
        assert losses["lm_stage1"] > 0
    else:
        assert float(losses["lm_stage1"]) == 0.0


def test_no_target_sample_trains_only_the_score(scene) -> None:
    model = tiny_model()
    ids = object_ids(scene)
    losses = model(training_batch(scene, target=None, relevant=[ids[1]]))
    assert float(losses["target_bce"]) == 0.0
    assert float(losses["target_score"]) > 0.0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("llm_mode", ["lora", "frozen", "full"])
def test_gradients_reach_every_trainable_part(scene, mode: str, llm_mode: str) -> None:
    # No prior may be dropped here, or the prior projector would rightly get no gradient.
    augmentation = AugmentationConfig(drop_prob=0.0, add_prob=1.0)
    model = tiny_model(mode=mode, llm_mode=llm_mode, augmentation=augmentation)
    ids = object_ids(scene)
    model(training_batch(scene, target=ids[1], relevant=[ids[2]]))["total"].backward()
    parts = ["encoder.", "spatial.", "compressor.", "decoder."]
    if mode == "two_stage":
        parts.append("prior_projector.")
    if llm_mode == "lora":
        parts.append("lora_")
    for part in parts:
        grads = [
            p.grad
            for name, p in model.named_parameters()
            if part in name and p.requires_grad and p.grad is not None
        ]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"no gradient reaches {part}"
    if llm_mode == "full":
        embedding = model.llm.get_input_embeddings().weight
        special = embedding.grad[list(model.prompts.ids.values())]
    else:
        special = next(p.grad for n, p in model.named_parameters() if "special_rows" in n)
    assert special is not None and special.abs().sum() > 0, "special-token rows get no gradient"


def test_training_steps_lower_the_loss_and_raise_the_iou(scene) -> None:
    """A few optimisation steps on one scene: the wiring learns (loss down, target IoU up)."""
    model = tiny_model(seed=1)
    ids = object_ids(scene)
    target = ids[2]
    batch = training_batch(scene, target=target, relevant=[ids[1]])
    truth = scene.instance == target

    def target_iou() -> float:
        model.eval()
        output = model.segment(model.encode_scene(scene.points, scene.colors), "the box")
        model.train()
        return _iou(output.target_mask, truth)

    iou_before = target_iou()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = model(batch)["total"]
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    iou_after = target_iou()
    assert iou_after > max(0.5, iou_before + 0.2), (iou_before, iou_after)


@pytest.mark.parametrize("mode", MODES)
def test_segment_output_shapes(scene, mode: str) -> None:
    model = tiny_model(mode=mode).eval()
    encoded = model.encode_scene(scene.points, scene.colors)
    output = model.segment(encoded, "the chair nearest the window")
    assert output.status in (SegmentationStatus.OK, SegmentationStatus.NO_TARGET)
    assert output.target_mask.shape == (len(scene.points),)
    assert output.target_mask.dtype == bool
    assert 0.0 <= output.target_score <= 1.0
    for element in output.relevant:
        assert element.mask.shape == (len(scene.points),)
    assert {"superpoints", "encode", "stage1"} <= set(output.timings_ms)


def test_confident_relevant_elements_become_point_masks_and_priors(scene) -> None:
    """The stage-1 decoding path a trained model takes (a random one never passes the
    thresholds, hence the low ones here)."""
    model = tiny_model(mask_threshold=0.01, score_threshold=0.01).eval()
    encoded = model.encode_scene(scene.points, scene.colors)
    states = torch.randn(3, model.llm_bundle.hidden_size)
    elements, priors = _relevant_elements(model, encoded, ["bed", "window", "lamp"], states)
    assert 1 <= len(elements) == len(priors)
    kept = [element.name for element in elements]
    assert kept == [name for name in ["bed", "window", "lamp"] if name in kept]  # in order
    for element, prior in zip(elements, priors, strict=True):
        assert element.mask.shape == (len(scene.points),) and element.mask.any()
        assert 0.01 <= element.score <= 1.0
        assert prior.shape == (encoded.num_superpoints,)


def test_bfloat16_llm_with_float32_heads(scene) -> None:
    model = tiny_model().eval()
    reference = model.segment(model.encode_scene(scene.points, scene.colors), "the box")
    model.llm.to(torch.bfloat16)
    output = model.segment(model.encode_scene(scene.points, scene.colors), "the box")
    assert output.status in (SegmentationStatus.OK, SegmentationStatus.NO_TARGET)
    assert output.target_mask.shape == reference.target_mask.shape
    assert abs(output.target_score - reference.target_score) < 0.05


def test_reused_scene_encoding_gives_identical_results(scene) -> None:
    model = tiny_model().eval()
    encoded = model.encode_scene(scene.points, scene.colors)
    model.segment(encoded, "the largest box")
    reused = model.segment(encoded, "the box left of the wall")
    fresh = model.segment(
        model.encode_scene(scene.points, scene.colors), "the box left of the wall"
    )
    assert np.array_equal(reused.target_mask, fresh.target_mask)
    assert reused.target_score == fresh.target_score
    assert reused.answer == fresh.answer
    assert [e.name for e in reused.relevant] == [e.name for e in fresh.relevant]


def test_on_relevant_gets_stage_1s_elements_and_can_abandon_the_call(scene) -> None:
    model = tiny_model().eval()
    encoded = model.encode_scene(scene.points, scene.colors)
    seen: list = []
    output = model.segment(encoded, "the box", on_relevant=seen.append)
    assert seen == [output.relevant]

    class Stop(Exception):
        pass

    def stop(_relevant: list) -> None:
        raise Stop

    with pytest.raises(Stop):
        model.segment(encoded, "the box", on_relevant=stop)
    assert model.segment(encoded, "the box").target_score == output.target_score
    single = tiny_model(mode="single_stage").eval()
    single.segment(single.encode_scene(scene.points, scene.colors), "the box", seen.append)
    assert len(seen) == 1  # no stage 1, no call


def test_cropped_prefix_cache_matches_a_fresh_run(scene) -> None:
    """Stage 2 continues the prefix cache after stage 1 was cropped away: same states as
    running prefix + stage 2 prompt from scratch."""
    model = tiny_model().eval()
    encoded = model.encode_scene(scene.points, scene.colors)
    prompts = model.prompts
    with torch.no_grad():
        scene_tokens = model.compress(encoded.tokens, ["the box"])
        prefix = prompts.prefix("the box")
        stage2 = prompts.stage2_prompt([])
        cache = DynamicCache()
        _run(model, prefix, scene_tokens, None, cache)
        _run(model, prompts.stage1_prompt() + [prompts.ids["[REL]"]] * 3, None, None, cache)
        cache.crop(len(prefix) - cache.get_seq_length())
        reused, _ = _run(model, stage2, None, None, cache)
        fresh, _ = _run(model, prefix + stage2, scene_tokens, None, DynamicCache())
    torch.testing.assert_close(reused, fresh[len(prefix) :], rtol=1e-4, atol=1e-5)


def test_bad_clouds_and_instructions_give_statuses(scene) -> None:
    model = tiny_model().eval()
    points = scene.points.copy()
    points[::7] = np.nan
    points[1::7, 2] = np.inf
    encoded = model.encode_scene(points, scene.colors)
    assert encoded.cloud.dropped_nonfinite == len(points[::7]) + len(points[1::7])
    output = model.segment(encoded, "the box")
    assert output.target_mask.shape == (len(points),)
    assert not output.target_mask[::7].any()

    empty = model.encode_scene(np.zeros((0, 3), np.float32), None)
    assert model.segment(empty, "the box").status == SegmentationStatus.EMPTY_SCENE
    few = model.encode_scene(scene.points[:10], scene.colors[:10])
    assert model.segment(few, "the box").status == SegmentationStatus.EMPTY_SCENE

    for bad in ["", "   \n\t", "x" * 10_000, None]:
        result = model.segment(encoded, bad)
        assert result.status == SegmentationStatus.INVALID_INSTRUCTION, bad
        assert result.reason
    odd = model.segment(encoded, "la chaise près de 🪟\u200d\x00 窓の近く")
    assert odd.status in (SegmentationStatus.OK, SegmentationStatus.NO_TARGET)
    assert "\x00" not in odd.instruction


def test_oversized_cloud_is_subsampled_and_masks_cover_every_point(scene) -> None:
    model = tiny_model(limits=InputLimits(max_points=2000)).eval()
    encoded = model.encode_scene(scene.points, scene.colors)
    assert encoded.cloud.subsampled and len(encoded.cloud.points) == 2000
    mask = encoded.point_mask(torch.ones(encoded.num_superpoints, dtype=torch.bool))
    assert mask.shape == (len(scene.points),) and mask.all()


def test_model_builds_from_config_on_the_tiny_llm() -> None:
    config = tiny_model().config
    assert R2SModel.build(config).llm_bundle.source == config.llm_source
