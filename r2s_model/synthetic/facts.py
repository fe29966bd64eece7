"""What the instruction generator knows of a room: evaluators, references and viewpoints."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np

from r2s_model.synthetic.furniture import FURNITURE, SceneObject
from r2s_model.synthetic.parts import rotate_xy
from r2s_model.synthetic.programs import Boxes, Evaluator
from r2s_model.synthetic.rooms import Room

_MIN_BETWEEN_SPAN = 1.2  # metres between the two references of "between"
_VIEWER_STEP = 0.3  # the viewer stands this far into the room from a door or window


def category_program(category: str) -> dict:
    return {"type": "category", "category": category}


def _center(item: SceneObject) -> np.ndarray:
    return (item.box_min[:2] + item.box_max[:2]) / 2


def _into_room(item: SceneObject) -> np.ndarray:
    """Unit xy normal of a door or window, pointing into the room (its front is local -y)."""
    return rotate_xy(np.array([0.0, -1.0]), item.yaw)


def _viewpoint(position: np.ndarray, facing: np.ndarray) -> dict:
    facing = facing / np.linalg.norm(facing)
    return {
        "position": [round(float(v), 3) for v in position],
        "facing": [round(float(v), 4) for v in facing],
    }


class SceneFacts:
    """What the generator knows of a room: objects, evaluators on the true and the scanned
    geometry, uniquely named references, and viewpoints from its door and window."""

    def __init__(self, room: Room) -> None:
        self.objects = room.objects
        self.by_id = {item.instance_id: item for item in room.objects}
        self.true = Evaluator(Boxes.from_objects(room.objects))
        self.scanned = Evaluator(Boxes.from_points(room.objects, room.points, room.instance))
        self.members: dict[str, list[SceneObject]] = {}
        for item in room.objects:
            self.members.setdefault(item.category, []).append(item)
        self.singles = self._singles()
        self.pairs = self._pairs()
        self.viewpoints = self._viewpoints()

    def count(self, program: dict) -> int:
        """How many objects a category, color or function program selects."""
        result = self.true.evaluate(program)
        return 0 if result is None else len(result[0])

    def raised(self, program: dict) -> bool:
        """Whether some object `program` selects stands on another object."""
        result = self.true.evaluate(program)
        return result is not None and any(self.by_id[i].support is not None for i in result[0])

    def answer(self, program: dict) -> tuple[list[int], list[int]] | None:
        """(targets, other needed objects) when the program is clear-cut both on the true boxes
        and on the boxes of the scanned points, else None."""
        true, scanned = self.true.evaluate(program), self.scanned.evaluate(program)
        if true is None or scanned is None or sorted(true[0]) != sorted(scanned[0]):
            return None
        return true

    def _singles(self) -> list[tuple[dict, SceneObject]]:
        """Category or color programs that name exactly one furniture object, door or window."""
        singles = []
        for category in (*FURNITURE, "window", "door"):
            members = self.members.get(category, [])
            if len(members) == 1:
                singles.append((category_program(category), members[0]))
                continue
            colors = Counter(o.color for o in members)
            for item in members:
                if colors[item.color] == 1:
                    program = {"type": "color", "category": category, "color": item.color}
                    singles.append((program, item))
        return singles

    def _pairs(self) -> list[tuple[dict | list, tuple[SceneObject, SceneObject]]]:
        """References to two objects for "between": two singles, or a category (or a color of
        a category) with exactly two members."""
        pairs: list[tuple[dict | list, tuple[SceneObject, SceneObject]]] = []
        for (first, a), (second, b) in combinations(self.singles, 2):
            pairs.append(([first, second], (a, b)))
        for category in (*FURNITURE, "window"):
            members = self.members.get(category, [])
            if len(members) == 2:
                pairs.append((category_program(category), (members[0], members[1])))
            for color, number in Counter(o.color for o in members).items():
                if number == 2 and len(members) > 2:
                    pair = tuple(o for o in members if o.color == color)
                    pairs.append(({"type": "color", "category": category, "color": color}, pair))
        return [
            (reference, pair)
            for reference, pair in pairs
            if np.linalg.norm(_center(pair[0]) - _center(pair[1])) >= _MIN_BETWEEN_SPAN
        ]

    def _viewpoints(self) -> list[tuple[str, dict]]:
        """From the door into the room and towards the window, and from the window."""
        doors, windows = self.members.get("door", []), self.members.get("window", [])
        door = doors[0] if len(doors) == 1 else None
        window = windows[0] if len(windows) == 1 else None
        views = []
        for origin, target, inward_kind in (
            (door, window, "door_inward"),
            (window, door, "window_back"),
        ):
            if origin is None:
                continue
            inward = _into_room(origin)
            position = _center(origin) + _VIEWER_STEP * inward
            views.append((inward_kind, _viewpoint(position, inward)))
            if target is not None:
                towards = _center(target) - position
                # Facing along the wall the viewer stands at makes left/right meaningless.
                if towards @ inward > 0.3 * np.linalg.norm(towards):
                    kind = f"{origin.category}_to_{target.category}"
                    views.append((kind, _viewpoint(position, towards)))
        return views
