"""SceneParser weights on disk: `config.json` (shape + free metadata) and `model.safetensors`.

The shipped parser lives in `r2s_model/weights/parser`. `parser_digest` identifies weights and
config (the feature cache records it to detect stale entries).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from r2s_model.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    read_weights,
    write_weights_folder,
)
from r2s_model.config import ConfigError, from_mapping
from r2s_model.objects.parser import ParserConfig, SceneParser

DEFAULT_PARSER = Path(__file__).parent.parent / "weights" / "parser"
FORMAT = "r2s-scene-parser"


def save_parser(
    parser: SceneParser, folder: Path, metadata: dict[str, Any], *, dtype: torch.dtype
) -> Path:
    """Writes atomically; floating-point weights stored in `dtype`."""
    description = {
        "format": FORMAT,
        "parser": dataclasses.asdict(parser.config),
        "metadata": metadata,
    }
    return write_weights_folder(folder, parser.state_dict(), description, dtype)


def load_parser(folder: Path = DEFAULT_PARSER, device: str | torch.device = "cpu") -> SceneParser:
    """Loads a parser in eval mode; CheckpointError names the file and what is wrong."""
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    try:
        description = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{config_path}: cannot read the parser config ({error})") from error
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise CheckpointError(f"{config_path}: not a scene-parser checkpoint")
    try:
        config = from_mapping(ParserConfig, description.get("parser"), "parser")
    except ConfigError as error:
        raise CheckpointError(f"{config_path}: {error}") from error
    parser = SceneParser(config)
    state = read_weights(folder)
    try:
        parser.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        )
    except RuntimeError as error:
        raise CheckpointError(
            f"{folder / WEIGHTS_FILE}: does not match its config ({error})"
        ) from error
    return parser.to(device).eval()


def parser_metadata(folder: Path = DEFAULT_PARSER) -> dict[str, Any]:
    return json.loads((Path(folder) / CONFIG_FILE).read_text()).get("metadata", {})


def parser_digest(folder: Path = DEFAULT_PARSER) -> str:
    """SHA-256 over the weights file and the parser config (which includes the grouping
    threshold): whatever changes the parser's outputs changes the digest."""
    description = json.loads((Path(folder) / CONFIG_FILE).read_text())
    digest = hashlib.sha256((Path(folder) / WEIGHTS_FILE).read_bytes())
    digest.update(json.dumps(description.get("parser"), sort_keys=True).encode())
    return digest.hexdigest()
