"""r2s-train and r2s-pretrain: one command line for every training task.

    r2s-train --config configs/train/answer.yaml           (stage "answer": the LLM's LoRA)
    r2s-train --config configs/train/grounding.yaml [--set model.mode=single_stage]
    r2s-pretrain --config configs/train/pretrain.yaml [--set optim.lr=1e-3]
    torchrun --nproc-per-node 4 -m r2s_model.train.cli --config ...   (data-parallel R2S)

Rerunning the same command continues from `<out>/resume.pt` if it exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from r2s_model.config import ConfigError
from r2s_model.device import DeviceError
from r2s_model.train.answer import AnswerTask
from r2s_model.train.config import PretrainConfig, RunConfig, TrainConfig, load_train_config
from r2s_model.train.grounding import GroundingTask
from r2s_model.train.loop import Trainer, TrainingTask
from r2s_model.train.pretrain import ParserTask


def run(
    prog: str,
    description: str,
    kind: type[RunConfig],
    make_task: Callable[[RunConfig], TrainingTask],
    argv: list[str] | None,
) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", type=Path, help="training YAML (configs/train/)")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, e.g. optim.lr=1e-4"
    )
    args = parser.parse_args(argv)
    try:
        config = load_train_config(args.config, args.set, kind)
    except ConfigError as error:
        parser.error(str(error))
    command = [prog, *(sys.argv[1:] if argv is None else argv)]
    task = make_task(config)
    try:
        trainer = Trainer(config, task, command)
    except DeviceError as error:
        parser.error(str(error))
    summary = trainer.run()
    if not trainer.dist.is_main:
        return
    if not summary:
        print(f"stopped at step {trainer.step}; rerun the same command to resume")
    else:
        print(json.dumps({k: summary.get(k) for k in task.val_keys}, indent=2))
        print(f"model: {Path(config.out) / 'model'}  curves: {Path(config.out) / 'curves.png'}")


def main(argv: list[str] | None = None) -> None:
    run("r2s-train", "Train a stage of the R2S recipe.", TrainConfig, r2s_task, argv)


def r2s_task(config: TrainConfig) -> TrainingTask:
    """The task of the config's stage."""
    return AnswerTask(config) if config.stage == "answer" else GroundingTask(config)


def pretrain_main(argv: list[str] | None = None) -> None:
    run(
        "r2s-pretrain",
        "Pretrain the scene parser on the benchmark's per-point labels.",
        PretrainConfig,
        ParserTask,
        argv,
    )


if __name__ == "__main__":
    main()
