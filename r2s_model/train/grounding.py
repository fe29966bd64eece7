"""Training stage 2 of the recipe: the grounding head on cached LLM states.

Each step draws `data.batch_size` instructions of any scenes. Two-stage: every [REL] state
learns to pick its relevant object's proposal, and the [SEG] state learns to pick the target
(or "none") with the annotated relevant proposals as priors, augmented as at paper §3.3 (true
ones dropped, distractors added) so that stage 2 tolerates stage 1's mistakes, and some samples
whose target alone fits the question see the scene without it and learn "none" (the LLM's
[SEG] state still naming the target, as its mistaken answers to real no-target questions do).
Single-stage (the ablation): the single-stage [SEG] state, no priors. Validation replays
inference on the cached val states: stage 1's choices become stage 2's priors.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from r2s_model.checkpoint import save_checkpoint
from r2s_model.config import AugmentationConfig
from r2s_model.data.io import SyntheticDataset
from r2s_model.grounding.head import GroundingHead
from r2s_model.grounding.objects import ObjectSet
from r2s_model.model import R2SModel
from r2s_model.objects.cache import ObjectCache
from r2s_model.prompts import name_matches
from r2s_model.train.config import TrainConfig
from r2s_model.train.model_init import build_model
from r2s_model.train.samples import ASKED, UNMATCHED, InstructionSample, load_split
from r2s_model.train.states import SampleStates, read_states, states_folder

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)  # no-target score thresholds tried at export
VAL_KEYS = ("miou", "acc50", "no_target_acc", "relevant_recall", "relevant_precision")
IGNORE = -100


@dataclass
class GroundingBatch:
    """B instructions. objects (B, K); words (B, W, H) the question's states with word_valid
    (B, W); relevant_states (B, R, H) with relevant_valid (B, R), relevant_labels (B, R) int64
    (IGNORE where unmatched) and relevant_match (B, R, K) float32 (`name_matches` of each
    [REL]'s name); target_states (B, H), target_labels (B,) int64 (K = "none", IGNORE where
    unmatched), target_match (B, K); priors (B, P) int64 with prior_valid (B, P)."""

    objects: ObjectSet
    words: Tensor
    word_valid: Tensor
    relevant_states: Tensor
    relevant_valid: Tensor
    relevant_labels: Tensor
    relevant_match: Tensor
    target_states: Tensor
    target_labels: Tensor
    target_match: Tensor
    priors: Tensor
    prior_valid: Tensor

    def to(self, device: torch.device) -> GroundingBatch:
        moved = {
            name: getattr(self, name).to(device)
            for name in self.__dataclass_fields__
            if name != "objects"
        }
        return GroundingBatch(objects=self.objects.to(device), **moved)


class GroundingTraining(nn.Module):
    """forward(batch) -> {"total", "relevant", "target"} cross-entropy losses."""

    def __init__(self, head: GroundingHead, two_stage: bool) -> None:
        super().__init__()
        self.head = head
        self.two_stage = two_stage

    def forward(self, batch: GroundingBatch) -> dict[str, Tensor]:
        objects = batch.objects
        target = self.head.target_logits(
            batch.target_states, objects, batch.priors, batch.prior_valid, batch.words,
            batch.word_valid, batch.target_match,
        )  # fmt: skip
        # A cross-entropy with every label ignored is 0/0 = NaN: a batch whose targets the parser
        # all missed gets a zero loss instead (one with a graph, for backward).
        if batch.target_labels.ne(IGNORE).any():
            target_loss = F.cross_entropy(target, batch.target_labels, ignore_index=IGNORE)
        else:
            target_loss = (target * 0).sum()
        losses = {"target": target_loss}
        losses["relevant"] = target.new_zeros(())
        if self.two_stage and batch.relevant_labels.ne(IGNORE).any():
            logits = self.head.relevant_logits(
                batch.relevant_states, batch.relevant_valid, objects, batch.words,
                batch.word_valid, batch.relevant_match,
            )  # fmt: skip
            losses["relevant"] = F.cross_entropy(
                logits.flatten(0, 1), batch.relevant_labels.flatten(), ignore_index=IGNORE
            )
        losses["total"] = losses["target"] + losses["relevant"]
        return losses


def stack_batch(
    samples: list[InstructionSample],
    objects: dict[str, ObjectSet],
    labels: dict[str, list[tuple[str, str]]],
    states: dict[str, SampleStates],
    two_stage: bool,
    priors: list[list[int]],
    removed: list[list[int]] | None = None,
) -> GroundingBatch:
    """The batch of `samples` with the given prior proposals of each; `labels` holds each
    scene's objects' likeliest (colour, category) (`ObjectSet.labels`). A sample with
    `removed` proposals (`removed_target`) sees its scene without them, and no target."""
    sets = ObjectSet.stack([objects[s.scene_id] for s in samples])
    removed = removed or [[] for _ in samples]
    for row, gone in enumerate(removed):
        sets.valid[row, gone] = False
    size = len(sets)
    rows = [states[s.sample_id] for s in samples]
    count = max(1, max(len(r.relevant) for r in rows))
    hidden = rows[0].two_stage.shape[-1]
    length = max(len(r.words) for r in rows)
    words = torch.zeros(len(samples), length, hidden)
    word_valid = torch.zeros(len(samples), length, dtype=torch.bool)
    relevant = torch.zeros(len(samples), count, hidden)
    relevant_valid = torch.zeros(len(samples), count, dtype=torch.bool)
    relevant_labels = torch.full((len(samples), count), IGNORE)
    relevant_match = torch.zeros(len(samples), count, size)
    target_match = torch.zeros(len(samples), size)
    for row, (sample, state) in enumerate(zip(samples, rows, strict=True)):
        scene_labels = labels[sample.scene_id]
        names = sample.relevant_names[: len(state.relevant)]
        relevant_match[row, : len(names), : len(scene_labels)] = name_matches(names, scene_labels)
        if sample.target_name is not None:
            target_match[row, : len(scene_labels)] = name_matches(
                [sample.target_name], scene_labels
            )[0]
        words[row, : len(state.words)] = state.words.float()
        word_valid[row, : len(state.words)] = True
        relevant[row, : len(state.relevant)] = state.relevant.float()
        relevant_valid[row, : len(state.relevant)] = True
        for slot, label in enumerate(sample.relevant_objects[: len(state.relevant)]):
            unknown = label in (UNMATCHED, ASKED) or label in removed[row]
            relevant_labels[row, slot] = IGNORE if unknown else label
    targets = torch.tensor(
        [
            size if s.target_object is None or gone else IGNORE if s.target_object == UNMATCHED
            else s.target_object
            for s, gone in zip(samples, removed, strict=True)
        ]
    )  # fmt: skip
    width = max((len(p) for p in priors), default=0)
    prior_index = torch.zeros(len(samples), width, dtype=torch.long)
    prior_valid = torch.zeros(len(samples), width, dtype=torch.bool)
    for row, chosen in enumerate(priors):
        prior_index[row, : len(chosen)] = torch.tensor(chosen, dtype=torch.long)
        prior_valid[row, : len(chosen)] = True
    field = "two_stage" if two_stage else "single_stage"
    target_states = torch.stack([getattr(r, field).float() for r in rows])
    return GroundingBatch(
        sets, words, word_valid, relevant, relevant_valid, relevant_labels, relevant_match,
        target_states, targets, target_match, prior_index, prior_valid,
    )  # fmt: skip


def removed_target(
    sample: InstructionSample, augment: AugmentationConfig, rng: np.random.Generator
) -> list[int]:
    """The proposals to take out of `sample`'s scene, which turns it into a no-target sample:
    with probability `remove_target_prob`, its target's parts where the target alone fits the
    question (`InstructionSample.target_parts`), else none."""
    if not sample.target_parts or rng.random() >= augment.remove_target_prob:
        return []
    matched = () if sample.target_object in (None, UNMATCHED) else (sample.target_object,)
    return sorted({*sample.target_parts, *matched})


def training_priors(
    sample: InstructionSample,
    labels: list[tuple[str, str]],
    augment: AugmentationConfig,
    max_relevant: int,
    rng: np.random.Generator,
    removed: Sequence[int] = (),
) -> list[int]:
    """Stage-2 priors to train `sample` with, in a scene whose objects the parser labelled
    `labels` and from which the `removed` proposals are gone: the annotated relevant
    proposals, some dropped, maybe distractors added. A no-target question's asked name gets
    one of the proposals of that name, as stage 1 chooses one at inference."""
    relevant = list(sample.relevant_objects)
    if ASKED in relevant:
        fitting = np.flatnonzero(name_matches([sample.target_name], labels)[0].numpy())
        relevant[relevant.index(ASKED)] = int(rng.choice(fitting)) if len(fitting) else ASKED
    kept = [
        index
        for index in dict.fromkeys(relevant)
        if index >= 0 and index not in removed and rng.random() >= augment.drop_prob
    ]
    if rng.random() < augment.add_prob:
        others = [
            i
            for i in range(len(labels))
            if i not in kept and i != sample.target_object and i not in removed
        ]
        extra = int(rng.integers(1, augment.max_distractors + 1))
        kept += rng.permutation(others)[:extra].tolist() if others else []
    return kept[:max_relevant]


class GroundingTask:
    """The TrainingTask of the grounding stage (see loop.TrainingTask)."""

    val_keys = VAL_KEYS

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        data, root = config.data, Path(config.data.root)
        cache = ObjectCache(root, Path(config.parser))
        folder = states_folder(root, Path(config.init_from), cache)
        max_relevant = config.model.max_relevant
        train = SyntheticDataset(root, data.train_split)
        val = SyntheticDataset(root, data.val_split)
        self.train_objects, self.train_samples = load_split(
            train, cache, max_relevant, data.train_scenes
        )
        self.val_objects, self.val_samples = load_split(val, cache, max_relevant)
        parser = config.model.parser
        self.train_labels, self.val_labels = (
            {scene: found.labels(parser.colors, parser.categories) for scene, found in sets.items()}
            for sets in (self.train_objects, self.val_objects)
        )
        self.train_states = read_states(folder, data.train_split)
        self.val_states = read_states(folder, data.val_split)
        missing = [s.sample_id for s in self.val_samples if s.sample_id not in self.val_states]
        if missing or not self.train_states:
            raise FileNotFoundError(
                f"{folder}: states missing for {len(missing)} val samples or every train "
                f"sample; run r2s-cache-states --checkpoint {config.init_from} --data {root}"
            )
        # A partial train cache (an interrupted r2s-cache-states) trains on what it holds.
        self.train_samples = [s for s in self.train_samples if s.sample_id in self.train_states]
        self.two_stage = config.model.mode == "two_stage"
        self.data_info = {
            **train.info,
            "object_cache": str(cache.folder),
            "states": str(folder),
            "train_samples_used": len(self.train_samples),
            "train_scenes_used": len({s.scene_id for s in self.train_samples}),
        }
        self.model: R2SModel | None = None

    def build(self) -> nn.Module:
        self.model = build_model(self.config)
        return GroundingTraining(self.model.grounding, self.two_stage)

    def trainable_state(self, module: nn.Module) -> dict[str, Tensor]:
        return module.head.state_dict()

    def load_trainable_state(self, module: nn.Module, state: dict[str, Tensor]) -> None:
        module.head.load_state_dict(state)

    def batch(self, index: int, rank: int, world_size: int) -> tuple[GroundingBatch, int]:
        rng = np.random.default_rng([self.config.seed, index, rank])
        size = self.config.data.batch_size
        chosen = [self.train_samples[i] for i in rng.choice(len(self.train_samples), size)]
        model = self.config.model
        augment = model.augmentation
        removed = [removed_target(s, augment, rng) for s in chosen]
        priors = (
            [
                training_priors(
                    s, self.train_labels[s.scene_id], augment, model.max_relevant, rng, gone
                )
                for s, gone in zip(chosen, removed, strict=True)
            ]
            if self.two_stage
            else [[]] * size
        )
        batch = stack_batch(
            chosen, self.train_objects, self.train_labels, self.train_states, self.two_stage,
            priors, removed,
        )  # fmt: skip
        return batch, size

    @torch.no_grad()
    def validate(self, module: nn.Module, limit: int | None) -> dict[str, Any]:
        """Inference on cached val states: stage 1 picks the priors of stage 2."""
        return score_cached(
            module.head,
            self.val_samples[:limit],
            self.val_objects,
            self.val_labels,
            self.val_states,
            two_stage=self.two_stage,
            score_threshold=self.config.model.score_threshold,
        )

    def export(self, module: nn.Module, out: Path, metadata: dict[str, Any]) -> None:
        """Saves the whole model with the score threshold that maximises val mIoU."""
        sweep = {
            threshold: score_cached(
                module.head,
                self.val_samples,
                self.val_objects,
                self.val_labels,
                self.val_states,
                two_stage=self.two_stage,
                score_threshold=threshold,
            )["miou"]
            for threshold in THRESHOLDS
        }
        best = max(sweep, key=lambda threshold: (sweep[threshold], -abs(threshold - 0.5)))
        self.model.config = dataclasses.replace(self.model.config, score_threshold=best)
        metadata = {**metadata, "stage": "grounding", "score_threshold_sweep": sweep}
        save_checkpoint(self.model, out, metadata, dtype=getattr(torch, self.config.export_dtype))


@torch.no_grad()
def score_cached(
    head: GroundingHead,
    samples: list[InstructionSample],
    objects: dict[str, ObjectSet],
    labels: dict[str, list[tuple[str, str]]],
    states: dict[str, SampleStates],
    *,
    two_stage: bool,
    score_threshold: float,
    chunk: int = 128,
) -> dict[str, Any]:
    """Replays inference's choices on cached states -> mIoU, Acc@0.5, no-target accuracy,
    relevant recall/precision (over annotated relevant objects), per task category."""
    device = next(head.parameters()).device
    ious, found_relevant, chosen_relevant, annotated = [], 0, 0, 0
    categories = []
    for first in range(0, len(samples), chunk):
        part = samples[first : first + chunk]
        priors = [[] for _ in part]
        batch = stack_batch(part, objects, labels, states, two_stage, priors).to(device)
        if two_stage:
            logits = head.relevant_logits(
                batch.relevant_states, batch.relevant_valid, batch.objects, batch.words,
                batch.word_valid, batch.relevant_match,
            )  # fmt: skip
            picks = logits.argmax(-1).cpu()
            for row, sample in enumerate(part):
                count = int(batch.relevant_valid[row].sum())
                size = len(objects[sample.scene_id])
                chosen = [int(p) for p in picks[row, :count] if int(p) < size]
                priors[row] = list(dict.fromkeys(chosen))[: head.max_priors]
                annotated_objects = [i for i in sample.relevant_objects if i != ASKED]
                truth = set(annotated_objects) - {UNMATCHED}
                annotated += len(annotated_objects)
                found_relevant += len(truth & set(priors[row]))
                chosen_relevant += len(priors[row])
            batch = stack_batch(part, objects, labels, states, two_stage, priors).to(device)
        probabilities = (
            head.target_logits(
                batch.target_states,
                batch.objects,
                batch.priors,
                batch.prior_valid,
                batch.words,
                batch.word_valid,
                batch.target_match,
            )
            .softmax(-1)
            .cpu()
        )
        for row, sample in enumerate(part):
            size = len(objects[sample.scene_id])
            score, index = probabilities[row, :size].max(0)
            found = float(score) >= score_threshold and float(score) > float(probabilities[row, -1])
            if sample.target_object is None:
                ious.append(0.0 if found else 1.0)
            else:
                ious.append(float(sample.target_ious[int(index)]) if found else 0.0)
            categories.append(sample.category)
    ious_array = np.array(ious)
    per_category: dict[str, dict[str, float]] = defaultdict(dict)
    for category in sorted(set(categories)):
        chosen = ious_array[[c == category for c in categories]]
        per_category[category] = {"miou": float(chosen.mean()), "count": len(chosen)}
    no_target = ious_array[[c == "no_target" for c in categories]]
    return {
        "miou": float(ious_array.mean()) if len(ious) else None,
        "acc50": float((ious_array >= 0.5).mean()) if len(ious) else None,
        "no_target_acc": float(no_target.mean()) if len(no_target) else None,
        "relevant_recall": found_relevant / annotated if annotated else None,
        "relevant_precision": found_relevant / chosen_relevant if chosen_relevant else None,
        "num_samples": len(ious),
        "per_category": dict(per_category),
    }
