"""Scene understanding on what the node accumulates: simulated scans of unseen rooms.

    python -m r2s_ros.bags.scene_eval --seeds 900 901 902 --out scene_bags.json

For each seed: `r2s-make-bag` simulates a depth camera scanning a generated room (partial
coverage, ray noise), the node's own intake accumulates the clouds with the default node
parameters, each accumulated voxel takes the label of the nearest ground-truth point within
LABEL_RADIUS (about twice the ground truth's point spacing; voxels farther out are left
unscored), and the parser's categories and proposals are scored as `r2s-eval --task scene`
scores full rooms. Objects the scan never saw (no labelled voxel) are not counted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console

from r2s_model.eval.scene_eval import MIN_PROPOSAL_POINTS, print_scene_summary
from r2s_model.eval.scene_metrics import score_scene, summarize_scenes
from r2s_model.objects.checkpoint import DEFAULT_PARSER, load_parser
from r2s_model.objects.detect import detect_objects
from r2s_model.superpoints import SuperpointParams
from r2s_ros.bags.make_bag import BagSettings, make_bag
from r2s_ros.bags.reader import ReplayBag
from r2s_ros.bags.replay import load_ground_truth, scenes_at
from r2s_ros.bags.scoring import nearest_within
from r2s_ros.ingest import IngestSettings
from r2s_ros.params import NodeParameters

LABEL_RADIUS = 0.05  # metres; the bags' ground truth is sampled at 1,500 points/m² (~2.6 cm)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[900, 901, 902])
    parser.add_argument("--frames", type=int, default=40, help="depth frames per bag")
    parser.add_argument("--parser", type=Path, default=DEFAULT_PARSER)
    parser.add_argument("--out", type=Path, default=Path("scene_bags.json"))
    args = parser.parse_args(argv)

    scene_parser = load_parser(args.parser)
    categories = scene_parser.config.categories
    settings = IngestSettings.from_parameters(NodeParameters())
    scores = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            bag_path = Path(folder) / f"seed{seed}"
            make_bag(bag_path, BagSettings(seed=seed, frames=args.frames, instructions=0))
            bag = ReplayBag(bag_path)
            truth = load_ground_truth(bag).scene
            snapshot = scenes_at(bag, settings, [2**63 - 1])[0]
            within, nearest = nearest_within(truth.points, snapshot.points, LABEL_RADIUS)
            instance = np.where(within, truth.instance[nearest], 0)
            category_index = {name: i for i, name in enumerate(categories)}
            object_category = {
                int(i): category_index[c]
                for i, c in zip(truth.object_ids, truth.object_categories, strict=True)
            }
            seen = np.array([i for i in truth.object_ids if (instance == i).any()])
            objects = detect_objects(
                scene_parser,
                snapshot.points,
                snapshot.colors.astype(np.float32) / 255.0,
                SuperpointParams(),
            )
            labelled = instance > 0
            scores.append(
                score_scene(
                    f"bag_seed{seed}",
                    semantic=np.array([object_category[int(i)] for i in instance[labelled]]),
                    predicted_semantic=objects.point_categories()[labelled],
                    instance=instance[labelled],
                    object_ids=seen,
                    object_categories=np.array([object_category[int(i)] for i in seen]),
                    proposal=objects.point_objects()[labelled],
                    num_categories=len(categories),
                    min_points=MIN_PROPOSAL_POINTS,
                    encode_ms=sum(objects.timings_ms.values()),
                )
            )
            print(f"seed {seed}: {len(snapshot.points)} voxels, {len(seen)} objects seen")
    summary = summarize_scenes(scores, categories)
    summary["seeds"] = args.seeds
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print_scene_summary(summary, Console())


if __name__ == "__main__":
    main()
