"""Training batches from a synthetic split: scenes with several instructions each.

Every batch is a pure function of (seed, step, rank), so a resumed run sees exactly the batches
an uninterrupted one would, and data-parallel ranks see disjoint scenes of one shuffled order.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from r2s_model.data.io import SceneArrays, SyntheticDataset
from r2s_model.model import TrainingBatch, TrainingSample
from r2s_model.scene import superpoint_fractions
from r2s_model.train.config import DataConfig

MAX_DISTRACTORS = 3


def object_name(scene: SceneArrays, object_id: int) -> str:
    """How answers name an object: '<color> <category>' (e.g. 'green chair')."""
    return f"{scene.color_of()[object_id]} {scene.category_of()[object_id]}"


class SceneBatcher:
    """Draws TrainingBatches of `scenes_per_batch` scenes × `samples_per_scene` instructions."""

    def __init__(
        self, dataset: SyntheticDataset, config: DataConfig, max_relevant: int, seed: int
    ) -> None:
        self.dataset = dataset
        self.config = config
        self.max_relevant = max_relevant
        self.seed = seed
        by_scene: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in dataset.records:
            by_scene[record["scene_id"]].append(record)
        self.scene_ids = sorted(by_scene)
        self.records = by_scene
        if not self.scene_ids:
            raise ValueError(f"{dataset.root}: split {dataset.split!r} has no samples")

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> TrainingBatch:
        """The batch of optimiser (micro-)step `step` on data-parallel rank `rank`."""
        per_step = self.config.scenes_per_batch * world_size
        first = step * per_step + rank * self.config.scenes_per_batch
        positions = range(first, first + self.config.scenes_per_batch)
        rng = np.random.default_rng([self.seed, step, rank])
        scenes = [self._scene_at(position) for position in positions]
        parts = [self._scene_part(index, scene_id, rng) for index, scene_id in enumerate(scenes)]
        points, colors, superpoints, batch, samples = [], [], [], [], []
        offset = 0
        for index, (cloud, scene_samples) in enumerate(parts):
            points.append(cloud[0])
            colors.append(cloud[1])
            superpoints.append(cloud[2] + offset)
            batch.append(torch.full((len(cloud[0]),), index, dtype=torch.long))
            offset += int(cloud[2].max()) + 1
            samples += scene_samples
        return TrainingBatch(
            torch.cat(points), torch.cat(colors), torch.cat(superpoints), torch.cat(batch), samples
        )

    def _scene_at(self, position: int) -> str:
        """Scene at `position` of an endless sequence of per-epoch shuffles of the split."""
        epoch, index = divmod(position, len(self.scene_ids))
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.scene_ids))
        return self.scene_ids[order[index]]

    def _scene_part(
        self, index: int, scene_id: str, rng: np.random.Generator
    ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], list[TrainingSample]]:
        scene = self.dataset.scene(scene_id)
        keep = self._subsample(len(scene.points), rng)
        # Superpoints of the full scene, renumbered contiguously over the points kept.
        kept_ids, superpoints = np.unique(scene.superpoints[keep], return_inverse=True)
        superpoints = torch.from_numpy(superpoints.astype(np.int64))
        count = len(kept_ids)
        instance = torch.from_numpy(scene.instance[keep])

        def fractions(groups: list[list[int]]) -> torch.Tensor:
            """(len(groups), S): the share of each superpoint inside each group's objects."""
            if not groups:
                return torch.zeros(0, count)
            masks = torch.stack([torch.isin(instance, torch.tensor(ids)) for ids in groups])
            return superpoint_fractions(masks, superpoints, count)

        records = self.records[scene_id]
        chosen = rng.choice(len(records), min(len(records), self.config.samples_per_scene), False)
        samples = []
        for record in (records[i] for i in sorted(chosen)):
            relevant = record["relevant_ids"][: self.max_relevant]
            others = [
                int(i)
                for i in scene.object_ids
                if i not in record["relevant_ids"] and i not in record["target_ids"]
            ]
            distractors = rng.permutation(others)[:MAX_DISTRACTORS].tolist() if others else []
            target = fractions([record["target_ids"]])[0] if record["target_ids"] else None
            samples.append(
                TrainingSample(
                    scene=index,
                    instruction=record["question"],
                    answer=record["answer"],
                    target=target,
                    relevant_names=[object_name(scene, i) for i in relevant],
                    relevant=fractions([[i] for i in relevant]),
                    distractor_names=[object_name(scene, i) for i in distractors],
                    distractors=fractions([[i] for i in distractors]),
                )
            )
        cloud = (
            torch.from_numpy(scene.points[keep]),
            torch.from_numpy(scene.colors[keep]),
            superpoints,
        )
        return cloud, samples

    def _subsample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Sorted indices of a random share (min_keep..1, at most max_points) of the points."""
        share = rng.uniform(self.config.min_keep, 1.0)
        size = min(self.config.max_points, max(1, round(count * share)))
        return np.sort(rng.choice(count, size, replace=False))
