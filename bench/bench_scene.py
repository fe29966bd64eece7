"""Scene understanding latency on a 300k-point room: the scene parser against today's encoder.

Procedural room 0 of the benchmark generator, scanned densely and subsampled to --points.
Both paths start from the raw cloud and compute superpoints; then
  - encoder (today's R2S encoder: 0.02 m voxels, widths 32-160, 2 blocks), untrained weights;
  - parser (r2s_model/objects: 0.05 m voxels, widths 32-96, 1 block, superpoint context,
    adjacency and proposals), the shipped weights when present.
Median of --repeats runs after a warm-up. Writes bench/results/scene_<device>.json.

    .venv/bin/python bench/bench_scene.py [--device cuda] [--points 300000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from results_file import write_result
from rich.console import Console
from rich.table import Table

from r2s_model.encoder import EncoderConfig, SceneEncoder
from r2s_model.objects.checkpoint import DEFAULT_PARSER, load_parser
from r2s_model.objects.detect import detect_objects
from r2s_model.objects.parser import ParserConfig, SceneParser
from r2s_model.superpoints import SuperpointParams, compute_superpoints
from r2s_model.synthetic.rooms import generate_room


def _timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    value = function()
    return (time.perf_counter() - start) * 1000, value


@torch.no_grad()
def run(device: torch.device, num_points: int, repeats: int) -> dict:
    room = generate_room(0, points_per_m2=4000.0)
    keep = np.sort(np.random.default_rng(0).permutation(len(room.points))[:num_points])
    points, colors = room.points[keep], room.colors[keep].astype(np.float32)
    shipped = (DEFAULT_PARSER / "model.safetensors").is_file()
    parser = load_parser(DEFAULT_PARSER, device) if shipped else SceneParser(ParserConfig())
    parser = parser.to(device).eval()
    torch.manual_seed(0)
    encoder = SceneEncoder(EncoderConfig()).to(device).eval()
    params = SuperpointParams()

    def encode_today() -> None:
        superpoints = torch.from_numpy(compute_superpoints(points, colors, params)).to(device)
        encoder(
            torch.from_numpy(points).to(device),
            torch.from_numpy(colors).to(device),
            superpoints,
            torch.zeros(len(points), dtype=torch.long, device=device),
        )
        if device.type == "cuda":
            torch.cuda.synchronize()

    def parse() -> dict[str, float]:
        objects = detect_objects(parser, points, colors, params)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return {**objects.timings_ms, "objects": len(objects.proposals)}

    encode_today()  # warm-ups: allocator, spconv kernels, thread pools
    parse()
    today, parsed, stages = [], [], []
    for _ in range(repeats):
        today.append(_timed(encode_today)[0])
        elapsed, timings = _timed(parse)
        parsed.append(elapsed)
        stages.append(timings)
    median = {key: statistics.median(s[key] for s in stages) for key in stages[0]}
    return {
        "points": len(points),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "parser_weights": "shipped" if shipped else "untrained",
        "today_encoder_ms": round(statistics.median(today), 1),
        "parser_total_ms": round(statistics.median(parsed), 1),
        "parser_stages_ms": {k: round(float(v), 1) for k, v in median.items() if k != "objects"},
        "objects": int(median["objects"]),
        "parser_over_today": round(statistics.median(parsed) / statistics.median(today), 3),
        "target_ms": 1500,
        "repeats": repeats,
    }


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--device", default="cpu")
    arguments.add_argument("--points", type=int, default=300_000)
    arguments.add_argument("--repeats", type=int, default=3)
    args = arguments.parse_args()
    report = run(torch.device(args.device), args.points, args.repeats)
    path = write_result(f"scene_{torch.device(args.device).type}", report)
    table = Table(title=f"scene understanding, {report['points']} points ({report['device']})")
    table.add_column("path")
    table.add_column("ms", justify="right")
    table.add_row("today: superpoints + encoder", f"{report['today_encoder_ms']:.0f}")
    table.add_row("parser: superpoints + parser + proposals", f"{report['parser_total_ms']:.0f}")
    for stage, value in report["parser_stages_ms"].items():
        table.add_row(f"  {stage}", f"{value:.0f}")
    Console().print(table)
    print(f"parser / today = {report['parser_over_today']}; {report['objects']} objects; {path}")


if __name__ == "__main__":
    main()
