"""The training curves of a JSONL log as a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.maximum(0, np.arange(1, len(values) + 1) - window)]) / counts


def plot_curves(
    log: Path,
    out: Path,
    metrics_shown: tuple[str, ...],
    title: str = "",
) -> Path:
    """Losses (smoothed) and the validation metrics `metrics_shown` against the step."""
    entries = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    train = [e for e in entries if "loss" in e]
    val = [e for e in entries if "val" in e]
    figure, (losses, metrics) = plt.subplots(1, 2, figsize=(12, 4.5))
    steps = np.array([e["step"] for e in train])
    names = sorted({name for e in train for name in e["loss"]})
    # Terms summed into a "<group>_total" (e.g. relevant_dice) are left out for readability.
    shown = [n for n in names if n.endswith("_total") or f"{n.split('_')[0]}_total" not in names]
    for name in shown:
        values = np.array([e["loss"].get(name, np.nan) for e in train], dtype=float)
        if len(values) and not np.all(np.isnan(values)) and np.nanmax(np.abs(values)) > 0:
            losses.plot(steps, smooth(values, 10), label=name)
    losses.set(xlabel="step", ylabel="loss (moving average of 10 logs)", yscale="log")
    losses.legend()
    val_steps = [e["step"] for e in val]
    for name in metrics_shown:
        values = [e["val"].get(name) for e in val]
        shares = [v for v in values if isinstance(v, float)]
        if shares and all(0.0 <= v <= 1.0 for v in shares):
            metrics.plot(val_steps, [np.nan if v is None else v for v in values], "o-", label=name)
    metrics.set(xlabel="step", ylabel="validation", ylim=(0, 1))
    metrics.legend()
    figure.suptitle(title)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
