"""The training configuration: a YAML file plus `key.path=value` command-line overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from r2s_model.config import ConfigError, R2SConfig, from_mapping
from r2s_model.objects.batches import AugmentConfig
from r2s_model.objects.checkpoint import DEFAULT_PARSER
from r2s_model.objects.losses import ParserLossWeights
from r2s_model.objects.parser import ParserConfig


@dataclass
class DataConfig:
    root: str = "data/r2s-default"  # a folder written by r2s-gen-data, cached by
    # r2s-cache-objects (and, for the grounding stage, r2s-cache-states)
    train_split: str = "train"
    train_scenes: int | None = None  # only the train split's first N scenes (sorted ids)
    val_split: str = "val"
    samples_per_scene: int = 4  # answer stage: instructions of the step's one scene
    batch_size: int = 64  # grounding stage: instructions per step (from cached states)


@dataclass
class OptimConfig:
    steps: int = 800  # optimiser steps
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    accumulation: int = 1  # micro-batches per optimiser step


@dataclass
class EvalConfig:
    every: int = 200  # steps between validations; 0 = only at the end
    limit: int | None = 48  # val samples scored during training (None = all)
    final_limit: int | None = None  # val samples scored at the end (None = the whole split)


@dataclass
class RunConfig:
    """What every training run has, whatever it trains."""

    out: str = "runs/default"
    seed: int = 0
    device: str = "auto"  # auto = cuda when available
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    threads: int = 0  # torch CPU threads; 0 = torch's default
    save_every: int = 100  # steps between resumable checkpoints
    stop_after: int | None = None  # save and stop after this many steps in this process (job
    # time limits); rerunning the command resumes
    log_every: int = 5
    export_dtype: Literal["float32", "float16", "bfloat16"] = "float16"  # the final model's weights
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        for name, value in (
            ("optim.steps", self.optim.steps),
            ("optim.accumulation", self.optim.accumulation),
            ("save_every", self.save_every),
            ("log_every", self.log_every),
        ):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig(RunConfig):
    """r2s-train: one stage of the R2S recipe on instruction samples.

    stage "answer": the LLM's LoRA learns to write both stages' answers (train/answer.py);
    stage "grounding": the grounding head learns to choose objects from cached LLM states
    (train/grounding.py), starting from the answer stage's checkpoint (`init_from`).
    """

    stage: Literal["answer", "grounding"] = "answer"
    parser: str = str(DEFAULT_PARSER)  # the frozen scene parser's folder
    init_from: str | None = None  # a checkpoint folder whose trainable state starts the run
    data: DataConfig = field(default_factory=DataConfig)
    model: R2SConfig = field(default_factory=R2SConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stage not in ("answer", "grounding"):
            raise ConfigError(f"stage must be 'answer' or 'grounding', got {self.stage!r}")
        if self.stage == "grounding" and not self.init_from:
            raise ConfigError("the grounding stage needs init_from: the answer stage's model")
        for name, value in (
            ("data.samples_per_scene", self.data.samples_per_scene),
            ("data.batch_size", self.data.batch_size),
            ("data.train_scenes", self.data.train_scenes),
        ):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")


@dataclass
class PretrainDataConfig:
    root: str = "data/r2s-pretrain"  # a folder written by r2s-gen-data
    train_split: str = "train"
    val_split: str = "val"
    scenes_per_batch: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class PretrainConfig(RunConfig):
    """r2s-pretrain: the scene parser on per-point labels (eval.limit counts val scenes)."""

    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    model: ParserConfig = field(default_factory=ParserConfig)
    loss: ParserLossWeights = field(default_factory=ParserLossWeights)
    init_from: str | None = None  # a parser folder whose weights start the run (same `model`)
    # The parser's parts that train (e.g. [link_head]), the others frozen; null: all of them.
    train_modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data.scenes_per_batch < 1:
            raise ConfigError(
                f"data.scenes_per_batch must be at least 1, got {self.data.scenes_per_batch}"
            )
        if not 0.0 <= self.data.augment.scan_prob <= 1.0:
            raise ConfigError(
                f"data.augment.scan_prob must lie in [0, 1], got {self.data.augment.scan_prob}"
            )
        if not 0.0 < self.data.augment.min_keep <= 1.0:
            raise ConfigError(
                f"data.augment.min_keep must lie in (0, 1], got {self.data.augment.min_keep}"
            )


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=1e-4' -> (['optim', 'lr'], 0.0001); the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    return key.split("."), yaml.safe_load(value)


def load_train_config(
    path: Path | None, overrides: list[str] = (), kind: type[RunConfig] = TrainConfig
) -> Any:
    """Reads the YAML (if given) as `kind`, applies the overrides in order, validates all."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: cannot read the training config ({error})") from error
    for override in overrides:
        keys, value = parse_override(override)
        node = values
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {override!r}: {key!r} is not a section")
        node[keys[-1]] = value
    return from_mapping(kind, values, "train config")
