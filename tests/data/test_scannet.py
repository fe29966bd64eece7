"""ScanNet / Reason3D-layout loader on small files written to a temporary directory."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from r2s_model.data.scannet import (
    DatasetFormatError,
    ScanNetDataset,
    ScanNetSample,
    load_annotations,
    load_scene,
)

N = 10


def scene_arrays(n: int = N) -> list:
    """(coords, colors, superpoints, semantic, instance) as Reason3D's preparation writes them:
    float64 coords, colors in [-1, 1], float64 labels with -100 for unlabelled."""
    rng = np.random.default_rng(0)
    coords = rng.uniform(-2, 2, (n, 3))
    colors = np.linspace(0, 255, n * 3).reshape(n, 3) / 127.5 - 1
    superpoints = np.repeat([7, 3, 12, 40, 5], n // 5)
    semantic = np.r_[np.full(n - 2, 4.0), -100, -100]
    instance = np.r_[np.repeat([0.0, 1.0, 2.0], 3), np.full(n - 9, -100.0)]
    return [coords, colors, superpoints, semantic, instance]


def write_scene(folder: Path, scene_id: str, arrays: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{scene_id}.pth"
    torch.save(tuple(arrays) if isinstance(arrays, list) else arrays, path)
    return path


def write_json(path: Path, content: object) -> Path:
    path.write_text(json.dumps(content))
    return path


def test_load_scene_converts_to_the_documented_types(tmp_path: Path) -> None:
    arrays = scene_arrays()
    scene = load_scene(write_scene(tmp_path, "scene0000_00", arrays))
    assert scene.scene_id == "scene0000_00"
    assert scene.points.dtype == np.float32 and scene.points.shape == (N, 3)
    np.testing.assert_allclose(scene.points, arrays[0], rtol=1e-6)
    assert scene.colors.dtype == np.float32
    np.testing.assert_allclose(scene.colors, np.linspace(0, 1, N * 3).reshape(N, 3), atol=1e-6)
    assert scene.superpoints.dtype == np.int64
    np.testing.assert_array_equal(scene.superpoints, np.repeat([2, 0, 3, 4, 1], 2))
    np.testing.assert_array_equal(scene.semantic, arrays[3].astype(np.int64))
    np.testing.assert_array_equal(scene.instance, [0, 0, 0, 1, 1, 1, 2, 2, 2, -100])
    assert scene.instance.dtype == scene.semantic.dtype == np.int64


def test_load_scene_accepts_tensors_and_0_255_colors(tmp_path: Path) -> None:
    arrays = scene_arrays()
    arrays[1] = (arrays[1] + 1) * 127.5  # [0, 255]
    tensors = [torch.from_numpy(np.asarray(a)) for a in arrays]
    tensors[0] = tensors[0].float()
    tensors[3] = tensors[3].long()
    scene = load_scene(write_scene(tmp_path, "s", tensors))
    np.testing.assert_allclose(scene.colors, np.linspace(0, 1, N * 3).reshape(N, 3), atol=1e-6)
    assert scene.semantic.dtype == np.int64 and scene.semantic[-1] == -100


def test_load_scene_reads_files_written_by_numpy_1(tmp_path: Path) -> None:
    """numpy 1.x pickled arrays under numpy.core; the same file must load without unsafe
    globals."""
    buffer = io.BytesIO()
    torch.save(tuple(scene_arrays()), buffer)
    written = zipfile.ZipFile(buffer)
    path = tmp_path / "old.pth"
    with zipfile.ZipFile(path, "w") as rewritten:
        for name in written.namelist():
            data = written.read(name)
            if name.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            rewritten.writestr(name, data)
    assert load_scene(path).points.shape == (N, 3)


class Payload:
    """Stands for anything a pickle could smuggle in besides arrays."""


def broken(index: int, value: object) -> list:
    arrays = scene_arrays()
    arrays[index] = value
    return arrays


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (tuple(scene_arrays()[:4]), "holds 4 items, expected 5 (coords, colors, "),
        ({"coords": 1}, "holds a dict, expected a tuple"),
        (broken(1, np.zeros((N, 2))), f"colors has shape ({N}, 2), expected (N, 3)"),
        (broken(0, np.zeros(N)), f"coords has shape ({N},), expected (N, 3)"),
        (broken(4, np.zeros(N - 1)), f"instance has {N - 1} rows, coords has {N}"),
        (broken(2, np.zeros((N, 1), np.int64)), f"superpoints has shape ({N}, 1), expected (N,)"),
        (broken(0, np.zeros((N, 3), np.int64)), "coords has dtype int64, expected float"),
        (broken(0, np.full((N, 3), np.nan)), f"coords has {N} non-finite points"),
        (broken(3, np.full(N, 0.5)), "semantic has dtype float64 with non-integer values"),
        (broken(4, np.zeros(N, bool)), "instance has dtype bool, expected numbers"),
        (broken(2, list(range(N))), "superpoints is a list, expected an array"),
        (broken(1, np.full((N, 3), 300.0)), "colors span [300, 300], expected [-1, 1] or [0, 255]"),
        (broken(1, np.full((N, 3), -2.0)), "colors span [-2, -2], expected [-1, 1]"),
        (broken(1, np.full((N, 3), np.inf)), "colors has non-finite values"),
        ((Payload(),) * 5, "unreadable scene file"),
    ],
)
def test_malformed_scene_files_name_the_file_and_field(
    tmp_path: Path, content: object, message: str
) -> None:
    path = write_scene(tmp_path / "scans", "scene0000_00", content)
    with pytest.raises(DatasetFormatError, match=re.escape(f"{path}: {message}")):
        load_scene(path)


def test_unreadable_scene_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match=r"missing\.pth: unreadable scene file"):
        load_scene(tmp_path / "missing.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(write_scene(tmp_path, "whole", scene_arrays()).read_bytes()[:100])
    with pytest.raises(DatasetFormatError, match=r"truncated\.pth: unreadable scene file"):
        load_scene(truncated)


ENTRIES = [
    {"scene_id": "scene0000_00", "object_id": 1, "question": "Where can I sit?"},
    {
        "scene_id": "scene0000_00",
        "object_ids": [0, 2],
        "question": "Which two?",
        "answer": "These.",
        "relevant_ids": [0, 1, 2],
        "category": "multi_hop",
    },
    {"scene_id": "scene0001_00", "object_id": [], "question": "The piano?", "category": "no"},
]


def test_load_annotations(tmp_path: Path) -> None:
    samples = load_annotations(write_json(tmp_path / "val.json", ENTRIES))
    assert samples == [
        ScanNetSample("scene0000_00", "Where can I sit?", [1], None, [1], "uncategorized"),
        ScanNetSample("scene0000_00", "Which two?", [0, 2], "These.", [0, 1, 2], "multi_hop"),
        ScanNetSample("scene0001_00", "The piano?", [], None, [], "no"),
    ]


def changed(index: int, **fields: object) -> list[dict]:
    entries = [dict(entry) for entry in ENTRIES]
    entries[index].update(fields)
    return [{k: v for k, v in entry.items() if v is not None} for entry in entries]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"samples": []}, "holds a dict, expected a list of entries"),
        ([*ENTRIES, "text"], "entry 3 is a str, expected an object"),
        (changed(0, question=None), "entry 0 lacks 'question'"),
        (changed(1, scene_id=None, object_ids=None), "entry 1 lacks 'scene_id', 'object_id'"),
        (changed(0, object_ids=[1]), "entry 0 has both 'object_id' and 'object_ids'"),
        (changed(0, object_id="1"), "entry 0: object_id is '1', expected an int or a list of ints"),
        (changed(0, object_id=True), "entry 0: object_id is True, expected an int"),
        (changed(1, object_ids=[0, 1.5]), "entry 1: object_ids is [0, 1.5], expected an int"),
        (changed(1, relevant_ids=3), "entry 1: relevant_ids is 3, expected a list of ints"),
        (changed(2, question=7), "entry 2: question is 7, expected a string"),
        (changed(1, answer=["a"]), "entry 1: answer is ['a'], expected a string"),
        (changed(1, category=1), "entry 1: category is 1, expected a string"),
        (changed(0, scene_id="../scene0000_00"), "entry 0: scene_id '../scene0000_00' is not a"),
    ],
)
def test_malformed_annotations_name_the_entry_and_field(
    tmp_path: Path, content: object, message: str
) -> None:
    path = write_json(tmp_path / "val.json", content)
    with pytest.raises(DatasetFormatError, match=re.escape(f"{path}: {message}")):
        load_annotations(path)


def test_unreadable_annotation_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match=r"none\.json: unreadable annotation file"):
        load_annotations(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(DatasetFormatError, match=r"bad\.json: unreadable annotation file"):
        load_annotations(tmp_path / "bad.json")


@pytest.fixture
def dataset_files(tmp_path: Path) -> tuple[Path, Path]:
    scans = tmp_path / "scans"
    write_scene(scans, "scene0000_00", scene_arrays())
    write_scene(scans, "scene0001_00", scene_arrays(20))
    return scans, write_json(tmp_path / "val.json", ENTRIES)


def test_dataset_yields_scenes_with_samples(dataset_files: tuple[Path, Path]) -> None:
    dataset = ScanNetDataset(*dataset_files)
    assert len(dataset) == 3
    scene, sample = dataset[1]
    assert (scene.scene_id, sample.target_ids) == ("scene0000_00", [0, 2])
    assert dataset[0][0] is scene  # cached, not read again
    last_scene, last_sample = dataset[-1]
    assert (last_scene.scene_id, len(last_scene.points), last_sample.question) == (
        "scene0001_00",
        20,
        "The piano?",
    )
    with pytest.raises(IndexError):
        dataset[3]


def test_dataset_cache_is_bounded(dataset_files: tuple[Path, Path]) -> None:
    dataset = ScanNetDataset(*dataset_files, cache_size=1)
    first = dataset[0][0]
    dataset[2]
    assert dataset[0][0] is not first


def test_dataset_rejects_unknown_scenes_and_objects(
    tmp_path: Path, dataset_files: tuple[Path, Path]
) -> None:
    scans, _ = dataset_files
    annotations = write_json(tmp_path / "other.json", changed(2, scene_id="scene0099_00"))
    with pytest.raises(DatasetFormatError, match="entry 2 references unknown scene 'scene0099_00'"):
        ScanNetDataset(scans, annotations)
    with pytest.raises(DatasetFormatError, match="nowhere: scene directory not found"):
        ScanNetDataset(tmp_path / "nowhere", annotations)
    dataset = ScanNetDataset(scans, write_json(tmp_path / "ids.json", changed(0, object_id=[1, 8])))
    with pytest.raises(DatasetFormatError, match=r"entry 0 names objects \[8\] that .*scene0000"):
        dataset[0]
