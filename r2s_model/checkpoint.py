"""Checkpoints: the trained weights (safetensors) and a JSON config naming the LLM they need.

A checkpoint folder holds `config.json` and `model.safetensors`. Everything outside the base
LLM is stored (the frozen scene parser, the grounding head) with the LLM's trainable part (LoRA
and special-token rows), so the base LLM is loaded from its source and identified by the
SHA-256 of its weights.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import transformers
from safetensors import SafetensorError

from r2s_model.config import ConfigError, R2SConfig
from r2s_model.llm import LLMBundle, load_llm
from r2s_model.model import R2SModel

DEFAULT_CHECKPOINT = Path(__file__).parent / "weights" / "default"  # the shipped model
FORMAT = "r2s-checkpoint"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used, with the file and the reason."""


def write_weights_folder(
    folder: Path, state: dict[str, torch.Tensor], description: dict[str, Any], dtype: torch.dtype
) -> Path:
    """Writes `model.safetensors` (floating-point tensors in `dtype`) and `config.json`
    (`description`) atomically: a temporary folder renamed into place."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        stored = {
            k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in state.items()
        }
        safetensors.torch.save_file(stored, staging / WEIGHTS_FILE)
        (staging / CONFIG_FILE).write_text(json.dumps(description, indent=2, default=str) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a folder's `model.safetensors`; CheckpointError when missing or corrupt."""
    weights = Path(folder) / WEIGHTS_FILE
    try:
        return safetensors.torch.load_file(weights)
    except FileNotFoundError:
        raise CheckpointError(f"{weights}: missing") from None
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights}: unreadable or corrupt ({error})") from error


def save_checkpoint(
    model: R2SModel,
    folder: Path,
    metadata: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Writes the checkpoint atomically.

    `metadata` (JSON-serialisable: training command, data spec, metrics, ...) is stored as is.
    Floating-point weights are stored in `dtype` (float16 halves a shipped model's size) and
    loaded back into the model's float32 parameters.
    """
    description = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "llm": {
            "source": model.llm_bundle.source,
            "weights_sha256": model.llm_bundle.weights_sha256,
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "metadata": metadata or {},
    }
    return write_weights_folder(folder, model.trainable_state(), description, dtype)


def read_checkpoint_config(folder: Path) -> dict[str, Any]:
    """The parsed and checked `config.json` of a checkpoint folder."""
    path = Path(folder) / CONFIG_FILE
    try:
        description = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; is {folder} a checkpoint folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an r2s checkpoint (format must be {FORMAT!r})")
    if description.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {description.get('version')} is not supported "
            f"(this code reads version {VERSION})"
        )
    for key in ("config", "llm"):
        if not isinstance(description.get(key), dict):
            raise CheckpointError(f"{path}: missing or malformed {key!r} section")
    return description


def load_checkpoint(
    folder: Path,
    *,
    device: str | torch.device = "cpu",
    llm: LLMBundle | None = None,
    llm_dtype: torch.dtype = torch.float32,
) -> R2SModel:
    """Rebuilds the model of a checkpoint in eval mode.

    The base LLM comes from the checkpoint's recorded source unless `llm` is given; either way
    its weights must hash to what the checkpoint was trained on. `llm_dtype` = bfloat16 halves
    the LLM's time per token on CPUs with bf16 support and on GPUs; the R2S modules stay float32.
    """
    folder = Path(folder)
    description = read_checkpoint_config(folder)
    try:
        config = R2SConfig.from_dict(description["config"])
    except ConfigError as error:
        raise CheckpointError(f"{folder / CONFIG_FILE}: {error}") from error
    recorded = description["llm"]
    llm = llm if llm is not None else load_llm(recorded.get("source", config.llm_source))
    if llm.weights_sha256 != recorded.get("weights_sha256"):
        raise CheckpointError(
            f"{folder}: trained on the LLM {recorded.get('source')!r} "
            f"(weights sha256 {recorded.get('weights_sha256')}), but the LLM given is "
            f"{llm.source!r} (sha256 {llm.weights_sha256}); load it with the LLM it was trained on"
        )
    state = read_weights(folder)
    weights = folder / WEIGHTS_FILE
    model = R2SModel(config, llm)
    try:
        model.load_trainable_state(state)
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{weights}: does not match its config ({error})") from error
    model.llm.to(llm_dtype)
    return model.to(device).eval()


def load_model(
    folder: Path, llm_source: str, device: str | torch.device, score_threshold: float = 0.0
) -> R2SModel:
    """`load_checkpoint` as the node and the CLIs call it: `llm_source` "" uses the LLM the
    checkpoint names, any other source is loaded (and checked against the checkpoint) instead;
    `score_threshold` in (0, 1) replaces the checkpoint's no-target threshold (0 keeps it: a
    target scoring below it is answered "no target"; lower answers more, and wrongly more)."""
    if not Path(folder).is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    llm = load_llm(llm_source) if llm_source else None
    model = load_checkpoint(folder, device=device, llm=llm)
    if score_threshold:
        model.config = replace(model.config, score_threshold=score_threshold)
    return model
