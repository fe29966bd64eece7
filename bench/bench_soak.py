"""Soak: a moving sensor streaming clouds into the node's intake while instructions keep coming.

A simulated depth camera (r2s_model/synthetic/scan_sim.py) loops through --rooms generated rooms
laid side by side, --frames-per-room frames in each, at --rate-hz; every --instruction-every-s an
instruction is submitted. The clouds and their odometry go through the node's own intake
(`SceneIngest`, the node's default parameters but `pose_source: odometry` and a --time-window-s, so
rooms left behind expire and come back: the scene never stops changing) and the instructions
through its own `InferenceWorker` with the moving-scene policy of the node's parameters, threads as
in the node (intake on this thread, the model on the worker's).

Simulated time runs --speedup times faster than real time: clouds come --speedup times as fast
in wall time (the scene changes faster per second of model time than on a robot, so reuse is
rarer, and the intake takes a larger share of the CPU than it would: both pessimistic). Answer
latency is wall time from submission to answer. The static-scene reference is measured at the
end, on the final scene with the stream stopped: a fresh worker's first instruction (encode and
segment), median of 3.

The model is a checkpoint (--checkpoint, e.g. the shipped one on a GPU with --speedup 1) or, by
default, the tests' tiny random model: what is measured is the policy, memory and drops, not
answer quality. Writes bench/results/soak.json.

    .venv/bin/python bench/bench_soak.py [--minutes 30] [--speedup 10] [--checkpoint PATH]
"""

from __future__ import annotations

# First: the node's OpenMP idle policy, r2s_model's short spin, must precede torch's load (run
# with OMP_WAIT_POLICY=PASSIVE for the tests' policy; the JSON records which).
import r2s_model  # noqa: F401

# isort: split
import argparse
import dataclasses
import platform
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import torch
from results_file import openmp_policy, write_result
from tqdm import tqdm

from r2s_model.checkpoint import load_model
from r2s_model.data.io import color_bytes
from r2s_model.synthetic.rooms import generate_room
from r2s_model.synthetic.scan_sim import ScanFrame, SensorModel, orbit_trajectory, scan_trajectory
from r2s_ros.bags.contract import START_NS
from r2s_ros.bags.messages import cloud_message, odometry_message
from r2s_ros.ingest import IngestSettings, SceneIngest
from r2s_ros.params import NodeParameters
from r2s_ros.worker import Answer, EncodingPolicy, InferenceWorker, InstructionJob

ROOM_SPACING_M = 12.0  # rooms side by side along x, inside the default ±50 m crop box
INSTRUCTIONS = [
    "the chair nearest the window",
    "something to put my laptop on",
    "the lamp closest to the bed",
    "the tallest cabinet",
]
STATIC_REPEATS = 3


def building(rooms: int, frames_per_room: int, points_per_m2: float) -> list[ScanFrame]:
    """One loop of the sensor: frames_per_room scans around each room in turn, poses in a map
    where room k lies k * ROOM_SPACING_M along x."""
    frames = []
    sensor = SensorModel(splat_m=1.2 / np.sqrt(points_per_m2))
    for seed in range(rooms):
        room = generate_room(seed, points_per_m2=points_per_m2)
        translations, rotations = orbit_trajectory(room.size, frames_per_room, seed=seed)
        offset = np.array([seed * ROOM_SPACING_M, 0.0, 0.0])
        for frame in scan_trajectory(
            room.points, color_bytes(room.colors), translations, rotations, sensor, seed=seed
        ):
            frames.append(dataclasses.replace(frame, translation=frame.translation + offset))
    return frames


