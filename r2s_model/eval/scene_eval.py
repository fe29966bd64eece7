"""Scene understanding on a split: the parser and proposals on every scene, scored.

Used by validation during pretraining and by `r2s-eval --task scene`, which also prints a
per-category table and renders one scene's proposals beside its ground truth.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from r2s_model.data.errors import DatasetFormatError
from r2s_model.data.io import SceneArrays, read_scene, scene_ids
from r2s_model.eval.render import render_instances
from r2s_model.eval.scene_metrics import SceneScore, score_scene, summarize_scenes
from r2s_model.objects.detect import SceneObjects, detect_objects
from r2s_model.objects.parser import SceneParser
from r2s_model.superpoints import SuperpointParams
from r2s_model.synthetic.scanned import ScanViewConfig, scanned_view

MIN_PROPOSAL_POINTS = 20  # smaller proposals are not counted by instance_precision50
SCAN_VIEW_SEED = 515  # scanned views of val scenes are drawn from (this, scene index)


def parsed_scenes(
    parser: SceneParser,
    root: Path,
    split: str,
    *,
    limit: int | None = None,
    recompute_superpoints: bool = True,
    progress: bool = True,
    scanned: bool = False,
) -> Iterator[tuple[SceneArrays, SceneObjects]]:
    """Each of the first `limit` scenes of the split with its detected objects. Superpoints are
    recomputed as at inference (and timed) unless the stored ones are to be reused. `scanned`:
    each scene is replaced by a simulated accumulated scan of it (`synthetic.scanned`, the same
    view of scene i on every call)."""
    dataset = json.loads((Path(root) / "dataset.json").read_text())
    check_vocabulary(dataset, parser.config.categories)
    params = SuperpointParams()
    view = ScanViewConfig(points_per_m2=dataset.get("points_per_m2", 1500.0))
    ids = scene_ids(root, split)[:limit]
    for index, scene_id in enumerate(tqdm(ids, desc="scenes", disable=not progress)):
        scene = read_scene(Path(root) / "scenes" / f"{scene_id}.npz")
        if scanned:
            scene = scanned_view(scene, np.random.default_rng([SCAN_VIEW_SEED, index]), view)
        stored = None if recompute_superpoints else scene.superpoints
        yield scene, detect_objects(parser, scene.points, scene.colors, params, stored)


def score_objects(
    scene: SceneArrays, objects: SceneObjects, categories: tuple[str, ...]
) -> SceneScore:
    """Scores one scene's detection against its labels."""
    category_index = {name: i for i, name in enumerate(categories)}
    return score_scene(
        scene.scene_id,
        semantic=scene.semantic.astype(np.int64),
        predicted_semantic=objects.point_categories(),
        instance=scene.instance,
        object_ids=scene.object_ids,
        object_categories=np.array([category_index[c] for c in scene.object_categories]),
        proposal=objects.point_objects(),
        num_categories=len(categories),
        min_points=MIN_PROPOSAL_POINTS,
        encode_ms=sum(objects.timings_ms.values()),
    )


def check_vocabulary(dataset_info: dict, categories: tuple[str, ...]) -> None:
    """Point labels index the dataset's category list: it must be the parser's."""
    if tuple(dataset_info.get("categories", ())) != tuple(categories):
        raise DatasetFormatError(
            f"the dataset's categories {dataset_info.get('categories')} are not the parser's "
            f"{list(categories)}"
        )


def evaluate_scenes(
    parser: SceneParser, scenes: Iterable[tuple[SceneArrays, SceneObjects]]
) -> dict:
    """The summary of `summarize_scenes` over scenes and their detections (`parsed_scenes`)."""
    categories = parser.config.categories
    return summarize_scenes([score_objects(s, o, categories) for s, o in scenes], categories)


def run_scene_task(
    parser: SceneParser, root: Path, split: str, out: Path, limit: int | None
) -> dict:
    """`r2s-eval --task scene`: scores, writes the JSON report and a PNG, prints a table."""
    categories = parser.config.categories
    scores = []
    rendered = None
    for scene, objects in parsed_scenes(parser, root, split, limit=limit):
        scores.append(score_objects(scene, objects, categories))
        if rendered is None:
            rendered = out.with_name(out.stem + "_proposals.png")
            render_instances(
                rendered,
                scene.points,
                [("ground truth objects", scene.instance), ("proposals", objects.point_objects())],
                f"{scene.scene_id}: proposals (right) vs ground truth (left)",
            )
    summary = summarize_scenes(scores, categories)
    summary["render"] = str(rendered)
    summary["data"] = {"root": str(root), "split": split}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print_scene_summary(summary, Console())
    return summary


def print_scene_summary(summary: dict, console: Console) -> None:
    table = Table(title=f"scene understanding ({summary['num_scenes']} scenes)")
    for column in ("category", "points", "point acc", "objects", "recall@0.5"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for name, row in summary["per_category"].items():
        table.add_row(
            name,
            str(row["points"]),
            "-" if row["point_acc"] is None else f"{row['point_acc']:.3f}",
            str(row["objects"]),
            "-" if row["recall50"] is None else f"{row['recall50']:.3f}",
        )
    console.print(table)
    keys = ("semantic_acc", "semantic_macro_acc", "instance_recall50", "instance_precision50")
    console.print(
        {key: round(summary[key], 3) for key in keys} | {"encode_ms": summary["encode_ms"]}
    )
