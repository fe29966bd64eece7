"""Dense pretraining: a few dozen steps on a few scenes make the parser better at them."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from r2s_model.config import ConfigError
from r2s_model.eval.scene_eval import evaluate_scenes, parsed_scenes
from r2s_model.objects.checkpoint import load_parser, parser_metadata, save_parser
from r2s_model.objects.parser import SceneParser
from r2s_model.train.cli import pretrain_main
from r2s_model.train.config import PretrainConfig, PretrainDataConfig
from r2s_model.train.loop import Trainer
from r2s_model.train.pretrain import ParserTask
from tests.objects.conftest import tiny_parser_config


def smoke_config(data: Path, out: Path) -> PretrainConfig:
    config = PretrainConfig(
        out=str(out),
        threads=1,
        log_every=5,
        save_every=20,
        data=PretrainDataConfig(root=str(data), scenes_per_batch=1),
        model=tiny_parser_config(),
        export_dtype="float32",
    )
    config.optim.steps, config.optim.lr, config.optim.warmup_steps = 40, 3e-3, 5
    config.eval.every, config.eval.limit, config.eval.final_limit = 20, 1, 2
    # Whole scenes, lightly varied: the test asks whether the labels are learnt, not how robustly.
    config.data.augment = dataclasses.replace(
        config.data.augment, cut_prob=0.0, hole_prob=0.0, min_keep=0.8
    )
    return config


def train_scores(parser: SceneParser, data: Path) -> dict:
    scenes = parsed_scenes(parser, data, "train", recompute_superpoints=False, progress=False)
    return evaluate_scenes(parser, scenes)


def test_pretraining_raises_the_accuracy_and_exports(small_dataset: Path, tmp_path: Path) -> None:
    config = smoke_config(small_dataset, tmp_path / "run")
    trainer = Trainer(config, ParserTask(config), ["test"])
    before = train_scores(trainer.model.parser.eval(), small_dataset)
    summary = trainer.run()
    after = train_scores(load_parser(tmp_path / "run" / "model"), small_dataset)
    assert after["semantic_acc"] >= before["semantic_acc"] + 0.15, (before, after)
    assert after["semantic_macro_acc"] > before["semantic_macro_acc"]

    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in log if "loss" in entry]
    assert len(losses) == 8 and set(losses[0]) == {"semantic", "color", "link", "total"}
    for term in ("semantic", "link", "total"):
        assert losses[-1][term] < 0.8 * losses[0][term], term
    assert [entry["step"] for entry in log if "val" in entry] == [20, 40, 40]
    assert summary["num_scenes"] == 2
    metadata = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["metadata"]
    assert metadata["command"] == ["test"] and metadata["data"]["seed"] == 7
    assert (tmp_path / "run" / "curves.png").stat().st_size > 10_000


def test_the_command_line_rejects_a_bad_override(small_dataset: Path, capsys) -> None:
    try:
        pretrain_main(["--set", f"data.root={small_dataset}", "data.scenes_per_batch=0"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "data.scenes_per_batch must be at least 1" in capsys.readouterr().err


def test_a_run_can_start_from_a_parser_and_train_only_some_parts(
    small_dataset: Path, tmp_path: Path
) -> None:
    start = tmp_path / "start"
    save_parser(SceneParser(tiny_parser_config()), start, {"steps": 9}, dtype=torch.float32)
    config = smoke_config(small_dataset, tmp_path / "run")
    config = dataclasses.replace(config, init_from=str(start), train_modules=("link_head",))
    config.optim.steps, config.eval.every, config.eval.final_limit = 6, 0, 1
    config.data.augment = dataclasses.replace(config.data.augment, scan_prob=0.5)
    summary = Trainer(config, ParserTask(config), ["test"]).run()
    assert {"scan_instance_recall50", "scan_semantic_acc"} <= set(summary)

    before, after = load_parser(start).state_dict(), load_parser(tmp_path / "run" / "model")
    changed = {
        name.split(".")[0]
        for name, value in after.state_dict().items()
        if not torch.equal(value, before[name])
    }
    assert changed == {"link_head"}
    assert parser_metadata(tmp_path / "run" / "model")["init_from_metadata"] == {"steps": 9}


def test_unknown_parts_and_a_misshapen_start_are_config_errors(
    small_dataset: Path, tmp_path: Path
) -> None:
    config = dataclasses.replace(
        smoke_config(small_dataset, tmp_path / "run"), train_modules=("link_head", "decoder")
    )
    with pytest.raises(ConfigError, match=r"train_modules \['decoder'\] are not parts"):
        ParserTask(config).build()
    other = tmp_path / "other"
    save_parser(
        SceneParser(dataclasses.replace(tiny_parser_config(), dim=48)),
        other,
        {},
        dtype=torch.float32,
    )
    config = dataclasses.replace(config, train_modules=None, init_from=str(other))
    with pytest.raises(ConfigError, match="is not shaped as `model` says"):
        ParserTask(config).build()
