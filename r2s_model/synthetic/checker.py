"""Independent checker of generated samples: re-evaluates each program from the scene's points.

Follows docs/relations.md with its thresholds (the generator keeps margins from them). Object
geometry comes from the points carrying each instance label only, never from the generator, so
a sample passes when its program, evaluated on what a sensor would see, selects exactly its
targets. Candidates of a relation (or of a distance superlative) never include the objects its
reference selects: "the chair near the chair" means another chair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

NEAR_GAP = 0.6
FAR_DISTANCE = 2.5
ON_HEIGHT_TOLERANCE = 0.06
ON_MIN_OVERLAP = 0.5
UNDER_CLEARANCE = 0.1
DIRECTION_MIN = 0.3
BETWEEN_RANGE = (0.15, 0.85)
BETWEEN_MAX_OFFSET = 0.6
# JSON rounding of a unit vector stays far inside this.
UNIT_TOLERANCE = 1e-3

FUNCTIONS = {
    "sit": {"chair", "sofa", "bed", "stool"},
    "sleep": {"bed", "sofa"},
    "put_things_on": {"table", "desk", "cabinet", "shelf", "bed"},
    "store_things": {"cabinet", "shelf", "box"},
    "light": {"lamp"},
    "watch": {"tv", "monitor"},
    "throw_away": {"trash_can"},
    "drink_from": {"cup", "bottle"},
}


class ProgramError(ValueError):
    """A malformed program, or a reference that does not select exactly one object (two for
    `between`). The message starts with the path of the offending part, e.g. `program.of`."""


@dataclass(frozen=True)
class ObjectGeometry:
    """Axis-aligned box of an object's points: box_min, box_max (3,) float64 metres, z up."""

    box_min: np.ndarray
    box_max: np.ndarray

    @property
    def center(self) -> np.ndarray:
        return (self.box_min + self.box_max) / 2

    @property
    def size(self) -> np.ndarray:
        return self.box_max - self.box_min

    @property
    def volume(self) -> float:
        return float(np.prod(self.size))

    @property
    def height(self) -> float:
        """Top above the floor (z = 0)."""
        return float(self.box_max[2])


def object_geometry(points: np.ndarray, instance: np.ndarray) -> dict[int, ObjectGeometry]:
    """Per-instance boxes: points (N, 3) float, instance (N,) int; labels <= 0 (unlabelled) and
    non-finite points are skipped."""
    points = np.asarray(points, dtype=np.float64)
    instance = np.asarray(instance)
    if points.ndim != 2 or points.shape[1] != 3 or instance.shape != (len(points),):
        raise ValueError(
            f"expected points (N, 3) and instance (N,), got {points.shape}, {instance.shape}"
        )
    kept = (instance > 0) & np.isfinite(points).all(axis=1)
    order = np.argsort(instance[kept], kind="stable")
    labels = instance[kept][order]
    grouped = points[kept][order]
    if len(labels) == 0:
        return {}
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    lows = np.minimum.reduceat(grouped, starts, axis=0)
    highs = np.maximum.reduceat(grouped, starts, axis=0)
    return {
        int(label): ObjectGeometry(low, high)
        for label, low, high in zip(labels[starts], lows, highs, strict=True)
    }


def footprint_gap(a: ObjectGeometry, b: ObjectGeometry) -> float:
    """xy distance between the two footprints (0 when they overlap)."""
    separation = np.maximum(0.0, np.maximum(a.box_min - b.box_max, b.box_min - a.box_max))
    return float(np.hypot(*separation[:2]))


def centre_distance(a: ObjectGeometry, b: ObjectGeometry) -> float:
    return float(np.hypot(*(a.center - b.center)[:2]))


def _near(c: ObjectGeometry, r: ObjectGeometry) -> bool:
    return footprint_gap(c, r) < NEAR_GAP


def _far_from(c: ObjectGeometry, r: ObjectGeometry) -> bool:
    return centre_distance(c, r) > FAR_DISTANCE


