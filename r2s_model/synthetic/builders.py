"""Part-based geometry of every furniture category, windows and doors, in the local frame.

Local frame: origin at the centre of the footprint on the surface the object stands on, z up,
the object's front facing -y (a chair's seat opens towards -y, its back is at +y). Sizes are
drawn per instance; `rgb` colors the parts that carry the object's color name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from r2s_model.synthetic.palette import CHROME, FOLIAGE, GLASS, METAL, SCREEN, WOOD, shade
from r2s_model.synthetic.parts import Part, box, cylinder, spheroid

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Surface:
    """A free horizontal rectangle in the local frame: a top to put things on, or the clear
    space under a top. height: z of the top, or the clear height under it."""

    height: float
    center: tuple[float, float]
    half: tuple[float, float]


def _legs(half_x: float, half_y: float, side: float, height: float, rgb: RGB) -> list[Part]:
    """Four square legs of width `side` whose outer faces are at +-half_x, +-half_y."""
    x, y = half_x - side / 2, half_y - side / 2
    return [
        box((sx * x, sy * y, height / 2), (side, side, height), rgb)
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]


def _chair(rng: np.random.Generator, rgb: RGB) -> list[Part]:
    width, depth = rng.uniform(0.40, 0.52), rng.uniform(0.40, 0.50)
    seat, back = rng.uniform(0.42, 0.48), rng.uniform(0.35, 0.50)
    legs = rgb if rng.random() < 0.5 else (METAL if rng.random() < 0.5 else CHROME)
    return [
        *_legs(width / 2, depth / 2, rng.uniform(0.03, 0.045), seat - 0.05, legs),
        box((0, 0, seat - 0.025), (width, depth, 0.05), rgb),
        box((0, depth / 2 - 0.02, seat + back / 2), (width, 0.04, back), shade(rgb, 0.9)),
    ]


def _stool(rng: np.random.Generator, rgb: RGB) -> list[Part]:
    radius, height = rng.uniform(0.15, 0.2), rng.uniform(0.45, 0.75)
    seat = cylinder(0, 0, height - 0.04, radius, 0.04, rgb)
    if rng.random() < 0.5:
        return [seat, *_legs(radius * 0.75, radius * 0.75, 0.03, height - 0.04, shade(rgb, 0.8))]
    return [
        seat,
        cylinder(0, 0, 0.02, 0.025, height - 0.06, CHROME),
        cylinder(0, 0, 0, radius * 0.9, 0.02, METAL),
    ]


def _table(rng: np.random.Generator, rgb: RGB, kind: str) -> tuple[list[Part], Surface, Surface]:
    if kind == "coffee":
        width, depth, height = (
            rng.uniform(0.8, 1.2),
            rng.uniform(0.45, 0.7),
            rng.uniform(0.38, 0.48),
        )
    else:
        width, height = rng.uniform(0.9, 1.8), rng.uniform(0.70, 0.78)
        depth = min(width, rng.uniform(0.65, 1.0))
    leg, inset = rng.uniform(0.045, 0.07), 0.04
    parts = [
        box((0, 0, height - 0.02), (width, depth, 0.04), rgb),
        *_legs(width / 2 - inset, depth / 2 - inset, leg, height - 0.04, shade(rgb, 0.85)),
    ]
    free = (width / 2 - inset - leg, depth / 2 - inset - leg)
    return (
        parts,
        Surface(height, (0, 0), (width / 2, depth / 2)),
        Surface(height - 0.04, (0, 0), free),
    )


def _desk(rng: np.random.Generator, rgb: RGB) -> tuple[list[Part], Surface, Surface]:
    width, depth, height = rng.uniform(1.0, 1.6), rng.uniform(0.55, 0.75), rng.uniform(0.72, 0.76)
    side = shade(rgb, 0.9)
    parts = [
        box((0, 0, height - 0.02), (width, depth, 0.04), rgb),
        box((-width / 2 + 0.015, 0, (height - 0.04) / 2), (0.03, depth, height - 0.04), side),
        box((width / 2 - 0.015, 0, (height - 0.04) / 2), (0.03, depth, height - 0.04), side),
        box((0, depth / 2 - 0.03, height - 0.24), (width - 0.06, 0.02, 0.4), side),
    ]
    # The modesty panel closes the back, so the free space under the top stops in front of it.
    free = Surface(height - 0.04, (0, -0.02), (width / 2 - 0.03, depth / 2 - 0.06))
    return parts, Surface(height, (0, 0), (width / 2, depth / 2)), free


def _bed(rng: np.random.Generator, rgb: RGB) -> list[Part]:
    width, length = (
        rng.choice([rng.uniform(0.9, 1.2), rng.uniform(1.4, 1.8)]),
        rng.uniform(1.95, 2.15),
    )
    frame, mattress = rng.uniform(0.25, 0.35), rng.uniform(0.18, 0.25)
    wood, headboard = shade(WOOD, rng.uniform(0.6, 1.3)), rng.uniform(0.9, 1.2)
    top = frame + mattress
    return [
        box((0, 0, frame / 2), (width, length, frame), wood),
        box((0, -0.02, frame + mattress / 2), (width - 0.06, length - 0.1, mattress), rgb),
        box((0, length / 2 - 0.03, headboard / 2), (width, 0.06, headboard), wood),
        box((0, length / 2 - 0.3, top + 0.06), (width - 0.3, 0.35, 0.12), shade(rgb, 1.15)),
    ]


def _sofa(rng: np.random.Generator, rgb: RGB) -> list[Part]:
    width, depth = rng.uniform(1.4, 2.3), rng.uniform(0.8, 0.95)
    seat, back_top, arm = rng.uniform(0.40, 0.46), rng.uniform(0.78, 0.92), rng.uniform(0.12, 0.2)
    arm_height, back = rng.uniform(0.55, 0.65), 0.2
    front = depth - back
    return [
        box((0, -back / 2, seat / 2), (width - 2 * arm, front, seat), rgb),
        box((0, depth / 2 - back / 2, back_top / 2), (width, back, back_top), shade(rgb, 0.9)),
        *(
            box(
                (s * (width - arm) / 2, -back / 2, arm_height / 2),
                (arm, front, arm_height),
                shade(rgb, 0.95),
            )
            for s in (-1, 1)
        ),
    ]


def _cabinet(rng: np.random.Generator, rgb: RGB, kind: str) -> tuple[list[Part], Surface | None]:
    kind = kind or str(rng.choice(["nightstand", "sideboard", "wardrobe"]))
    width, depth, height = {
        "nightstand": (rng.uniform(0.4, 0.55), rng.uniform(0.35, 0.45), rng.uniform(0.45, 0.6)),
        "sideboard": (rng.uniform(0.9, 1.6), rng.uniform(0.4, 0.5), rng.uniform(0.5, 0.8)),
        "wardrobe": (rng.uniform(0.8, 1.2), rng.uniform(0.5, 0.6), rng.uniform(1.7, 2.0)),
    }[kind]
    doors = 1 if width < 0.7 else 2
    door_width = (width - 0.04) / doors
    parts = [box((0, 0.008, height / 2), (width, depth - 0.016, height), rgb)]
    for index in range(doors):
        x = -width / 2 + 0.02 + door_width * (index + 0.5)
        parts.append(
            box(
                (x, -depth / 2 + 0.008, height / 2 + 0.02),
                (door_width - 0.01, 0.016, height - 0.1),
                shade(rgb, 1.08),
            )
        )
        # Handles sit at the meeting edges of a pair of doors.
        handle_x = x + (door_width / 2 - 0.06) * (1 - 2 * index)
        parts.append(box((handle_x, -depth / 2 - 0.01, height * 0.6), (0.02, 0.02, 0.12), CHROME))
    top = Surface(height, (0, 0.008), (width / 2, depth / 2 - 0.008)) if height < 1.3 else None
    return parts, top


def _shelf(rng: np.random.Generator, rgb: RGB) -> tuple[list[Part], Surface | None]:
    width, depth, height = rng.uniform(0.6, 1.2), rng.uniform(0.28, 0.4), rng.uniform(0.8, 2.0)
    boards = max(2, round(height / 0.35))
    inner = width - 0.04
    parts = [
        *(
            box((s * (width / 2 - 0.01), 0, height / 2), (0.02, depth, height), rgb)
            for s in (-1, 1)
        ),
        box((0, depth / 2 - 0.005, height / 2), (inner, 0.01, height), shade(rgb, 0.85)),
    ]
    for level in np.linspace(0.04, height - 0.01, boards):
        parts.append(box((0, -0.005, level), (inner, depth - 0.01, 0.02), shade(rgb, 1.05)))
    top = Surface(height, (0, 0), (width / 2, depth / 2)) if height < 1.6 else None
    return parts, top


def _lamp(rng: np.random.Generator, rgb: RGB, kind: str) -> list[Part]:
    scale = 0.35 if kind == "small" else 1.0
    base_radius, pole = rng.uniform(0.12, 0.18) * scale, rng.uniform(1.2, 1.6) * scale
    shade_radius, shade_height = (
        rng.uniform(0.15, 0.23) * max(scale, 0.5),
        rng.uniform(0.2, 0.3) * max(scale, 0.5),
    )
    metal = METAL if rng.random() < 0.5 else CHROME
    return [
        cylinder(0, 0, 0, base_radius, 0.03, metal),
        cylinder(0, 0, 0.03, 0.015, pole, metal),
        cylinder(0, 0, 0.03 + pole - shade_height * 0.3, shade_radius, shade_height, rgb),
    ]


def _screen(rng: np.random.Generator, rgb: RGB, kind: str) -> list[Part]:
    if kind == "monitor":
        width, neck, base = rng.uniform(0.48, 0.7), rng.uniform(0.08, 0.15), (0.22, 0.16)
    elif kind == "floor_tv":
        width, neck, base = rng.uniform(0.9, 1.5), rng.uniform(0.45, 0.65), (0.6, 0.4)
    else:  # a TV standing on furniture, narrow enough for a sideboard
        width, neck, base = rng.uniform(0.75, 1.2), rng.uniform(0.06, 0.1), (0.4, 0.24)
    height, thickness = width * rng.uniform(0.56, 0.62), 0.03 if kind == "monitor" else 0.05
    return [
        box((0, 0, 0.01), (base[0], base[1], 0.02), shade(rgb, 0.8)),
        box(
            (0, 0.03, (neck + height / 3) / 2 + 0.02),
            (0.06, 0.03, neck + height / 3),
            shade(rgb, 0.8),
        ),
        box((0, 0, 0.02 + neck + height / 2), (width, thickness, height), rgb),
        box(
            (0, -thickness / 2 - 0.003, 0.02 + neck + height / 2),
            (width - 0.03, 0.006, height - 0.03),
            SCREEN,
        ),
    ]


def _plant(rng: np.random.Generator, rgb: RGB, kind: str) -> list[Part]:
    scale = 0.35 if kind == "small" else 1.0
    pot_radius, pot = rng.uniform(0.12, 0.22) * scale, rng.uniform(0.2, 0.4) * scale
    leaves, leaves_height = rng.uniform(0.2, 0.42) * scale, rng.uniform(0.5, 1.2) * scale
    green = shade(FOLIAGE, rng.uniform(0.8, 1.3))
    return [
        cylinder(0, 0, 0, pot_radius, pot, rgb),
        spheroid(0, 0, pot - 0.03 * scale, max(leaves, pot_radius + 0.02), leaves_height, green),
    ]


def _trash_can(rng: np.random.Generator, rgb: RGB) -> list[Part]:
    height = rng.uniform(0.3, 0.6)
    if rng.random() < 0.6:
        radius = rng.uniform(0.12, 0.2)
        return [
            cylinder(0, 0, 0, radius, height - 0.02, rgb),
            cylinder(0, 0, height - 0.02, radius + 0.01, 0.02, shade(rgb, 0.7)),
        ]
    width, depth = rng.uniform(0.25, 0.35), rng.uniform(0.2, 0.3)
    return [
        box((0, 0, (height - 0.03) / 2), (width, depth, height - 0.03), rgb),
        box((0, 0, height - 0.015), (width + 0.02, depth + 0.02, 0.03), shade(rgb, 0.7)),
    ]


def _box(rng: np.random.Generator, rgb: RGB, kind: str) -> list[Part]:
    scale = 0.5 if kind == "small" else 1.0
    width, depth, height = (
        rng.uniform(0.2, 0.6) * scale,
        rng.uniform(0.2, 0.5) * scale,
        rng.uniform(0.15, 0.45) * scale,
    )
    lid = 0.02 * scale
    return [
        box((0, 0, (height - lid) / 2), (width, depth, height - lid), rgb),
        box((0, 0, height - lid / 2), (width + 0.01, depth + 0.01, lid), shade(rgb, 0.9)),
    ]


def _cup(rng: np.random.Generator, rgb: RGB) -> list[Part]:
    radius, height = rng.uniform(0.035, 0.05), rng.uniform(0.08, 0.12)
    handle = box((radius + 0.01, 0, height * 0.55), (0.02, 0.012, height * 0.5), rgb)
    return [cylinder(0, 0, 0, radius, height, rgb), handle]


def _bottle(rng: np.random.Generator, rgb: RGB) -> list[Part]:
    radius, body = rng.uniform(0.03, 0.045), rng.uniform(0.16, 0.24)
    neck_radius, neck = rng.uniform(0.012, 0.016), rng.uniform(0.05, 0.08)
    return [
        cylinder(0, 0, 0, radius, body, rgb),
        cylinder(0, 0, body, neck_radius, neck, rgb),
        cylinder(0, 0, body + neck, neck_radius + 0.002, 0.015, shade(rgb, 0.5)),
    ]


def _window(rgb: RGB, width: float, height: float) -> list[Part]:
    back_open = 0b110111  # no face against the wall (+y)
    return [
        box((0, 0.025, height / 2), (width - 0.1, 0.03, height - 0.1), GLASS, back_open),
        *(
            box((s * (width - 0.05) / 2, 0, height / 2), (0.05, 0.08, height), rgb, back_open)
            for s in (-1, 1)
        ),
        *(
            box((0, 0, z), (width - 0.1, 0.08, 0.05), rgb, back_open)
            for z in (0.025, height - 0.025)
        ),
    ]


def _door(rgb: RGB, width: float, height: float) -> list[Part]:
    return [
        box((0, 0, height / 2), (width, 0.04, height), rgb, 0b110111),
        box((width / 2 - 0.1, -0.03, 1.0), (0.12, 0.02, 0.03), CHROME),
    ]


# Parts, and the top (things stand on it) and under-space (things fit below it) if any.
Built = tuple[list[Part], Surface | None, Surface | None]
BUILDERS: dict[str, Callable[[np.random.Generator, RGB, str], Built]] = {
    "chair": lambda rng, rgb, kind: (_chair(rng, rgb), None, None),
    "stool": lambda rng, rgb, kind: (_stool(rng, rgb), None, None),
    "table": lambda rng, rgb, kind: _table(rng, rgb, kind),
    "desk": lambda rng, rgb, kind: _desk(rng, rgb),
    "bed": lambda rng, rgb, kind: (_bed(rng, rgb), None, None),
    "sofa": lambda rng, rgb, kind: (_sofa(rng, rgb), None, None),
    "cabinet": lambda rng, rgb, kind: (*_cabinet(rng, rgb, kind), None),
    "shelf": lambda rng, rgb, kind: (*_shelf(rng, rgb), None),
    "lamp": lambda rng, rgb, kind: (_lamp(rng, rgb, kind), None, None),
    "monitor": lambda rng, rgb, kind: (_screen(rng, rgb, "monitor"), None, None),
    "tv": lambda rng, rgb, kind: (_screen(rng, rgb, kind), None, None),
    "plant": lambda rng, rgb, kind: (_plant(rng, rgb, kind), None, None),
    "trash_can": lambda rng, rgb, kind: (_trash_can(rng, rgb), None, None),
    "box": lambda rng, rgb, kind: (_box(rng, rgb, kind), None, None),
    "cup": lambda rng, rgb, kind: (_cup(rng, rgb), None, None),
    "bottle": lambda rng, rgb, kind: (_bottle(rng, rgb), None, None),
}


OPENINGS: dict[str, Callable[[RGB, float, float], list[Part]]] = {
    "window": _window,
    "door": _door,
}
