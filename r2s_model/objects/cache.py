"""Frozen-parser outputs stored per scene, so downstream training never re-runs the encoder.

    r2s-cache-objects --data DIR [--parser FOLDER] [--splits train val]

writes `DIR/cache/objects-<first 12 hex of the parser's digest>/`: a `manifest.json` (the
parser's digest over weights and config, and the SHA-256 of every scene file it read) and one
`<scene_id>.npz` per scene with the superpoint features and the proposals. `ObjectCache` reads
them back and refuses stale entries: another parser (weights or config), or a scene file that
changed since, raise StaleCacheError instead of being used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from r2s_model.data.io import read_scene, scene_ids
from r2s_model.device import resolve_device
from r2s_model.objects.checkpoint import DEFAULT_PARSER, load_parser, parser_digest
from r2s_model.objects.detect import detect_objects
from r2s_model.superpoints import SuperpointParams

MANIFEST = "manifest.json"


class StaleCacheError(RuntimeError):
    """A cache entry made from other parser weights or from a scene file that has changed."""


@dataclass
class CachedScene:
    """One scene's frozen outputs. S superpoints (the scene file's ids), K proposals:

    features (S, D) float32; semantic_probs (S, C), color_probs (S, L) float32;
    superpoint_object (S,) int64; object_features (K, D); object_category_probs (K, C);
    object_color_probs (K, L); object_box_min, object_box_max (K, 3) float32;
    object_point_counts (K,) int64.
    """

    features: np.ndarray
    semantic_probs: np.ndarray
    color_probs: np.ndarray
    superpoint_object: np.ndarray
    object_features: np.ndarray
    object_category_probs: np.ndarray
    object_color_probs: np.ndarray
    object_box_min: np.ndarray
    object_box_max: np.ndarray
    object_point_counts: np.ndarray


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cache_folder(root: Path, digest: str) -> Path:
    return Path(root) / "cache" / f"objects-{digest[:12]}"


def build_cache(
    root: Path,
    parser_folder: Path = DEFAULT_PARSER,
    splits: tuple[str, ...] = ("train", "val"),
    device: str = "cpu",
) -> Path:
    """Runs the parser on every scene of `splits` (stored superpoints) and writes the cache;
    scenes already cached from the same file and weights are skipped."""
    digest = parser_digest(parser_folder)
    folder = cache_folder(root, digest)
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / MANIFEST
    manifest = (
        json.loads(manifest_path.read_text())
        if manifest_path.is_file()
        else {"parser_digest": digest, "parser": str(parser_folder), "scenes": {}}
    )
    parser = load_parser(parser_folder, resolve_device(device))
    ids = [scene_id for split in splits for scene_id in scene_ids(root, split)]
    start = time.perf_counter()
    for scene_id in tqdm(ids, desc="caching objects", unit="scene"):
        path = Path(root) / "scenes" / f"{scene_id}.npz"
        scene_digest = file_digest(path)
        if manifest["scenes"].get(scene_id) == scene_digest and (folder / path.name).is_file():
            continue
        scene = read_scene(path)
        objects = detect_objects(
            parser, scene.points, scene.colors, SuperpointParams(), scene.superpoints
        )
        parsed, proposals = objects.parsed, objects.proposals
        arrays = {
            "features": parsed.features,
            "semantic_probs": parsed.semantic_logits.softmax(1),
            "color_probs": parsed.color_logits.softmax(1),
            "superpoint_object": proposals.superpoint_object,
            "object_features": proposals.features,
            "object_category_probs": proposals.category_probs,
            "object_color_probs": proposals.color_probs,
            "object_box_min": proposals.box_min,
            "object_box_max": proposals.box_max,
            "object_point_counts": proposals.point_counts,
        }
        temporary = folder / f".{scene_id}.tmp.npz"
        np.savez(temporary, **{name: value.cpu().numpy() for name, value in arrays.items()})
        temporary.replace(folder / path.name)
        manifest["scenes"][scene_id] = scene_digest
        _write_manifest(manifest_path, manifest)  # an interrupted run keeps what it cached
    manifest["seconds"] = round(time.perf_counter() - start, 1)
    _write_manifest(manifest_path, manifest)
    return folder


def _write_manifest(path: Path, manifest: dict) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(manifest, indent=1) + "\n")
    temporary.replace(path)


class ObjectCache:
    """Reads a dataset's cache for given parser weights; refuses stale entries."""

    def __init__(self, root: Path, parser_folder: Path = DEFAULT_PARSER) -> None:
        self.root = Path(root)
        digest = parser_digest(parser_folder)
        self.folder = cache_folder(root, digest)
        manifest_path = self.folder / MANIFEST
        if not manifest_path.is_file():
            raise StaleCacheError(
                f"no object cache for the parser {parser_folder} in {self.root / 'cache'}; "
                f"run r2s-cache-objects --data {self.root} --parser {parser_folder}"
            )
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest["parser_digest"] != digest:
            raise StaleCacheError(
                f"{manifest_path} was written for another parser (weights or config)"
            )

    def scene(self, scene_id: str) -> CachedScene:
        """The cached outputs of a scene, after checking that its file is unchanged."""
        path = self.root / "scenes" / f"{scene_id}.npz"
        cached = self.manifest["scenes"].get(scene_id)
        if cached is None:
            raise StaleCacheError(f"{scene_id} is not in the cache {self.folder}")
        if file_digest(path) != cached:
            raise StaleCacheError(
                f"{path} changed after it was cached; rebuild with r2s-cache-objects"
            )
        with np.load(self.folder / path.name) as archive:
            return CachedScene(**{name: archive[name] for name in archive.files})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="r2s-cache-objects", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder from r2s-gen-data")
    parser.add_argument("--parser", type=Path, default=DEFAULT_PARSER, help="parser weights")
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = build_cache(args.data, args.parser, tuple(args.splits), args.device)
    print(f"cache: {folder}")


if __name__ == "__main__":
    main()