def _footprint_contains(outer: ObjectGeometry, xy: np.ndarray) -> bool:
    return bool(np.all((outer.box_min[:2] <= xy) & (xy <= outer.box_max[:2])))


def _on(c: ObjectGeometry, r: ObjectGeometry) -> bool:
    if abs(c.box_min[2] - r.box_max[2]) >= ON_HEIGHT_TOLERANCE:
        return False
    sides = np.minimum(c.box_max, r.box_max)[:2] - np.maximum(c.box_min, r.box_min)[:2]
    area = c.size[0] * c.size[1]
    if area == 0:  # a point or a line of points: its centre must rest on the reference
        return _footprint_contains(r, c.center[:2])
    return float(np.prod(np.maximum(sides, 0.0))) >= ON_MIN_OVERLAP * area


def _under(c: ObjectGeometry, r: ObjectGeometry) -> bool:
    below = c.box_max[2] < r.box_max[2] - UNDER_CLEARANCE
    return below and _footprint_contains(r, c.center[:2])


PAIR_RELATIONS: dict[str, Callable[[ObjectGeometry, ObjectGeometry], bool]] = {
    "near": _near,
    "far_from": _far_from,
    "on": _on,
    "under": _under,
}

# (a, b): offset of the candidate from the reference along the viewer's right and forward.
DIRECTIONS: dict[str, Callable[[float, float], bool]] = {
    "left_of": lambda a, b: a < -DIRECTION_MIN and abs(a) > abs(b),
    "right_of": lambda a, b: a > DIRECTION_MIN and abs(a) > abs(b),
    "in_front_of": lambda a, b: b < -DIRECTION_MIN and abs(b) > abs(a),
    "behind": lambda a, b: b > DIRECTION_MIN and abs(b) > abs(a),
}


def _in_direction(
    c: ObjectGeometry,
    r: ObjectGeometry,
    right: np.ndarray,
    forward: np.ndarray,
    direction: Callable[[float, float], bool],
) -> bool:
    offset = c.center[:2] - r.center[:2]
    return direction(float(offset @ right), float(offset @ forward))


def _between(c: ObjectGeometry, r1: ObjectGeometry, r2: ObjectGeometry) -> bool:
    start, end, point = r1.center[:2], r2.center[:2], c.center[:2]
    segment = end - start
    t = float(np.dot(point - start, segment) / np.dot(segment, segment))
    offset = float(np.linalg.norm(point - (start + np.clip(t, 0.0, 1.0) * segment)))
    return BETWEEN_RANGE[0] < t < BETWEEN_RANGE[1] and offset < BETWEEN_MAX_OFFSET


@dataclass(frozen=True)
class _Measure:
    value: Callable[[ObjectGeometry, ObjectGeometry | None], float]
    largest_wins: bool
    # Half the generator's uniqueness margin: a runner-up closer than this is a tie.
    tie_within: float
    relative: bool = False


MEASURES = {
    "largest": _Measure(lambda g, _: g.volume, True, 0.125, relative=True),
    "smallest": _Measure(lambda g, _: g.volume, False, 0.125, relative=True),
    "tallest": _Measure(lambda g, _: g.height, True, 0.075),
    "shortest": _Measure(lambda g, _: g.height, False, 0.075),
    "closest": _Measure(centre_distance, False, 0.2),
    "farthest": _Measure(centre_distance, True, 0.2),
}
DISTANCE_MEASURES = {"closest", "farthest"}


def _is_tie(value: float, extreme: float, measure: _Measure) -> bool:
    difference = abs(value - extreme)
    if measure.relative:
        return difference < measure.tie_within * max(abs(value), abs(extreme))
    return difference < measure.tie_within


