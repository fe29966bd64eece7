"""r2s-replay: replay a rosbag2 recording through R2S and score it against the bag's ground truth.

    r2s-replay BAG --out report.json [--checkpoint PATH] [--device cpu]        # offline
    r2s-replay BAG --out report.json --live [--speed 2] [--clock] [--node-name r2s]  # a node

Offline, in this process and as fast as the machine goes: the bag's messages in bag-time order
go through the node's own scene intake (r2s_ros.ingest) and inference worker (the scene encoding
is reused while the scene version holds); each instruction segments the scene accumulated so
far. Deterministic: the same bag gives the same metrics. Live (bags.replay_live): the bag is
published at its recorded pace to a running `r2s-node` whose outputs are recorded and scored the
same way, with end-to-end latency. Reports: JSON, Markdown and PNG renders (bags.report).
Exit codes: 0 done, 2 unusable bag, checkpoint or parameters.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from r2s_model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_model
from r2s_model.data.errors import DatasetFormatError
from r2s_model.device import DeviceError, resolve_device
from r2s_ros.accumulator import SceneSnapshot
from r2s_ros.bags import contract
from r2s_ros.bags.reader import BagError, BagMessage, BagTopics, ReplayBag
from r2s_ros.bags.report import (
    ERROR,
    GroundTruth,
    Outcome,
    RelevantOutcome,
    ReplayError,
    build_report,
    print_summary,
    write_report,
)
from r2s_ros.ingest import IngestSettings, SceneIngest
from r2s_ros.params import NodeParameters, ParameterError, parameters_from_file
from r2s_ros.worker import (
    Answer,
    EncodingPolicy,
    InferenceWorker,
    InstructionJob,
    SegmentationModel,
)


def feed(ingest: SceneIngest, message: BagMessage) -> None:
    """Hands a cloud, odometry or tf message to the scene intake (drops are counted there)."""
    if message.role == "points":
        ingest.add_cloud(message.message)
    elif message.role == "odometry":
        ingest.add_odometry(message.message)
    elif message.role in ("tf", "tf_static"):
        ingest.add_transforms(message.message, static=message.role == "tf_static")


class BagIntake:
    """The node's intake fed a bag in order; its clock (the tf wait's) is the bag time of the
    message fed last, so a replay places and drops exactly the same clouds every time."""

    def __init__(self, settings: IngestSettings) -> None:
        self.now_s = 0.0
        self.ingest = SceneIngest(settings, clock=lambda: self.now_s)

    def feed(self, message: BagMessage) -> None:
        self.now_s = message.stamp_ns * 1e-9
        self.ingest.retry_waiting()  # the clouds whose wait for a transform is over by now
        feed(self.ingest, message)


def replay_offline(
    bag: ReplayBag,
    model: SegmentationModel,
    settings: IngestSettings,
    policy: EncodingPolicy,
) -> tuple[list[Outcome], dict[str, int]]:
    """Replays the bag in-process -> an outcome per instruction and the intake counters;
    `policy`: when the node's worker encodes the scene anew."""
    intake = BagIntake(settings)
    ingest = intake.ingest
    # Capacity 1 and one job at a time: the replay waits for each answer, so nothing is dropped.
    worker = InferenceWorker(model, ingest.snapshot, _resolve, capacity=1, policy=policy)
    outcomes = []
    try:
        for message in tqdm(bag.messages(), total=bag.num_messages, desc="replaying", unit="msg"):
            if message.role != "instruction":
                intake.feed(message)
                continue
            job = InstructionJob(message.message.data, f"bag-{len(outcomes)}")
            worker.submit(job)
            answer, latency_ms = job.done.result()
            scene = answer.scene or ingest.snapshot()  # None only if the snapshot itself failed
            outcomes.append(_outcome(len(outcomes), message.stamp_ns, answer, scene, latency_ms))
    finally:
        worker.stop()
    return outcomes, dict(ingest.counts)


