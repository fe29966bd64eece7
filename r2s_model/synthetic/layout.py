"""Physically plausible placement: against walls, free on the floor, on tops and under tables.

Every placement is checked against what is already in the room: axis-aligned bounds (of the
turned geometry) must stay inside the room and keep a clearance from every other object whose
height range they share, so nothing interpenetrates, and a door's swing area stays free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from r2s_model.synthetic.furniture import Model, Surface
from r2s_model.synthetic.parts import Part, parts_bounds, rotate_xy

WALL_GAP = 0.005  # furniture backs stand this far off a wall
FLOOR_CLEARANCE = 0.05  # between floor-standing objects
ITEM_CLEARANCE = 0.02  # between small things sharing a top
EDGE_MARGIN = 0.03  # things keep this far inside the edge of a top or an under-space
DOOR_SWING = 1.0  # metres in front of a door kept free
_ATTEMPTS = 25
_KEEP_OUT = -1  # owner of keep-out volumes, which nothing may enter


@dataclass
class Placed:
    """A model in the room: parts in the room frame, bounds (3,) each, local-frame origin."""

    model: Model
    parts: tuple[Part, ...]
    low: np.ndarray
    high: np.ndarray
    position: np.ndarray
    yaw: float
    support: int | None = None  # index in Layout.objects of what it stands on


def place(model: Model, position: np.ndarray, yaw: float, support: int | None = None) -> Placed:
    """`model` with its local origin moved to `position` (3,) and turned by `yaw`."""
    parts = tuple(part.placed(position, yaw) for part in model.parts)
    low, high = parts_bounds(list(parts))
    return Placed(model, parts, low, high, np.asarray(position, float), yaw, support)


def facing_yaw(direction: np.ndarray) -> float:
    """The yaw that turns a model's front (local -y) towards xy `direction`."""
    return float(np.arctan2(direction[0], -direction[1]))


@dataclass(frozen=True)
class Wall:
    """The inner face of a wall: points origin + s * tangent for s in [0, length]."""

    origin: np.ndarray
    tangent: np.ndarray
    normal: np.ndarray  # unit, into the room
    length: float

    def point(self, along: float) -> np.ndarray:
        return self.origin + along * self.tangent


