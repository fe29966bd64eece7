"""The picture of one answer: a top-down and a perspective view of the scene (model frame,
metres, z up), the target red in its box, each relevant element in a colour of its own."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")  # renders files; never needs a display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

TARGET_COLOUR = "#e3262f"
RELEVANT_COLOURS = ("#f39c12", "#2e86de", "#8e44ad", "#16a085", "#d35400", "#2c3e50")
BACKGROUND_POINTS = (60_000, 25_000)  # drawn at most: top-down, perspective (slow in 3D)
# The corners of a box as indices into (min, max) per axis, and its 12 edges.
_CORNERS = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)])
_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


def render_answer(
    points: np.ndarray,
    colors: np.ndarray | None,
    target: np.ndarray,
    relevant: list[tuple[str, np.ndarray]],
    title: str,
) -> Figure:
    """points (N, 3) model frame, colors (N, 3) uint8 or None, target (N,) bool, relevant
    (name, (N,) bool mask) pairs -> a figure (the caller saves and closes it)."""
    figure = plt.figure(figsize=(13, 6.5), dpi=100)
    top = figure.add_subplot(1, 2, 1)
    view = figure.add_subplot(1, 2, 2, projection="3d")
    shades = _background_shades(points, colors)
    layers = [
        (f"{name} (relevant)", mask, RELEVANT_COLOURS[i % len(RELEVANT_COLOURS)], 2.0)
        for i, (name, mask) in enumerate(relevant)
    ]
    layers.append((f"target ({int(target.sum())} points)", target, TARGET_COLOUR, 3.0))
    background = np.flatnonzero(~np.logical_or.reduce([mask for _, mask, _, _ in layers]))
    for axes, limit, dims in ((top, BACKGROUND_POINTS[0], 2), (view, BACKGROUND_POINTS[1], 3)):
        shown = _subsample(background, limit)
        shown = shown[np.argsort(points[shown, 2], kind="stable")]  # highest drawn last
        axes.scatter(*points[shown, :dims].T, s=dims / 2, c=shades[shown], linewidths=0)
        for label, mask, colour, size in layers:
            axes.scatter(*points[mask, :dims].T, s=size, c=colour, linewidths=0, label=label)
        if target.any():
            _draw_box(axes, points[target], dims)
    top.set(aspect="equal", xlabel="x [m]", ylabel="y [m]", title="top-down")
    top.legend(loc="upper right", fontsize=7, markerscale=4)
    view.set_box_aspect(np.ptp(points, axis=0) + 1e-6)
    view.view_init(elev=35, azim=-60)
    view.set(xlabel="x [m]", ylabel="y [m]", zlabel="z [m]", title="perspective")
    for axis in (view.xaxis, view.yaxis, view.zaxis):
        axis.set_pane_color((1.0, 1.0, 1.0, 0.0))
    view.grid(False)
    figure.suptitle("\n".join(textwrap.wrap(title, 110)), fontsize=10)
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=0.86, wspace=0.08)
    return figure


def _background_shades(points: np.ndarray, colors: np.ndarray | None) -> np.ndarray:
    """(N, 3) floats: the cloud's colours a little washed out (highlights stand out), or grey
    darker with height."""
    if colors is not None:
        return 0.7 * colors / 255.0 + 0.3
    z = points[:, 2]
    height = (z - z.min()) / max(float(np.ptp(z)), 1e-6)
    return np.repeat((0.85 - 0.5 * height)[:, None], 3, axis=1)


def _subsample(indices: np.ndarray, limit: int) -> np.ndarray:
    return indices[:: len(indices) // limit + 1] if len(indices) > limit else indices


def _draw_box(axes: plt.Axes, points: np.ndarray, dims: int) -> None:
    """The axis-aligned box around `points` (M, 3) as an outline: a rectangle top-down, the
    twelve edges in perspective."""
    low, high = points.min(axis=0), points.max(axis=0)
    if dims == 2:
        size = high[:2] - low[:2]
        axes.add_patch(Rectangle(low[:2], *size, fill=False, ec=TARGET_COLOUR, lw=1.2))
        return
    corners = np.where(_CORNERS, high, low)
    for a, b in _EDGES:
        axes.plot(*corners[[a, b]].T, c=TARGET_COLOUR, lw=1.2)
