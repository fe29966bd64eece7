"""rosbag2 recordings (MCAP or sqlite3) read for replay with rosbags: no ROS install needed.

`ReplayBag` checks a bag up front (a rosbag2 folder, readable, the configured topics present
with the expected message types) and then yields the messages of those topics in bag-time order,
deserialised by rosbags (they duck-type the ROS messages, so `r2s_ros.ingest` takes them as the
node takes rclpy's) together with the CDR bytes as recorded (what a live replay publishes).
Anything wrong with the bag raises `BagError` naming the bag and the problem: storage files that
no longer match the checksums `r2s-make-bag` recorded (a damaged chunk whose bytes still parse),
storage that cannot be read, and storage that yields fewer messages than its metadata lists.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader

from r2s_ros.bags import contract

# Types the replay can use on each role's topic.
EXPECTED_TYPES = {
    "tf_static": contract.TF_TYPE,
    "tf": contract.TF_TYPE,
    "odometry": contract.ODOM_TYPE,
    "points": contract.POINTS_TYPE,
    "instruction": contract.INSTRUCTION_TYPE,
}
# Roles whose topic may be missing from a bag (it is then not replayed): many recordings have no
# /tf_static, or no tf at all.
OPTIONAL_ROLES = ("tf_static", "tf")
# Messages sharing a bag time go out in this order whatever order the storage returns them in
# (sqlite3 does not promise one): a cloud's poses before the cloud, and an instruction after
# the clouds of its instant, as contract.TOPIC_ORDER stores them.
ROLE_ORDER = {role: order for order, role in enumerate(EXPECTED_TYPES)}


class BagError(Exception):
    """A bag that cannot be replayed; the message names the bag and what is wrong."""


@dataclass(frozen=True)
class BagTopics:
    """The topic of each role; "" means none (odometry: clouds in the fixed frame or placed by
    tf). The tf topics are replayed when the bag has them (OPTIONAL_ROLES)."""

    points: str = contract.POINTS_TOPIC
    odometry: str = contract.ODOM_TOPIC
    instruction: str = contract.INSTRUCTION_TOPIC
    tf: str = contract.TF_TOPIC
    tf_static: str = contract.TF_STATIC_TOPIC

    def roles(self) -> dict[str, str]:
        """role -> topic, for the roles that have a topic."""
        topics = {
            "tf_static": self.tf_static,
            "tf": self.tf,
            "points": self.points,
            "odometry": self.odometry,
            "instruction": self.instruction,
        }
        return {role: topic for role, topic in topics.items() if topic}


@dataclass(frozen=True)
class BagMessage:
    """One message of a replayed topic; `message` deserialised, `raw` the CDR bytes stored."""

    role: str  # "points" | "odometry" | "tf" | "tf_static" | "instruction"
    topic: str
    stamp_ns: int  # bag time
    message: Any  # by role: a PointCloudMessage, OdometryMessage or StringMessage (rosbags)
    raw: bytes


class ReplayBag:
    """A checked rosbag2 folder; iterate `messages()` (any number of times). `roles`: role ->
    topic of what is replayed (an optional role's topic the bag lacks is left out)."""

    def __init__(self, path: Path, topics: BagTopics = BagTopics()) -> None:
        self.path = Path(path)
        self.topics = topics
        if not self.path.is_dir() or not (self.path / "metadata.yaml").is_file():
            what = "does not exist" if not self.path.exists() else "has no metadata.yaml"
            raise BagError(f"{self.path} is not a rosbag2 folder: it {what}")
        changed = contract.changed_storage_files(self.path)
        if changed:
            raise BagError(
                f"{self.path}: corrupt storage: {', '.join(changed)} no longer matches the "
                f"SHA-256 in {contract.CHECKSUMS_FILE} (damaged or changed since it was written)"
            )
        with self._reader() as reader:
            found = {name: info.msgtype for name, info in reader.topics.items()}
            self.counts = {name: info.msgcount for name, info in reader.topics.items()}
            self.start_ns, self.end_ns = reader.start_time, reader.end_time
        self.roles = {
            role: topic
            for role, topic in topics.roles().items()
            if topic in found or role not in OPTIONAL_ROLES
        }
        self._check_topics(found)

    @property
    def num_messages(self) -> int:
        """Messages on the replayed topics."""
        return sum(self.counts[topic] for topic in self.roles.values())

    def messages(self) -> Iterator[BagMessage]:
        """The replayed topics' messages by bag time (ties in ROLE_ORDER); raises BagError when
        the storage turns out to be corrupt part-way."""
        role_of = {topic: role for role, topic in self.roles.items()}
        same_time: list[BagMessage] = []
        for message in self._read(role_of):
            if same_time and message.stamp_ns != same_time[0].stamp_ns:
                yield from sorted(same_time, key=lambda m: ROLE_ORDER[m.role])
                same_time.clear()
            same_time.append(message)
        yield from sorted(same_time, key=lambda m: ROLE_ORDER[m.role])

    def _read(self, role_of: dict[str, str]) -> Iterator[BagMessage]:
        read = dict.fromkeys(role_of, 0)
        try:
            with self._reader() as reader:
                connections = [c for c in reader.connections if c.topic in role_of]
                for connection, stamp_ns, raw in reader.messages(connections):
                    message = reader.deserialize(raw, connection.msgtype)
                    read[connection.topic] += 1
                    yield BagMessage(
                        role_of[connection.topic], connection.topic, stamp_ns, message, bytes(raw)
                    )
        except BagError:
            raise
        except Exception as error:  # storage and CDR errors come in many types (apsw, struct...)
            raise BagError(f"{self.path}: corrupt or truncated bag ({_describe(error)})") from error
        for topic, count in read.items():
            if count != self.counts[topic]:
                raise BagError(
                    f"{self.path}: corrupt or truncated bag: {count} of the "
                    f"{self.counts[topic]} messages on {topic} its metadata lists could be read"
                )

    @contextmanager
    def _reader(self) -> Iterator[AnyReader]:
        """An open AnyReader; BagError when the storage cannot be opened."""
        try:
            # The typestore serves bags without embedded message definitions (older sqlite3).
            reader = AnyReader([self.path], default_typestore=contract.typestore())
            reader.open()
        except Exception as error:  # missing storage file, bad metadata, truncated file ...
            raise BagError(
                f"{self.path}: cannot open the bag; truncated or corrupt? ({_describe(error)})"
            ) from error
        try:
            yield reader
        finally:
            reader.close()

    def _check_topics(self, found: dict[str, str]) -> None:
        available = ", ".join(f"{name} ({kind})" for name, kind in sorted(found.items())) or "none"
        for role, topic in self.roles.items():
            if topic not in found:
                raise BagError(
                    f"{self.path}: no topic {topic} for the {role} (available: {available})"
                )
            if found[topic] != EXPECTED_TYPES[role]:
                raise BagError(
                    f"{self.path}: topic {topic} has type {found[topic]}, "
                    f"but the {role} must be {EXPECTED_TYPES[role]}"
                )


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"
