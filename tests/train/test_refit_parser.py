"""A checkpoint takes the heads and link threshold of a fine-tuned copy of its parser, and
refuses a parser whose trunk (the features its stages were trained on) changed."""

import dataclasses
from pathlib import Path

import pytest
import torch

from r2s_model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_config,
    read_weights,
    save_checkpoint,
)
from r2s_model.objects.checkpoint import save_parser
from r2s_model.objects.parser import SceneParser
from r2s_model.train.refit_parser import main, refit
from tests.model.tiny import TINY_PARSER, tiny_model, tiny_scene


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tiny_model(seed=3, llm_mode="lora")
    return save_checkpoint(model, tmp_path_factory.mktemp("refit") / "ckpt", {"steps": 1})


def tuned_parser(checkpoint: Path, folder: Path, prefix: str, **config: object) -> Path:
    """The checkpoint's parser with the tensors under `prefix` shifted, saved to `folder`."""
    parser = SceneParser(dataclasses.replace(TINY_PARSER, **config))
    state = {k[len("parser.") :]: v for k, v in read_weights(checkpoint).items()}
    parser.load_state_dict({k: state[k] for k in parser.state_dict()})
    with torch.no_grad():
        for name, value in parser.named_parameters():
            if name.startswith(prefix):
                value.add_(0.5)
    return save_parser(parser, folder, {"command": ["r2s-pretrain", "tuned"]}, dtype=torch.float32)


def test_the_heads_and_threshold_move_and_nothing_else(checkpoint: Path, tmp_path: Path) -> None:
    parser = tuned_parser(checkpoint, tmp_path / "parser", "semantic_head", link_threshold=0.3)
    replaced = refit(checkpoint, parser, tmp_path / "out", ["refit"])
    assert replaced == ["semantic_head.weight", "semantic_head.bias"]

    before, after = load_checkpoint(checkpoint), load_checkpoint(tmp_path / "out")
    assert after.config.parser.link_threshold == 0.3
    changed = {
        name
        for name, value in after.state_dict().items()
        if not torch.equal(value, before.state_dict()[name])
    }
    assert changed == {"parser.semantic_head.weight", "parser.semantic_head.bias"}
    refit_record = read_checkpoint_config(tmp_path / "out")["metadata"]["parser_refit"]
    assert refit_record["parser_command"] == ["r2s-pretrain", "tuned"]
    assert refit_record["link_threshold"]["after"] == 0.3
    scene = tiny_scene(seed=4)
    assert len(after.encode_scene(scene.points, scene.colors).objects) > 0


def test_a_changed_trunk_or_shape_is_refused(checkpoint: Path, tmp_path: Path, capsys) -> None:
    trunk = tuned_parser(checkpoint, tmp_path / "trunk", "layers.0")
    with pytest.raises(CheckpointError, match=r"trunk tensor layers\.0"):
        refit(checkpoint, trunk, tmp_path / "out", ["refit"])
    assert not (tmp_path / "out").exists()

    other = save_parser(
        SceneParser(dataclasses.replace(TINY_PARSER, dim=48)), tmp_path / "other", {},
        dtype=torch.float32,
    )  # fmt: skip
    code = main(["--checkpoint", str(checkpoint), "--parser", str(other), "--out", "x"])
    assert code == 2
    assert "differs from" in capsys.readouterr().err
