"""A PointCloud2 topic of a rosbag2 recording, accumulated into one cloud by the node's intake.

The clouds go through `r2s_ros.ingest.SceneIngest` exactly as the node and `r2s-replay` take
them: with a nav_msgs/Odometry topic, clouds in a sensor frame are placed by the pose at their
stamp; without one, the clouds are taken in the frame of the first (others are dropped). The
result is the voxel map the node would hold at the end of the recording.
"""

from __future__ import annotations

import dataclasses
from contextlib import closing
from pathlib import Path

from r2s_ros.bags import contract
from r2s_ros.bags.reader import BagError, BagTopics, ReplayBag
from r2s_ros.bags.replay import feed
from r2s_ros.ingest import IngestSettings, SceneIngest
from r2s_ros.params import NodeParameters
from r2s_ros.segment.readers import Cloud, CloudFileError, make_cloud

STORAGE_SUFFIXES = (".mcap", ".db3")  # a storage file inside a bag folder names the bag too


def bag_folder(path: Path) -> Path | None:
    """The rosbag2 folder `path` names (the folder or a storage file in it); None otherwise."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.suffix in STORAGE_SUFFIXES and (path.parent / "metadata.yaml").is_file():
        return path.parent
    return None


def read_bag_cloud(
    folder: Path,
    topic: str = contract.POINTS_TOPIC,
    odometry_topic: str | None = None,
    parameters: NodeParameters | None = None,
) -> Cloud:
    """Accumulates every cloud of `topic`; `odometry_topic` None uses /odom when the bag has it,
    "" none; `parameters`: the node's (default: its defaults). CloudFileError when the bag is
    unusable or no point reaches the scene."""
    parameters = parameters or NodeParameters()
    try:
        # Clouds only: in the fixed-frame case the first message must be a cloud.
        bag = ReplayBag(
            folder, BagTopics(points=topic, odometry="", instruction="", tf="", tf_static="")
        )
        if odometry_topic is None:
            odometry_topic = contract.ODOM_TOPIC if contract.ODOM_TOPIC in bag.counts else ""
        if odometry_topic:
            bag = ReplayBag(
                folder, BagTopics(points=topic, odometry=odometry_topic, instruction="")
            )
            parameters = dataclasses.replace(parameters, pose_source="odometry")
        else:
            parameters = dataclasses.replace(
                parameters, fixed_frame=_first_frame(bag), pose_source="fixed"
            )
        ingest = SceneIngest(IngestSettings.from_parameters(parameters))
        for message in bag.messages():
            feed(ingest, message)
    except BagError as error:
        raise CloudFileError(str(error)) from error
    scene, counts = ingest.snapshot(), dict(ingest.counts)
    used = (
        f"{counts.get('clouds_accepted', 0)} of {counts.get('clouds_received', 0)} clouds on "
        f"{topic} in frame {parameters.fixed_frame!r}"
        + (f" placed by {odometry_topic}" if odometry_topic else "")
    )
    drops = ", ".join(
        f"{key.removeprefix('dropped_')} {n}"
        for key, n in sorted(counts.items())
        if "dropped_" in key
    )
    if scene.num_voxels == 0:
        raise CloudFileError(
            f"{folder}: no point reached the scene: {used} (dropped: {drops or 'none'})"
        )
    note = f"{used}, {scene.num_voxels} voxels of {parameters.voxel_size:g} m"
    note += f" (dropped: {drops})" if drops else ""
    colors = scene.colors if scene.colors.any() else None  # 0 where no cloud had a colour
    return make_cloud(str(folder), f"rosbag2 {topic}", scene.points, colors, [note])


def _first_frame(bag: ReplayBag) -> str:
    """frame_id of the bag's first cloud."""
    with closing(bag.messages()) as messages:
        first = next(messages, None)
    if first is None:
        raise BagError(f"{bag.path}: no messages on {bag.topics.points}")
    return first.message.header.frame_id
