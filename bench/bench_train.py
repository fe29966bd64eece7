"""Training speed of the shipped two-stage recipe on this machine.

Generates a few scenes like the shipped model's data and caches their objects with the shipped
parser, then times optimiser steps (median, after a warm-up step) of each stage as
configs/train/answer.yaml and configs/train/grounding.yaml set them up: an answer-stage step
(the LLM's LoRA), r2s-cache-states on the resulting model, and a grounding-stage step in
two-stage and in single-stage mode. Writes bench/results/training.json: seconds/step and
samples/s per stage, the state cache's samples/s, and the two-stage / single-stage ratio of
the grounding step.

    .venv/bin/python bench/bench_train.py [--steps 4] [--threads 0] [--device auto]
        [--llm-source "tiny-llama(hidden=64,layers=2,heads=4,seed=0)"]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from results_file import write_result

from r2s_model.objects.cache import build_cache
from r2s_model.synthetic.generate import generate_dataset
from r2s_model.train.cli import r2s_task
from r2s_model.train.config import load_train_config
from r2s_model.train.loop import Trainer
from r2s_model.train.states import build_state_cache

CONFIGS = Path(__file__).parents[1] / "configs" / "train"
ANSWER, GROUNDING = CONFIGS / "answer.yaml", CONFIGS / "grounding.yaml"


def overrides(data: Path, out: Path, args: argparse.Namespace) -> list[str]:
    values = [f"data.root={data}", f"out={out}", f"threads={args.threads}", f"device={args.device}"]
    return values + ([f"model.llm_source={args.llm_source}"] if args.llm_source else [])


def time_steps(trainer: Trainer, steps: int) -> dict[str, float]:
    trainer.optimiser_step()  # warm-up: allocator, kernels
    seconds, samples = [], 0
    for _ in range(steps):
        start = time.perf_counter()
        _, count = trainer.optimiser_step()
        seconds.append(time.perf_counter() - start)
        samples += count
    return {"seconds_per_step": statistics.median(seconds), "samples_per_s": samples / sum(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="0 = torch's default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--llm-source", default="", help="another LLM than the configs' own")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data, runs = Path(folder) / "data", Path(folder) / "runs"
        generate_dataset(
            data, seed=2026, scenes={"train": 3, "val": 1}, samples_per_scene=8,
            points_per_m2=1000.0, workers=1,
        )  # fmt: skip
        build_cache(data)
        config = load_train_config(ANSWER, overrides(data, runs / "answer", args))
        trainer = Trainer(config, r2s_task(config), ["bench"])
        answer = time_steps(trainer, args.steps)
        model = runs / "answer" / "model"
        trainer.task.export(trainer.model, model, {})
        num_samples = len(trainer.task.val_samples) + sum(
            len(s) for s in trainer.task.train_by_scene.values()
        )
        start = time.perf_counter()
        build_state_cache(model, data, ("train", "val"))
        states_s = time.perf_counter() - start
        grounding = {}
        for mode in ("two_stage", "single_stage"):
            extra = [f"init_from={model}", f"model.mode={mode}"]
            config = load_train_config(GROUNDING, overrides(data, runs / mode, args) + extra)
            grounding[mode] = time_steps(Trainer(config, r2s_task(config), ["bench"]), args.steps)
    report = {
        "configs": [ANSWER.name, GROUNDING.name],
        "llm_source": config.model.llm_source,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "steps_timed": args.steps,
        "answer": answer,
        "states": {
            "seconds": states_s,
            "samples": num_samples,
            "samples_per_s": num_samples / states_s,
        },
        "grounding": grounding,
        "two_stage_over_single_stage": grounding["two_stage"]["seconds_per_step"]
        / grounding["single_stage"]["seconds_per_step"],
    }
    print(write_result("training", report))
    print(report)


if __name__ == "__main__":
    main()
