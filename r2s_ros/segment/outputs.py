"""What r2s-segment writes for each instruction, in the input's frame and units:
`<stem>.ply` (the target points), `<stem>.png` (the render) and `<stem>.json` (the result).

The three are written under temporary names and renamed into place once all are complete, so
an answer's files are all there or none is (the JSON is renamed last).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from plyfile import PlyData, PlyElement

from r2s_model.model import SegmentationOutput
from r2s_ros.segment.checks import ModelFrame
from r2s_ros.segment.readers import Cloud

COORDINATES = "the input's frame and units"


def file_stem(index: int, instruction: str) -> str:
    """'003_the_chair_nearest_the_window': the answer's number and a file-safe instruction."""
    slug = re.sub(r"[^a-z0-9]+", "_", instruction.lower()).strip("_")[:48].rstrip("_")
    return f"{index:03d}_{slug or 'instruction'}"


def result_json(
    output: SegmentationOutput,
    cloud: Cloud,
    frame: ModelFrame,
    timings_ms: dict[str, float],
    reused_encoding: bool,
) -> dict[str, Any]:
    """The JSON result of one answer; masks of `output` index `cloud.points`."""
    target = output.target_mask
    return {
        "instruction": output.instruction,
        "status": output.status.value,
        "reason": output.reason,
        "answer": output.answer,
        "score": output.target_score,
        "target": {"points": int(target.sum()), "box": box(cloud.points[target])},
        "relevant": [
            {
                "name": element.name,
                "score": element.score,
                "points": int(element.mask.sum()),
                "box": box(cloud.points[element.mask]),
            }
            for element in output.relevant
        ],
        "timings_ms": timings_ms,
        "scene_encoding_reused": reused_encoding,
        "input": {
            "source": cloud.source,
            "format": cloud.format,
            "points": len(cloud.points),
            "colours": cloud.colors is not None,
        },
        "model_frame": frame.to_json(),
        "coordinates": COORDINATES,
    }


def box(points: np.ndarray) -> dict[str, list[float]] | None:
    """Axis-aligned box of (M, 3) points: min, max, centroid (mean), size; None when M = 0."""
    if len(points) == 0:
        return None
    low, high = points.min(axis=0), points.max(axis=0)
    return {
        "min": low.tolist(),
        "max": high.tolist(),
        "centroid": points.mean(axis=0).tolist(),
        "size": (high - low).tolist(),
    }


def write_answer(
    out: Path,
    stem: str,
    result: dict[str, Any],
    target: tuple[np.ndarray, np.ndarray | None],
    figure: Figure,
) -> dict[str, str]:
    """Writes `<stem>.ply` (target points (M, 3) and colours (M, 3) uint8 or None), `.png`
    (the figure) and `.json` (`result` with `files` added) into `out`, all or none; -> paths."""
    paths = {kind: out / f"{stem}.{kind}" for kind in ("ply", "png", "json")}
    result["files"] = {kind: str(path) for kind, path in paths.items()}
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(
        {
            paths["ply"]: lambda path: write_ply(path, *target),
            paths["png"]: lambda path: figure.savefig(path, format="png"),
            paths["json"]: lambda path: path.write_text(text),
        }
    )
    return result["files"]


def write_ply(path: Path, points: np.ndarray, colors: np.ndarray | None) -> None:
    """A binary PLY of points (M, 3) as doubles (georeferenced clouds keep their precision) and
    colors (M, 3) uint8 as red/green/blue when given."""
    fields = [("x", "f8"), ("y", "f8"), ("z", "f8")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.empty(len(points), dtype=fields)
    for i, axis in enumerate("xyz"):
        vertex[axis] = points[:, i]
    if colors is not None:
        for i, channel in enumerate(("red", "green", "blue")):
            vertex[channel] = colors[:, i]
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))


def atomic_write(writes: dict[Path, Callable[[Path], object]]) -> None:
    """Calls each writer on a temporary path beside its file, then renames them all into place
    (in order); when a writer fails, no file of the set is touched and no temporary is left."""
    temporaries = {path: path.with_name(f".{path.name}.{os.getpid()}.partial") for path in writes}
    try:
        for path, write in writes.items():
            write(temporaries[path])
        for path, temporary in temporaries.items():
            os.replace(temporary, path)
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
