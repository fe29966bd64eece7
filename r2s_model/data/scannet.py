"""ScanNet-derived reasoning-segmentation data in the Reason3D layout, for users who own it.

Layout::

    <scene_dir>/<scene_id>.pth     one file per scene, written with
        torch.save((coords, colors, superpoints, semantic, instance))
            coords       (N, 3) float, metres, as stored (Reason3D centres each scene)
            colors       (N, 3) in [-1, 1] (Reason3D: rgb / 127.5 - 1) or in [0, 255]
            superpoints  (N,) int, any ids
            semantic     (N,) int, -100 for unlabelled
            instance     (N,) int, ScanNet object ids, -1 / -100 for unlabelled
        numpy arrays or torch tensors; labels may be integral floats (the Reason3D / SoftGroup
        preparation scripts write them as float64).
    <annotation_file>.json         a list of entries
        {"scene_id": str, "object_id": int or [int, ...] (or "object_ids"), "question": str,
         "answer": str (optional), "relevant_ids": [int, ...] (optional, default: the targets),
         "category": str (optional, default "uncategorized")}
        An empty object id list is a no-target sample.

Colors whose maximum exceeds 1 are read as [0, 255], others as [-1, 1]. Scene files are read
with `torch.load(weights_only=True)`, allowing numpy arrays besides tensors: a file cannot run
code. Every malformed input raises DatasetFormatError naming the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from r2s_model.data.errors import DatasetFormatError

FIELDS = ("coords", "colors", "superpoints", "semantic", "instance")
DEFAULT_CATEGORY = "uncategorized"
# Float colors written as rgb / 127.5 - 1 may round slightly past the ends.
COLOR_TOLERANCE = 1e-4

_reconstruct = np._core.multiarray._reconstruct
# What numpy arrays unpickle from; the old module path is how numpy 1.x wrote them.
NUMPY_GLOBALS = [
    _reconstruct,
    (_reconstruct, "numpy.core.multiarray._reconstruct"),
    np.ndarray,
    np.dtype,
    *(type(np.dtype(kind)) for kind in "?bhilqBHILQefd"),
]


@dataclass
class ScanNetScene:
    """points (N, 3) float32; colors (N, 3) float32 in [0, 1]; superpoints (N,) int64 in
    0..S-1 (every id used); semantic, instance (N,) int64 as in the file."""

    scene_id: str
    points: np.ndarray
    colors: np.ndarray
    superpoints: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray


@dataclass
class ScanNetSample:
    """One instruction; target_ids are instance ids of its scene (empty: no target)."""

    scene_id: str
    question: str
    target_ids: list[int]
    answer: str | None
    relevant_ids: list[int]
    category: str


def _array(value: object, path: Path, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise DatasetFormatError(f"{path}: {name} is a {type(value).__name__}, expected an array")


def _shaped(
    value: object, path: Path, name: str, count: int | None, columns: int | None
) -> np.ndarray:
    """The field as an array of shape (count, columns) or (count,) when columns is None;
    count None accepts any length."""
    array = _array(value, path, name)
    expected = "(N,)" if columns is None else f"(N, {columns})"
    if array.ndim != (1 if columns is None else 2) or (columns and array.shape[1] != columns):
        raise DatasetFormatError(f"{path}: {name} has shape {array.shape}, expected {expected}")
    if count is not None and len(array) != count:
        raise DatasetFormatError(f"{path}: {name} has {len(array)} rows, coords has {count}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise DatasetFormatError(f"{path}: {name} has dtype {array.dtype}, expected numbers")
    return array


def _labels(value: object, path: Path, name: str, count: int) -> np.ndarray:
    array = _shaped(value, path, name, count, None)
    integral = np.issubdtype(array.dtype, np.integer) or (
        np.issubdtype(array.dtype, np.floating)
        and np.isfinite(array).all()
        and np.array_equal(array, np.round(array))
    )
    if not integral:
        raise DatasetFormatError(f"{path}: {name} has dtype {array.dtype} with non-integer values")
    return array.astype(np.int64)


def _unit_colors(value: object, path: Path, count: int) -> np.ndarray:
    """(N, 3) float32 in [0, 1] from either stored convention."""
    colors = _shaped(value, path, "colors", count, 3).astype(np.float64)
    if not np.isfinite(colors).all():
        raise DatasetFormatError(f"{path}: colors has non-finite values")
    low, high = (colors.min(), colors.max()) if count else (0.0, 0.0)
    if high > 1 + COLOR_TOLERANCE:
        if low < -COLOR_TOLERANCE or high > 255 + COLOR_TOLERANCE:
            raise DatasetFormatError(
                f"{path}: colors span [{low:g}, {high:g}], expected [-1, 1] or [0, 255]"
            )
        unit = colors / 255
    elif low < -1 - COLOR_TOLERANCE:
        raise DatasetFormatError(f"{path}: colors span [{low:g}, {high:g}], expected [-1, 1]")
    else:
        unit = (colors + 1) / 2
    return np.clip(unit, 0.0, 1.0).astype(np.float32)


def load_scene(path: Path) -> ScanNetScene:
    """Reads and checks one `<scene_id>.pth` file (layout in the module docstring)."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(NUMPY_GLOBALS):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for missing, truncated, unsafe files
        raise DatasetFormatError(f"{path}: unreadable scene file ({error})") from error
    fields = ", ".join(FIELDS)
    if not isinstance(content, tuple | list):
        kind = type(content).__name__
        raise DatasetFormatError(f"{path}: holds a {kind}, expected a tuple ({fields})")
    if len(content) != len(FIELDS):
        raise DatasetFormatError(f"{path}: holds {len(content)} items, expected 5 ({fields})")
    coords_value, colors, superpoints, semantic, instance = content
    coords = _shaped(coords_value, path, "coords", None, 3)
    if not np.issubdtype(coords.dtype, np.floating):
        raise DatasetFormatError(f"{path}: coords has dtype {coords.dtype}, expected float")
    if not np.isfinite(coords).all():
        bad = int(np.count_nonzero(~np.isfinite(coords).all(axis=1)))
        raise DatasetFormatError(f"{path}: coords has {bad} non-finite points")
    count = len(coords)
    superpoint_ids = _labels(superpoints, path, "superpoints", count)
    return ScanNetScene(
        scene_id=path.stem,
        points=coords.astype(np.float32),
        colors=_unit_colors(colors, path, count),
        superpoints=np.unique(superpoint_ids, return_inverse=True)[1].astype(np.int64),
        semantic=_labels(semantic, path, "semantic", count),
        instance=_labels(instance, path, "instance", count),
    )


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ids(value: object, where: str, name: str) -> list[int]:
    """An id or a list of ids -> list of ints."""
    if _is_id(value):
        return [value]
    if isinstance(value, list) and all(_is_id(v) for v in value):
        return list(value)
    raise DatasetFormatError(f"{where}: {name} is {value!r}, expected an int or a list of ints")