def rss_mb() -> float:
    """Resident memory of this process now, MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclasses.dataclass(frozen=True)
class Answered:
    """What the bench keeps of an answer: not the answer (its scene and masks would make the
    bench's own memory grow)."""

    instruction_id: str
    status: str
    reused_encoding: bool
    encode_ms: float
    latency_s: float


class Answers:
    """The worker's answers, with their wall latency; resolves each job with None."""

    def __init__(self) -> None:
        self.items: list[Answered] = []
        self._lock = threading.Lock()

    def __call__(self, answer: Answer) -> None:
        latency_s = time.perf_counter() - answer.job.received_s
        status = answer.error or (answer.output.status.value if answer.output else "none")
        answered = Answered(
            answer.job.instruction_id,
            status,
            answer.reused_encoding,
            answer.encode_ms,
            latency_s,
        )
        with self._lock:
            self.items.append(answered)
        answer.job.done.set_result(None)


def static_latency_s(model: object, ingest: SceneIngest, policy: EncodingPolicy) -> dict:
    """A fresh worker's first instruction on the scene as it is (encode + segment), and a second
    one on the same scene (segment only); medians of STATIC_REPEATS."""
    first, again = [], []
    for repeat in range(STATIC_REPEATS):
        answers = Answers()
        worker = InferenceWorker(model, ingest.snapshot, answers, 2, policy)
        try:
            for text in (INSTRUCTIONS[repeat % len(INSTRUCTIONS)], "and once more"):
                job = InstructionJob(text, f"static-{repeat}")
                worker.submit(job)
                job.done.result()
        finally:
            worker.stop()
        first.append(answers.items[0].latency_s)
        again.append(answers.items[1].latency_s)
    return {"first_s": statistics.median(first), "reused_s": statistics.median(again)}


def soak(args: argparse.Namespace) -> dict:
    parameters = NodeParameters(pose_source="odometry", time_window_s=args.time_window_s)
    policy = EncodingPolicy.from_parameters(parameters)
    if args.checkpoint:
        model, model_name = load_model(args.checkpoint, "", args.device), str(args.checkpoint)
    else:
        from tests.model.tiny import tiny_model

        model, model_name = tiny_model(seed=3).eval(), "tests.model.tiny (random weights)"
    start = time.perf_counter()
    frames = building(args.rooms, args.frames_per_room, args.points_per_m2)
    setup_s = time.perf_counter() - start
    ingest = SceneIngest(IngestSettings.from_parameters(parameters))
    answers = Answers()
    worker = InferenceWorker(
        model, ingest.snapshot, answers, parameters.instruction_queue_size, policy
    )

    ticks = int(args.minutes * 60 * args.rate_hz)
    every = round(args.instruction_every_s * args.rate_hz)
    per_minute = round(60 * args.rate_hz)
    intake_ms, rss, jobs = [], [(0.0, rss_mb())], []
    begin = time.perf_counter()
    try:
        for tick in tqdm(range(ticks), desc="soak", unit="cloud", mininterval=5.0):
            sim_s = tick / args.rate_hz
            delay = begin + sim_s / args.speedup - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            frame = frames[tick % len(frames)]
            stamp_ns = START_NS + round(sim_s * 1e9)
            fed = time.perf_counter()
            ingest.add_odometry(odometry_message(frame, stamp_ns))
            ingest.add_cloud(cloud_message(frame, stamp_ns))
            intake_ms.append((time.perf_counter() - fed) * 1000.0)
            if tick % every == every - 1:
                text = INSTRUCTIONS[len(jobs) % len(INSTRUCTIONS)]
                jobs.append(InstructionJob(text, f"soak-{len(jobs)}"))
                worker.submit(jobs[-1])
            if tick % per_minute == per_minute - 1:
                rss.append(((tick + 1) / args.rate_hz / 60, rss_mb()))
        for job in jobs:
            job.done.result()
    finally:
        worker.stop()
    wall_s = time.perf_counter() - begin
    static = static_latency_s(model, ingest, policy)

    ids = {job.instruction_id for job in jobs}
    answered = [a for a in answers.items if a.instruction_id in ids]
    latencies = [a.latency_s for a in answered]
    statuses: dict[str, int] = {}
    for a in answered:
        statuses[a.status] = statuses.get(a.status, 0) + 1
    counts = dict(ingest.counts)
    p95 = percentile(latencies, 95)
    scene_points, scene_version = ingest.size()
    return {
        "simulated_minutes": args.minutes,
        "rate_hz": args.rate_hz,
        "instruction_every_s": args.instruction_every_s,
        "speedup_requested": args.speedup,
        "speedup_achieved": round(ticks / args.rate_hz / wall_s, 2),
        "wall_s": round(wall_s, 1),
        "setup_s": round(setup_s, 1),
        "model": model_name,
        "device": args.device,
        "parameters": {
            "time_window_s": parameters.time_window_s,
            "max_scene_points": parameters.max_scene_points,
            "voxel_size": parameters.voxel_size,
            "encoding_reuse_fraction": policy.reuse_fraction,
            "max_encoded_points": policy.max_points,
            "instruction_queue_size": parameters.instruction_queue_size,
        },
        "scan": {
            "rooms": args.rooms,
            "frames_per_room": args.frames_per_room,
            "points_per_m2": args.points_per_m2,
            "points_per_cloud_mean": round(float(np.mean([len(f.points) for f in frames])), 1),
        },
        "clouds": ticks,
        "intake_ms": {"p50": percentile(intake_ms, 50), "p95": percentile(intake_ms, 95)},
        "instructions": len(jobs),
        "answers": len(answered),
        "statuses": statuses,
        "encodings": sum(a.encode_ms > 0 for a in answered),
        "reused_encodings": sum(a.reused_encoding for a in answered),
        "encode_ms": {
            "p50": percentile([a.encode_ms for a in answered if a.encode_ms], 50),
            "max": max([a.encode_ms for a in answered], default=0.0),
        },
        "latency_s": {
            "p50": percentile(latencies, 50),
            "p95": p95,
            "max": max(latencies, default=float("nan")),
        },
        "static_scene_latency_s": static,
        "p95_over_static_first": round(p95 / static["first_s"], 3),
        "within_2x_static": bool(p95 <= 2 * static["first_s"]),
        "final_scene": {"voxels": scene_points, "version": scene_version},
        "dropped_inputs": {
            k: v for k, v in counts.items() if k.startswith(("dropped_", "points_"))
        },
        "intake_counts": counts,
        "rss_mb": [(round(minute, 2), round(mb, 1)) for minute, mb in rss],
        "rss_growth_mb_after_first_minute": round(rss[-1][1] - rss[1][1], 1)
        if len(rss) > 2
        else 0.0,
        # Warm-up (the map filling its time window, allocator pools) against a leak: a leak
        # grows as much in the second half as in the first.
        "rss_growth_mb_second_half": round(rss[-1][1] - rss[len(rss) // 2][1], 1),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "openmp": openmp_policy(),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="simulated minutes")
    parser.add_argument("--rate-hz", type=float, default=10.0)
    parser.add_argument("--instruction-every-s", type=float, default=10.0)
    parser.add_argument("--speedup", type=float, default=10.0, help="simulated s per wall s")
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--frames-per-room", type=int, default=150)
    parser.add_argument("--points-per-m2", type=float, default=400.0)
    parser.add_argument("--time-window-s", type=float, default=30.0)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    report = soak(args)
    path = write_result("soak", report)
    keys = ("wall_s", "speedup_achieved", "latency_s", "static_scene_latency_s", "encodings")
    for key in (*keys, "reused_encodings", "within_2x_static", "dropped_inputs"):
        print(f"{key}: {report[key]}")
    print(f"rss_mb: {report['rss_mb'][0]} -> {report['rss_mb'][-1]}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
