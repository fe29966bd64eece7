"""Tiny R2S models for tests (random weights, real code paths)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from r2s_model.config import R2SConfig
from r2s_model.encoder import EncoderConfig
from r2s_model.llm import build_tiny_llm
from r2s_model.model import R2SModel, RelevantPrediction, SegmentationOutput
from r2s_model.objects.parser import ParserConfig
from r2s_model.scene import SceneEncoding
from r2s_model.superpoints import compute_superpoints
from tests.model.scenes import make_box_scene

TINY_PARSER = ParserConfig(
    encoder=EncoderConfig(voxel_size=0.05, widths=(16, 32), blocks_per_level=1),
    dim=32,
    layers=1,
    heads=2,
)


def tiny_config(**overrides: object) -> R2SConfig:
    config = R2SConfig(
        llm_mode="full",
        parser=TINY_PARSER,
        grounding_dim=32,
        grounding_layers=1,
        stage1_max_new_tokens=12,
        stage2_max_new_tokens=8,
    )
    return dataclasses.replace(config, **overrides)


def tiny_model(seed: int = 0, **overrides: object) -> R2SModel:
    torch.manual_seed(seed)
    llm = build_tiny_llm(seed=seed)
    return R2SModel(tiny_config(llm_source=llm.source, **overrides), llm)


OnRelevant = Callable[[list[RelevantPrediction]], None] | None


class HookedModel:
    """A real model whose stage-1 hook is `around(instruction, on_relevant)`: a hook that
    wraps the caller's (None when it passes none), e.g. to hold or cancel the worker there."""

    def __init__(self, model: R2SModel, around: Callable[[str, OnRelevant], OnRelevant]) -> None:
        self._model = model
        self._around = around

    def encode_scene(self, points: np.ndarray, colors: np.ndarray | None) -> SceneEncoding:
        return self._model.encode_scene(points, colors)

    def segment(
        self, scene: SceneEncoding, instruction: str, on_relevant: OnRelevant = None
    ) -> SegmentationOutput:
        return self._model.segment(scene, instruction, self._around(instruction, on_relevant))


@dataclasses.dataclass
class TinyScene:
    points: np.ndarray
    colors: np.ndarray
    instance: np.ndarray
    superpoints: np.ndarray


def tiny_scene(seed: int = 0, num_points: int = 6000) -> TinyScene:
    points, colors, instance = make_box_scene(seed, num_points)
    return TinyScene(points, colors, instance, compute_superpoints(points, colors))


def object_ids(scene: TinyScene) -> list[int]:
    """Instance ids of the scene's objects, largest first (the floor/walls included)."""
    ids, counts = np.unique(scene.instance, return_counts=True)
    return ids[np.argsort(-counts, kind="stable")].tolist()