class Layout:
    """A room being furnished: its size, walls and the objects placed so far."""

    def __init__(self, size: tuple[float, float], height: float) -> None:
        self.size = np.array(size, dtype=np.float64)
        self.height = height
        sx, sy = size
        self.walls = (
            Wall(np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), sx),
            Wall(np.array([sx, 0.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.0]), sy),
            Wall(np.array([0.0, sy]), np.array([1.0, 0.0]), np.array([0.0, -1.0]), sx),
            Wall(np.array([0.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 0.0]), sy),
        )
        self.objects: list[Placed] = []
        # Obstacles of every object but the room shell, plus keep-out volumes (door swings).
        self._lows = np.empty((0, 3))
        self._highs = np.empty((0, 3))
        self._owners: list[int] = []  # index in `objects`, _KEEP_OUT for keep-out volumes

    def add(self, item: Placed, *, obstacle: bool = True) -> int:
        self.objects.append(item)
        if obstacle:
            self._block(item.low, item.high, len(self.objects) - 1)
        return len(self.objects) - 1

    def keep_free(self, low: np.ndarray, high: np.ndarray) -> None:
        self._block(low, high, _KEEP_OUT)

    def _block(self, low: np.ndarray, high: np.ndarray, owner: int) -> None:
        self._lows = np.vstack([self._lows, low])
        self._highs = np.vstack([self._highs, high])
        self._owners.append(owner)

    def fits(self, item: Placed, clearance: float, ignore: int | None = None) -> bool:
        """Inside the room and clear of every obstacle but `ignore` (a support or host)."""
        if np.any(item.low[:2] < WALL_GAP / 2) or np.any(item.high[:2] > self.size - WALL_GAP / 2):
            return False
        if item.high[2] > self.height - 0.1:
            return False
        apart_xy = np.any(
            (item.low[:2] >= self._highs[:, :2] + clearance)
            | (item.high[:2] <= self._lows[:, :2] - clearance),
            axis=1,
        )
        # Touching in height (a cup on a top) is no collision.
        apart_z = (item.low[2] >= self._highs[:, 2] - 1e-6) | (
            item.high[2] <= self._lows[:, 2] + 1e-6
        )
        colliding = ~(apart_xy | apart_z)
        if ignore is not None:
            colliding &= np.array(self._owners) != ignore
        return not np.any(colliding)

    def try_add(self, item: Placed, clearance: float, ignore: int | None = None) -> int | None:
        return self.add(item) if self.fits(item, clearance, ignore) else None

    def against_wall(
        self,
        model: Model,
        rng: np.random.Generator,
        wall: Wall | None = None,
        along: float | None = None,
        clearance: float = FLOOR_CLEARANCE,
    ) -> tuple[int, Wall, float] | None:
        """Back to a wall (random unless given), facing into the room -> (index, wall, along)."""
        low, high = parts_bounds(list(model.parts))
        half_width = (high[0] - low[0]) / 2
        for _ in range(1 if along is not None else _ATTEMPTS):
            side = wall if wall is not None else self.walls[rng.integers(4)]
            if side.length < 2 * half_width + 0.1:
                return None
            s = along if along is not None else rng.uniform(half_width, side.length - half_width)
            origin = side.point(s) + side.normal * (WALL_GAP + high[1])
            item = place(model, np.r_[origin, 0.0], facing_yaw(side.normal))
            index = self.try_add(item, clearance)
            if index is not None:
                return index, side, float(s)
        return None

    def at(
        self, model: Model, xy: np.ndarray, yaw: float, clearance: float = FLOOR_CLEARANCE
    ) -> int | None:
        """On the floor at `xy` (2,), turned by `yaw`, if it fits."""
        return self.try_add(place(model, np.r_[xy, 0.0], yaw), clearance)

    def anywhere(
        self, model: Model, rng: np.random.Generator, yaw: float | None = None
    ) -> int | None:
        """On the floor at a random free spot, at a random yaw unless given."""
        for _ in range(_ATTEMPTS):
            turn = rng.uniform(0, 2 * np.pi) if yaw is None else yaw
            index = self.at(model, rng.uniform(0.0, 1.0, 2) * self.size, turn)
            if index is not None:
                return index
        return None

    def on_top(
        self,
        model: Model,
        support: int,
        rng: np.random.Generator,
        yaw: float | None = None,
    ) -> int | None:
        """Standing on the top of object `support`, turned by `yaw` relative to it (random
        unless given)."""
        host = self.objects[support]
        top = host.model.top
        if top is None:
            return None
        base = host.position[2] + top.height
        return self._inside(model, support, top, base, rng, yaw, stands_on_host=True)

    def under(self, model: Model, host_index: int, rng: np.random.Generator) -> int | None:
        """On the floor in the free space under a table or desk."""
        host = self.objects[host_index]
        space = host.model.under
        low, high = parts_bounds(list(model.parts))
        if space is None or high[2] - low[2] > space.height - 0.2:
            return None
        return self._inside(model, host_index, space, 0.0, rng, None, stands_on_host=False)

    def _inside(
        self,
        model: Model,
        host_index: int,
        area: Surface,
        base: float,
        rng: np.random.Generator,
        yaw: float | None,
        stands_on_host: bool,
    ) -> int | None:
        """Placed at height `base` with its footprint inside `area` of the host's frame."""
        host = self.objects[host_index]
        low, high = parts_bounds(list(model.parts))
        corners = np.array([[x, y] for x in (low[0], high[0]) for y in (low[1], high[1])])
        center, half = np.array(area.center), np.array(area.half) - EDGE_MARGIN
        for _ in range(_ATTEMPTS):
            turn = rng.uniform(0, 2 * np.pi) if yaw is None else yaw + rng.normal(0, 0.05)
            local = center + rng.uniform(-1.0, 1.0, 2) * half
            # The item's footprint corners, in the host's frame.
            in_host = rotate_xy(corners, turn) + local - center
            if np.any(np.abs(in_host) > half):
                continue
            xy = host.position[:2] + rotate_xy(local, host.yaw)
            support = host_index if stands_on_host else None
            item = place(model, np.r_[xy, base], host.yaw + turn, support)
            index = self.try_add(item, ITEM_CLEARANCE, ignore=host_index)
            if index is not None:
                return index
        return None
