"""One configuration object for the whole model, serialisable to the checkpoint's JSON."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from r2s_model.llm import DEFAULT_LLM_SOURCE
from r2s_model.objects.parser import ParserConfig
from r2s_model.superpoints import SuperpointParams


class ConfigError(ValueError):
    """A configuration value or key that the model cannot use."""


@dataclass
class AugmentationConfig:
    """Relevant-objects augmentation (stage-2 priors during training, paper §3.3)."""

    drop_prob: float = 0.2  # each true relevant object is left out with this probability
    add_prob: float = 0.3  # chance of adding distractor objects to a sample's priors
    max_distractors: int = 2
    # Chance of training a sample whose target alone fits its question (a colour, a relation, a
    # use; not a superlative) with the target's proposals taken out of the scene: a no-target
    # sample that differs from a real one only there, and whose [SEG] state still names the
    # target as the LLM's wrongly named answers do.
    remove_target_prob: float = 0.0


@dataclass
class InputLimits:
    """Documented caps on what inference accepts."""

    max_points: int = 400_000  # larger clouds are subsampled (fixed seed) down to this
    min_points: int = 50  # fewer valid points than this is an empty scene
    max_instruction_chars: int = 500


@dataclass
class R2SConfig:
    """Everything that shapes the model; saved with every checkpoint."""

    mode: Literal["two_stage", "single_stage"] = "two_stage"
    llm_source: str = DEFAULT_LLM_SOURCE
    llm_mode: Literal["frozen", "lora", "full"] = "lora"
    lora_rank: int = 8
    parser: ParserConfig = field(default_factory=ParserConfig)  # frozen; weights ride along
    superpoints: SuperpointParams = field(default_factory=SuperpointParams)
    grounding_dim: int = 256
    grounding_layers: int = 2
    max_relevant: int = 4
    stage1_max_new_tokens: int = 32
    stage2_max_new_tokens: int = 16
    score_threshold: float = 0.3  # a target below this probability is no target
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    limits: InputLimits = field(default_factory=InputLimits)

    def __post_init__(self) -> None:
        if self.mode not in ("two_stage", "single_stage"):
            raise ConfigError(f"mode must be 'two_stage' or 'single_stage', got {self.mode!r}")
        if self.llm_mode not in ("frozen", "lora", "full"):
            raise ConfigError(f"llm_mode must be frozen, lora or full, got {self.llm_mode!r}")
        for name in ("max_relevant", "stage1_max_new_tokens", "stage2_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 < self.score_threshold < 1.0:
            raise ConfigError(f"score_threshold must lie in (0, 1), got {self.score_threshold}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> R2SConfig:
        """Inverse of `to_dict`; unknown or mistyped keys raise ConfigError naming them."""
        return from_mapping(cls, values, "config")


def from_mapping(kind: type, values: Any, where: str) -> Any:
    """Builds dataclass `kind` from nested plain values; ConfigError names the bad key."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(kind)
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(kind)})
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}")
    built = {}
    for name, value in values.items():
        if dataclasses.is_dataclass(hints[name]):
            built[name] = from_mapping(hints[name], value, f"{where}.{name}")
        elif isinstance(value, list):
            built[name] = tuple(value)
        else:
            built[name] = _scalar(hints[name], value, f"{where}.{name}")
    try:
        return kind(**built)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from error


def _scalar(hint: Any, value: Any, where: str) -> Any:
    """Checks numbers against their annotation: YAML reads `1e-4` (no dot) as a string, and a
    string learning rate would only fail deep inside the optimiser. `int | None` takes None or
    an integer."""
    arguments = typing.get_args(hint)
    if type(None) in arguments and len(arguments) == 2:
        if value is None:
            return None
        hint = next(argument for argument in arguments if argument is not type(None))
    if hint is float and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    return value
