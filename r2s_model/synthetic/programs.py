"""The reasoning programs of docs/relations.md, evaluated with the generator's safety margins.

Every decision (is c near r, which chair is largest) is three-valued: clearly true, clearly
false, or unsure because it falls inside the margin band around the checker's threshold. Bands
lie on both sides of each threshold, so neither a kept nor a rejected candidate can flip under
sensing noise. A program that needs an unsure decision evaluates to None and is not used.

As in the checker, the objects a reference selects are never candidates of that relation (or of
that distance superlative).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from r2s_model.synthetic.furniture import SceneObject

FUNCTIONS: dict[str, tuple[str, ...]] = {
    "sit": ("chair", "sofa", "bed", "stool"),
    "sleep": ("bed", "sofa"),
    "put_things_on": ("table", "desk", "cabinet", "shelf", "bed"),
    "store_things": ("cabinet", "shelf", "box"),
    "light": ("lamp",),
    "watch": ("tv", "monitor"),
    "throw_away": ("trash_can",),
    "drink_from": ("cup", "bottle"),
}
DIRECTIONAL = ("left_of", "right_of", "in_front_of", "behind")
DISTANCE_MEASURES = ("closest", "farthest")

TRUE, FALSE, UNSURE = 1, 0, -1

# (clearly true below/above, clearly false beyond): the relations.md generator margin on the
# true side, mirrored about the checker's threshold on the false side.
NEAR_GAP = (0.45, 0.75)  # threshold 0.6
FAR_DISTANCE = (2.8, 2.2)  # threshold 2.5
ON_HEIGHT = (0.045, 0.09)  # threshold 0.06
ON_OVERLAP = (0.6, 0.4)  # threshold 0.5
UNDER_DROP = (0.15, 0.05)  # threshold 0.1 below the reference's top
UNDER_INSIDE = 0.05  # the centre is this far inside (or outside) the reference's footprint
DIRECTION_ALONG = (0.45, 0.15)  # threshold 0.3
DIRECTION_RATIO = 1.5  # dominance |a| / |b|; clearly false below 1 / 1.5
BETWEEN_T = ((0.25, 0.75), (0.05, 0.95))  # threshold (0.15, 0.85)
BETWEEN_OFFSET = (0.4, 0.8)  # threshold 0.6
# Runner-up separation of superlatives: relative for volumes, metres otherwise.
UNIQUENESS = {"volume": 0.25, "height": 0.15, "distance": 0.4}
MAX_COMPARED = 6


def _verdict(true: np.ndarray, false: np.ndarray) -> np.ndarray:
    return np.where(true, TRUE, np.where(false, FALSE, UNSURE)).astype(np.int8)


@dataclass(frozen=True)
class Boxes:
    """Object geometry: ids (n,) int, low/high (n, 3) float64 axis-aligned bounds, and each
    object's category and color name."""

    ids: np.ndarray
    low: np.ndarray
    high: np.ndarray
    categories: tuple[str, ...]
    colors: tuple[str, ...]

    @classmethod
    def from_objects(cls, objects: Sequence[SceneObject]) -> Boxes:
        """The true geometry."""
        return cls(
            np.array([o.instance_id for o in objects]),
            np.array([o.box_min for o in objects], dtype=np.float64),
            np.array([o.box_max for o in objects], dtype=np.float64),
            tuple(o.category for o in objects),
            tuple(o.color for o in objects),
        )

    @classmethod
    def from_points(
        cls, objects: Sequence[SceneObject], points: np.ndarray, instance: np.ndarray
    ) -> Boxes:
        """The geometry a checker sees: bounds of each object's points (N, 3), labels (N,)."""
        order = np.argsort(instance, kind="stable")
        labels, grouped = instance[order], points[order].astype(np.float64)
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        row = {int(label): k for k, label in enumerate(labels[starts])}
        low = np.minimum.reduceat(grouped, starts, axis=0)
        high = np.maximum.reduceat(grouped, starts, axis=0)
        index = [row[o.instance_id] for o in objects]
        base = cls.from_objects(objects)
        return cls(base.ids, low[index], high[index], base.categories, base.colors)

    @property
    def center(self) -> np.ndarray:
        return (self.low + self.high) / 2

    def distances(self) -> np.ndarray:
        """(n, n) xy distance between centres."""
        xy = self.center[:, :2]
        return np.linalg.norm(xy[:, None] - xy[None], axis=-1)


