"""Dense pretraining of the scene parser on the benchmark's per-point labels.

    r2s-pretrain --config configs/train/pretrain.yaml [--set optim.steps=100 ...]

Category per superpoint (class-balanced), the object's color name, and same-object links
between touching superpoints, on augmented views of generated rooms (simulated accumulated
scans, or cut-outs of the whole room; rotated and recolored). Validation scores the val scenes
whole, as `r2s-eval --task scene` does, and simulated scans of them (`scan_*` keys). A run can
start from a parser's weights (`init_from`) and train only some of its parts
(`train_modules`). Rerunning the same command continues from `<out>/resume.pt`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from r2s_model.config import ConfigError
from r2s_model.data.io import SceneArrays, read_scene, scene_ids
from r2s_model.eval.scene_eval import check_vocabulary, evaluate_scenes, parsed_scenes
from r2s_model.objects.batches import ParserBatch, augment, parser_batch
from r2s_model.objects.checkpoint import load_parser, parser_metadata, save_parser
from r2s_model.objects.losses import ParserLossWeights, parser_losses
from r2s_model.objects.parser import SceneParser
from r2s_model.objects.targets import IGNORE, superpoint_targets
from r2s_model.train.config import PretrainConfig

SCENE_KEYS = ("semantic_acc", "semantic_macro_acc", "instance_recall50", "instance_precision50")
VAL_KEYS = (*SCENE_KEYS, *(f"scan_{key}" for key in SCENE_KEYS), "encode_ms", "num_scenes")
CLASS_WEIGHT_SCENES = 50  # train scenes counted for the class balance


class ParserTraining(nn.Module):
    """The parser and its losses: forward(batch) -> loss terms and "total". The parser's parts
    named in `frozen` neither learn nor update their normalisation statistics."""

    def __init__(
        self,
        parser: SceneParser,
        class_weights: Tensor,
        weights: ParserLossWeights,
        frozen: tuple[str, ...] = (),
    ):
        super().__init__()
        self.parser = parser
        self.register_buffer("class_weights", class_weights)
        self.weights = weights
        self.frozen = [getattr(parser, name) for name in frozen]
        for part in self.frozen:
            part.requires_grad_(False)

    def train(self, mode: bool = True) -> ParserTraining:
        super().train(mode)
        for part in self.frozen:
            part.eval()
        return self

    def forward(self, batch: ParserBatch) -> dict[str, Tensor]:
        parsed = self.parser(
            batch.points, batch.colors, batch.superpoints, batch.batch, batch.edges
        )
        return parser_losses(
            parsed, batch.instance, batch.category, batch.color, self.class_weights, self.weights
        )


class ParserTask:
    """The TrainingTask of the scene parser."""

    val_keys = VAL_KEYS

    def __init__(self, config: PretrainConfig) -> None:
        self.config = config
        self.root = Path(config.data.root)
        self.train_ids = scene_ids(self.root, config.data.train_split)
        self.data_info = json.loads((self.root / "dataset.json").read_text())
        check_vocabulary(self.data_info, config.model.categories)
        # Scanned views splat points as wide as the dataset's sampling is sparse.
        scan = config.data.augment.scan
        scan = replace(scan, points_per_m2=self.data_info.get("points_per_m2", scan.points_per_m2))
        self.augment = replace(config.data.augment, scan=scan)
        self._scenes: dict[str, SceneArrays] = {}

    def scene(self, scene_id: str) -> SceneArrays:
        if scene_id not in self._scenes:
            self._scenes[scene_id] = read_scene(self.root / "scenes" / f"{scene_id}.npz")
        return self._scenes[scene_id]

    def class_weights(self) -> Tensor:
        """(C,) inverse square root of each category's superpoint frequency, mean 1 over the
        categories seen (unseen ones get the largest weight)."""
        categories = self.config.model.categories
        counts = np.zeros(len(categories))
        for scene_id in self.train_ids[:CLASS_WEIGHT_SCENES]:
            scene = self.scene(scene_id)
            count = int(scene.superpoints.max()) + 1
            targets = superpoint_targets(
                scene.superpoints, scene.instance, count, scene.object_ids,
                scene.object_categories, scene.object_colors, categories, self.config.model.colors,
            )  # fmt: skip
            labelled = targets.category[targets.category != IGNORE]
            counts += np.bincount(labelled, minlength=len(categories))
        seen = counts > 0
        weights = np.zeros(len(categories))
        weights[seen] = counts[seen] ** -0.5
        weights /= weights[seen].mean()
        weights[~seen] = weights.max()
        return torch.tensor(weights, dtype=torch.float32)

    def build(self) -> nn.Module:
        parser = SceneParser(self.config.model)
        if self.config.init_from is not None:
            try:
                parser.load_state_dict(load_parser(Path(self.config.init_from)).state_dict())
            except RuntimeError as error:
                raise ConfigError(
                    f"init_from {self.config.init_from}: its parser is not shaped as `model` "
                    f"says ({error})"
                ) from error
        frozen: tuple[str, ...] = ()
        if self.config.train_modules is not None:
            parts = [name for name, _ in parser.named_children()]
            unknown = sorted(set(self.config.train_modules) - set(parts))
            if unknown:
                raise ConfigError(f"train_modules {unknown} are not parts of the parser {parts}")
            frozen = tuple(name for name in parts if name not in self.config.train_modules)
        return ParserTraining(parser, self.class_weights(), self.config.loss, frozen)

    def trainable_state(self, module: nn.Module) -> dict[str, Tensor]:
        return module.parser.state_dict()

    def load_trainable_state(self, module: nn.Module, state: dict[str, Tensor]) -> None:
        module.parser.load_state_dict(state)

    def batch(self, index: int, rank: int, world_size: int) -> tuple[ParserBatch, int]:
        """Scenes in a fresh permutation per epoch; each view's augmentation drawn from
        (seed, index, rank, slot): a pure function of them."""
        data = self.config.data
        count = len(self.train_ids)
        views = []
        for slot in range(data.scenes_per_batch):
            flat = (index * world_size + rank) * data.scenes_per_batch + slot
            order = np.random.default_rng([self.config.seed, flat // count]).permutation(count)
            scene = self.scene(self.train_ids[order[flat % count]])
            rng = np.random.default_rng([self.config.seed, index, rank, slot, 7])
            views.append((scene, *augment(scene, rng, self.augment)))
        return parser_batch(views, self.config.model), len(views)

    def validate(self, module: nn.Module, limit: int | None) -> dict[str, Any]:
        summaries = {}
        for scanned in (False, True):
            scenes = parsed_scenes(
                module.parser, self.root, self.config.data.val_split, limit=limit,
                recompute_superpoints=False, progress=False, scanned=scanned,
            )  # fmt: skip
            summaries[scanned] = evaluate_scenes(module.parser, scenes)
        scan = {f"scan_{key}": summaries[True][key] for key in SCENE_KEYS}
        return summaries[False] | scan

    def export(self, module: nn.Module, out: Path, metadata: dict[str, Any]) -> None:
        """The parser and its metadata; a run from `init_from` also keeps that parser's
        metadata (`init_from_metadata`: its recipe, data and metrics)."""
        if self.config.init_from is not None:
            metadata = metadata | {
                "init_from_metadata": parser_metadata(Path(self.config.init_from))
            }
        save_parser(module.parser, out, metadata, dtype=getattr(torch, self.config.export_dtype))