@dataclass
class _Evaluator:
    """Evaluates programs on one scene; remembers what references selected and any ties."""

    geometry: dict[int, ObjectGeometry]
    categories: dict[int, str]
    colors: dict[int, str]
    referenced: set[int] = field(default_factory=set)
    ties: list[str] = field(default_factory=list)

    def select(self, program: object, path: str) -> set[int]:
        if not isinstance(program, dict):
            raise ProgramError(f"{path}: expected a program object, got {type(program).__name__}")
        kind = _text(program, "type", path)
        handlers = {
            "category": self._category,
            "color": self._color,
            "function": self._function,
            "relation": self._relation,
            "superlative": self._superlative,
        }
        if kind not in handlers:
            raise ProgramError(f"{path}: unknown program type {kind!r}")
        return handlers[kind](program, path)

    def _objects(self) -> set[int]:
        """Objects with points and a category; the rest cannot be judged from the scene."""
        return self.geometry.keys() & self.categories.keys()

    def _category(self, program: dict, path: str) -> set[int]:
        category = _text(program, "category", path)
        return {i for i in self._objects() if self.categories[i] == category}

    def _color(self, program: dict, path: str) -> set[int]:
        color = _text(program, "color", path)
        return {i for i in self._category(program, path) if self.colors.get(i) == color}

    def _function(self, program: dict, path: str) -> set[int]:
        function = _text(program, "function", path)
        if function not in FUNCTIONS:
            raise ProgramError(f"{path}: unknown function {function!r}")
        return {i for i in self._objects() if self.categories[i] in FUNCTIONS[function]}

    def _members(self, program: dict, path: str) -> set[int]:
        if "of" not in program:
            raise ProgramError(f"{path}: missing 'of'")
        return self.select(program["of"], f"{path}.of")

    def _reference(self, program: dict, path: str, count: int) -> list[int]:
        """Ids the reference selects, which must be exactly `count`. For `between` it may be
        one program selecting two objects or a list of two programs selecting one each."""
        if "reference" not in program:
            raise ProgramError(f"{path}: missing 'reference'")
        reference = program["reference"]
        path = f"{path}.reference"
        if count == 2 and isinstance(reference, list):
            if len(reference) != 2:
                raise ProgramError(f"{path}: a list of {len(reference)} programs, expected 2")
            parts = [self.select(part, f"{path}[{k}]") for k, part in enumerate(reference)]
            for k, part in enumerate(parts):
                _require_count(part, 1, f"{path}[{k}]")
            selected = parts[0] | parts[1]
        else:
            selected = self.select(reference, path)
        _require_count(selected, count, path)
        self.referenced |= selected
        return sorted(selected)

    def _relation(self, program: dict, path: str) -> set[int]:
        relation = _text(program, "relation", path)
        if relation == "between":
            ids = self._reference(program, path, 2)
            first, second = (self.geometry[i] for i in ids)
            if centre_distance(first, second) == 0:
                raise ProgramError(f"{path}.reference: the two objects share a centre")
            holds = partial(_between, r1=first, r2=second)
        elif relation in PAIR_RELATIONS:
            ids = self._reference(program, path, 1)
            holds = partial(PAIR_RELATIONS[relation], r=self.geometry[ids[0]])
        elif relation in DIRECTIONS:
            right, forward = _viewer_axes(program, path)
            ids = self._reference(program, path, 1)
            holds = partial(
                _in_direction,
                r=self.geometry[ids[0]],
                right=right,
                forward=forward,
                direction=DIRECTIONS[relation],
            )
        else:
            raise ProgramError(f"{path}: unknown relation {relation!r}")
        candidates = self._members(program, path) - set(ids)
        return {i for i in candidates if holds(self.geometry[i])}

    def _superlative(self, program: dict, path: str) -> set[int]:
        name = _text(program, "measure", path)
        if name not in MEASURES:
            raise ProgramError(f"{path}: unknown measure {name!r}")
        measure = MEASURES[name]
        ids = self._reference(program, path, 1) if name in DISTANCE_MEASURES else []
        reference = self.geometry[ids[0]] if ids else None
        members = self._members(program, path) - set(ids)
        if len(members) < 2:
            raise ProgramError(
                f"{path}.of selects {len(members)} objects {sorted(members)}; "
                f"'{name}' compares at least 2"
            )
        values = {i: measure.value(self.geometry[i], reference) for i in members}
        best = (max if measure.largest_wins else min)(values, key=values.get)
        winners = {best} | {i for i in members if _is_tie(values[i], values[best], measure)}
        if len(winners) > 1:
            shown = ", ".join(f"{i}: {values[i]:.3f}" for i in sorted(winners))
            self.ties.append(f"{path}: '{name}' is a tie between {{{shown}}}")
        return winners


