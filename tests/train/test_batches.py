"""Training batches drawn from a generated split."""

from pathlib import Path

import numpy as np
import pytest
import torch

from r2s_model.data.io import SyntheticDataset
from r2s_model.model import TrainingBatch
from r2s_model.train.batches import SceneBatcher, object_name
from r2s_model.train.config import DataConfig


@pytest.fixture(scope="module")
def dataset(small_dataset: Path) -> SyntheticDataset:
    return SyntheticDataset(small_dataset, "train")


def batcher(dataset: SyntheticDataset, **overrides: object) -> SceneBatcher:
    config = DataConfig(root=str(dataset.root), **({"max_points": 5000} | overrides))
    return SceneBatcher(dataset, config, max_relevant=4, seed=3)


def test_a_batch_holds_its_scenes_and_their_annotated_samples(dataset: SyntheticDataset) -> None:
    batch = batcher(dataset, scenes_per_batch=2, samples_per_scene=3).batch(0)
    assert torch.equal(batch.batch.unique(), torch.tensor([0, 1]))
    assert len(batch.points) == len(batch.colors) == len(batch.superpoints) <= 2 * 5000
    assert torch.all(batch.batch[1:] >= batch.batch[:-1])
    # Superpoint ids are contiguous over the batch, scene 1's after scene 0's.
    assert torch.equal(batch.superpoints.unique(), torch.arange(int(batch.superpoints.max()) + 1))
    assert batch.superpoints[batch.batch == 0].max() < batch.superpoints[batch.batch == 1].min()
    assert len(batch.samples) == 6 and {s.scene for s in batch.samples} == {0, 1}
    questions = {r["question"]: r for r in dataset.records}
    for sample in batch.samples:
        record = questions[sample.instruction]
        size = int((batch.superpoints[batch.batch == sample.scene]).unique().numel())
        assert sample.answer == record["answer"]
        assert (sample.target is None) == (not record["target_ids"])
        if sample.target is not None:
            assert sample.target.shape == (size,) and 0 < sample.target.max() <= 1
        scene = dataset.scene(record["scene_id"])
        expected = [object_name(scene, i) for i in record["relevant_ids"][:4]]
        assert sample.relevant_names == expected
        assert sample.relevant.shape == (len(expected), size)
        assert len(sample.distractor_names) == len(sample.distractors) <= 3


def test_batches_are_a_function_of_seed_step_and_rank(dataset: SyntheticDataset) -> None:
    first, again = batcher(dataset).batch(5), batcher(dataset).batch(5)
    assert torch.equal(first.points, again.points)
    assert [s.instruction for s in first.samples] == [s.instruction for s in again.samples]
    assert not torch.equal(first.points, batcher(dataset).batch(6).points)


def scene_of(dataset: SyntheticDataset, batch: TrainingBatch) -> str:
    question = batch.samples[0].instruction
    return next(r["scene_id"] for r in dataset.records if r["question"] == question)


def test_every_epoch_visits_every_scene_once(dataset: SyntheticDataset) -> None:
    draw = batcher(dataset)
    count = len(draw.scene_ids)
    seen = [scene_of(dataset, draw.batch(step)) for step in range(2 * count)]
    assert sorted(seen[:count]) == sorted(draw.scene_ids) == sorted(seen[count:])


def test_data_parallel_ranks_draw_different_scenes(dataset: SyntheticDataset) -> None:
    draw = batcher(dataset)
    single = [scene_of(dataset, draw.batch(step)) for step in range(2)]
    ranks = [scene_of(dataset, draw.batch(0, rank, world_size=2)) for rank in range(2)]
    assert ranks[0] != ranks[1]
    assert ranks == single  # two ranks of one step cover what two single-process steps do


def test_subsampling_keeps_a_bounded_random_share(dataset: SyntheticDataset) -> None:
    draw = batcher(dataset, max_points=10**9, min_keep=0.5)
    sizes = {len(draw.batch(step).points) for step in range(6)}
    full = {len(dataset.scene(i).points) for i in draw.scene_ids}
    assert len(sizes) > 1 and min(sizes) >= 0.5 * min(full) - 1 and max(sizes) <= max(full)
    assert np.all(np.diff(draw._subsample(1000, np.random.default_rng(0))) > 0)
