"""Training speed of the shipped recipe: two-stage vs single-stage steps on this machine.

Generates a few scenes like the shipped model's data, builds the Trainer of
configs/train/default.yaml (default LLM, LoRA) for each mode and times optimiser steps after a
warm-up step. Writes bench/results/training.json: seconds/step, samples/s, and the two-stage /
single-stage ratio of the same run.

    .venv/bin/python bench/bench_train.py [--steps 4] [--threads 0] [--device auto]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from results_file import write_result

from r2s_model.synthetic.generate import generate_dataset
from r2s_model.train.config import load_train_config
from r2s_model.train.trainer import r2s_trainer

CONFIG = Path(__file__).parents[1] / "configs" / "train" / "default.yaml"


def time_steps(data: Path, out: Path, mode: str, args: argparse.Namespace) -> dict[str, float]:
    overrides = [f"data.root={data}", f"out={out}", f"model.mode={mode}"]
    overrides += [f"threads={args.threads}", f"device={args.device}"]
    trainer = r2s_trainer(load_train_config(CONFIG, overrides))
    trainer.optimiser_step()  # warm-up: allocator, spconv kernels
    seconds, samples = [], 0
    for _ in range(args.steps):
        start = time.perf_counter()
        _, count = trainer.optimiser_step()
        seconds.append(time.perf_counter() - start)
        samples += count
    median = statistics.median(seconds)
    return {"seconds_per_step": median, "samples_per_s": samples / sum(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="0 = torch's default")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        generate_dataset(
            data, seed=2026, scenes={"train": 3, "val": 1}, samples_per_scene=8,
            points_per_m2=1000.0, workers=1,
        )  # fmt: skip
        modes = {
            mode: time_steps(data, Path(folder) / mode, mode, args)
            for mode in ("two_stage", "single_stage")
        }
    report = {
        "config": str(CONFIG.name),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "steps_timed": args.steps,
        **modes,
        "two_stage_over_single_stage": modes["two_stage"]["seconds_per_step"]
        / modes["single_stage"]["seconds_per_step"],
    }
    print(write_result("training", report))
    print(report)


if __name__ == "__main__":
    main()
