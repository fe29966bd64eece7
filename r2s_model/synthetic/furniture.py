"""Object categories, objects as built (`Model`) and as placed in a room (`SceneObject`).

Semantic ids are indices into CATEGORIES: structure first, then furniture and small objects.
The geometry of each category is in `builders`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from r2s_model.synthetic.builders import BUILDERS, OPENINGS, RGB, Surface
from r2s_model.synthetic.palette import pick_color
from r2s_model.synthetic.parts import Part

STRUCTURE = ("floor", "wall", "window", "door")
# fmt: off
FURNITURE = (
    "chair", "stool", "table", "desk", "bed", "sofa", "cabinet", "shelf",
    "lamp", "monitor", "tv", "plant", "trash_can", "box", "cup", "bottle",
)
# fmt: on
CATEGORIES: tuple[str, ...] = STRUCTURE + FURNITURE


@dataclass
class SceneObject:
    """One labelled object of a room, its geometry in the room frame.

    box_min, box_max: (3,) float64 exact axis-aligned bounds of `parts`. support: instance id of
    the object it stands on, None for the floor (and for structure). parts: its primitives.
    """

    instance_id: int
    category: str
    color: str
    rgb: RGB
    box_min: np.ndarray
    box_max: np.ndarray
    yaw: float
    support: int | None
    parts: tuple[Part, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class Model:
    """An object built in its local frame, before placement."""

    category: str
    color: str
    rgb: RGB
    parts: tuple[Part, ...]
    top: Surface | None = None
    under: Surface | None = None


def build(category: str, rng: np.random.Generator, kind: str = "") -> Model:
    """A random instance of a furniture category. `kind` picks a variant where a category has
    several: table "dining" (default) or "coffee"; cabinet "nightstand", "sideboard" or
    "wardrobe" (default: at random); tv "top" (default) or "floor_tv"; lamp, plant and box
    "floor" (default) or "small"."""
    color, rgb = pick_color(category, rng)
    parts, top, under = BUILDERS[category](rng, rgb, kind)
    return Model(category, color, rgb, tuple(parts), top, under)


def build_opening(category: str, rng: np.random.Generator, width: float, height: float) -> Model:
    """A window or door of the given size, its back (+y) flush with the wall."""
    color, rgb = pick_color(category, rng)
    parts = OPENINGS[category](rgb, width, height)
    return Model(category, color, rgb, tuple(parts))
