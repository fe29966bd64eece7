"""r2s-gen-data: files in the documented format, deterministic, checked, disjoint splits."""

import json
from pathlib import Path

import numpy as np
import pytest

from r2s_model.data.errors import DatasetFormatError
from r2s_model.data.io import SyntheticDataset, read_records, read_scene
from r2s_model.synthetic.checker import check_sample, object_geometry
from r2s_model.synthetic.generate import generate_dataset, main
from tests.conftest import SMALL_DATASET


def test_dataset_layout_and_counts(small_dataset: Path) -> None:
    info = json.loads((small_dataset / "dataset.json").read_text())
    assert info["scenes"] == {"train": 3, "val": 2}
    assert info["rejected_by_checker"] == {"train": 0, "val": 0}
    for split in ("train", "val"):
        records = read_records(small_dataset / f"{split}.jsonl")
        assert len(records) == info["samples"][split] > 0
        assert {r["scene_id"].split("_")[0] for r in records} == {split}
    scene_files = sorted(p.stem for p in (small_dataset / "scenes").glob("*.npz"))
    assert scene_files == ["train_00000", "train_00001", "train_00002", "val_00000", "val_00001"]
    assert not small_dataset.with_name("r2s.partial").exists()


def test_every_sample_passes_the_independent_checker(small_dataset: Path) -> None:
    for split in ("train", "val"):
        dataset = SyntheticDataset(small_dataset, split)
        for scene, record in (dataset[i] for i in range(len(dataset))):
            geometry = object_geometry(scene.points, scene.instance)
            result = check_sample(record, geometry, scene.category_of(), scene.color_of())
            assert result.ok, (record["question"], result.reason)


def test_scene_files_hold_consistent_arrays(small_dataset: Path) -> None:
    scene = read_scene(small_dataset / "scenes" / "val_00000.npz")
    count = len(scene.points)
    assert scene.points.dtype == np.float32 and scene.points.shape == (count, 3)
    assert scene.colors.dtype == np.float32 and 0 <= scene.colors.min() <= scene.colors.max() <= 1
    for labels in (scene.instance, scene.semantic, scene.superpoints):
        assert labels.shape == (count,)
    assert np.array_equal(np.unique(scene.superpoints), np.arange(scene.superpoints.max() + 1))
    assert set(np.unique(scene.instance)) <= set(scene.object_ids.tolist()) | {0}
    assert len(scene.object_categories) == len(scene.object_ids) == len(scene.object_colors)


def test_generation_is_deterministic_whatever_the_worker_count(
    small_dataset: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    generate_dataset(again, workers=1, **SMALL_DATASET)
    for split in ("train", "val"):
        assert (again / f"{split}.jsonl").read_text() == (
            small_dataset / f"{split}.jsonl"
        ).read_text()
    first = read_scene(small_dataset / "scenes" / "train_00001.npz")
    second = read_scene(again / "scenes" / "train_00001.npz")
    for name in ("points", "colors", "instance", "semantic", "superpoints"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name


def test_bad_files_fail_with_the_file_and_field(small_dataset: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.npz"
    broken.write_bytes((small_dataset / "scenes" / "val_00000.npz").read_bytes()[:500])
    with pytest.raises(DatasetFormatError, match=r"broken\.npz"):
        read_scene(broken)

    arrays = dict(np.load(small_dataset / "scenes" / "val_00000.npz"))
    arrays["instance"] = arrays["instance"][:-3]
    short = tmp_path / "short.npz"
    np.savez(short, **arrays)
    with pytest.raises(DatasetFormatError, match="'instance'"):
        read_scene(short)

    lines = (small_dataset / "val.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    del record["target_ids"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[1] + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DatasetFormatError, match=r"bad.jsonl:2: field 'target_ids'"):
        read_records(bad)

    with pytest.raises(DatasetFormatError, match="no such split"):
        SyntheticDataset(small_dataset, "test")


def test_cli_refuses_to_overwrite(small_dataset: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(small_dataset), "--scenes-train", "1", "--scenes-val", "1"])