class Evaluator:
    """Evaluates programs on one set of boxes; pairwise relation verdicts are cached."""

    def __init__(self, boxes: Boxes) -> None:
        self.boxes = boxes
        self._categories = np.array(boxes.categories)
        self._colors = np.array(boxes.colors)
        self._pairs: dict[str, np.ndarray] = {}

    def evaluate(self, program: dict) -> tuple[list[int], list[int]] | None:
        """(selected ids, the other objects it needed: references recursively, then compared
        superlative members), or None when invalid or unsure anywhere."""
        result = self._select(program)
        if result is None:
            return None
        mask, needed = result
        selected = [int(i) for i in self.boxes.ids[mask]]
        return selected, [i for i in dict.fromkeys(needed) if i not in selected]

    def _select(self, program: dict) -> tuple[np.ndarray, list[int]] | None:
        kind = program["type"]
        if kind == "category":
            return self._categories == program["category"], []
        if kind == "color":
            same = (self._categories == program["category"]) & (self._colors == program["color"])
            return same, []
        if kind == "function":
            return np.isin(self._categories, FUNCTIONS[program["function"]]), []
        if kind == "relation":
            return self._relation(program)
        return self._superlative(program)

    def _reference(self, program: dict, count: int) -> tuple[np.ndarray, list[int]] | None:
        """Rows of the objects the reference selects (exactly `count`) and what it needed."""
        reference = program["reference"]
        parts = reference if isinstance(reference, list) else [reference]
        mask, needed = np.zeros(len(self.boxes.ids), bool), []
        for part in parts:
            result = self._select(part)
            if result is None or (len(parts) > 1 and result[0].sum() != 1):
                return None
            mask |= result[0]
            needed += result[1]
        rows = np.flatnonzero(mask)
        if len(rows) != count:
            return None
        return rows, [int(i) for i in self.boxes.ids[rows]] + needed

    def _relation(self, program: dict) -> tuple[np.ndarray, list[int]] | None:
        relation = program["relation"]
        members = self._select(program["of"])
        reference = self._reference(program, 2 if relation == "between" else 1)
        if members is None or reference is None:
            return None
        rows, needed = reference
        candidates = members[0].copy()
        candidates[rows] = False
        if relation == "between":
            verdict = self._between(rows[0], rows[1])
        elif relation in DIRECTIONAL:
            verdict = self._direction(relation, program["viewpoint"]["facing"])[:, rows[0]]
        else:
            verdict = self._pair(relation)[:, rows[0]]
        if np.any(verdict[candidates] == UNSURE):
            return None
        return candidates & (verdict == TRUE), needed + members[1]

    def _superlative(self, program: dict) -> tuple[np.ndarray, list[int]] | None:
        measure = program["measure"]
        members = self._select(program["of"])
        if members is None:
            return None
        candidates, needed = members[0].copy(), list(members[1])
        boxes = self.boxes
        if measure in DISTANCE_MEASURES:
            reference = self._reference(program, 1)
            if reference is None:
                return None
            candidates[reference[0]] = False
            needed = reference[1] + needed
            values = boxes.distances()[:, reference[0][0]]
            margin = UNIQUENESS["distance"]
        elif measure in ("largest", "smallest"):
            values = np.prod(boxes.high - boxes.low, axis=1)
            margin = UNIQUENESS["volume"]
        else:
            values, margin = boxes.high[:, 2], UNIQUENESS["height"]
        rows = np.flatnonzero(candidates)
        if len(rows) < 2:
            return None
        ranked = rows[np.argsort(values[rows])]
        if measure in ("largest", "tallest", "farthest"):
            ranked = ranked[::-1]
        best, runner_up = values[ranked[0]], values[ranked[1]]
        if margin == UNIQUENESS["volume"]:
            margin *= max(best, runner_up)
        if abs(best - runner_up) < margin:
            return None
        winner = ranked[0]
        others = ranked[1:]
        others = others[np.argsort(boxes.distances()[winner, others], kind="stable")]
        compared = [int(i) for i in boxes.ids[others[:MAX_COMPARED]]]
        mask = np.zeros(len(boxes.ids), bool)
        mask[winner] = True
        return mask, needed + compared

    def _pair(self, relation: str) -> np.ndarray:
        """(n, n) verdicts of candidate row vs reference column for near/far_from/on/under."""
        if relation not in self._pairs:
            self._pairs[relation] = _PAIR_RELATIONS[relation](self.boxes)
        return self._pairs[relation]

    def _direction(self, relation: str, facing: Sequence[float]) -> np.ndarray:
        forward = np.asarray(facing, dtype=np.float64)
        right = np.array([forward[1], -forward[0]])
        center = self.boxes.center[:, :2]
        offset = center[:, None] - center[None]
        a, b = offset @ right, offset @ forward
        along, across = (a, b) if relation in ("left_of", "right_of") else (b, a)
        sign = -1.0 if relation in ("left_of", "in_front_of") else 1.0
        true = (sign * along >= DIRECTION_ALONG[0]) & (
            np.abs(along) >= DIRECTION_RATIO * np.abs(across)
        )
        false = (sign * along <= DIRECTION_ALONG[1]) | (
            DIRECTION_RATIO * np.abs(along) <= np.abs(across)
        )
        return _verdict(true, false)

    def _between(self, first: int, second: int) -> np.ndarray:
        center = self.boxes.center[:, :2]
        start, segment = center[first], center[second] - center[first]
        t = (center - start) @ segment / (segment @ segment)
        closest = start + np.clip(t, 0.0, 1.0)[:, None] * segment
        offset = np.linalg.norm(center - closest, axis=1)
        (inside_low, inside_high), (outside_low, outside_high) = BETWEEN_T
        true = (inside_low < t) & (t < inside_high) & (offset < BETWEEN_OFFSET[0])
        false = (t <= outside_low) | (t >= outside_high) | (offset >= BETWEEN_OFFSET[1])
        return _verdict(true, false)


