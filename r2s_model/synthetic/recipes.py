"""What goes into a room: openings, then furniture groups by room type, then random extras."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from r2s_model.synthetic.furniture import Model, build, build_opening
from r2s_model.synthetic.layout import DOOR_SWING, Layout, facing_yaw, place
from r2s_model.synthetic.parts import parts_bounds, rotate_xy

MIN_FURNITURE, MAX_FURNITURE = 13, 24
_OPENING_GAP = 0.3  # metres between openings, and from a corner


def _half_extent(model: Model) -> np.ndarray:
    """(3,) half size of the model's local bounds."""
    low, high = parts_bounds(list(model.parts))
    return (high - low) / 2


class _Openings:
    """Doors and windows on walls, their spans along each wall kept apart."""

    def __init__(self, layout: Layout, rng: np.random.Generator) -> None:
        self.layout, self.rng = layout, rng
        self.taken: list[tuple[int, float, float]] = []  # (wall, start, end)

    def free_span(self, wall: int, width: float) -> float | None:
        """The middle of a free span of `width` on `wall`, now taken; None if none found."""
        length = self.layout.walls[wall].length
        if length < width + 2 * _OPENING_GAP:
            return None
        for _ in range(10):
            middle = self.rng.uniform(_OPENING_GAP + width / 2, length - _OPENING_GAP - width / 2)
            start, end = middle - width / 2 - _OPENING_GAP, middle + width / 2 + _OPENING_GAP
            if all(w != wall or end < s or start > e for w, s, e in self.taken):
                self.taken.append((wall, start, end))
                return middle
        return None

    def mount(self, model: Model, wall: int, along: float, base: float) -> None:
        """Its back (local +y) flush with the wall, its bottom at height `base`."""
        side = self.layout.walls[wall]
        depth = parts_bounds(list(model.parts))[1][1]
        position = np.r_[side.point(along) + side.normal * depth, base]
        self.layout.add(place(model, position, facing_yaw(side.normal)))


def add_openings(layout: Layout, rng: np.random.Generator) -> None:
    """A door (most rooms) with its swing area kept free, and zero to two windows."""
    openings = _Openings(layout, rng)
    door_wall = int(rng.integers(4))
    if rng.random() < 0.9:
        width, height = rng.uniform(0.8, 0.95), rng.uniform(2.0, 2.1)
        along = openings.free_span(door_wall, width)
        if along is not None:
            openings.mount(build_opening("door", rng, width, height), door_wall, along, 0.0)
            side = layout.walls[door_wall]
            ends = [side.point(along + s * (width / 2 + 0.15)) for s in (-1, 1)]
            corners = np.array([*ends, *(end + side.normal * DOOR_SWING for end in ends)])
            layout.keep_free(np.r_[corners.min(0), 0.0], np.r_[corners.max(0), height])
    for _ in range(rng.choice(3, p=[0.15, 0.55, 0.3])):
        wall = int(rng.choice([w for w in range(4) if w != door_wall]))
        sill, top = rng.uniform(0.8, 1.0), min(rng.uniform(2.0, 2.2), layout.height - 0.15)
        width = rng.uniform(0.9, 1.8)
        along = openings.free_span(wall, width)
        if along is not None:
            openings.mount(build_opening("window", rng, width, top - sill), wall, along, sill)


def _seats_around(layout: Layout, rng: np.random.Generator, table: int, count: int) -> None:
    """Up to `count` identical chairs (or stools) pulled up to the sides of a table."""
    host = layout.objects[table]
    seat = build("chair" if rng.random() < 0.8 else "stool", rng)
    half_x, half_y = host.model.top.half
    depth = _half_extent(seat)[1]
    spots = [((0, s), half_y, 0.0) for s in (-1, 1)] + [((s, 0), half_x, 0.0) for s in (-1, 1)]
    if half_x > 0.6:  # long sides seat two
        spots += [((0, s), half_y, t * half_x / 2) for s in (-1, 1) for t in (-1, 1)]
    for index in rng.permutation(len(spots)):
        if count == 0:
            return
        (dx, dy), half, offset = spots[index]
        direction = np.array([dx, dy], dtype=float)
        along_side = np.abs(direction[::-1]) * offset
        local = direction * (half + depth + rng.uniform(0.05, 0.2)) + along_side
        xy = host.position[:2] + rotate_xy(local, host.yaw)
        outward = rotate_xy(direction, host.yaw)
        if layout.at(seat, xy, facing_yaw(-outward) + rng.normal(0, 0.12), 0.03) is not None:
            count -= 1


