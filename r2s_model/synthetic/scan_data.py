"""r2s-scan-data: a dataset whose rooms are partly replaced by their simulated scans.

    r2s-scan-data --data data/r2s-train --out data/r2s-train-scans --scan-fraction 0.5

The node grounds instructions in accumulated depth scans (`scanned.scanned_view`), not in the
benchmark's complete rooms; the grounding stage trained only on complete rooms picks another
object on scans more often. This writes a copy of a generated dataset in which each scene is,
with probability `scan_fraction`, its scanned view (same scene id, same object ids), otherwise
the room as it was. A record of a scanned room is kept if the scan saw every object it names
(targets and relevant ones) and the independent relation checker still accepts it on the
scanned geometry; the others are dropped and counted. Which rooms are scanned, and how, derives
from (seed, split, index), so the output does not depend on the number of workers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from r2s_model.data.io import (
    read_records,
    read_scene,
    scene_ids,
    staged_dataset,
    write_info,
    write_records,
    write_scene,
)
from r2s_model.synthetic.checker import check_sample, object_geometry
from r2s_model.synthetic.generate import SPLITS
from r2s_model.synthetic.scanned import ScanViewConfig, scanned_view


@dataclass(frozen=True)
class ScanTask:
    source: Path
    out: Path
    scene_id: str
    seed: int
    scan_fraction: float
    view: ScanViewConfig

    def rng(self) -> np.random.Generator:
        split, index = self.scene_id.rsplit("_", 1)
        return np.random.default_rng([self.seed, SPLITS.index(split), int(index)])


def scan_scene(task: ScanTask, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """Writes `task`'s scene, scanned or as it was -> (its records that still hold, scanned)."""
    path = task.source / "scenes" / f"{task.scene_id}.npz"
    rng = task.rng()
    if rng.random() >= task.scan_fraction:
        shutil.copyfile(path, task.out / "scenes" / path.name)
        return records, False
    scan = scanned_view(read_scene(path), rng, task.view)
    write_scene(task.out / "scenes" / path.name, scan)  # the file name keeps the scene id
    geometry = object_geometry(scan.points, scan.instance)
    categories, colors = scan.category_of(), scan.color_of()
    present = set(scan.object_ids.tolist())
    kept = [
        record
        for record in records
        if present.issuperset(record["target_ids"] + record["relevant_ids"])
        and check_sample(record, geometry, categories, colors).ok
    ]
    return kept, True


def _scan_task(job: tuple[ScanTask, list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], bool]:
    return scan_scene(*job)


def scan_dataset(
    source: Path, out: Path, *, seed: int, scan_fraction: float, workers: int
) -> dict[str, Any]:
    """Writes the partly scanned copy of `source` to `out` (which must not exist) and returns
    its dataset.json: the source's, with a `scans` section saying what was done."""
    start = time.perf_counter()
    info = json.loads((Path(source) / "dataset.json").read_text())
    view = ScanViewConfig(points_per_m2=info["points_per_m2"])
    scans: dict[str, Any] = {
        "source": str(source),
        "seed": seed,
        "scan_fraction": scan_fraction,
        "view": asdict(view),
        "command": " ".join(["r2s-scan-data", *sys.argv[1:]]),
        "scanned_scenes": {},
        "dropped_on_scans": {},
    }
    with staged_dataset(out) as staging, multiprocessing.get_context("spawn").Pool(workers) as pool:
        for split in (s for s in SPLITS if (Path(source) / f"{s}.jsonl").is_file()):
            grouped: dict[str, list[dict[str, Any]]] = {}
            for record in read_records(Path(source) / f"{split}.jsonl"):
                grouped.setdefault(record["scene_id"], []).append(record)
            jobs = [
                (ScanTask(Path(source), staging, scene_id, seed, scan_fraction, view),
                 grouped.get(scene_id, []))
                for scene_id in scene_ids(source, split)
            ]  # fmt: skip
            kept: list[dict[str, Any]] = []
            scanned = dropped = 0
            results = pool.imap(_scan_task, jobs, chunksize=2)
            for (_, records), (scene_records, was_scanned) in zip(
                jobs, tqdm(results, total=len(jobs), desc=f"{split} scans", unit="scene"),
                strict=True,
            ):  # fmt: skip
                kept += scene_records
                scanned += was_scanned
                dropped += len(records) - len(scene_records)
            write_records(staging / f"{split}.jsonl", kept)
            info["samples"][split] = len(kept)
            scans["scanned_scenes"][split] = scanned
            scans["dropped_on_scans"][split] = dropped
        scans["seconds"] = round(time.perf_counter() - start, 1)
        info["scans"] = scans
        write_info(staging, info)
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="r2s-scan-data", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder from r2s-gen-data")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scan-fraction", type=float, default=0.5, help="share of the rooms replaced by scans"
    )
    parser.add_argument("--workers", type=int, default=max(1, multiprocessing.cpu_count()))
    args = parser.parse_args(argv)
    if not (args.data / "dataset.json").is_file():
        parser.error(f"{args.data} is not a dataset folder (no dataset.json)")
    if args.out.exists():
        parser.error(f"{args.out} exists")
    if not 0.0 <= args.scan_fraction <= 1.0:
        parser.error(f"--scan-fraction must lie in [0, 1], got {args.scan_fraction}")
    info = scan_dataset(
        args.data, args.out, seed=args.seed, scan_fraction=args.scan_fraction,
        workers=max(1, args.workers),
    )  # fmt: skip
    scans = info["scans"]
    print(
        f"{args.out}: {info['samples']} samples; scanned scenes {scans['scanned_scenes']}; "
        f"records dropped on scans {scans['dropped_on_scans']}; {scans['seconds']} s"
    )


if __name__ == "__main__":
    main()
