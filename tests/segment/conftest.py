"""Shared inputs of the r2s-segment tests: a generated room's scan and a tiny random model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from r2s_model.checkpoint import save_checkpoint
from r2s_model.synthetic.rooms import generate_room
from tests.model.tiny import tiny_model


@dataclass(frozen=True)
class Scan:
    """points (N, 3) float64 metres, z up; colors (N, 3) uint8."""

    points: np.ndarray
    colors: np.ndarray


@pytest.fixture(scope="session")
def room_scan() -> Scan:
    """Room 0 of the benchmark generator, sparse (~8k points): floor, walls and furniture."""
    room = generate_room(0, points_per_m2=100.0)
    colors = np.rint(room.colors * 255).astype(np.uint8)
    return Scan(room.points.astype(np.float64), colors)


@pytest.fixture(scope="session")
def small_scan(room_scan: Scan) -> Scan:
    """1,500 points of the room, for the readers."""
    keep = np.random.default_rng(0).choice(len(room_scan.points), 1500, replace=False)
    return Scan(room_scan.points[keep], room_scan.colors[keep])


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tiny_model(seed=3), tmp_path_factory.mktemp("checkpoint") / "tiny")