def _near(boxes: Boxes) -> np.ndarray:
    low, high = boxes.low[:, :2], boxes.high[:, :2]
    separation = np.maximum(0.0, np.maximum(low[:, None] - high[None], low[None] - high[:, None]))
    gap = np.linalg.norm(separation, axis=-1)
    return _verdict(gap < NEAR_GAP[0], gap >= NEAR_GAP[1])


def _far_from(boxes: Boxes) -> np.ndarray:
    distance = boxes.distances()
    return _verdict(distance > FAR_DISTANCE[0], distance <= FAR_DISTANCE[1])


def _on(boxes: Boxes) -> np.ndarray:
    drop = np.abs(boxes.low[:, None, 2] - boxes.high[None, :, 2])
    sides = np.minimum(boxes.high[:, None, :2], boxes.high[None, :, :2]) - np.maximum(
        boxes.low[:, None, :2], boxes.low[None, :, :2]
    )
    area = np.prod(boxes.high[:, :2] - boxes.low[:, :2], axis=1)
    overlap = np.prod(np.maximum(sides, 0.0), axis=-1) / np.maximum(area, 1e-9)[:, None]
    true = (drop < ON_HEIGHT[0]) & (overlap >= ON_OVERLAP[0])
    false = (drop >= ON_HEIGHT[1]) | (overlap < ON_OVERLAP[1])
    return _verdict(true, false)


def _under(boxes: Boxes) -> np.ndarray:
    center = boxes.center[:, None, :2]
    # Positive when the candidate's centre is inside the reference's footprint.
    inside = np.min(
        np.minimum(center - boxes.low[None, :, :2], boxes.high[None, :, :2] - center), axis=-1
    )
    drop = boxes.high[None, :, 2] - boxes.high[:, None, 2]
    true = (inside >= UNDER_INSIDE) & (drop > UNDER_DROP[0])
    false = (inside <= -UNDER_INSIDE) | (drop <= UNDER_DROP[1])
    return _verdict(true, false)


_PAIR_RELATIONS = {"near": _near, "far_from": _far_from, "on": _on, "under": _under}
