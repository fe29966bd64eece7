"""SceneParser weights on disk: `config.json` (shape + free metadata) and `model.safetensors`.

The shipped parser lives in `r2s_model/weights/parser`. `weights_digest` identifies the weights
(the feature cache records it to detect stale entries).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError

from r2s_model.checkpoint import CheckpointError
from r2s_model.config import ConfigError, from_mapping
from r2s_model.objects.parser import ParserConfig, SceneParser

DEFAULT_PARSER = Path(__file__).parent.parent / "weights" / "parser"
FORMAT = "r2s-scene-parser"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_parser(
    parser: SceneParser, folder: Path, metadata: dict[str, Any], *, dtype: torch.dtype
) -> Path:
    """Writes atomically (a temporary folder renamed into place); floats stored in `dtype`."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        state = {
            k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in parser.state_dict().items()
        }
        safetensors.torch.save_file(state, staging / WEIGHTS_FILE)
        description = {
            "format": FORMAT,
            "parser": dataclasses.asdict(parser.config),
            "metadata": metadata,
        }
        (staging / CONFIG_FILE).write_text(json.dumps(description, indent=2, default=str) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_parser(folder: Path = DEFAULT_PARSER, device: str | torch.device = "cpu") -> SceneParser:
    """Loads a parser in eval mode; CheckpointError names the file and what is wrong."""
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    try:
        description = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{config_path}: cannot read the parser config ({error})") from error
    if description.get("format") != FORMAT:
        raise CheckpointError(f"{config_path}: not a scene-parser checkpoint")
    try:
        config = from_mapping(ParserConfig, description["parser"], "parser")
    except (ConfigError, KeyError) as error:
        raise CheckpointError(f"{config_path}: {error}") from error
    parser = SceneParser(config)
    try:
        state = safetensors.torch.load_file(folder / WEIGHTS_FILE)
        parser.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        )
    except (OSError, SafetensorError, RuntimeError) as error:
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: {error}") from error
    return parser.to(device).eval()


def parser_metadata(folder: Path = DEFAULT_PARSER) -> dict[str, Any]:
    return json.loads((Path(folder) / CONFIG_FILE).read_text()).get("metadata", {})


def weights_digest(folder: Path = DEFAULT_PARSER) -> str:
    """SHA-256 of the weights file."""
    return hashlib.sha256((Path(folder) / WEIGHTS_FILE).read_bytes()).hexdigest()
