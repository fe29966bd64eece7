"""r2s-make-bag: a rosbag2 of simulated depth scans of a generated room, with instructions and
the ground truth to score answers against (docs/bag_format.md).

    r2s-make-bag --out bags/room0 --seed 0 [--frames 40] [--rate-hz 5] [--instructions 5]

The room and its instructions come from the benchmark generator (`r2s_model.synthetic.generate`),
checked by the same independent checker; the scans from `r2s_model.synthetic.scan_sim`. The bag
appears only when complete: it is written in a hidden folder beside --out and renamed.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm import tqdm

from r2s_model.data.io import color_bytes, write_records, write_scene
from r2s_model.synthetic.furniture import STRUCTURE
from r2s_model.synthetic.generate import checked_records, room_scene
from r2s_model.synthetic.rooms import Room, generate_room
from r2s_model.synthetic.scan_sim import (
    SensorModel,
    obstacle_boxes,
    orbit_trajectory,
    scan_trajectory,
)
from r2s_ros.bags import contract
from r2s_ros.bags.messages import (
    cloud_message,
    instruction_message,
    odometry_message,
    transforms_message,
)

_STORAGE_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# /tf_static is latched (transient local), so `ros2 bag play` hands it to late subscribers.
LATCHED = Qos(
    QosHistory.KEEP_LAST,
    1,
    QosReliability.RELIABLE,
    QosDurability.TRANSIENT_LOCAL,
    *[QosTime(0, 0)] * 2,
    QosLiveliness.AUTOMATIC,
    QosTime(0, 0),
    False,
)
# Instructions after the scan, this far apart: time for a node to answer each before the next.
INSTRUCTION_SPACING_NS = 10**9


@dataclass(frozen=True)
class BagSettings:
    """What `make_bag` simulates. interleave: instructions spread over the scan instead of
    after it."""

    seed: int
    frames: int = 40
    rate_hz: float = 5.0
    instructions: int = 5
    points_per_m2: float = 1500.0
    storage: str = "mcap"
    interleave: bool = False
    sensor: SensorModel | None = None  # None: SensorModel defaults, splats sized to the density

    def __post_init__(self) -> None:
        for name, low in (("seed", 0), ("frames", 1), ("instructions", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        for name in ("rate_hz", "points_per_m2"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.storage not in contract.STORAGES:
            raise ValueError(f"storage must be one of {contract.STORAGES}, not {self.storage!r}")

    @property
    def scene_id(self) -> str:
        return f"bag_seed{self.seed}"

    def command(self) -> str:
        """The r2s-make-bag arguments that make this bag (but --out), for its metadata; a
        custom `sensor` has no argument and is marked as such."""
        words = [
            f"r2s-make-bag --seed {self.seed} --frames {self.frames} --rate-hz {self.rate_hz}",
            f"--instructions {self.instructions} --points-per-m2 {self.points_per_m2}",
            f"--storage {self.storage}",
        ]
        if self.interleave:
            words.append("--interleave")
        if self.sensor is not None:
            words.append("(custom sensor)")
        return " ".join(words)

    def scan_sensor(self) -> SensorModel:
        if self.sensor is not None:
            return self.sensor
        # Random sampling leaves gaps somewhat wider than the mean spacing 1 / sqrt(density).
        return SensorModel(splat_m=1.2 / np.sqrt(self.points_per_m2))

    def frame_stamps(self) -> np.ndarray:
        """(F,) int64 bag times of the scans, nanoseconds."""
        return contract.START_NS + np.rint(np.arange(self.frames) * 1e9 / self.rate_hz).astype(
            np.int64
        )

    def instruction_stamps(self, count: int) -> np.ndarray:
        """(count,) int64 bag times of the instructions: INSTRUCTION_SPACING_NS apart after the
        last scan, or with `interleave` evenly spread between the first and the last scan."""
        period = 1e9 / self.rate_hz
        k = np.arange(1, count + 1)
        if self.interleave:
            offsets = k * (self.frames - 1) * period / (count + 1)
        else:
            offsets = (self.frames - 1) * period + k * INSTRUCTION_SPACING_NS
        return contract.START_NS + np.rint(offsets).astype(np.int64)


@dataclass
class BagSummary:
    path: Path
    storage: str
    frames: int
    points_per_frame: float
    instructions: int
    rejected_by_checker: int
    duration_s: float  # bag time from the first to the last message
    size_mb: float
    seconds: float  # wall time to make it


def _obstacles(room: Room) -> np.ndarray:
    """(K, 2, 3) boxes of the furniture too tall for the sensor to pass over."""
    furniture = [o for o in room.objects if o.category not in STRUCTURE]
    return obstacle_boxes(
        np.array([o.box_min for o in furniture]).reshape(-1, 3),
        np.array([o.box_max for o in furniture]).reshape(-1, 3),
    )


def write_bag(path: Path, settings: BagSettings, *, progress: bool = True) -> BagSummary:
    """Generates the room, its instructions and scans, and writes the bag folder `path` (which
    must not exist) with its ground-truth sidecar. Not atomic: see make_bag."""
    start = time.perf_counter()
    room = generate_room(settings.seed, points_per_m2=settings.points_per_m2)
    scene = room_scene(room, settings.scene_id)
    records, rejected = checked_records(room, scene, settings.seed, settings.instructions)
    for record, stamp in zip(
        records, settings.instruction_stamps(len(records)).tolist(), strict=True
    ):
        record |= {"stamp_ns": stamp, "topic": contract.INSTRUCTION_TOPIC}
    translations, rotations = orbit_trajectory(
        room.size, settings.frames, seed=settings.seed, obstacles=_obstacles(room)
    )
    frames = scan_trajectory(
        room.points,
        color_bytes(room.colors),
        translations,
        rotations,
        settings.scan_sensor(),
        seed=settings.seed,
    )
    events = _schedule(settings, records)

    writer = Writer(path, version=9, storage_plugin=_STORAGE_PLUGINS[settings.storage])
    writer.set_custom_data(contract.CUSTOM_SCENE_ID, settings.scene_id)
    writer.set_custom_data(contract.CUSTOM_SEED, str(settings.seed))
    writer.set_custom_data(contract.CUSTOM_COMMAND, settings.command())
    store = contract.typestore()
    points_seen = 0
    with writer:
        connections = {
            topic: writer.add_connection(topic, kind, typestore=store, offered_qos_profiles=qos)
            for topic, kind, qos in (
                (contract.TF_STATIC_TOPIC, contract.TF_TYPE, [LATCHED]),
                (contract.TF_TOPIC, contract.TF_TYPE, ()),
                (contract.ODOM_TOPIC, contract.ODOM_TYPE, ()),
                (contract.POINTS_TOPIC, contract.POINTS_TYPE, ()),
                (contract.INSTRUCTION_TOPIC, contract.INSTRUCTION_TYPE, ()),
            )
        }
        mount = np.array(contract.SENSOR_MOUNT_M)
        bar = tqdm(events, desc=f"{path.name}", unit="msg", disable=not progress)
        for stamp, topic, record in bar:
            if topic == contract.TF_STATIC_TOPIC:
                sensor, base = contract.SENSOR_FRAME, contract.BASE_FRAME
                message = transforms_message(base, sensor, mount, np.eye(3), stamp)
            elif topic == contract.TF_TOPIC:
                frame = next(frames)  # its odometry and cloud come next, at the same stamp
                points_seen += len(frame.points)
                # base_link turns with the sensor: the base pose is the sensor's, minus the mount.
                base_at = frame.translation - frame.rotation @ mount
                message = transforms_message(
                    contract.MAP_FRAME, contract.BASE_FRAME, base_at, frame.rotation, stamp
                )
            elif topic == contract.ODOM_TOPIC:
                message = odometry_message(frame, stamp)
            elif topic == contract.POINTS_TOPIC:
                message = cloud_message(frame, stamp)
            else:
                message = instruction_message(record["question"])
            data = store.serialize_cdr(message, message.__msgtype__)
            writer.write(connections[topic], stamp, data)

    storage = [file for file in path.iterdir() if file.name != "metadata.yaml"]
    contract.write_checksums(path, storage)
    write_scene(path / contract.SCENE_FILE, scene)
    write_records(path / contract.RECORDS_FILE, records)
    return BagSummary(
        path=path,
        storage=settings.storage,
        frames=settings.frames,
        points_per_frame=points_seen / settings.frames,
        instructions=len(records),
        rejected_by_checker=rejected,
        duration_s=(events[-1][0] - events[0][0]) / 1e9,
        size_mb=sum(f.stat().st_size for f in path.iterdir()) / 1e6,
        seconds=time.perf_counter() - start,
    )


def _schedule(
    settings: BagSettings, records: list[dict[str, Any]]
) -> list[tuple[int, str, dict[str, Any] | None]]:
    """(stamp_ns, topic, record or None) of every message, in bag order: by stamp, then
    contract.TOPIC_ORDER, then frame or instruction number."""
    stamps = settings.frame_stamps().tolist()
    events: list[tuple[int, str, dict[str, Any] | None]] = [
        (stamps[0], contract.TF_STATIC_TOPIC, None)
    ]
    for stamp in stamps:
        events += [(stamp, topic, None) for topic in contract.TOPIC_ORDER[1:4]]
    events += [(r["stamp_ns"], contract.INSTRUCTION_TOPIC, r) for r in records]
    # Stable: equal keys keep their generation order (frames and instructions in sequence).
    return sorted(events, key=lambda e: (e[0], contract.TOPIC_ORDER.index(e[1])))


def make_bag(
    out: Path, settings: BagSettings, *, overwrite: bool = False, progress: bool = True
) -> BagSummary:
    """Writes the bag of `settings` to `out` atomically: into a hidden staging folder beside it,
    renamed into place when complete. On any error nothing is left and an existing `out` is
    untouched; it is replaced only with `overwrite`, else FileExistsError."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        # Named like `out` inside the staging folder: rosbag2 names its storage file after it.
        summary = write_bag(staging / out.name, settings, progress=progress)
        _move_into_place(staging / out.name, out, staging / "replaced")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary.path = out
    return summary


