"""r2s-segment: R2S on a saved scan, no robot needed.

    r2s-segment CLOUD "the chair nearest the window" ["another instruction" ...] [--out DIR]
    r2s-segment CLOUD --interactive            # instructions from the terminal, one per line

CLOUD is a .ply, .pcd, .las, .laz, .npy or .npz file, or a rosbag2 folder whose PointCloud2
topic is accumulated by the node's intake (placed by its odometry when it has /odom). The cloud
is checked (units, up axis, extent), encoded once, and every instruction is answered on it; per
instruction DIR gets NNN_<instruction>.ply (the target), .png (two views) and .json (status,
answer, score, target box, relevant elements, timings). Exit codes: 0 done; 2 unusable input,
checkpoint or arguments, with nothing written.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from r2s_model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_model
from r2s_model.device import DeviceError, resolve_device
from r2s_model.model import R2SModel
from r2s_ros.params import NodeParameters, ParameterError, parameters_from_file
from r2s_ros.segment.bag_input import bag_folder, read_bag_cloud
from r2s_ros.segment.checks import UP_CHOICES, ModelFrame, SanityError, prepare
from r2s_ros.segment.outputs import file_stem, result_json, write_answer
from r2s_ros.segment.readers import Cloud, CloudFileError, read_cloud_file
from r2s_ros.segment.render import render_answer

PROMPT = "instruction (empty line or Ctrl-D ends)> "


# fmt: off
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="r2s-segment", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1],
    )
    add = parser.add_argument
    add("cloud", type=Path, help="point cloud file or rosbag2 folder")
    add("instructions", nargs="*", help="instructions to answer, in order")
    add("--out", type=Path, default=Path("r2s_segment"), help="folder for the answers' files")
    add("--interactive", action="store_true",
        help="after the given instructions, read more from the terminal (stdin)")
    fix = parser.add_argument_group("the cloud's units and axes (see the sanity checks)")
    fix.add_argument("--scale", type=float, default=1.0,
                     help="multiply coordinates into metres: 0.001 for millimetres")
    fix.add_argument("--up", choices=UP_CHOICES, default=None,
                     help="the cloud's up axis (default: z, checked); --up z skips the check")
    fix.add_argument("--any-extent", action="store_true",
                     help="accept clouds smaller or larger than a room")
    bag = parser.add_argument_group("rosbag2 input")
    bag.add_argument("--topic", default="/points", help="PointCloud2 topic")
    bag.add_argument("--odom-topic", default=None,
                     help='nav_msgs/Odometry topic placing the clouds (default: /odom when the '
                          'bag has it; "" for none: clouds taken in the first one\'s frame)')
    bag.add_argument("--params-file", type=Path, default=None,
                     help="node parameters for the voxel map (config/r2s.yaml format)")
    model = parser.add_argument_group("model")
    model.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                       help="checkpoint folder (default: the shipped model)")
    model.add_argument("--llm-source", default="", help="override the checkpoint's LLM")
    model.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    model.add_argument("--score-threshold", type=float, default=0.0,
                       help="below it a target is 'no target' (0..1; 0: the checkpoint's)")
    args = parser.parse_args(argv)
    if not args.instructions and not args.interactive:
        parser.error("give at least one instruction, or --interactive")
    if not args.scale > 0:
        parser.error(f"--scale must be > 0, got {args.scale}")
    if not 0 <= args.score_threshold < 1:
        parser.error(f"--score-threshold must be in [0, 1), got {args.score_threshold}")
    return args
# fmt: on


def main(argv: list[str] | None = None) -> int:
    """Entry point `r2s-segment`."""
    args = parse_args(argv)
    try:
        start = time.perf_counter()
        cloud = read_input(args)
        read_ms = (time.perf_counter() - start) * 1000.0
        frame, notes = prepare(cloud, scale=args.scale, up=args.up, any_extent=args.any_extent)
        device = resolve_device(args.device)
        model = load_model(args.checkpoint, args.llm_source, device, args.score_threshold)
    except (CloudFileError, SanityError, CheckpointError, DeviceError, ParameterError) as error:
        print(f"r2s-segment: {error}", file=sys.stderr)
        return 2
    colour = "with colour" if cloud.colors is not None else "no colour"
    print(f"{cloud.source}: {cloud.format}, {len(cloud.points)} points, {colour}")
    for note in notes:
        print(f"  note: {note}")
    session = Session(model, cloud, frame, args.out, read_ms)
    print(f"scene encoded in {session.encode_ms:.0f} ms")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for text in _instructions(args):
            session.answer(text)
    except KeyboardInterrupt:
        print()
    return 0


def read_input(args: argparse.Namespace) -> Cloud:
    """The cloud of a file, or of a rosbag2 folder's topic."""
    folder = bag_folder(args.cloud)
    if folder is None:
        return read_cloud_file(args.cloud)
    parameters = NodeParameters()
    if args.params_file is not None:
        parameters = parameters_from_file(args.params_file)
    return read_bag_cloud(folder, args.topic, args.odom_topic, parameters)


class Session:
    """A cloud encoded once in the model frame; answers instructions on it into `out`."""

    def __init__(
        self, model: R2SModel, cloud: Cloud, frame: ModelFrame, out: Path, read_ms: float
    ) -> None:
        self.model, self.cloud, self.frame, self.out = model, cloud, frame, out
        self.points = frame.apply(cloud.points)  # (N, 3) model frame
        self.scene = model.encode_scene(self.points, cloud.colors)
        self.encode_ms = self.scene.superpoints_ms + self.scene.encode_ms
        self.read_ms = read_ms
        self.answered = 0

    def answer(self, text: str) -> dict[str, Any]:
        """Segments one instruction, writes its files, prints a line; -> its JSON result."""
        start = time.perf_counter()
        output = self.model.segment(self.scene, text)
        timings = {"read": self.read_ms, **output.timings_ms}
        timings["segment"] = (time.perf_counter() - start) * 1000.0
        reused = self.answered > 0
        self.answered += 1
        result = result_json(output, self.cloud, self.frame, timings, reused_encoding=reused)
        relevant = [(element.name, element.mask) for element in output.relevant]
        status = f"{output.status.value}, score {output.target_score:.2f}"
        title = f"{output.instruction}  |  {status}  |  model: {output.answer or '-'}"
        target = output.target_mask
        figure = render_answer(self.points, self.cloud.colors, target, relevant, title)
        colors = None if self.cloud.colors is None else self.cloud.colors[target]
        stem = file_stem(self.answered, text)
        try:
            write_answer(self.out, stem, result, (self.cloud.points[target], colors), figure)
        finally:
            plt.close(figure)
        names = ", ".join(name for name, _ in relevant) or "-"
        print(
            f"[{self.answered}] {output.instruction!r}: {status}, {int(target.sum())} points, "
            f"answer {output.answer or '-'!r}, relevant: {names}, {timings['segment']:.0f} ms"
            f"\n    {result['files']['png']}"
        )
        return result


def _instructions(args: argparse.Namespace) -> Iterator[str]:
    """The instructions given, then with --interactive the lines typed until an empty one or
    end of input."""
    yield from args.instructions
    while args.interactive:
        print(PROMPT, end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line.strip():
            return
        yield line.strip()
