"""Insert rate of SceneAccumulator for 300k-point clouds, snapshot and transform time.

A robot moving through a scene is simulated by clouds over a sliding window of distinct voxels:
each cloud shares half of its voxels with the previous one. Two densities:

- sparse: one point per voxel, so a cloud touches 300k voxels (the worst case for merging);
- dense: five points per voxel (60k voxels per cloud), closer to an RGB-D frame at 2 cm voxels.

Points are shuffled within each cloud, so nothing profits from scan-line order. Measured:
inserting into an empty map; into a map of ~300k voxels (the default max_voxels, full, so each
insert also evicts as many voxels as it creates) with 50% overlap; the same cloud again; a
snapshot of that map; transform_points of one cloud. Medians over --repeats, one thread.
Writes bench/results/accumulator.json.

    .venv/bin/python bench/bench_accumulator.py [--repeats 9]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import numpy as np
from results_file import write_result
from scipy.spatial.transform import Rotation

from r2s_ros.accumulator import AccumulatorConfig, SceneAccumulator
from r2s_ros.poses import Pose, transform_points

POINTS_PER_CLOUD = 300_000
BOX_VOXELS = (500, 500, 150)  # 10 x 10 x 3 m at 2 cm


def sliding_clouds(
    count: int, points_per_voxel: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` clouds of POINTS_PER_CLOUD points, (N, 3) float32 and (N, 3) uint8 colors."""
    voxels_per_cloud = POINTS_PER_CLOUD // points_per_voxel
    step = voxels_per_cloud // 2
    needed = step * (count + 1)
    # Drawing with replacement and dropping repeats keeps memory small; a few extra draws cover it.
    flat = rng.integers(0, np.prod(BOX_VOXELS), int(needed * 1.1))
    _, first = np.unique(flat, return_index=True)
    flat = flat[np.sort(first)][:needed]
    voxels = np.stack(np.unravel_index(flat, BOX_VOXELS), axis=1)
    voxel_size = AccumulatorConfig().voxel_size
    clouds = []
    for index in range(count):
        window = np.repeat(
            voxels[index * step : index * step + voxels_per_cloud], points_per_voxel, 0
        )
        window = window[rng.permutation(len(window))]
        jitter = rng.uniform(0.05, 0.95, window.shape)
        points = ((window + jitter) * voxel_size).astype(np.float32)
        colors = rng.integers(0, 256, points.shape, dtype=np.uint8)
        clouds.append((points, colors))
    return clouds


def seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def median_ms(samples: list[float]) -> float:
    return float(np.median(samples)) * 1e3


def rate(milliseconds: float) -> dict[str, float]:
    return {
        "ms": round(milliseconds, 2),
        "points_per_s": round(POINTS_PER_CLOUD / milliseconds * 1e3),
    }


def measure(points_per_voxel: int, repeats: int, rng: np.random.Generator) -> dict:
    """Insert and snapshot timings for one density."""
    warmup = 2
    config = AccumulatorConfig()
    clouds = sliding_clouds(warmup + repeats + 1, points_per_voxel, rng)
    into_empty = median_ms(
        [seconds(lambda: SceneAccumulator(config).insert(*clouds[0], 0.0)) for _ in range(repeats)]
    )

    accumulator = SceneAccumulator(config)
    # Fill up to max_voxels with a grid of voxels off to the side, so that every timed insert
    # evicts as many voxels as it creates.
    filler_voxels = config.max_voxels - POINTS_PER_CLOUD // points_per_voxel
    grid = np.stack(np.unravel_index(np.arange(filler_voxels), BOX_VOXELS), axis=1)
    filler = ((grid + 0.5) * config.voxel_size + [20.0, 0.0, 0.0]).astype(np.float32)
    accumulator.insert(filler, None, -1.0)
    accumulator.insert(*clouds[0], 0.0)
    stats = []
    times = []
    for stamp, cloud in enumerate(clouds[1:], start=1):
        start = time.perf_counter()
        stats.append(accumulator.insert(*cloud, float(stamp)))
        times.append(time.perf_counter() - start)
    half_overlap = median_ms(times[warmup:])
    last = stats[-1]
    again = float(len(clouds))
    same_view = median_ms(
        [seconds(lambda: accumulator.insert(*clouds[-1], again)) for _ in range(repeats)]
    )
    snapshot = median_ms([seconds(accumulator.snapshot) for _ in range(repeats)])
    return {
        "points_per_voxel": points_per_voxel,
        "voxels_per_cloud": POINTS_PER_CLOUD // points_per_voxel,
        "insert_into_empty_map": rate(into_empty),
        "insert_half_overlap_full_map": {
            **rate(half_overlap),
            "map_voxels": accumulator.num_voxels,
            "new_voxels": last.new_voxels,
            "evicted": last.evicted,
        },
        "insert_same_view_again": rate(same_view),
        "snapshot_ms": round(snapshot, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pose = Pose(
        0.0, np.array([1.0, -2.0, 0.5]), Rotation.from_euler("zyx", [30, 5, 2], True).as_matrix()
    )
    cloud = rng.uniform(-5, 5, (POINTS_PER_CLOUD, 3)).astype(np.float32)
    transform = median_ms(
        [seconds(lambda: transform_points(cloud, pose)) for _ in range(args.repeats)]
    )
    report = {
        "benchmark": "accumulator",
        "points_per_cloud": POINTS_PER_CLOUD,
        "voxel_size": AccumulatorConfig().voxel_size,
        "max_voxels": AccumulatorConfig().max_voxels,
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "sparse": measure(1, args.repeats, rng),
        "dense": measure(5, args.repeats, rng),
        "transform_points_ms": round(transform, 2),
    }
    path = write_result("accumulator", report)
    print(json.dumps(report, indent=2), f"\n-> {path}")


if __name__ == "__main__":
    main()