def _supports(layout: Layout) -> list[int]:
    """Floor-standing objects with a top to put things on."""
    return [
        i for i, o in enumerate(layout.objects) if o.model.top is not None and o.support is None
    ]


def _hosts(layout: Layout) -> list[int]:
    return [i for i, o in enumerate(layout.objects) if o.model.under is not None]


def _put_on(layout: Layout, rng: np.random.Generator, category: str, support: int) -> int | None:
    kind = "small" if category in ("lamp", "plant", "box") else ""
    return layout.on_top(build(category, rng, kind), support, rng)


def _desk_corner(layout: Layout, rng: np.random.Generator) -> None:
    """A desk against a wall, its chair, a monitor and some things on it or under it."""
    desk_model = build("desk", rng)
    placed = layout.against_wall(desk_model, rng)
    if placed is None:
        return
    desk, wall, _ = placed
    chair = build("chair", rng)
    reach = _half_extent(desk_model)[1] + _half_extent(chair)[1] + rng.uniform(0.1, 0.3)
    xy = layout.objects[desk].position[:2] + wall.normal * reach
    layout.at(chair, xy, facing_yaw(-wall.normal) + rng.normal(0, 0.2), clearance=0.03)
    if rng.random() < 0.75:
        layout.on_top(build("monitor", rng), desk, rng, yaw=0.0)
    for category, chance in (("lamp", 0.4), ("cup", 0.5), ("bottle", 0.3), ("box", 0.2)):
        if rng.random() < chance:
            _put_on(layout, rng, category, desk)
    if rng.random() < 0.4:
        layout.under(build(str(rng.choice(["trash_can", "box"])), rng, "floor"), desk, rng)


def _bedroom(layout: Layout, rng: np.random.Generator) -> None:
    for _ in range(1 + int(rng.random() < 0.25)):
        bed_model = build("bed", rng)
        placed = layout.against_wall(bed_model, rng)
        if placed is None:
            continue
        _, wall, along = placed
        for side in (-1, 1):
            if rng.random() < 0.75:
                stand = build("cabinet", rng, "nightstand")
                offset = _half_extent(bed_model)[0] + _half_extent(stand)[0] + 0.05
                beside = layout.against_wall(stand, rng, wall, along + side * offset)
                if beside is not None and rng.random() < 0.7:
                    _put_on(layout, rng, "lamp", beside[0])
    if rng.random() < 0.6:
        layout.against_wall(build("cabinet", rng, "wardrobe"), rng)
    if rng.random() < 0.5:
        _desk_corner(layout, rng)


def _office(layout: Layout, rng: np.random.Generator) -> None:
    for _ in range(int(rng.integers(1, 4))):
        _desk_corner(layout, rng)
    for _ in range(int(rng.integers(1, 3))):
        layout.against_wall(build("shelf", rng), rng)
    if rng.random() < 0.4:
        layout.against_wall(build("cabinet", rng, "sideboard"), rng)


def _living_room(layout: Layout, rng: np.random.Generator) -> None:
    for number in range(1 + int(rng.random() < 0.3)):
        sofa_model = build("sofa", rng)
        placed = layout.against_wall(sofa_model, rng)
        if placed is None or number > 0:
            continue
        sofa, wall, _ = placed
        coffee = build("table", rng, "coffee")
        reach = _half_extent(sofa_model)[1] + _half_extent(coffee)[1] + rng.uniform(0.35, 0.5)
        xy = layout.objects[sofa].position[:2] + wall.normal * reach
        table = layout.at(coffee, xy, layout.objects[sofa].yaw)
        for _ in range(int(rng.integers(0, 3)) if table is not None else 0):
            _put_on(layout, rng, str(rng.choice(["cup", "bottle"])), table)
    stand = layout.against_wall(build("cabinet", rng, "sideboard"), rng)
    if stand is None or layout.on_top(build("tv", rng, "top"), stand[0], rng, yaw=0.0) is None:
        layout.against_wall(build("tv", rng, "floor_tv"), rng)
    for _ in range(int(rng.integers(1, 3))):
        layout.anywhere(build("lamp", rng, "floor"), rng)


