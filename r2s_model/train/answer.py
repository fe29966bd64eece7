"""Training stage 1 of the recipe: the LLM's LoRA learns to write both stages' answers.

Teacher forcing on the answer tokens only (names with [REL], the target's name with [SEG], or
"nothing"), after the scene's object tokens and the question, in the two-stage and the
single-stage layout (r2s_model/prompts.py). Each step is one scene with several of its
instructions, so the scene's object tokens are built once. The grounding head does not train
here; its training (r2s_model/train/grounding.py) reads the hidden states this LLM produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from r2s_model.checkpoint import save_checkpoint
from r2s_model.data.io import SyntheticDataset
from r2s_model.model import R2SModel
from r2s_model.objects.cache import ObjectCache
from r2s_model.prompts import IGNORE_INDEX, TokenSequence
from r2s_model.train.config import TrainConfig
from r2s_model.train.model_init import build_model, scene_at
from r2s_model.train.samples import InstructionSample, load_split

VAL_KEYS = ("lm_loss", "answer_token_acc", "num_samples")


@dataclass
class AnswerBatch:
    """One scene's objects, category_probs (K, C) and color_probs (K, L), and the sequences of
    some of its instructions."""

    category_probs: Tensor
    color_probs: Tensor
    sequences: list[TokenSequence]

    def to(self, device: torch.device) -> AnswerBatch:
        return AnswerBatch(
            self.category_probs.to(device), self.color_probs.to(device), self.sequences
        )


class AnswerTraining(nn.Module):
    """forward(batch) -> {"total": LM loss over the answer tokens}."""

    def __init__(self, model: R2SModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: AnswerBatch) -> dict[str, Tensor]:
        tokens = self.model.scene_tokens(batch.category_probs, batch.color_probs)
        loss, _, _ = self.model.teacher_forced(tokens, batch.sequences)
        return {"total": loss}


def answer_sequences(model: R2SModel, sample: InstructionSample) -> list[TokenSequence]:
    """A sample's two-stage and single-stage sequences."""
    prompts = model.prompts
    return [
        prompts.two_stage_sequence(sample.question, sample.relevant_names, sample.target_name),
        prompts.single_stage_sequence(sample.question, sample.target_name),
    ]


class AnswerTask:
    """The TrainingTask of the answer stage (see loop.TrainingTask)."""

    val_keys = VAL_KEYS

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        data = config.data
        cache = ObjectCache(Path(data.root), Path(config.parser))
        max_relevant = config.model.max_relevant
        train = SyntheticDataset(Path(data.root), data.train_split)
        val = SyntheticDataset(Path(data.root), data.val_split)
        self.train_objects, train_samples = load_split(
            train, cache, max_relevant, data.train_scenes
        )
        self.val_objects, self.val_samples = load_split(val, cache, max_relevant)
        self.train_by_scene: dict[str, list[InstructionSample]] = {}
        for sample in train_samples:
            self.train_by_scene.setdefault(sample.scene_id, []).append(sample)
        self.scene_ids = sorted(self.train_by_scene)
        self.data_info = {**train.info, "object_cache": str(cache.folder)}
        self.model: R2SModel | None = None

    def build(self) -> nn.Module:
        self.model = build_model(self.config)
        self.model.grounding.requires_grad_(False)
        return AnswerTraining(self.model)

    def trainable_state(self, module: nn.Module) -> dict[str, Tensor]:
        return module.model.trainable_state()

    def load_trainable_state(self, module: nn.Module, state: dict[str, Tensor]) -> None:
        module.model.load_trainable_state(state)

    def batch(self, index: int, rank: int, world_size: int) -> tuple[AnswerBatch, int]:
        scene_id = scene_at(self.scene_ids, self.config.seed, index * world_size + rank)
        samples = self.train_by_scene[scene_id]
        rng = np.random.default_rng([self.config.seed, index, rank])
        count = min(len(samples), self.config.data.samples_per_scene)
        chosen = [samples[i] for i in sorted(rng.choice(len(samples), count, replace=False))]
        return self._batch(self.train_objects[scene_id], chosen), count

    def _batch(self, objects, samples: list[InstructionSample]) -> AnswerBatch:
        sequences = [s for sample in samples for s in answer_sequences(self.model, sample)]
        return AnswerBatch(objects.category_probs, objects.color_probs, sequences)

    @torch.no_grad()
    def validate(self, module: nn.Module, limit: int | None) -> dict[str, Any]:
        """Teacher-forced LM loss and answer-token accuracy on the first `limit` val samples."""
        samples = self.val_samples[:limit]
        losses, correct, total = [], 0, 0
        model = module.model
        for scene_id in dict.fromkeys(s.scene_id for s in samples):
            batch = self._batch(
                self.val_objects[scene_id], [s for s in samples if s.scene_id == scene_id]
            ).to(model.device)
            tokens = model.scene_tokens(batch.category_probs, batch.color_probs)
            loss, hidden, ids = model.teacher_forced(tokens, batch.sequences)
            losses.append(float(loss))
            logits = model.llm.get_output_embeddings()(hidden[:, :-1])
            labels = torch.full_like(ids, IGNORE_INDEX)
            for row, sequence in enumerate(batch.sequences):
                labels[row, : len(sequence.labels)] = torch.tensor(sequence.labels)
            labels = labels[:, 1:]
            scored = labels != IGNORE_INDEX
            correct += int((logits.argmax(-1) == labels)[scored].sum())
            total += int(scored.sum())
        return {
            "lm_loss": float(np.mean(losses)) if losses else None,
            "answer_token_acc": correct / total if total else None,
            "num_samples": len(samples),
        }

    def export(self, module: nn.Module, out: Path, metadata: dict[str, Any]) -> None:
        dtype = getattr(torch, self.config.export_dtype)
        save_checkpoint(module.model, out, {**metadata, "stage": "answer"}, dtype=dtype)
