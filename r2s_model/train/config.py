"""The training configuration: a YAML file plus `key.path=value` command-line overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from r2s_model.config import ConfigError, R2SConfig, from_mapping
from r2s_model.objects.batches import AugmentConfig
from r2s_model.objects.losses import ParserLossWeights
from r2s_model.objects.parser import ParserConfig


@dataclass
class DataConfig:
    root: str = "data/r2s-default"  # a folder written by r2s-gen-data
    train_split: str = "train"
    val_split: str = "val"
    scenes_per_batch: int = 1
    samples_per_scene: int = 4  # instructions on each scene of a batch (the encoder runs once)
    max_points: int = 40_000  # random subsample per scene and step (augmentation and speed)
    min_keep: float = 0.6  # the subsample keeps at least this share of the points


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
    limit: int = 48  # val samples scored during training
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
    """r2s-train: the R2S model on instruction samples."""

    data: DataConfig = field(default_factory=DataConfig)
    model: R2SConfig = field(default_factory=R2SConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, value in (
            ("data.scenes_per_batch", self.data.scenes_per_batch),
            ("data.samples_per_scene", self.data.samples_per_scene),
            ("data.max_points", self.data.max_points),
        ):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if not 0.0 < self.data.min_keep <= 1.0:
            raise ConfigError(f"data.min_keep must lie in (0, 1], got {self.data.min_keep}")


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

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data.scenes_per_batch < 1:
            raise ConfigError(
                f"data.scenes_per_batch must be at least 1, got {self.data.scenes_per_batch}"
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
