"""The R2S training task: instruction samples of a generated split, benchmark validation, and
the exported checkpoint (r2s_model.checkpoint format). The loop itself is `loop.Trainer`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from r2s_model.checkpoint import save_checkpoint
from r2s_model.data.io import SyntheticDataset
from r2s_model.eval.evaluate import evaluate
from r2s_model.eval.metrics import summarize
from r2s_model.model import R2SModel, TrainingBatch
from r2s_model.train.batches import SceneBatcher
from r2s_model.train.config import TrainConfig
from r2s_model.train.loop import Trainer

VAL_KEYS = ("miou", "acc25", "acc50", "no_target_acc", "relevant_recall", "num_samples")


class R2STask:
    """The TrainingTask of `R2SModel` (see loop.TrainingTask)."""

    val_keys = VAL_KEYS

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.train_set = SyntheticDataset(Path(config.data.root), config.data.train_split)
        self.val_set = SyntheticDataset(Path(config.data.root), config.data.val_split)
        self.batcher = SceneBatcher(
            self.train_set, config.data, config.model.max_relevant, config.seed
        )
        self.data_info = self.train_set.info

    def build(self) -> nn.Module:
        return R2SModel.build(self.config.model)

    def trainable_state(self, module: nn.Module) -> dict[str, Tensor]:
        return module.trainable_state()

    def load_trainable_state(self, module: nn.Module, state: dict[str, Tensor]) -> None:
        module.load_trainable_state(state)

    def batch(self, index: int, rank: int, world_size: int) -> tuple[TrainingBatch, int]:
        batch = self.batcher.batch(index, rank, world_size)
        return batch, len(batch.samples)

    def validate(self, module: nn.Module, limit: int | None) -> dict[str, Any]:
        """Scores the first `limit` val samples."""
        results, _ = evaluate(module, self.val_set, limit=limit)
        return summarize(results)

    def export(self, module: nn.Module, out: Path, metadata: dict[str, Any]) -> None:
        save_checkpoint(module, out, metadata, dtype=getattr(torch, self.config.export_dtype))


def r2s_trainer(config: TrainConfig, command: list[str] | None = None) -> Trainer:
    """The loop over the R2S task."""
    return Trainer(config, R2STask(config), command or [])
