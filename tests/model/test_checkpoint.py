"""Checkpoint round trips are bit-identical (the frozen parser's weights included); wrong LLMs
and damaged files fail clearly."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from r2s_model.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from r2s_model.llm import build_tiny_llm
from r2s_model.objects.parser import SceneParser
from tests.model.tiny import TINY_PARSER, tiny_model, tiny_scene


@pytest.fixture(scope="module")
def scene():
    return tiny_scene(seed=5)


@pytest.fixture(scope="module")
def trained(scene):
    """A tiny LoRA model whose every saved part differs from a fresh init: a parser of other
    weights (as a pretrained one is), and a few steps on the LLM and the head."""
    model = tiny_model(seed=2, llm_mode="lora")
    torch.manual_seed(11)
    model.parser.load_state_dict(SceneParser(TINY_PARSER).state_dict())
    encoded = model.encode_scene(scene.points, scene.colors)
    objects = encoded.objects
    tokens = model.scene_tokens(objects.category_probs, objects.color_probs)
    sequence = model.prompts.two_stage_sequence("the box", ["red box"], "green box")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    states = torch.randn(1, 1, model.llm_bundle.hidden_size)
    for _ in range(3):
        optimizer.zero_grad()
        loss = model.teacher_forced(tokens, [sequence])[0]
        batch = type(objects).stack([objects])
        words, match = torch.randn(1, 2, states.shape[-1]), torch.ones(1, 1, len(objects))
        loss = (
            loss
            + model.grounding.relevant_logits(
                states, torch.ones(1, 1).bool(), batch, words, torch.ones(1, 2).bool(), match
            ).sum()
        )
        loss.backward()
        optimizer.step()
    return model.eval()


def test_round_trip_is_bit_identical(trained, scene, tmp_path: Path) -> None:
    folder = save_checkpoint(trained, tmp_path / "ckpt", metadata={"steps": 3})
    torch.manual_seed(0)
    loaded = load_checkpoint(folder)
    saved_state, loaded_state = trained.trainable_state(), loaded.trainable_state()
    assert saved_state.keys() == loaded_state.keys()
    assert {k.split(".")[0] for k in saved_state} == {"parser", "grounding", "llm"}
    assert any("lora_" in k for k in saved_state) and any("special_rows" in k for k in saved_state)
    for key, value in saved_state.items():
        assert torch.equal(value.cpu(), loaded_state[key].cpu()), key
    # The parser came from the file, not from the fresh init of the loading model.
    torch.manual_seed(0)
    fresh = SceneParser(TINY_PARSER).state_dict()
    assert sum(not torch.equal(v, saved_state[f"parser.{k}"]) for k, v in fresh.items()) > 10

    encoded = [m.encode_scene(scene.points, scene.colors) for m in (trained, loaded)]
    assert np.array_equal(encoded[0].point_objects, encoded[1].point_objects)
    outputs = [m.segment(e, "the box") for m, e in zip((trained, loaded), encoded, strict=True)]
    assert np.array_equal(outputs[0].target_mask, outputs[1].target_mask)
    assert outputs[0].target_score == outputs[1].target_score
    assert outputs[0].answer == outputs[1].answer
    assert json.loads((folder / CONFIG_FILE).read_text())["metadata"] == {"steps": 3}


def test_half_precision_storage_rounds_only_the_floats(trained, tmp_path: Path) -> None:
    folder = save_checkpoint(trained, tmp_path / "half", dtype=torch.float16)
    loaded = load_checkpoint(folder).trainable_state()
    for key, value in trained.trainable_state().items():
        if value.is_floating_point():
            assert loaded[key].dtype == torch.float32
            assert torch.equal(loaded[key], value.half().float()), key
        else:  # e.g. normalisation counters
            assert torch.equal(loaded[key], value), key


def test_a_score_threshold_given_at_load_replaces_the_checkpoints(trained, tmp_path: Path) -> None:
    """The node's and r2s-segment's `score_threshold` (0 keeps the calibrated value)."""
    folder = save_checkpoint(trained, tmp_path / "ckpt")
    kept = load_model(folder, "", "cpu").config.score_threshold
    assert kept == trained.config.score_threshold
    assert load_model(folder, "", "cpu", 0.0).config.score_threshold == kept
    assert load_model(folder, "", "cpu", 0.85).config.score_threshold == 0.85
    assert trained.config.score_threshold == kept  # the saved model is left alone


def test_a_different_llm_is_refused(trained, tmp_path: Path) -> None:
    folder = save_checkpoint(trained, tmp_path / "ckpt")
    other = build_tiny_llm(seed=99)
    with pytest.raises(CheckpointError, match="trained on the LLM"):
        load_checkpoint(folder, llm=other)


def test_damaged_checkpoints_fail_clearly(trained, tmp_path: Path) -> None:
    folder = save_checkpoint(trained, tmp_path / "ckpt")
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        load_checkpoint(folder)

    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "nowhere")

    folder = save_checkpoint(trained, tmp_path / "ckpt2")
    (folder / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(folder)


@pytest.mark.parametrize(("section", "key"), [(None, "grounding_dim"), ("parser", "dim")])
def test_config_mismatch_fails_clearly(trained, tmp_path: Path, section, key) -> None:
    folder = save_checkpoint(trained, tmp_path / "ckpt")
    description = json.loads((folder / CONFIG_FILE).read_text())
    config = description["config"][section] if section else description["config"]
    config[key] = 64
    (folder / CONFIG_FILE).write_text(json.dumps(description))
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_checkpoint(folder)

    config["no_such_option"] = 1
    (folder / CONFIG_FILE).write_text(json.dumps(description))
    with pytest.raises(CheckpointError, match="unknown keys"):
        load_checkpoint(folder)