def _require_count(selected: set[int], count: int, path: str) -> None:
    if len(selected) != count:
        raise ProgramError(
            f"{path} selects {len(selected)} objects {sorted(selected)}, expected exactly {count}"
        )


def _text(program: dict, name: str, path: str) -> str:
    if name not in program:
        raise ProgramError(f"{path}: missing {name!r}")
    value = program[name]
    if not isinstance(value, str):
        raise ProgramError(f"{path}.{name}: expected a string, got {value!r}")
    return value


def _xy(value: object, path: str) -> np.ndarray:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not np.isfinite(value).all()
    ):
        raise ProgramError(f"{path}: expected [x, y] with two finite numbers, got {value!r}")
    return np.asarray(value, dtype=np.float64)


def _viewer_axes(program: dict, path: str) -> tuple[np.ndarray, np.ndarray]:
    """The viewer's (right, forward) unit xy vectors from the program's viewpoint."""
    viewpoint = program.get("viewpoint")
    if not isinstance(viewpoint, dict):
        raise ProgramError(f"{path}: a directional relation needs a 'viewpoint' object")
    _xy(viewpoint.get("position"), f"{path}.viewpoint.position")
    forward = _xy(viewpoint.get("facing"), f"{path}.viewpoint.facing")
    if abs(np.linalg.norm(forward) - 1.0) > UNIT_TOLERANCE:
        raise ProgramError(f"{path}.viewpoint.facing: {forward.tolist()} is not a unit vector")
    forward = forward / np.linalg.norm(forward)
    return np.array([forward[1], -forward[0]]), forward


def evaluate_program(
    program: dict,
    geometry: dict[int, ObjectGeometry],
    categories: dict[int, str],
    colors: dict[int, str],
) -> set[int]:
    """The set of object ids `program` selects. Only objects with both geometry and a category
    take part. Raises ProgramError for malformed programs and invalid references."""
    return _Evaluator(geometry, categories, colors).select(program, "program")


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    reason: str  # empty when ok


def _braced(ids: set[int]) -> str:
    return "{" + ", ".join(map(str, sorted(ids))) + "}"


def _ties(evaluator: _Evaluator) -> str:
    """Superlative ties met on the way, which usually explain a failure."""
    return "".join(f"; {tie}" for tie in evaluator.ties)


def check_sample(
    record: dict,
    geometry: dict[int, ObjectGeometry],
    categories: dict[int, str],
    colors: dict[int, str],
) -> CheckResult:
    """Checks one generated sample (keys program, target_ids, relevant_ids, category): its
    program selects exactly its targets, every reference is valid, relevant_ids hold the targets
    and every referenced object, and the category is `no_target` exactly when there is none."""
    missing = [key for key in ("program", "target_ids", "relevant_ids") if key not in record]
    if missing:
        return CheckResult(False, f"record lacks {missing}")
    evaluator = _Evaluator(geometry, categories, colors)
    try:
        answer = evaluator.select(record["program"], "program")
    except ProgramError as error:
        return CheckResult(False, f"invalid program: {error}{_ties(evaluator)}")
    targets = list(record["target_ids"])
    if len(set(targets)) != len(targets):
        return CheckResult(False, f"target_ids {targets} has duplicates")
    if answer != set(targets):
        message = f"answer {_braced(answer)} but targets {sorted(targets)}{_ties(evaluator)}"
        return CheckResult(False, message)
    absent = (answer | evaluator.referenced) - set(record["relevant_ids"])
    if absent:
        return CheckResult(False, f"relevant_ids lack {sorted(absent)}")
    if (record.get("category") == "no_target") != (not targets):
        return CheckResult(
            False, f"category {record.get('category')!r} with {len(targets)} target(s)"
        )
    return CheckResult(True, "")
