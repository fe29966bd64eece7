"""A tiny scene parser and a hand-built scene of known objects."""

from dataclasses import dataclass

import numpy as np
import pytest

from r2s_model.encoder import EncoderConfig
from r2s_model.objects.parser import ParserConfig


def tiny_parser_config() -> ParserConfig:
    return ParserConfig(
        encoder=EncoderConfig(voxel_size=0.08, widths=(8, 16), blocks_per_level=1),
        dim=32,
        layers=1,
        heads=2,
    )


@dataclass
class BoxScene:
    points: np.ndarray  # (N, 3) float32
    colors: np.ndarray  # (N, 3) float32
    instance: np.ndarray  # (N,) int64, 1.. per object
    superpoints: np.ndarray  # (N,) int64, each object cut into several superpoints
    categories: dict[int, str]  # instance -> category


def _box_surface(low, high, spacing, rng) -> np.ndarray:
    low, high = np.asarray(low, float), np.asarray(high, float)
    area = 2 * sum(np.prod(np.delete(high - low, axis)) for axis in range(3))
    count = int(area / spacing**2)
    points = rng.uniform(low, high, (count, 3))
    axis = rng.integers(0, 3, count)
    side = rng.integers(0, 2, count)
    points[np.arange(count), axis] = np.where(side == 1, high[axis], low[axis])
    return points


@pytest.fixture
def box_scene() -> BoxScene:
    """A floor, a table with a cup standing on it (touching), and a chair apart."""
    rng = np.random.default_rng(3)
    objects = [
        ("floor", [0, 0, -0.02], [3, 3, 0.0], (0.5, 0.5, 0.5)),
        ("table", [0.5, 0.5, 0.02], [1.3, 1.1, 0.75], (0.5, 0.3, 0.2)),
        ("cup", [0.8, 0.7, 0.75], [0.88, 0.78, 0.85], (0.9, 0.9, 0.9)),
        ("chair", [2.0, 2.0, 0.02], [2.45, 2.45, 0.9], (0.8, 0.1, 0.1)),
    ]
    points, colors, instance, categories = [], [], [], {}
    for index, (category, low, high, color) in enumerate(objects, start=1):
        surface = _box_surface(low, high, 0.02, rng)
        points.append(surface)
        colors.append(np.tile(color, (len(surface), 1)))
        instance.append(np.full(len(surface), index))
        categories[index] = category
    points = np.concatenate(points).astype(np.float32)
    instance = np.concatenate(instance).astype(np.int64)
    # Superpoints: each object cut into 0.3 m cells, so objects span several of them.
    cells = np.floor(points / 0.3).astype(np.int64)
    _, superpoints = np.unique(np.column_stack([instance, cells]), axis=0, return_inverse=True)
    return BoxScene(
        points, np.concatenate(colors).astype(np.float32), instance, superpoints.ravel(), categories
    )