def scenes_at(
    bag: ReplayBag, settings: IngestSettings, cutoffs_ns: list[int]
) -> list[SceneSnapshot]:
    """The scene the shared intake builds from the bag's messages up to each bag time (inclusive):
    what a node fed the same messages held then."""
    order = sorted(range(len(cutoffs_ns)), key=lambda i: cutoffs_ns[i])
    snapshots: list[SceneSnapshot | None] = [None] * len(cutoffs_ns)
    intake, taken = BagIntake(settings), 0
    for message in bag.messages():
        while taken < len(order) and message.stamp_ns > cutoffs_ns[order[taken]]:
            snapshots[order[taken]] = intake.ingest.snapshot()
            taken += 1
        intake.feed(message)
    for index in order[taken:]:
        snapshots[index] = intake.ingest.snapshot()
    return snapshots  # type: ignore[return-value]  # every slot is filled above


def load_ground_truth(bag: ReplayBag) -> GroundTruth | None:
    """The bag's ground-truth sidecar (bags.contract); None for a bag without one (a robot's
    recording: replayed for answers and latency, not scored); BagError when it is malformed."""
    sidecar = [bag.path / contract.SCENE_FILE, bag.path / contract.RECORDS_FILE]
    if not any(path.exists() for path in sidecar):
        return None
    try:
        scene, records = contract.read_ground_truth(bag.path)
    except DatasetFormatError as error:
        raise BagError(f"{bag.path}: unusable ground truth ({error})") from error
    return GroundTruth(scene, records)


def _resolve(answer: Answer) -> None:
    """The worker's answer callback: the answer and its latency since submission."""
    answer.job.done.set_result((answer, (time.perf_counter() - answer.job.received_s) * 1000.0))


def _outcome(
    index: int, stamp_ns: int, answer: Answer, scene: SceneSnapshot, latency_ms: float
) -> Outcome:
    output, text = answer.output, answer.job.text
    extra: dict[str, Any] = {
        "encode_ms": answer.encode_ms,
        "scene_encoding_reused": answer.reused_encoding,
        "scene_version": scene.version,
    }
    if output is None:
        return Outcome(
            index, stamp_ns, text, ERROR, scene, None, error=answer.error, latency_ms=latency_ms
        )
    extra |= {
        "stage1_ms": output.timings_ms.get("stage1", 0.0),
        "stage2_ms": output.timings_ms.get("stage2", 0.0),
    }
    return Outcome(
        index,
        stamp_ns,
        text,
        output.status.value,
        scene,
        scene.points[output.target_mask],
        answer=output.answer,
        error=output.reason,
        target_score=output.target_score,
        relevant=[RelevantOutcome(e.name, e.score, scene.points[e.mask]) for e in output.relevant],
        latency_ms=latency_ms,
        extra=extra,
    )


# fmt: off
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="r2s-replay", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("bag", type=Path, help="rosbag2 folder (MCAP or sqlite3)")
    add("--out", type=Path, default=Path("replay_report.json"),
        help="JSON report; <stem>.md and <stem>_renders/ go next to it")
    add("--points-topic", default=BagTopics.points)
    add("--odom-topic", default=BagTopics.odometry,
        help='"" when the bag has no odometry (clouds in the fixed frame or placed by tf)')
    add("--tf-topic", default=BagTopics.tf, help="replayed when the bag has it")
    add("--tf-static-topic", default=BagTopics.tf_static, help="replayed when the bag has it")
    add("--instruction-topic", default=BagTopics.instruction)
    add("--max-renders", type=int, default=20, help="PNG renders at most")
    offline = parser.add_argument_group("offline (default): the model runs in this process")
    offline.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                         help="checkpoint folder (default: the shipped model)")
    offline.add_argument("--llm-source", default="", help="override the checkpoint's LLM")
    offline.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    offline.add_argument("--params-file", type=Path, default=None,
                         help="node parameters for the scene map (config/r2s.yaml format)")
    live = parser.add_argument_group("--live: publish to a running r2s-node")
    live.add_argument("--live", action="store_true")
    live.add_argument("--speed", type=float, default=1.0, help="times the recorded pace")
    live.add_argument("--clock", action="store_true",
                      help="publish the bag time on /clock (run the node with use_sim_time)")
    live.add_argument("--node-name", default="r2s",
                      help="the node (its outputs: /<name>/result ...); offline: params section")
    live.add_argument("--record", type=Path, default=None,
                      help="new rosbag2 folder for its outputs (default: <stem>_outputs)")
    live.add_argument("--timeout", type=float, default=60.0,
                      help="seconds to wait for results after the last one came")
    live.add_argument("--wait-for-node", type=float, default=30.0,
                      help="seconds to wait for the node to appear")
    return parser.parse_args(argv)
