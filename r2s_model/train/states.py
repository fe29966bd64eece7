"""The LLM's hidden states of every instruction (its question's words, each [REL] and [SEG]),
cached for the grounding stage.

    r2s-cache-states --checkpoint runs/answer/model --data DIR [--splits train val]

The LLM (with the answer stage's LoRA) reads each scene's object tokens once (its KV-cache is
copied for every chunk of that scene's instructions, as inference shares it), then each
instruction teacher-forced with its gold answers, in the two-stage and the single-stage layout.
Writes `DIR/cache/states-<12 hex>/<split>/<scene_id>.pt`; the digest covers the checkpoint's
files and the object cache it read, so other weights never reuse a stale cache. Scenes already
written are skipped: an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from r2s_model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint
from r2s_model.data.io import SyntheticDataset
from r2s_model.device import resolve_device
from r2s_model.grounding.objects import ObjectSet
from r2s_model.model import R2SModel
from r2s_model.objects.cache import ObjectCache
from r2s_model.objects.checkpoint import DEFAULT_PARSER
from r2s_model.prompts import REL, SEG
from r2s_model.train.answer import answer_sequences
from r2s_model.train.samples import InstructionSample, by_scene, cached_objects, scene_samples

CHUNK = 16  # sequences per LLM call


@dataclass
class SampleStates:
    """words (W, H) float16 at the question's tokens (the same in both layouts); relevant (R, H)
    at the [REL]s; two_stage and single_stage (H,) at [SEG]."""

    words: Tensor
    relevant: Tensor
    two_stage: Tensor
    single_stage: Tensor


def states_folder(root: Path, checkpoint: Path, objects: ObjectCache) -> Path:
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        digest.update((Path(checkpoint) / name).read_bytes())
    digest.update(objects.folder.name.encode())
    return Path(root) / "cache" / f"states-{digest.hexdigest()[:12]}"


@torch.no_grad()
def scene_states(
    model: R2SModel, objects: ObjectSet, samples: list[InstructionSample]
) -> list[SampleStates]:
    """The states of one scene's samples."""
    objects = objects.to(model.device)
    tokens = model.scene_tokens(objects.category_probs, objects.color_probs)
    sequences = [s for sample in samples for s in answer_sequences(model, sample)]
    # Chunks of similar lengths waste little on padding (single-stage sequences are short).
    order = sorted(range(len(sequences)), key=lambda index: len(sequences[index].ids))
    hidden_rows: list[Tensor] = [torch.empty(0)] * len(sequences)
    id_rows: list[Tensor] = [torch.empty(0)] * len(sequences)
    for first in range(0, len(order), CHUNK):
        chunk = order[first : first + CHUNK]
        _, hidden, ids = model.teacher_forced(
            tokens, [sequences[index] for index in chunk], with_loss=False
        )
        for row, index in enumerate(chunk):
            hidden_rows[index] = hidden[row].half().cpu()
            id_rows[index] = ids[row].cpu()
    states = []
    for index in range(len(samples)):
        two, single = 2 * index, 2 * index + 1
        relevant = hidden_rows[two][model.state_slots(id_rows[two], REL)]
        target = hidden_rows[two][model.state_slots(id_rows[two], SEG)]
        alone = hidden_rows[single][model.state_slots(id_rows[single], SEG)]
        words = hidden_rows[two][: len(model.prompts.question(samples[index].question))]
        states.append(
            SampleStates(words.clone(), relevant.clone(), target[0].clone(), alone[0].clone())
        )
    return states


def build_state_cache(
    checkpoint: Path,
    root: Path,
    splits: tuple[str, ...],
    parser: Path = DEFAULT_PARSER,
    device: str = "cpu",
) -> Path:
    model = load_checkpoint(checkpoint, device=resolve_device(device))
    objects_cache = ObjectCache(root, parser)
    folder = states_folder(root, checkpoint, objects_cache)
    start = time.perf_counter()
    for split in splits:
        dataset = SyntheticDataset(root, split)
        (folder / split).mkdir(parents=True, exist_ok=True)
        for scene_id, records in tqdm(
            by_scene(dataset).items(), desc=f"states {split}", unit="scene"
        ):
            path = folder / split / f"{scene_id}.pt"
            if path.is_file():
                continue
            cached = objects_cache.scene(scene_id)
            samples = scene_samples(
                dataset.scene(scene_id), cached, records, model.config.max_relevant
            )
            states = scene_states(model, cached_objects(cached), samples)
            payload = {
                sample.sample_id: dataclasses.asdict(s)
                for sample, s in zip(samples, states, strict=True)
            }
            temporary = path.with_suffix(".tmp")
            torch.save(payload, temporary)
            temporary.replace(path)
    manifest = folder / "manifest.json"
    seconds = round(time.perf_counter() - start, 1)
    record = {"checkpoint": str(checkpoint), "object_cache": objects_cache.folder.name}
    manifest.write_text(json.dumps({**record, "last_run_seconds": seconds}, indent=1) + "\n")
    return folder


def read_states(folder: Path, split: str) -> dict[str, SampleStates]:
    """Every cached sample of a split, by sample id."""
    states = {}
    for path in sorted((Path(folder) / split).glob("*.pt")):
        for sample_id, values in torch.load(path, weights_only=True).items():
            states[sample_id] = SampleStates(**values)
    return states


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="r2s-cache-states", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="the answer stage's model")
    parser.add_argument("--data", type=Path, required=True, help="a folder from r2s-gen-data")
    parser.add_argument("--parser", type=Path, default=DEFAULT_PARSER, help="parser weights")
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"states: {build_state_cache(args.checkpoint, args.data, tuple(args.splits), args.parser)}"
    )


if __name__ == "__main__":
    main()
