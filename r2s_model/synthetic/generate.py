"""r2s-gen-data: generate the synthetic reasoning-segmentation benchmark.

    r2s-gen-data --out data/r2s --seed 0 --scenes-train 2500 --scenes-val 400

Every scene's seed derives from (seed, split, index), so the output is the same for a seed
whatever the number of workers, and train and val never share a scene. Every sample is
re-checked by the independent relation checker; any it rejects is dropped and counted (a
generator bug: the tests require zero). The output appears only when complete.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from r2s_model.data.io import SceneArrays, staged_dataset, write_info, write_records, write_scene
from r2s_model.superpoints import SuperpointParams, compute_superpoints
from r2s_model.synthetic.checker import check_sample, object_geometry
from r2s_model.synthetic.instructions import generate_instructions
from r2s_model.synthetic.rooms import CATEGORIES, Room, generate_room

SPLITS = ("train", "val")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SceneTask:
    out: Path
    seed: int
    split: str
    index: int
    samples_per_scene: int
    points_per_m2: float

    @property
    def scene_id(self) -> str:
        return f"{self.split}_{self.index:05d}"

    @property
    def scene_seed(self) -> int:
        sequence = np.random.SeedSequence([self.seed, SPLITS.index(self.split), self.index])
        return int(sequence.generate_state(1)[0])


def room_scene(room: Room, scene_id: str) -> SceneArrays:
    """A generated room as the dataset stores it, superpoints included."""
    objects = room.objects
    return SceneArrays(
        scene_id=scene_id,
        points=room.points,
        colors=room.colors,
        instance=room.instance,
        semantic=room.semantic,
        superpoints=compute_superpoints(room.points, room.colors).astype(np.int32),
        object_ids=np.array([o.instance_id for o in objects], dtype=np.int32),
        object_categories=[o.category for o in objects],
        object_colors=[o.color for o in objects],
    )


def checked_records(
    room: Room, scene: SceneArrays, seed: int, count: int
) -> tuple[list[dict[str, Any]], int]:
    """Up to `count` instruction records for `room` that the independent checker accepts, with
    sample ids `<scene_id>_NN` -> (records, samples rejected)."""
    # The checker sees the scene exactly as stored (colors quantised, points float32).
    geometry = object_geometry(scene.points, scene.instance)
    categories, colors = scene.category_of(), scene.color_of()
    rng = np.random.default_rng(seed)
    records, rejected = [], 0
    for number, sample in enumerate(generate_instructions(room, rng, count)):
        record = {"sample_id": f"{scene.scene_id}_{number:02d}", "scene_id": scene.scene_id}
        record |= asdict(sample)
        if check_sample(record, geometry, categories, colors).ok:
            records.append(record)
        else:
            rejected += 1
    return records, rejected


def build_scene(task: SceneTask) -> tuple[list[dict[str, Any]], int]:
    """Generates, checks and writes one scene -> (its sample records, samples rejected)."""
    room = generate_room(task.scene_seed, points_per_m2=task.points_per_m2)
    scene = room_scene(room, task.scene_id)
    write_scene(task.out / "scenes" / f"{task.scene_id}.npz", scene)
    return checked_records(room, scene, task.scene_seed, task.samples_per_scene)


def generate_dataset(
    out: Path,
    *,
    seed: int,
    scenes: dict[str, int],
    samples_per_scene: int,
    points_per_m2: float,
    workers: int,
) -> dict[str, Any]:
    """Writes the dataset to `out` (which must not exist) and returns its dataset.json."""
    start = time.perf_counter()
    info: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "scenes": scenes,
        "samples_per_scene": samples_per_scene,
        "points_per_m2": points_per_m2,
        "superpoint_params": asdict(SuperpointParams()),
        "categories": list(CATEGORIES),
        "command": " ".join(["r2s-gen-data", *sys.argv[1:]]),
        "samples": {},
        "rejected_by_checker": {},
    }
    with staged_dataset(out) as staging, multiprocessing.get_context("spawn").Pool(workers) as pool:
        for split, count in scenes.items():
            tasks = [
                SceneTask(staging, seed, split, i, samples_per_scene, points_per_m2)
                for i in range(count)
            ]
            records: list[dict[str, Any]] = []
            rejected = 0
            results = pool.imap(build_scene, tasks, chunksize=4)
            for scene_records, scene_rejected in tqdm(
                results, total=count, desc=f"{split} scenes", unit="scene"
            ):
                records += scene_records
                rejected += scene_rejected
            write_records(staging / f"{split}.jsonl", records)
            info["samples"][split] = len(records)
            info["rejected_by_checker"][split] = rejected
        elapsed = time.perf_counter() - start
        info["seconds"] = round(elapsed, 1)
        info["scenes_per_second"] = round(sum(scenes.values()) / elapsed, 2)
        write_info(staging, info)
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="r2s-gen-data", description="Generate the synthetic R2S reasoning benchmark."
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenes-train", type=int, default=100)
    parser.add_argument("--scenes-val", type=int, default=20)
    parser.add_argument("--samples-per-scene", type=int, default=10)
    parser.add_argument("--points-per-m2", type=float, default=1500.0)
    parser.add_argument("--workers", type=int, default=max(1, multiprocessing.cpu_count()))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    if args.out.exists():
        if not args.overwrite:
            parser.error(f"{args.out} exists; pass --overwrite to replace it")
        shutil.rmtree(args.out)
    if min(args.scenes_train, args.scenes_val, args.samples_per_scene) < 0:
        parser.error("counts must not be negative")
    info = generate_dataset(
        args.out,
        seed=args.seed,
        scenes={"train": args.scenes_train, "val": args.scenes_val},
        samples_per_scene=args.samples_per_scene,
        points_per_m2=args.points_per_m2,
        workers=args.workers,
    )
    print(
        f"{args.out}: {info['samples']} samples from {info['scenes']} scenes "
        f"in {info['seconds']} s ({info['scenes_per_second']} scenes/s); "
        f"rejected by the checker: {info['rejected_by_checker']}"
    )


if __name__ == "__main__":
    main()