def _move_into_place(new: Path, out: Path, trash: Path) -> None:
    """Renames `new` to `out`, moving an existing `out` to `trash` first (put back on failure)."""
    replaced = out.exists() or out.is_symlink()
    if replaced:
        out.rename(trash)
    try:
        new.rename(out)
    except BaseException:
        if replaced:
            trash.rename(out)
        raise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="r2s-make-bag",
        description="Write a rosbag2 of simulated depth scans of a generated room, with "
        "instructions and ground truth (docs/bag_format.md).",
    )
    parser.add_argument("--out", type=Path, required=True, help="bag folder to create")
    parser.add_argument("--seed", type=int, required=True, help="room seed (>= 0)")
    parser.add_argument("--frames", type=int, default=BagSettings.frames)
    parser.add_argument("--rate-hz", type=float, default=BagSettings.rate_hz)
    parser.add_argument("--instructions", type=int, default=BagSettings.instructions)
    parser.add_argument("--points-per-m2", type=float, default=BagSettings.points_per_m2)
    parser.add_argument("--storage", choices=contract.STORAGES, default=BagSettings.storage)
    parser.add_argument(
        "--interleave", action="store_true", help="spread instructions over the scan"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        parser.error(f"{args.out} exists; pass --overwrite to replace it")
    try:
        settings = BagSettings(
            seed=args.seed,
            frames=args.frames,
            rate_hz=args.rate_hz,
            instructions=args.instructions,
            points_per_m2=args.points_per_m2,
            storage=args.storage,
            interleave=args.interleave,
        )
    except ValueError as error:
        parser.error(str(error))
    summary = make_bag(args.out, settings, overwrite=args.overwrite)
    print(
        f"{summary.path}: {summary.frames} scans ({summary.points_per_frame:.0f} points each on "
        f"average), {summary.instructions} instructions (rejected by the checker: "
        f"{summary.rejected_by_checker}), {summary.duration_s:.1f} s of bag time, "
        f"{summary.storage}, {summary.size_mb:.1f} MB, made in {summary.seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
