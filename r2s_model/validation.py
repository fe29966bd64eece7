"""Checks on what inference is given: clouds and instructions from robots are messy."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from r2s_model.config import InputLimits


class InvalidInstruction(ValueError):
    """An instruction the model cannot use (empty, too long, not text)."""


class InvalidCloud(ValueError):
    """Arrays that are not a point cloud (wrong shapes or dtypes)."""


@dataclass
class CleanCloud:
    """A validated cloud and how it relates to the one given.

    points (M, 3) float32, colors (M, 3) float32 in [0, 1]; kept (M,) int64 indices into the
    input; dropped_nonfinite counts points removed for NaN/inf; subsampled tells whether the
    max_points cap applied.
    """

    points: np.ndarray
    colors: np.ndarray
    kept: np.ndarray
    num_input: int
    dropped_nonfinite: int
    subsampled: bool


def clean_cloud(points: np.ndarray, colors: np.ndarray | None, limits: InputLimits) -> CleanCloud:
    """Drops non-finite points and caps the size.

    points (N, 3) float, colors (N, 3) in [0, 1] (float) or [0, 255] (uint8), or None for grey.
    Clouds above `limits.max_points` are uniformly subsampled with a fixed seed, so the same
    cloud always gives the same result.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InvalidCloud(f"points must have shape (N, 3), got {points.shape}")
    if not np.issubdtype(points.dtype, np.number):
        raise InvalidCloud(f"points must be numeric, got dtype {points.dtype}")
    if colors is None:
        colors = np.full(points.shape, 0.5, np.float32)
    colors = np.asarray(colors)
    if colors.shape != points.shape:
        raise InvalidCloud(f"colors must have shape {points.shape}, got {colors.shape}")
    if colors.dtype == np.uint8:
        colors = colors.astype(np.float32) / 255.0

    finite = np.isfinite(points).all(axis=1) & np.isfinite(colors).all(axis=1)
    kept = np.flatnonzero(finite)
    subsampled = kept.size > limits.max_points
    if subsampled:
        choice = np.random.default_rng(0).choice(kept.size, limits.max_points, replace=False)
        kept = kept[np.sort(choice)]
    return CleanCloud(
        points=points[kept].astype(np.float32),
        colors=np.clip(colors[kept], 0.0, 1.0).astype(np.float32),
        kept=kept.astype(np.int64),
        num_input=len(points),
        dropped_nonfinite=int(len(points) - finite.sum()),
        subsampled=bool(subsampled),
    )


def clean_instruction(text: object, limits: InputLimits) -> str:
    """NFC-normalised instruction with control characters removed and whitespace collapsed."""
    if not isinstance(text, str):
        raise InvalidInstruction(f"instruction must be text, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text)
    # Control characters and lone surrogates (which cannot be encoded) become spaces; format
    # characters such as the zero-width joiner inside emoji sequences are kept.
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cs") else c for c in text)
    text = " ".join(text.split())
    if not text:
        raise InvalidInstruction("instruction is empty")
    if len(text) > limits.max_instruction_chars:
        raise InvalidInstruction(
            f"instruction has {len(text)} characters; the limit is {limits.max_instruction_chars}"
        )
    return text