def _text(value: object, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise DatasetFormatError(f"{where}: {name} is {value!r}, expected a string")
    return value


def _sample(entry: object, where: str) -> ScanNetSample:
    if not isinstance(entry, dict):
        raise DatasetFormatError(f"{where} is a {type(entry).__name__}, expected an object")
    missing = [key for key in ("scene_id", "question") if key not in entry]
    if "object_id" not in entry and "object_ids" not in entry:
        missing.append("object_id")
    if missing:
        raise DatasetFormatError(f"{where} lacks {', '.join(map(repr, missing))}")
    if "object_id" in entry and "object_ids" in entry:
        raise DatasetFormatError(f"{where} has both 'object_id' and 'object_ids'")
    scene_id = _text(entry["scene_id"], where, "scene_id")
    # The id names a file in the scene directory: no path may hide in it.
    if scene_id in ("", ".", "..") or Path(scene_id).name != scene_id:
        raise DatasetFormatError(f"{where}: scene_id {scene_id!r} is not a file name")
    id_key = "object_id" if "object_id" in entry else "object_ids"
    targets = _ids(entry[id_key], where, id_key)
    relevant = entry.get("relevant_ids", targets)
    if not isinstance(relevant, list):
        raise DatasetFormatError(f"{where}: relevant_ids is {relevant!r}, expected a list of ints")
    return ScanNetSample(
        scene_id=scene_id,
        question=_text(entry["question"], where, "question"),
        target_ids=targets,
        answer=None if entry.get("answer") is None else _text(entry["answer"], where, "answer"),
        relevant_ids=_ids(relevant, where, "relevant_ids"),
        category=_text(entry.get("category", DEFAULT_CATEGORY), where, "category"),
    )


def load_annotations(path: Path) -> list[ScanNetSample]:
    """Reads and checks an annotation file (layout in the module docstring)."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetFormatError(f"{path}: unreadable annotation file ({error})") from error
    if not isinstance(entries, list):
        kind = type(entries).__name__
        raise DatasetFormatError(f"{path}: holds a {kind}, expected a list of entries")
    return [_sample(entry, f"{path}: entry {index}") for index, entry in enumerate(entries)]


class ScanNetDataset:
    """Samples of an annotation file with their scenes; the last `cache_size` scenes read stay
    in memory, since consecutive samples often share a scene."""

    def __init__(self, scene_dir: Path, annotation_file: Path, cache_size: int = 4) -> None:
        self.scene_dir = Path(scene_dir)
        self.annotation_file = Path(annotation_file)
        if not self.scene_dir.is_dir():
            raise DatasetFormatError(f"{self.scene_dir}: scene directory not found")
        self.samples = load_annotations(self.annotation_file)
        for index, sample in enumerate(self.samples):
            if not self._scene_path(sample.scene_id).is_file():
                raise DatasetFormatError(
                    f"{self.annotation_file}: entry {index} references unknown scene "
                    f"{sample.scene_id!r} (no {self._scene_path(sample.scene_id)})"
                )
        self._scene = lru_cache(maxsize=cache_size)(self._load)

    def _scene_path(self, scene_id: str) -> Path:
        return self.scene_dir / f"{scene_id}.pth"

    def _load(self, scene_id: str) -> ScanNetScene:
        return load_scene(self._scene_path(scene_id))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[ScanNetScene, ScanNetSample]:
        """The scene (shared by the cache: do not modify it) and sample at `index`. Raises
        DatasetFormatError when the sample names an object its scene does not hold."""
        index = range(len(self.samples))[index]
        sample = self.samples[index]
        scene = self._scene(sample.scene_id)
        named = set(sample.target_ids + sample.relevant_ids)
        unknown = sorted(named - set(np.unique(scene.instance).tolist()))
        if unknown:
            raise DatasetFormatError(
                f"{self.annotation_file}: entry {index} names objects {unknown} that "
                f"{self._scene_path(sample.scene_id)} does not hold"
            )
        return scene, sample
