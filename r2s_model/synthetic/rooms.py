"""Procedural rooms: shell, openings and furniture, scanned into a labelled colored point cloud.

Deterministic from the seed. Only visible surfaces are sampled (nothing pressed against the
floor or a wall, or inside another part), at an RGB-D-scan-like density, with a few millimetres
of position noise, color noise and mild shading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from r2s_model.synthetic.furniture import CATEGORIES, Model, SceneObject
from r2s_model.synthetic.layout import Layout, Placed, place
from r2s_model.synthetic.palette import pick_color
from r2s_model.synthetic.parts import box
from r2s_model.synthetic.recipes import add_openings, furnish
from r2s_model.synthetic.sampling import hidden_points, sample_parts, scan_colors

__all__ = ["CATEGORIES", "Room", "SceneObject", "generate_room"]

_SHELL_THICKNESS = 0.1
_POSITION_NOISE = (0.003, 0.005)  # metres, standard deviation drawn per room
_ROOM_SIDE = (3.5, 5.6)
# Height of the scanned wall: RGB-D room scans seldom reach the ceiling.
_WALL_HEIGHT = (2.3, 2.6)


@dataclass
class Room:
    """A generated room: its objects (structure included) and their scan.

    points (N, 3) float32 metres, colors (N, 3) float32 in [0, 1], instance (N,) int32 ids of
    `objects`, semantic (N,) int32 indices into CATEGORIES.
    """

    seed: int
    size: tuple[float, float]
    objects: list[SceneObject]
    points: np.ndarray
    colors: np.ndarray
    instance: np.ndarray
    semantic: np.ndarray

    def object(self, instance_id: int) -> SceneObject:
        for candidate in self.objects:
            if candidate.instance_id == instance_id:
                return candidate
        raise KeyError(f"no object with instance id {instance_id}")


def _add_shell(layout: Layout, rng: np.random.Generator) -> None:
    """Floor and four walls: slabs just outside the room showing only their inner face."""
    (sx, sy), height, thick = layout.size, layout.height, _SHELL_THICKNESS
    color, rgb = pick_color("floor", rng)
    floor = box((sx / 2, sy / 2, -thick / 2), (sx, sy, thick), rgb, faces=1 << 5)
    layout.add(place(Model("floor", color, rgb, (floor,)), np.zeros(3), 0.0), obstacle=False)
    color, rgb = pick_color("wall", rng)
    slabs = (  # (center, size, the face bit looking into the room)
        ((sx / 2, -thick / 2), (sx, thick), 3),
        ((sx + thick / 2, sy / 2), (thick, sy), 0),
        ((sx / 2, sy + thick / 2), (sx, thick), 2),
        ((-thick / 2, sy / 2), (thick, sy), 1),
    )
    for (cx, cy), (wx, wy), face in slabs:
        wall = box((cx, cy, height / 2), (wx, wy, height), rgb, faces=1 << face)
        model = Model("wall", color, rgb, (wall,))
        layout.add(place(model, np.zeros(3), 0.0), obstacle=False)


def _scene_object(instance_id: int, item: Placed) -> SceneObject:
    support = None if item.support is None else item.support + 1
    model = item.model
    return SceneObject(
        instance_id=instance_id,
        category=model.category,
        color=model.color,
        rgb=model.rgb,
        box_min=item.low,
        box_max=item.high,
        yaw=float(item.yaw),
        support=support,
        parts=item.parts,
    )


def generate_room(seed: int, *, points_per_m2: float = 1500.0) -> Room:
    """A furnished room of 3.5-5.6 m sides with 13-24 pieces of furniture, scanned at
    `points_per_m2` on visible surfaces."""
    rng = np.random.default_rng(seed)
    size = (float(rng.uniform(*_ROOM_SIDE)), float(rng.uniform(*_ROOM_SIDE)))
    layout = Layout(size, float(rng.uniform(*_WALL_HEIGHT)))
    _add_shell(layout, rng)
    add_openings(layout, rng)
    furnish(layout, rng)
    # Instance ids are list positions + 1, so 0 stays free for "unlabelled".
    objects = [_scene_object(i + 1, item) for i, item in enumerate(layout.objects)]

    parts = [part for item in layout.objects for part in item.parts]
    part_object = np.repeat(np.arange(len(objects)), [len(item.parts) for item in layout.objects])
    is_shell = np.isin([objects[i].category for i in part_object], ["floor", "wall"])
    points, normals, owner = sample_parts(parts, points_per_m2, rng)
    visible = ~hidden_points(points, owner, parts, is_shell, layout.size)
    points, normals, owner = points[visible], normals[visible], owner[visible]

    points += rng.normal(0.0, rng.uniform(*_POSITION_NOISE), points.shape)
    part_rgb = np.array([part.rgb for part in parts])
    colors = scan_colors(part_rgb[owner], normals, rng.uniform(0.9, 1.05), rng)
    object_index = part_object[owner]
    category_index = np.array([CATEGORIES.index(o.category) for o in objects], dtype=np.int32)
    return Room(
        seed=seed,
        size=size,
        objects=objects,
        points=points.astype(np.float32),
        colors=colors,
        instance=(object_index + 1).astype(np.int32),
        semantic=category_index[object_index],
    )
