"""Speed of the PointCloud2 codec against a plain numpy memory-copy baseline, in one run.

For a --points xyz + packed rgb cloud (16 bytes a point) times decode_cloud, encode_cloud and
the numpy structured-array round trip they are compared with (np.frombuffer + field copies;
field copies + arr.tobytes()) and bare copies of the bytes (arr.tobytes(), bytes()); then an
organized 480 x 640 cloud with NaN points and row padding, and the ways to put the bytes into
a PointCloud2. Writes bench/results/codec.json; MB are 10^6 bytes, times the best of --repeats.

    .venv/bin/python bench/bench_codec.py [--points 300000] [--repeats 30]
"""

from __future__ import annotations

import argparse
import array
import json
import os
import platform
import time
from collections.abc import Callable

import numpy as np
from results_file import write_result
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from r2s_ros.pointcloud import decode_cloud, encode_cloud

XYZ_RGB = np.dtype(
    {"names": ["x", "y", "z", "rgb"], "formats": ["<f4", "<f4", "<f4", "<u4"], "itemsize": 16}
)


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def baseline_decode(data: array.array) -> tuple[np.ndarray, np.ndarray]:
    """The memory-copy floor of decoding: structured view, then one copy per field."""
    records = np.frombuffer(data, XYZ_RGB)
    points = np.empty((len(records), 3), np.float32)
    for i, axis in enumerate("xyz"):
        points[:, i] = records[axis]
    return points, records["rgb"].copy()


def baseline_encode(points: np.ndarray, rgb: np.ndarray) -> bytes:
    """The memory-copy floor of encoding: one copy per field into a structured array (the
    packed rgb words given ready), then arr.tobytes()."""
    records = np.empty(len(points), XYZ_RGB)
    for i, axis in enumerate("xyz"):
        records[axis] = points[:, i]
    records["rgb"] = rgb
    return records.tobytes()


def organized_cloud(rng: np.random.Generator) -> PointCloud2:
    """A 480 x 640 depth-camera-like cloud: 20% NaN points, 64 bytes of padding per row."""
    height, width, row_padding = 480, 640, 64
    rows = np.zeros((height, width * 16 + row_padding), np.uint8)
    records = rows[:, : width * 16].view(XYZ_RGB)
    for axis in "xyz":
        records[axis] = rng.normal(size=(height, width))
    records["x"][rng.random((height, width)) < 0.2] = np.nan
    fields = [
        PointField(name=name, offset=offset, datatype=datatype, count=1)
        for name, offset, datatype in [
            ("x", 0, PointField.FLOAT32),
            ("y", 4, PointField.FLOAT32),
            ("z", 8, PointField.FLOAT32),
            ("rgb", 12, PointField.UINT32),
        ]
    ]
    msg = PointCloud2(
        height=height, width=width, fields=fields, point_step=16, row_step=rows.shape[1]
    )
    msg.data = array.array("B", rows.tobytes())
    return msg


def construction_ms(data: array.array, repeats: int) -> dict[str, float]:
    """Putting finished bytes into a message, per path; check_fields=True is what
    ROS_PYTHON_CHECK_FIELDS=1 turns on for every message."""
    as_bytes = data.tobytes()

    def assign(value: object, check_fields: bool) -> Callable[[], None]:
        def run() -> None:
            PointCloud2(check_fields=check_fields).data = value

        return run

    paths = {
        "assign_array_after_construction (chosen)": (assign(data, False), repeats),
        "assign_array_after_construction_checked": (assign(data, True), repeats),
        "constructor_data_bytes": (lambda: PointCloud2(data=as_bytes), repeats),
        "constructor_data_array": (lambda: PointCloud2(data=data), repeats),
        "assign_bytes_after_construction": (assign(as_bytes, False), repeats),
        "assign_bytes_after_construction_checked (slow)": (assign(as_bytes, True), 3),
        "constructor_data_memoryview (slow)": (lambda: PointCloud2(data=memoryview(data)), 3),
    }
    return {name: round(best_seconds(run, n) * 1e3, 3) for name, (run, n) in paths.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    points = rng.normal(size=(args.points, 3)).astype(np.float32)
    colors = rng.integers(0, 256, size=(args.points, 3), dtype=np.uint8)
    header = Header(frame_id="map")
    msg = encode_cloud(points, colors, header)
    records = np.frombuffer(msg.data, XYZ_RGB).copy()
    rgb = records["rgb"].copy()
    organized = organized_cloud(rng)

    seconds = {
        "decode": best_seconds(lambda: decode_cloud(msg), args.repeats),
        "decode_baseline": best_seconds(lambda: baseline_decode(msg.data), args.repeats),
        "encode": best_seconds(lambda: encode_cloud(points, colors, header), args.repeats),
        "encode_baseline": best_seconds(lambda: baseline_encode(points, rgb), args.repeats),
        "tobytes": best_seconds(records.tobytes, args.repeats),
        "memcpy": best_seconds(lambda: bytes(msg.data), args.repeats),
        "decode_organized": best_seconds(lambda: decode_cloud(organized), args.repeats),
    }
    megabytes = len(msg.data) / 1e6
    case_megabytes = {name: megabytes for name in seconds} | {
        "decode_organized": len(organized.data) / 1e6
    }
    report = {
        "benchmark": "pointcloud_codec",
        "points": args.points,
        "megabytes": round(megabytes, 2),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "ms": {name: round(s * 1e3, 3) for name, s in seconds.items()},
        "mb_per_s": {name: round(case_megabytes[name] / s) for name, s in seconds.items()},
        # Speed ratios: 1.0 is as fast as the baseline, 0.5 takes twice as long.
        "decode_speed_vs_baseline": round(seconds["decode_baseline"] / seconds["decode"], 2),
        "encode_speed_vs_baseline": round(seconds["encode_baseline"] / seconds["encode"], 2),
        "decode_speed_vs_memcpy": round(seconds["memcpy"] / seconds["decode"], 2),
        "encode_speed_vs_tobytes": round(seconds["tobytes"] / seconds["encode"], 2),
        "message_construction_ms": construction_ms(msg.data, args.repeats),
    }
    path = write_result("codec", report)
    print(json.dumps(report, indent=2), f"\n-> {path}")


if __name__ == "__main__":
    main()
