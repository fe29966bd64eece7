"""r2s-train: train an R²S model on a synthetic split.

    r2s-train --config configs/train/default.yaml [--set optim.steps=100 model.mode=single_stage]
    torchrun --nproc-per-node 4 -m r2s_model.train.cli --config ...   (data-parallel)

Rerunning the same command continues from `<out>/resume.pt` if it exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from r2s_model.config import ConfigError
from r2s_model.device import DeviceError
from r2s_model.train.config import load_train_config
from r2s_model.train.trainer import Trainer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="r2s-train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="training YAML (configs/train/)")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, e.g. optim.lr=1e-4"
    )
    args = parser.parse_args(argv)
    try:
        config = load_train_config(args.config, args.set)
    except ConfigError as error:
        parser.error(str(error))
    command = ["r2s-train", *(sys.argv[1:] if argv is None else argv)]
    try:
        trainer = Trainer(config, command)
    except DeviceError as error:
        parser.error(str(error))
    summary = trainer.run()
    if not trainer.dist.is_main:
        return
    if not summary:
        print(f"stopped at step {trainer.step}; rerun the same command to resume")
    else:
        keys = ("num_samples", "miou", "acc25", "acc50", "no_target_acc", "relevant_recall")
        print(json.dumps({k: summary.get(k) for k in keys}, indent=2))
        print(f"model: {Path(config.out) / 'model'}  curves: {Path(config.out) / 'curves.png'}")


if __name__ == "__main__":
    main()
