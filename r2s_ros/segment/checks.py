"""Sanity checks on a user's cloud, and the map from its frame to the model's (metres, z up).

Caught here, before the model runs: too few points, units that are not metres (a room that
spans 4,000 units), extents no room has, and clouds whose floor is not at the bottom of z (y-up
exports of graphics tools, camera optical frames). Each check that can be wrong about a cloud
can be overridden: `--scale` and `--up` fix what they find, `--any-extent` waives the extents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from r2s_model.config import InputLimits
from r2s_ros.segment.readers import Cloud

MIN_POINTS = InputLimits().min_points  # fewer is an empty scene to the model
ROOM_EXTENT_M = (0.2, 100.0)  # largest side of anything R2S is meant for
UNIT_GUESSES = (("millimetres", 0.001), ("centimetres", 0.01))
TYPICAL_ROOM_M = (1.0, 50.0)  # a unit is guessed when it brings the largest side in here
# The model computes in float32 (6 cm steps at 1,000 km): clouds centred farther than this from
# their origin are given to it recentred.
FAR_FROM_ORIGIN_M = 1000.0
# The floor test: the share of points within FLOOR_SLAB_M of an end of each axis. A scan's floor
# piles points at the bottom of the up axis; walls pile them at both ends of the others.
FLOOR_SLAB_M = 0.05
FLOOR_MIN_SHARE = 0.08  # bottom share minus top share for an axis to count as up
FLOOR_MARGIN = 2.0  # ... and this many times the next axis's difference
AXES = ("x", "y", "z")
UP_CHOICES = ("z", "-z", "y", "-y", "x", "-x")


class SanityError(ValueError):
    """A cloud that would give meaningless answers as it is; the message says how to fix it."""


@dataclass(frozen=True)
class ModelFrame:
    """How a cloud's coordinates become the model's: p_model = rotation @ (scale * p) - offset.

    rotation (3, 3) turns the `up` axis to +z; offset (3,) metres, nonzero only for clouds far
    from their origin (georeferenced LAS)."""

    scale: float
    up: str
    rotation: np.ndarray
    offset: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) float64 source coordinates -> (N, 3) float64 model coordinates."""
        return (self.scale * points) @ self.rotation.T - self.offset

    def to_json(self) -> dict[str, object]:
        return {"scale": self.scale, "up": self.up, "offset_m": self.offset.tolist()}


def prepare(
    cloud: Cloud, *, scale: float = 1.0, up: str | None = None, any_extent: bool = False
) -> tuple[ModelFrame, list[str]]:
    """Checks the cloud -> its model frame and notes for the user; SanityError when a check
    fails. `up` None checks that the cloud is z-up; a given `up` is taken as is."""
    count = len(cloud.points)
    if count < MIN_POINTS:
        raise SanityError(
            f"{cloud.source}: {count} points with finite coordinates; R2S needs "
            f"at least {MIN_POINTS}"
        )
    notes = list(cloud.notes)
    if cloud.colors is None:
        notes.append("no colour: the model sees every point grey, so colour words cannot help")
    elif (cloud.colors == cloud.colors[0]).all():
        notes.append(f"every point has the colour {cloud.colors[0].tolist()}: as good as none")
    points = scale * cloud.points
    low, high = np.percentile(points, [0.5, 99.5], axis=0)  # robust to a few stray points
    if not any_extent:
        _check_extent(cloud.source, float((high - low).max()), scale)
    if up is None:
        up = _check_up(cloud.source, points, low, high)
    rotation = up_rotation(up)
    centre = rotation @ np.median(points, axis=0)
    offset = np.zeros(3)
    if np.abs(centre).max() > FAR_FROM_ORIGIN_M:
        offset = np.round(centre)
        notes.append(
            f"centred {np.abs(centre).max() / 1000:.0f} km from its origin: the model "
            f"gets it shifted by {offset.tolist()} m; outputs are in the file's frame"
        )
    return ModelFrame(scale, up, rotation, offset), notes


def up_rotation(up: str) -> np.ndarray:
    """(3, 3) proper rotation taking the axis `up` ("z", "-y", ...) to +z."""
    if up not in UP_CHOICES:
        raise SanityError(f"up must be one of {', '.join(UP_CHOICES)}, not {up!r}")
    new_z = np.zeros(3)
    new_z[AXES.index(up[-1])] = -1.0 if up.startswith("-") else 1.0
    new_x = np.eye(3)[1 if up[-1] == "x" else 0]
    return np.stack([new_x, np.cross(new_z, new_x), new_z])


def _check_extent(source: str, largest: float, scale: float) -> None:
    smallest_room, largest_room = ROOM_EXTENT_M
    if smallest_room <= largest <= largest_room:
        return
    problem = (
        f"{source}: the cloud spans {largest:g} m (at --scale {scale:g}), but R2S is for rooms "
        f"of {smallest_room:g}-{largest_room:g} m"
    )
    for unit, factor in UNIT_GUESSES:
        if TYPICAL_ROOM_M[0] <= largest * factor <= TYPICAL_ROOM_M[1]:
            fix = f"it looks like {unit}: pass --scale {scale * factor:g}"
            break
    else:
        fix = "crop the cloud or fix its units with --scale"
    raise SanityError(f"{problem}; {fix} (or --any-extent to go on as is)")


def _check_up(source: str, points: np.ndarray, low: np.ndarray, high: np.ndarray) -> str:
    """z, or SanityError when the floor test points clearly at another axis."""
    bottom = (points - low < FLOOR_SLAB_M).mean(axis=0)
    top = (high - points < FLOOR_SLAB_M).mean(axis=0)
    lean = bottom - top  # > 0: a floor at the low end
    order = np.argsort(-np.abs(lean))
    axis, runner_up = int(order[0]), float(np.abs(lean[order[1]]))
    clear = abs(lean[axis]) >= FLOOR_MIN_SHARE and abs(lean[axis]) >= FLOOR_MARGIN * runner_up
    guess = ("" if lean[axis] > 0 else "-") + AXES[axis]
    if not clear or guess == "z":
        return "z"
    shares = ", ".join(
        f"{name} {b:.0%}/{t:.0%}" for name, b, t in zip(AXES, bottom, top, strict=True)
    )
    raise SanityError(
        f"{source}: its up axis looks like {guess}, not z: points within "
        f"{FLOOR_SLAB_M * 100:g} cm of the low/high end of each axis: {shares} (a floor piles "
        f"them at the bottom of the up axis). Pass --up {guess} to turn it z-up, or --up z to "
        "keep it as is"
    )
