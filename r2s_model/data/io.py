"""The synthetic benchmark on disk (format: docs/data_format.md).

DIR/dataset.json            what generated it and the counts
DIR/<split>.jsonl           one instruction sample per line
DIR/scenes/<scene_id>.npz   one scene per file (numpy, no pickled objects)
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from r2s_model.data.errors import DatasetFormatError

SCENE_FIELDS = {
    "points": (np.float32, 2),
    "colors": (np.uint8, 2),
    "instance": (np.int32, 1),
    "semantic": (np.int32, 1),
    "superpoints": (np.int32, 1),
    "object_ids": (np.int32, 1),
    "object_categories": (np.str_, 1),
    "object_colors": (np.str_, 1),
}
RECORD_FIELDS = {
    "sample_id": str,
    "scene_id": str,
    "question": str,
    "answer": str,
    "category": str,
    "target_ids": list,
    "relevant_ids": list,
    "program": dict,
}


@dataclass
class SceneArrays:
    """One scene. points (N, 3) float32 metres; colors (N, 3) float32 in [0, 1]; instance (N,)
    int32 (0 = unlabelled); semantic (N,) int32; superpoints (N,) int32 contiguous; object_ids
    (K,) int32 with their category and color names."""

    scene_id: str
    points: np.ndarray
    colors: np.ndarray
    instance: np.ndarray
    semantic: np.ndarray
    superpoints: np.ndarray
    object_ids: np.ndarray
    object_categories: list[str]
    object_colors: list[str]

    def category_of(self) -> dict[int, str]:
        return dict(zip(self.object_ids.tolist(), self.object_categories, strict=True))

    def color_of(self) -> dict[int, str]:
        return dict(zip(self.object_ids.tolist(), self.object_colors, strict=True))


def color_bytes(colors: np.ndarray) -> np.ndarray:
    """(N, 3) colors in [0, 1] -> (N, 3) uint8, as scene files store them."""
    return np.round(np.clip(colors, 0, 1) * 255).astype(np.uint8)


def write_scene(path: Path, scene: SceneArrays) -> None:
    np.savez_compressed(
        path,
        points=scene.points.astype(np.float32),
        colors=color_bytes(scene.colors),
        instance=scene.instance.astype(np.int32),
        semantic=scene.semantic.astype(np.int32),
        superpoints=scene.superpoints.astype(np.int32),
        object_ids=scene.object_ids.astype(np.int32),
        object_categories=np.array(scene.object_categories, dtype=np.str_),
        object_colors=np.array(scene.object_colors, dtype=np.str_),
    )


def read_scene(path: Path) -> SceneArrays:
    """Loads and checks a scene file; DatasetFormatError names the file and the field."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DatasetFormatError(f"{path}: unreadable scene file ({error})") from error
    for name, (dtype, ndim) in SCENE_FIELDS.items():
        if name not in arrays:
            raise DatasetFormatError(f"{path}: field {name!r} missing")
        array = arrays[name]
        if not np.issubdtype(array.dtype, dtype) or array.ndim != ndim:
            raise DatasetFormatError(
                f"{path}: field {name!r} is {array.dtype} with {array.ndim} dims, "
                f"expected {np.dtype(dtype).name} with {ndim}"
            )
    count = len(arrays["points"])
    for name in ("colors", "instance", "semantic", "superpoints"):
        if len(arrays[name]) != count:
            raise DatasetFormatError(
                f"{path}: field {name!r} has {len(arrays[name])} rows, not {count}"
            )
    if arrays["points"].shape[1:] != (3,) or arrays["colors"].shape[1:] != (3,):
        raise DatasetFormatError(f"{path}: points and colors must have 3 columns")
    return SceneArrays(
        scene_id=Path(path).stem,
        points=arrays["points"],
        colors=arrays["colors"].astype(np.float32) / 255.0,
        instance=arrays["instance"],
        semantic=arrays["semantic"],
        superpoints=arrays["superpoints"],
        object_ids=arrays["object_ids"],
        object_categories=arrays["object_categories"].tolist(),
        object_colors=arrays["object_colors"].tolist(),
    )


@contextmanager
def staged_dataset(out: Path) -> Iterator[Path]:
    """A dataset folder that appears only complete: yields a fresh `<out>.partial` (with
    scenes/) to write into, renamed to `out` when the block ends without an error and removed
    when it raises."""
    staging = Path(out).with_name(Path(out).name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "scenes").mkdir(parents=True)
    try:
        yield staging
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_info(folder: Path, info: dict[str, Any]) -> None:
    """Writes a dataset's dataset.json."""
    (Path(folder) / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")


def write_records(path: Path, records: Iterable[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Reads a JSON-lines annotation file, checking every record's fields and types."""
    records = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetFormatError(f"{path}: unreadable ({error})") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetFormatError(f"{path}:{number}: not JSON ({error})") from error
        if not isinstance(record, dict):
            raise DatasetFormatError(f"{path}:{number}: a record must be a JSON object")
        for name, kind in RECORD_FIELDS.items():
            if not isinstance(record.get(name), kind):
                raise DatasetFormatError(
                    f"{path}:{number}: field {name!r} missing or not a {kind.__name__}"
                )
        records.append(record)
    return records


def scene_ids(root: Path, split: str) -> list[str]:
    """Sorted ids of the scene files of `split` (their names start with the split)."""
    found = sorted(p.stem for p in (Path(root) / "scenes").glob(f"{split}_*.npz"))
    if not found:
        raise DatasetFormatError(f"{Path(root) / 'scenes'}: no {split!r} scenes")
    return found


class SyntheticDataset:
    """One split of a generated dataset: its records, and its scenes loaded on demand (LRU)."""

    def __init__(self, root: Path, split: str, *, cache_size: int = 16) -> None:
        self.root = Path(root)
        self.split = split
        path = self.root / f"{split}.jsonl"
        if not path.is_file():
            available = sorted(p.stem for p in self.root.glob("*.jsonl"))
            raise DatasetFormatError(f"{path}: no such split (available: {available})")
        self.records = read_records(path)
        self.info = json.loads((self.root / "dataset.json").read_text())
        self._cache: OrderedDict[str, SceneArrays] = OrderedDict()
        self._cache_size = cache_size

    def __len__(self) -> int:
        return len(self.records)

    def scene(self, scene_id: str) -> SceneArrays:
        if scene_id in self._cache:
            self._cache.move_to_end(scene_id)
            return self._cache[scene_id]
        scene = read_scene(self.root / "scenes" / f"{scene_id}.npz")
        self._cache[scene_id] = scene
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return scene

    def __getitem__(self, index: int) -> tuple[SceneArrays, dict[str, Any]]:
        record = self.records[index]
        return self.scene(record["scene_id"]), record