def _dining_room(layout: Layout, rng: np.random.Generator) -> None:
    for number in range(1 + int(rng.random() < 0.35)):
        quarter = rng.integers(2) * np.pi / 2 + rng.normal(0, 0.08 if rng.random() < 0.3 else 0)
        table = layout.anywhere(build("table", rng, "dining"), rng, yaw=quarter)
        if table is None:
            continue
        _seats_around(layout, rng, table, int(rng.integers(2, 7 if number == 0 else 5)))
        for _ in range(int(rng.integers(1, 4))):
            _put_on(layout, rng, str(rng.choice(["cup", "bottle", "cup", "plant"])), table)
    if rng.random() < 0.6:
        layout.against_wall(build("cabinet", rng, "sideboard"), rng)


_ROOM_KINDS: tuple[Callable[[Layout, np.random.Generator], None], ...] = (
    _bedroom,
    _office,
    _living_room,
    _dining_room,
)


def _extra(layout: Layout, rng: np.random.Generator) -> None:
    """One more random thing where it fits: small things go on tops or under tables."""
    category, kind, where = _EXTRAS[rng.choice(len(_EXTRAS), p=_EXTRA_WEIGHTS)]
    model = build(category, rng, kind)
    if where == "top":
        supports = _supports(layout)
        if supports:
            layout.on_top(model, supports[rng.integers(len(supports))], rng)
    elif where == "under":
        hosts = _hosts(layout)
        if hosts:
            layout.under(model, hosts[rng.integers(len(hosts))], rng)
    elif where == "wall":
        layout.against_wall(model, rng)
    else:
        layout.anywhere(model, rng)


# (category, variant, where) and how often it is picked.
_EXTRAS_WEIGHTED = (
    (("plant", "floor", "floor"), 2.0),
    (("lamp", "floor", "floor"), 1.2),
    (("box", "floor", "floor"), 1.5),
    (("trash_can", "", "floor"), 1.2),
    (("stool", "", "floor"), 1.0),
    (("chair", "", "floor"), 1.2),
    (("table", "dining", "floor"), 0.2),
    (("table", "coffee", "floor"), 0.2),
    (("shelf", "", "wall"), 1.0),
    (("cabinet", "sideboard", "wall"), 0.6),
    (("cabinet", "nightstand", "wall"), 0.4),
    (("desk", "", "wall"), 0.3),
    (("sofa", "", "wall"), 0.3),
    (("bed", "", "wall"), 0.2),
    (("cup", "", "top"), 2.0),
    (("bottle", "", "top"), 2.0),
    (("box", "small", "top"), 1.0),
    (("plant", "small", "top"), 1.0),
    (("lamp", "small", "top"), 0.7),
    (("monitor", "", "top"), 0.3),
    (("tv", "top", "top"), 0.3),
    (("tv", "floor_tv", "wall"), 0.2),
    (("box", "floor", "under"), 0.8),
    (("trash_can", "", "under"), 0.6),
)
_EXTRAS = [entry for entry, _ in _EXTRAS_WEIGHTED]
_EXTRA_WEIGHTS = np.array([weight for _, weight in _EXTRAS_WEIGHTED])
_EXTRA_WEIGHTS /= _EXTRA_WEIGHTS.sum()


def furnish(layout: Layout, rng: np.random.Generator) -> None:
    """Fill a room (openings already in place) with one room type's groups, then extras up to
    a random total of 13-24 pieces of furniture, as far as they fit."""
    first = len(layout.objects)
    _ROOM_KINDS[rng.integers(len(_ROOM_KINDS))](layout, rng)
    target = rng.integers(MIN_FURNITURE, MAX_FURNITURE + 1)
    for _ in range(4 * MAX_FURNITURE):
        if len(layout.objects) - first >= target:
            return
        _extra(layout, rng)
