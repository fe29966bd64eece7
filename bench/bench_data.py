"""Speed of r2s-gen-data, and what the paper-sized splits would take on this machine.

Generates --scenes scenes (all in one split) with the CLI's defaults into a temporary folder and
writes bench/results/data_generation.json: scenes/s, samples/s, points and superpoints per
scene, and the extrapolated time for 3D ReasonSeg's size (25,185 train + 3,966 val samples).

    .venv/bin/python bench/bench_data.py [--scenes 40] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np
from results_file import write_result

from r2s_model.data.io import SyntheticDataset
from r2s_model.synthetic.generate import generate_dataset

PAPER_SAMPLES = 25_185 + 3_966


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--samples-per-scene", type=int, default=10)
    parser.add_argument("--workers", type=int, default=multiprocessing.cpu_count())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "data"
        start = time.perf_counter()
        info = generate_dataset(
            out,
            seed=0,
            scenes={"train": args.scenes},
            samples_per_scene=args.samples_per_scene,
            points_per_m2=1500.0,
            workers=args.workers,
        )
        seconds = time.perf_counter() - start
        dataset = SyntheticDataset(out, "train")
        scenes = [dataset.scene(f"train_{i:05d}") for i in range(args.scenes)]
        size_mb = sum(p.stat().st_size for p in (out / "scenes").glob("*.npz")) / 2**20
    samples = info["samples"]["train"]
    samples_per_scene = samples / args.scenes
    scenes_per_s = args.scenes / seconds
    paper_scenes = PAPER_SAMPLES / samples_per_scene
    report = {
        "benchmark": "data_generation",
        "scenes": args.scenes,
        "workers": args.workers,
        "seconds": round(seconds, 1),
        "scenes_per_second": round(scenes_per_s, 2),
        "samples_per_second": round(samples / seconds, 1),
        "samples_per_scene": round(samples_per_scene, 2),
        "rejected_by_checker": info["rejected_by_checker"]["train"],
        "points_per_scene_mean": int(np.mean([len(s.points) for s in scenes])),
        "superpoints_per_scene_mean": int(np.mean([s.superpoints.max() + 1 for s in scenes])),
        "objects_per_scene_mean": round(float(np.mean([len(s.object_ids) for s in scenes])), 1),
        "megabytes_per_scene": round(size_mb / args.scenes, 2),
        "paper_sized_split": {
            "samples": PAPER_SAMPLES,
            "scenes_needed": int(np.ceil(paper_scenes)),
            "estimated_minutes": round(paper_scenes / scenes_per_s / 60, 1),
            "estimated_gigabytes": round(paper_scenes * size_mb / args.scenes / 1024, 1),
        },
    }
    path = write_result("data_generation", report)
    print(json.dumps(report, indent=2), f"\n-> {path}")


if __name__ == "__main__":
    main()
