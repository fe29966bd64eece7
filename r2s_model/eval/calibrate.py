"""Chooses the parser's link threshold on a validation split and records it in its folder.

    python -m r2s_model.eval.calibrate --parser runs/pretrain/model --data DIR --split val
        [--views full|scan|both]

Grouping into proposals merges groups whose mean same-object probability exceeds the
threshold: low values under-segment (objects merge), high values over-segment (fragments).
Every candidate is scored on the split (the parser runs once per scene): on the whole scenes,
on simulated accumulated scans of them (`synthetic.scanned`, what the node sees), or on both.
The one with the best sum of instance recall and precision at IoU 0.5 (over the views scored)
is written to the folder's `config.json`, with the whole sweep under
`metadata.link_threshold_sweep`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from r2s_model.eval.scene_eval import parsed_scenes, score_objects
from r2s_model.eval.scene_metrics import summarize_scenes
from r2s_model.objects.checkpoint import CONFIG_FILE, load_parser
from r2s_model.objects.proposals import build_proposals

CANDIDATES = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def sweep(
    parser_folder: Path, root: Path, split: str, limit: int | None, views: str = "full"
) -> list[dict]:
    """Recall and precision of each candidate threshold on the split's views: keys
    `instance_*50` for whole scenes, `scan_instance_*50` for scans."""
    parser = load_parser(parser_folder)
    rows = [{"link_threshold": threshold} for threshold in CANDIDATES]
    for scanned in {"full": (False,), "scan": (True,), "both": (False, True)}[views]:
        scenes = list(
            parsed_scenes(
                parser, root, split, limit=limit, recompute_superpoints=False, scanned=scanned
            )
        )
        prefix = "scan_" if scanned else ""
        for row in rows:
            scores = []
            for scene, objects in scenes:
                objects.proposals = build_proposals(
                    objects.parsed,
                    torch.from_numpy(scene.points),
                    objects.superpoints,
                    row["link_threshold"],
                )
                scores.append(score_objects(scene, objects, parser.config.categories))
            summary = summarize_scenes(scores, parser.config.categories)
            for key in ("instance_recall50", "instance_precision50"):
                row[prefix + key] = summary[key]
    return rows


def main(argv: list[str] | None = None) -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--parser", type=Path, required=True, help="a parser folder")
    arguments.add_argument("--data", type=Path, required=True, help="a folder from r2s-gen-data")
    arguments.add_argument("--split", default="val")
    arguments.add_argument("--limit", type=int, default=None, help="the first N scenes")
    arguments.add_argument(
        "--views", choices=("full", "scan", "both"), default="full", help="what is scored"
    )
    args = arguments.parse_args(argv)
    rows = sweep(args.parser, args.data, args.split, args.limit, args.views)
    best = max(
        rows, key=lambda r: sum(v for k, v in r.items() if k.endswith(("recall50", "precision50")))
    )
    swept = {
        "data": str(args.data),
        "split": args.split,
        "limit": args.limit,
        "views": args.views,
        "rows": rows,
    }
    setting = ("parser", "link_threshold")
    record_choice(args.parser / CONFIG_FILE, setting, best, "link_threshold_sweep", swept)


def record_choice(
    path: Path, setting: tuple[str, str], best: dict[str, Any], name: str, sweep: dict[str, Any]
) -> None:
    """Writes the chosen row's value of `setting` (section, key) to the config.json at `path`,
    the sweep (with its "rows") under `metadata.<name>`, and prints the rows."""
    section, key = setting
    description = json.loads(path.read_text())
    description[section][key] = best[key]
    description["metadata"][name] = sweep
    path.write_text(json.dumps(description, indent=2) + "\n")
    for row in sweep["rows"]:
        print({name: round(value, 3) for name, value in row.items()})
    print(f"{key} = {best[key]} written to {path}")


if __name__ == "__main__":
    main()
