"""Top-down renders of a prediction: scene grey, relevant orange, target green, prediction red."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # renders files; never needs a display
import matplotlib.pyplot as plt
import numpy as np

LAYERS = (  # drawn in this order, later on top
    ("relevant (truth)", "#f39c12", 3.0),
    ("target (truth)", "#27ae60", 4.0),
    ("prediction", "#e74c3c", 2.0),
)


def render_top_down(
    path: Path,
    points: np.ndarray,
    *,
    target: np.ndarray,
    prediction: np.ndarray,
    relevant: np.ndarray,
    title: str,
    max_background: int = 60_000,
) -> Path:
    """Writes a PNG. points (N, 3); target, prediction, relevant (N,) bool masks."""
    figure, axes = plt.subplots(figsize=(6.5, 6.5), dpi=110)
    background = np.flatnonzero(~(target | prediction | relevant))
    if len(background) > max_background:
        background = background[:: len(background) // max_background + 1]
    # Highest points last and darker, so furniture stands out from the floor under it.
    background = background[np.argsort(points[background, 2], kind="stable")]
    heights = points[background, 2]
    axes.scatter(
        points[background, 0], points[background, 1], s=0.6, c=heights, cmap="Greys",
        vmin=-0.5, vmax=max(float(heights.max(initial=0.0)), 0.5) * 1.2, linewidths=0,
    )  # fmt: skip
    for (label, color, size), mask in zip(LAYERS, (relevant, target, prediction), strict=True):
        chosen = np.flatnonzero(mask)
        axes.scatter(
            points[chosen, 0], points[chosen, 1], s=size, c=color, linewidths=0, label=label
        )
    axes.set_aspect("equal")
    axes.set_xlabel("x [m]")
    axes.set_ylabel("y [m]")
    axes.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=9)
    axes.legend(loc="upper right", fontsize=7, markerscale=4)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def render_instances(
    path: Path,
    points: np.ndarray,
    panels: list[tuple[str, np.ndarray]],
    title: str,
    max_points: int = 80_000,
) -> Path:
    """Side-by-side top-down views, one colour per instance: panels of (name, (N,) int ids)."""
    chosen = np.arange(len(points))
    if len(chosen) > max_points:
        chosen = chosen[:: len(chosen) // max_points + 1]
    chosen = chosen[np.argsort(points[chosen, 2], kind="stable")]  # highest drawn last
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 6), dpi=110)
    palette = plt.get_cmap("tab20")
    for axis, (name, ids) in zip(np.atleast_1d(axes), panels, strict=True):
        _, dense = np.unique(ids[chosen], return_inverse=True)
        # A fixed shuffle of the palette, so neighbouring ids rarely share a colour.
        colours = palette((dense * 7) % 20)
        axis.scatter(points[chosen, 0], points[chosen, 1], s=0.8, c=colours, linewidths=0)
        axis.set_aspect("equal")
        axis.set(xlabel="x [m]", ylabel="y [m]", title=f"{name} ({len(np.unique(ids))})")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
