"""Training config files, overrides and the learning-rate schedule."""

import itertools
import json
import re
from pathlib import Path

import pytest

from r2s_model.checkpoint import DEFAULT_CHECKPOINT
from r2s_model.config import ConfigError, from_mapping
from r2s_model.objects.checkpoint import DEFAULT_PARSER
from r2s_model.train.config import PretrainConfig, TrainConfig, load_train_config
from r2s_model.train.schedule import warmup_cosine

CONFIGS = Path(__file__).parents[2] / "configs" / "train"


@pytest.mark.parametrize(
    ("name", "stage"),
    [("answer.yaml", "answer"), ("grounding.yaml", "grounding"), ("smoke.yaml", "answer")],
)
def test_shipped_configs_load(name: str, stage: str) -> None:
    config = load_train_config(CONFIGS / name)
    assert config.stage == stage and config.optim.steps > 0 and config.data.root
    assert (config.init_from is not None) == (stage == "grounding")


def test_the_parser_recipes_are_the_shipped_parsers() -> None:
    """configs/train/pretrain.yaml then parser_scans.yaml (from the first's parser), run as
    their headers say, made r2s_model/weights/parser; each run's config is read as today's
    (options added since then take their defaults, as in the run)."""
    shipped = json.loads((DEFAULT_PARSER / "config.json").read_text())["metadata"]
    runs = [shipped["init_from_metadata"], shipped]
    for name, run in zip(("pretrain.yaml", "parser_scans.yaml"), runs, strict=True):
        recipe = load_train_config(CONFIGS / name, kind=PretrainConfig)
        ran = from_mapping(PretrainConfig, run["train_config"], f"shipped {name}")
        assert recipe.to_dict() == ran.to_dict()
        assert run["command"] == ["r2s-pretrain", "--config", f"configs/train/{name}"]
    assert shipped["train_config"]["init_from"] == "runs/pretrain/model"


def test_the_grounding_recipe_is_the_shipped_model_s() -> None:
    """configs/train/grounding.yaml, with the overrides its recorded command gave (where the
    data and the run folder were), is the config that trained r2s_model/weights/default."""
    shipped = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())["metadata"]
    command = shipped["command"]
    assert command[:3] == ["r2s-train", "--config", "configs/train/grounding.yaml"]
    overrides = command[4:] if command[3:4] == ["--set"] else []
    assert {override.partition("=")[0] for override in overrides} <= {"data.root", "out"}
    recipe = load_train_config(CONFIGS / "grounding.yaml", overrides).to_dict()
    ran = from_mapping(TrainConfig, shipped["train_config"], "shipped grounding.yaml").to_dict()
    # The default parser, recorded as an absolute path where the run's checkout was.
    assert Path(ran.pop("parser")).parts[-3:] == Path(recipe.pop("parser")).parts[-3:]
    assert recipe == ran


def test_overrides_reach_nested_fields_and_parse_as_yaml() -> None:
    config = load_train_config(
        CONFIGS / "grounding.yaml",
        [
            "optim.lr=1e-4",
            "model.mode=single_stage",
            "model.augmentation.drop_prob=0.5",
            "model.parser.encoder.widths=[8, 16]",
            "seed=5",
        ],
    )
    assert config.optim.lr == pytest.approx(1e-4)
    assert config.model.mode == "single_stage"
    assert config.model.augmentation.drop_prob == 0.5
    assert config.model.parser.encoder.widths == (8, 16)
    assert config.seed == 5
    assert config.data.batch_size == 64  # untouched values keep the file's


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown keys ['lrr']"),
        ("model.mode=three_stage", "mode must be"),
        ("optim.steps=0", "optim.steps must be at least 1"),
        ("precision=fp8", "precision must be"),
        ("optim.steps=many", "optim.steps: expected an integer, got 'many'"),
        ("optim.lr=fast", "optim.lr: expected a number, got 'fast'"),
        ("novalue", "must look like key.path=value"),
        ("optim.lr.x=1", "is not a section"),
        ("stage=both", "stage must be 'answer' or 'grounding'"),
        ("stage=grounding", "the grounding stage needs init_from"),
        ("data.batch_size=0", "data.batch_size must be at least 1"),
        ("data.samples_per_scene=0", "data.samples_per_scene must be at least 1"),
        ("data.train_scenes=0", "data.train_scenes must be at least 1"),
        ("data.train_scenes=all", "data.train_scenes: expected an integer, got 'all'"),
        ("eval.limit=some", "eval.limit: expected an integer, got 'some'"),
    ],
)
def test_bad_values_name_the_problem(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_train_config(CONFIGS / "answer.yaml", [override])


def test_unreadable_config_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("optim: [unclosed")
    with pytest.raises(ConfigError, match=r"broken\.yaml"):
        load_train_config(path)


def test_warmup_then_cosine_to_the_floor() -> None:
    values = [warmup_cosine(s, warmup=10, total=110, min_ratio=0.1) for s in range(130)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in itertools.pairwise(values[:10]))
    decay = values[10:111]
    assert all(a >= b for a, b in itertools.pairwise(decay))
    assert values[60] == pytest.approx(0.55)  # halfway down the cosine
    assert values[110:] == [pytest.approx(0.1)] * 20  # past the end it stays at the floor
