"""Where the model runs: the one rule for the node, r2s-replay, r2s-eval and r2s-train."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device this machine cannot provide, e.g. CUDA where none is available."""


def resolve_device(requested: str) -> str:
    """`auto` -> cuda when available, else cpu; a CUDA device that is not there is a
    DeviceError; anything else is returned as given (torch judges it when it is used)."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {requested!r} requested but CUDA is not available")
    return requested
