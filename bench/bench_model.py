"""Latency and memory of R2S inference on a 100k-point scene with the default LLM.

The scene is procedural room 0 of the benchmark generator, subsampled to --points.

Writes bench/results/model_<device>.json: per-stage latency (median of --repeats runs), the
second instruction on an unchanged scene, single- vs two-stage, and peak memory, with the ratios
the design aims at. The R2S heads are untrained (random, seeded) around the real default LLM:
what is measured is the compute path. Untrained heads never stop generating on their own, so
generation is capped at the length of the answers our prompts train for (--max-new-tokens,
default 8 per stage: " chair[REL], window[REL]<eos>" is 6 tokens); decoding is greedy, so
repeated runs generate the same tokens, and the count is reported. On CPU each token of the
135M LLM costs ~40 ms (reading its 540 MB of float32 weights once per token), so answer length
drives the stages' time.

    .venv/bin/python bench/bench_model.py [--device cuda] [--points 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import resource
import statistics
import time

import numpy as np
import torch
from results_file import write_result
from rich.console import Console
from rich.table import Table

from r2s_model.config import R2SConfig
from r2s_model.llm import load_llm
from r2s_model.model import R2SModel
from r2s_model.superpoints import compute_superpoints
from r2s_model.synthetic.rooms import generate_room

INSTRUCTIONS = ["the chair nearest the window", "the tallest box next to the wall"]


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples), 1)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(
    device: torch.device, num_points: int, repeats: int, max_new_tokens: int, llm_dtype: str
) -> dict:
    room = generate_room(0)
    keep = np.sort(np.random.default_rng(0).permutation(len(room.points))[:num_points])
    points, colors = room.points[keep], room.colors[keep]
    config = R2SConfig(stage1_max_new_tokens=max_new_tokens, stage2_max_new_tokens=max_new_tokens)
    models = {
        mode: R2SModel(dataclasses.replace(config, mode=mode), load_llm()).to(device).eval()
        for mode in ("two_stage", "single_stage")
    }
    for model in models.values():
        model.llm.to(getattr(torch, llm_dtype))
    start = time.perf_counter()
    compute_superpoints(points, colors)  # warm-up of caches and thread pools
    results: dict[str, dict[str, float]] = {}
    for mode, model in models.items():
        model.segment(model.encode_scene(points, colors), INSTRUCTIONS[0])  # warm-up
        first, second = [], []
        stage_times: dict[str, list[float]] = {}
        for _ in range(repeats):
            start = time.perf_counter()
            scene = model.encode_scene(points, colors)
            output = model.segment(scene, INSTRUCTIONS[0])
            first.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            model.segment(scene, INSTRUCTIONS[1])
            second.append((time.perf_counter() - start) * 1000)
            tokens = output.generated_tokens
            for stage, ms in output.timings_ms.items():
                stage_times.setdefault(stage, []).append(ms)
        results[mode] = {
            "first_instruction_ms": _median_ms(first),
            "second_instruction_same_scene_ms": _median_ms(second),
            **{f"{stage}_ms": _median_ms(ms) for stage, ms in stage_times.items()},
            "num_superpoints": scene.num_superpoints,
            "generated_tokens": tokens,
        }
    two, one = results["two_stage"], results["single_stage"]
    return {
        "benchmark": "model_inference",
        "device": str(device),
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "num_points": len(points),
        "llm": models["two_stage"].llm_bundle.source,
        "repeats": repeats,
        "max_new_tokens_per_stage": max_new_tokens,
        "llm_dtype": llm_dtype,
        "results": results,
        "ratios": {
            "second_over_first_two_stage": round(
                two["second_instruction_same_scene_ms"] / two["first_instruction_ms"], 3
            ),
            "two_stage_over_single_stage": round(
                two["first_instruction_ms"] / one["first_instruction_ms"], 3
            ),
        },
        "peak_memory_mb": round(_peak_memory_mb(device), 1),
        "targets": {
            "superpoints_ms": 500,
            "two_stage_total_ms_cpu": 3000,
            "second_over_first": 0.6,
            "two_stage_over_single_stage": 1.4,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--llm-dtype", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args()
    device = torch.device(args.device)
    report = run(device, args.points, args.repeats, args.max_new_tokens, args.llm_dtype)
    path = write_result(f"model_{device.type}_{args.llm_dtype}", report)

    table = Table(title=f"R2S inference, {args.points} points, {device}")
    table.add_column("measure")
    for mode in report["results"]:
        table.add_column(mode, justify="right")
    for key in report["results"]["two_stage"]:
        table.add_row(key, *(str(report["results"][m].get(key, "-")) for m in report["results"]))
    console = Console()
    console.print(table)
    console.print(report["ratios"], f"peak memory {report['peak_memory_mb']} MB", f"-> {path}")


if __name__ == "__main__":
    main()
