"""A dataset partly replaced by simulated scans (r2s_model/synthetic/scan_data.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r2s_model.data.io import read_records, read_scene, scene_ids
from r2s_model.synthetic.checker import check_sample, object_geometry
from r2s_model.synthetic.scan_data import ScanTask, main, scan_dataset, scan_scene
from r2s_model.synthetic.scanned import ScanViewConfig


def _records(root: Path, split: str) -> list[dict]:
    return read_records(root / f"{split}.jsonl")


def test_every_room_scanned_keeps_the_records_whose_objects_and_relations_hold_on_the_scan(
    small_dataset: Path, tmp_path: Path
) -> None:
    info = scan_dataset(small_dataset, tmp_path / "scans", seed=1, scan_fraction=1.0, workers=2)
    out = tmp_path / "scans"
    assert json.loads((out / "dataset.json").read_text()) == info
    assert info["scans"]["scanned_scenes"] == {"train": 3, "val": 2}
    for split in ("train", "val"):
        source, kept = _records(small_dataset, split), _records(out, split)
        assert [r for r in source if r in kept] == kept  # a subset, in order, unchanged
        assert len(source) - len(kept) == info["scans"]["dropped_on_scans"][split]
        assert info["samples"][split] == len(kept) > 0
        assert scene_ids(out, split) == scene_ids(small_dataset, split)
        for record in kept:
            scan = read_scene(out / "scenes" / f"{record['scene_id']}.npz")
            seen = set(scan.object_ids.tolist())
            assert seen.issuperset(record["target_ids"] + record["relevant_ids"])
            geometry = object_geometry(scan.points, scan.instance)
            assert check_sample(record, geometry, scan.category_of(), scan.color_of()).ok
    scene = read_scene(small_dataset / "scenes" / "train_00000.npz")
    scan = read_scene(out / "scenes" / "train_00000.npz")
    assert len(scan.points) != len(scene.points)
    assert set(scan.object_ids.tolist()) <= set(scene.object_ids.tolist())


def test_a_record_naming_an_object_the_scan_lost_is_dropped(
    small_dataset: Path, tmp_path: Path
) -> None:
    """The checker only needs the objects a program refers to; a record's other relevant
    objects (the chairs "farthest" compares) must have been seen too."""
    (tmp_path / "scenes").mkdir()
    task = ScanTask(
        small_dataset, tmp_path, "train_00000", 1, 1.0, ScanViewConfig(points_per_m2=600)
    )
    records = [r for r in _records(small_dataset, "train") if r["scene_id"] == "train_00000"]
    kept, scanned = scan_scene(task, records)
    assert scanned and kept
    unseen = [dict(r, relevant_ids=[*r["relevant_ids"], 999]) for r in kept]
    assert scan_scene(task, unseen) == ([], True)


def test_no_room_scanned_is_a_copy(small_dataset: Path, tmp_path: Path) -> None:
    info = scan_dataset(small_dataset, tmp_path / "copy", seed=1, scan_fraction=0.0, workers=1)
    assert info["scans"]["scanned_scenes"] == {"train": 0, "val": 0}
    for split in ("train", "val"):
        assert _records(tmp_path / "copy", split) == _records(small_dataset, split)
    for path in (small_dataset / "scenes").glob("*.npz"):
        assert (tmp_path / "copy" / "scenes" / path.name).read_bytes() == path.read_bytes()


def test_which_rooms_are_scanned_does_not_depend_on_the_workers(
    small_dataset: Path, tmp_path: Path
) -> None:
    one = scan_dataset(small_dataset, tmp_path / "one", seed=4, scan_fraction=0.5, workers=1)
    two = scan_dataset(small_dataset, tmp_path / "two", seed=4, scan_fraction=0.5, workers=2)
    assert one["scans"]["scanned_scenes"] == two["scans"]["scanned_scenes"]
    for path in sorted((tmp_path / "one" / "scenes").glob("*.npz")):
        assert (tmp_path / "two" / "scenes" / path.name).read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--scan-fraction", "1.5"], "--scan-fraction must lie in"),
        (["--out", "EXISTING"], "exists"),
    ],
)
def test_bad_arguments_stop_with_a_message(
    small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments, message
) -> None:
    out = tmp_path / "out"
    arguments = [str(tmp_path) if a == "EXISTING" else a for a in arguments]
    with pytest.raises(SystemExit) as stop:
        main(["--data", str(small_dataset), "--out", str(out), *arguments])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
