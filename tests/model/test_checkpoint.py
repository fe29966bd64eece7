"""Checkpoint round trips are bit-identical; wrong LLMs and damaged files fail clearly."""

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
    save_checkpoint,
)
from r2s_model.llm import build_tiny_llm
from tests.model.tiny import object_ids, tiny_model, tiny_scene, training_batch


@pytest.fixture(scope="module")
def scene():
    return tiny_scene(seed=5)


@pytest.fixture(scope="module")
def trained(scene):
    """A tiny model after a few steps, so the saved weights differ from a fresh init."""
    model = tiny_model(seed=2, llm_mode="lora")
    ids = object_ids(scene)
    batch = training_batch(scene, target=ids[1], relevant=[ids[2]])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(3):
        optimizer.zero_grad()
        model(batch)["total"].backward()
        optimizer.step()
    return model.eval()


def test_round_trip_is_bit_identical(trained, scene, tmp_path: Path) -> None:
    folder = save_checkpoint(trained, tmp_path / "ckpt", metadata={"steps": 3})
    loaded = load_checkpoint(folder)
    saved_state, loaded_state = trained.trainable_state(), loaded.trainable_state()
    assert saved_state.keys() == loaded_state.keys()
    for key, value in saved_state.items():
        assert torch.equal(value.cpu(), loaded_state[key].cpu()), key

    encoded = [m.encode_scene(scene.points, scene.colors) for m in (trained, loaded)]
    outputs = [m.segment(e, "the box") for m, e in zip((trained, loaded), encoded, strict=True)]
    assert np.array_equal(outputs[0].target_mask, outputs[1].target_mask)
    assert outputs[0].target_score == outputs[1].target_score
    assert outputs[0].answer == outputs[1].answer
    assert json.loads((folder / CONFIG_FILE).read_text())["metadata"] == {"steps": 3}


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


def test_config_mismatch_fails_clearly(trained, tmp_path: Path) -> None:
    folder = save_checkpoint(trained, tmp_path / "ckpt")
    description = json.loads((folder / CONFIG_FILE).read_text())
    description["config"]["decoder_dim"] = 64
    (folder / CONFIG_FILE).write_text(json.dumps(description))
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_checkpoint(folder)

    description["config"]["no_such_option"] = 1
    (folder / CONFIG_FILE).write_text(json.dumps(description))
    with pytest.raises(CheckpointError, match="unknown keys"):
        load_checkpoint(folder)
