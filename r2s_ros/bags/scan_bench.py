"""R²S on what the node accumulates: instructions on simulated scans of unseen rooms.

    python -m r2s_ros.bags.scan_bench --seeds 1 2 3 4 5 6 7 8 --out docs/scan_bench.json

The benchmark's rooms are complete point clouds; a robot sees a room through its depth camera.
For each seed `r2s-make-bag` simulates the scan (partial coverage, ray noise) with generated
instructions, the offline replay feeds it through the node's own intake and worker with one
loaded model, and every instruction is scored on the observed ground truth as `r2s-replay`
scores it. The summary (mIoU, Acc@0.5, no-target accuracy, relevant recall, per category)
pools the instructions of all bags.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from r2s_model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_model
from r2s_model.device import DeviceError, resolve_device
from r2s_model.eval.metrics import summarize
from r2s_ros.bags.make_bag import BagSettings, make_bag
from r2s_ros.bags.reader import ReplayBag
from r2s_ros.bags.replay import load_ground_truth, replay_offline
from r2s_ros.bags.report import HEADLINE, build_report, number_text
from r2s_ros.ingest import IngestSettings
from r2s_ros.params import NodeParameters
from r2s_ros.worker import EncodingPolicy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 9)))
    parser.add_argument("--frames", type=int, default=20, help="depth frames per bag")
    parser.add_argument("--instructions", type=int, default=8, help="instructions per bag")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--score-threshold", type=float, default=0.0,
        help="below it a target is 'no target' (0..1; 0: the checkpoint's)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("scan_bench.json"))
    args = parser.parse_args(argv)
    if not 0 <= args.score_threshold < 1:
        parser.error(f"--score-threshold must be in [0, 1), got {args.score_threshold}")
    try:
        model = load_model(args.checkpoint, "", resolve_device(args.device), args.score_threshold)
    except (CheckpointError, DeviceError) as error:
        parser.error(str(error))

    parameters = NodeParameters()
    settings = IngestSettings.from_parameters(parameters)
    results, bags = [], []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            path = Path(folder) / f"seed{seed}"
            scan = BagSettings(seed=seed, frames=args.frames, instructions=args.instructions)
            make_bag(path, scan, progress=False)
            bag = ReplayBag(path)
            outcomes, _ = replay_offline(
                bag, model, settings, EncodingPolicy.from_parameters(parameters)
            )
            radius = settings.accumulator.voxel_size
            report, scores = build_report(outcomes, load_ground_truth(bag), radius, {})
            results += [score.result for score in scores if score is not None]
            bags.append({"seed": seed, **{key: report[key] for key in (*HEADLINE, "num_samples")}})
            print(f"seed {seed}: Acc@0.5 {number_text(report['acc50'])} on {report['num_samples']}")
    summary = summarize(results)
    out = {
        **summary,
        "num_samples": len(results),
        "checkpoint": str(args.checkpoint),
        "score_threshold": model.config.score_threshold,
        "data": {"seeds": args.seeds, "frames": args.frames, "instructions": args.instructions},
        "bags": bags,
        "samples": [vars(result) for result in results],  # as r2s-eval's (eval.threshold)
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(", ".join(f"{label} {number_text(summary[key])}" for key, label in HEADLINE.items()))


if __name__ == "__main__":
    main()
