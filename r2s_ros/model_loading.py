"""The model as the node and the bag replay load it: device choice and checkpoint folder."""

from __future__ import annotations

from pathlib import Path

import torch

from r2s_model.checkpoint import CheckpointError, load_checkpoint
from r2s_model.llm import load_llm
from r2s_model.model import R2SModel
from r2s_ros.params import ParameterError


def resolve_device(requested: str) -> str:
    """`auto` -> cuda when available, else cpu; a CUDA device that is not there is an error."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"device {requested!r} requested but CUDA is not available")
    return requested


def load_model(checkpoint: Path, llm_source: str, device: str) -> R2SModel:
    """Loads a checkpoint folder; llm_source "" uses the LLM the checkpoint names."""
    if not checkpoint.is_dir():
        raise CheckpointError(
            f"checkpoint folder {checkpoint} does not exist; set the `checkpoint` parameter"
        )
    llm = load_llm(llm_source) if llm_source else None
    return load_checkpoint(checkpoint, device=device, llm=llm)
