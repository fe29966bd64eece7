"""What a scan bag written by `r2s-make-bag` holds, for its writer and its readers alike
(docs/bag_format.md): topics, frames, stamps, and the ground truth beside the messages.

No ROS import: bags are written and read with `rosbags`.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import yaml
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from r2s_model.data.errors import DatasetFormatError
from r2s_model.data.io import SceneArrays, read_records, read_scene

POINTS_TOPIC = "/points"
ODOM_TOPIC = "/odom"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
INSTRUCTION_TOPIC = "/instruction"
POINTS_TYPE = "sensor_msgs/msg/PointCloud2"
ODOM_TYPE = "nav_msgs/msg/Odometry"
TF_TYPE = "tf2_msgs/msg/TFMessage"
INSTRUCTION_TYPE = "std_msgs/msg/String"
MAP_FRAME = "map"
BASE_FRAME = "base_link"
SENSOR_FRAME = "sensor"
# The sensor in base_link (/tf_static): this far ahead and above, axes aligned, metres.
SENSOR_MOUNT_M = (0.1, 0.0, 0.25)
# Bag time of the first scan, so that a seed always gives the same bag byte for byte.
START_NS = 1_700_000_000 * 10**9
STORAGES = ("mcap", "sqlite3")
# Within one stamp, messages are stored in this order: a cloud's poses before the cloud, and an
# instruction after the clouds of its instant.
TOPIC_ORDER = (TF_STATIC_TOPIC, TF_TOPIC, ODOM_TOPIC, POINTS_TOPIC, INSTRUCTION_TOPIC)

SCENE_FILE = "r2s_ground_truth.npz"
RECORDS_FILE = "r2s_ground_truth.jsonl"
# SHA-256 of each storage file as written, in `sha256sum` format: rosbags writes MCAP chunks
# without CRCs, so this is what tells a damaged chunk from data.
CHECKSUMS_FILE = "r2s_storage.sha256"
# Keys of rosbag2's metadata.yaml `custom_data` that the writer sets (all strings).
CUSTOM_SCENE_ID = "r2s.scene_id"
CUSTOM_SEED = "r2s.seed"
CUSTOM_COMMAND = "r2s.command"


class GroundTruthError(DatasetFormatError):
    """A bag whose ground-truth sidecar is missing or does not follow docs/bag_format.md; the
    message names the file and the problem."""


@functools.cache
def typestore() -> Typestore:
    """The ROS 2 message types the bags are written and read with (Kilted)."""
    return get_typestore(Stores.ROS2_KILTED)


def read_ground_truth(bag_dir: Path) -> tuple[SceneArrays, list[dict[str, Any]]]:
    """The scene (map frame) and the instruction records stored beside a bag's messages.

    Records are in bag order, each a dataset record (docs/data_format.md) plus `stamp_ns` (int,
    the bag time of its /instruction message) and `topic`. scene.scene_id is the bag's
    (metadata custom_data `r2s.scene_id`). Raises GroundTruthError.
    """
    bag_dir = Path(bag_dir)
    scene_path, records_path = bag_dir / SCENE_FILE, bag_dir / RECORDS_FILE
    for path in (scene_path, records_path):
        if not path.is_file():
            raise GroundTruthError(f"{path}: missing; bags from r2s-make-bag carry it")
    try:
        scene = read_scene(scene_path)
        records = read_records(records_path)
    except GroundTruthError:
        raise
    except DatasetFormatError as error:
        raise GroundTruthError(str(error)) from error
    scene.scene_id = _custom_data(bag_dir).get(CUSTOM_SCENE_ID, bag_dir.name)
    known = set(scene.object_ids.tolist())
    previous = -1
    for number, record in enumerate(records, start=1):
        where = f"{records_path}:{number}"
        stamp = record.get("stamp_ns")
        if type(stamp) is not int or stamp < previous:
            raise GroundTruthError(f"{where}: stamp_ns must be an int, in bag order; got {stamp!r}")
        previous = stamp
        if not isinstance(record.get("topic"), str):
            raise GroundTruthError(f"{where}: field 'topic' missing or not a str")
        if record["scene_id"] != scene.scene_id:
            raise GroundTruthError(
                f"{where}: scene_id {record['scene_id']!r} is not the bag's {scene.scene_id!r}"
            )
        unknown = set(record["target_ids"] + record["relevant_ids"]) - known
        if unknown:
            raise GroundTruthError(f"{where}: ids {sorted(unknown)} are not objects of the scene")
    return scene, records


def _custom_data(bag_dir: Path) -> dict[str, str]:
    """metadata.yaml's custom_data, {} when the bag has none."""
    path = bag_dir / "metadata.yaml"
    try:
        metadata = yaml.safe_load(path.read_text(encoding="utf-8"))
        info = metadata["rosbag2_bagfile_information"]
    except (OSError, yaml.YAMLError, TypeError, KeyError) as error:
        raise GroundTruthError(f"{path}: not a rosbag2 metadata file ({error})") from error
    return info.get("custom_data") or {}


def write_checksums(bag_dir: Path, storage_files: list[Path]) -> None:
    """Writes CHECKSUMS_FILE for the storage files (paths inside bag_dir)."""
    lines = [f"{_sha256(path)}  {path.name}\n" for path in sorted(storage_files)]
    (Path(bag_dir) / CHECKSUMS_FILE).write_text("".join(lines))


def changed_storage_files(bag_dir: Path) -> list[str]:
    """The storage files that no longer match CHECKSUMS_FILE (a missing one included); none
    when the bag has no CHECKSUMS_FILE (bags from other recorders)."""
    listing = Path(bag_dir) / CHECKSUMS_FILE
    if not listing.is_file():
        return []
    changed = []
    for line in listing.read_text().splitlines():
        digest, _, name = line.partition("  ")
        path = Path(bag_dir) / name
        if not path.is_file() or _sha256(path) != digest:
            changed.append(name)
    return changed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