# fmt: on


def main(argv: list[str] | None = None) -> int:
    """Entry point `r2s-replay`; exit code 2 and no report when the bag or model is unusable."""
    args = parse_args(argv)
    topics = BagTopics(
        args.points_topic, args.odom_topic, args.instruction_topic, args.tf_topic,
        args.tf_static_topic,
    )  # fmt: skip
    try:
        bag = ReplayBag(args.bag, topics)
        truth = load_ground_truth(bag)
        run = _run_live if args.live else _run_offline
        outcomes, meta, radius = run(bag, args)
    except (BagError, CheckpointError, DeviceError, ParameterError, ReplayError) as error:
        print(f"r2s-replay: {error}", file=sys.stderr)
        return 2
    report, scores = build_report(outcomes, truth, radius, meta)
    write_report(args.out, report, scores, truth, args.max_renders)
    print_summary(report)
    return 0


def _run_offline(
    bag: ReplayBag, args: argparse.Namespace
) -> tuple[list[Outcome], dict[str, Any], float]:
    """-> outcomes, report metadata, scoring radius (the scene's voxel size)."""
    parameters = NodeParameters()
    if args.params_file:
        parameters = parameters_from_file(args.params_file, args.node_name)
    settings = IngestSettings.from_parameters(parameters)
    if not (args.checkpoint / "config.json").is_file():
        raise CheckpointError(f"no checkpoint at {args.checkpoint}; pass --checkpoint PATH")
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, args.llm_source, device, parameters.score_threshold)
    outcomes, inputs = replay_offline(
        bag, model, settings, EncodingPolicy.from_parameters(parameters)
    )
    meta = {
        "mode": "offline",
        "bag": str(bag.path),
        "checkpoint": str(args.checkpoint),
        "device": device,
        "inputs": inputs,
    }
    return outcomes, meta, settings.accumulator.voxel_size


def _run_live(
    bag: ReplayBag, args: argparse.Namespace
) -> tuple[list[Outcome], dict[str, Any], float]:
    """-> outcomes, report metadata, scoring radius (the node's voxel size)."""
    # rclpy is imported only here: offline replays run without a ROS installation.
    from r2s_ros.bags.replay_live import LiveOptions, live_outcomes, replay_live, scene_cutoffs

    record = args.record
    if record is None:  # ours to replace, like the report itself
        record = args.out.with_name(args.out.stem + "_outputs")
        if (record / "metadata.yaml").is_file():
            shutil.rmtree(record)
    if record.exists():
        raise ReplayError(f"{record} exists; --record needs a new folder")
    options = LiveOptions(
        args.node_name, args.speed, args.timeout, args.wait_for_node, record, args.clock
    )
    run = replay_live(bag, options)
    settings = IngestSettings.from_parameters(run.parameters)
    radius = settings.accumulator.voxel_size
    scenes = scenes_at(bag, settings, scene_cutoffs(run))
    outcomes = live_outcomes(run, scenes, radius)
    meta = {
        "mode": "live",
        "bag": str(bag.path),
        "node": args.node_name,
        "model": run.node_model,
        "speed": args.speed,
        "recorded_bag": str(record),
        "inputs": {"published": run.published, "node": run.node_counts},
        "unmatched_results": run.unmatched_results,
    }
    return outcomes, meta, radius


if __name__ == "__main__":
    sys.exit(main())
