"""A trained checkpoint with the heads and link threshold of a fine-tuned copy of its parser.

    python -m r2s_model.train.refit_parser --checkpoint runs/grounding-800/model \\
        --parser runs/parser-scans/model --out r2s_model/weights/default

The R²S stages read, per object, the parser trunk's pooled features (`TRUNK`: encoder, input
projection, transformer layers, norm), its category and colour evidence (the heads) and its box
(the grouping: link head and threshold). A parser whose heads alone were fine-tuned
(`train_modules` in `configs/train/parser_scans.yaml`) leaves the features the stages were trained
on unchanged, so its heads can replace the checkpoint's without retraining them: this checks
that every trunk tensor is equal and refuses otherwise (a retrained trunk needs the stages
retrained). The checkpoint's metadata records the parser, its command and the refit's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from r2s_model.checkpoint import (
    CheckpointError,
    read_checkpoint_config,
    read_weights,
    write_weights_folder,
)
from r2s_model.objects.checkpoint import load_parser, parser_metadata

TRUNK = ("encoder.", "input.", "layers.", "norm.")
PREFIX = "parser."


def refit(checkpoint: Path, parser_folder: Path, out: Path, command: list[str]) -> list[str]:
    """Writes `out`: `checkpoint` with the heads and link threshold of `parser_folder` -> the
    parser tensors replaced. CheckpointError when the parser's shape or trunk differ."""
    description = read_checkpoint_config(checkpoint)
    state = read_weights(checkpoint)
    parser = load_parser(parser_folder)
    own = dict(description["config"]["parser"])
    new = json.loads(json.dumps(dataclasses.asdict(parser.config)))
    if {**own, "link_threshold": None} != {**new, "link_threshold": None}:
        raise CheckpointError(
            f"{parser_folder}: its parser config differs from {checkpoint}'s beyond the link "
            "threshold; only a fine-tuned copy of the checkpoint's parser can replace it"
        )
    dtype = next(v.dtype for v in state.values() if v.is_floating_point())  # as stored
    replaced = []
    for name, tensor in parser.state_dict().items():
        key = PREFIX + name
        current = state[key]
        if name.startswith(TRUNK):
            if not torch.equal(current.float(), tensor.to(current.dtype).float()):
                raise CheckpointError(
                    f"{parser_folder}: trunk tensor {name} differs from {checkpoint}'s; the "
                    "R²S stages were trained on the trunk's features and would need retraining"
                )
        elif not torch.equal(current, tensor.to(current.dtype)):
            state[key] = tensor
            replaced.append(name)
    description["config"]["parser"]["link_threshold"] = parser.config.link_threshold
    description["metadata"]["parser_refit"] = {
        "command": command,
        "from_checkpoint": str(checkpoint),
        "parser": str(parser_folder),
        "parser_command": parser_metadata(parser_folder).get("command"),
        "link_threshold": {"before": own["link_threshold"], "after": new["link_threshold"]},
        "replaced": replaced,
    }
    write_weights_folder(out, state, description, dtype)
    return replaced


def main(argv: list[str] | None = None) -> int:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--checkpoint", type=Path, required=True, help="an r2s checkpoint")
    arguments.add_argument("--parser", type=Path, required=True, help="a fine-tuned parser folder")
    arguments.add_argument("--out", type=Path, required=True, help="the new checkpoint folder")
    args = arguments.parse_args(argv)
    command = ["python", "-m", "r2s_model.train.refit_parser", *(argv or sys.argv[1:])]
    try:
        replaced = refit(args.checkpoint, args.parser, args.out, command)
    except CheckpointError as error:
        print(f"refit_parser: {error}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(replaced)} parser tensors replaced ({', '.join(replaced)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
