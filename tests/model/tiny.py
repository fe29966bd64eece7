"""Tiny R2S models for tests (random weights, real code paths)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from r2s_model.config import R2SConfig
from r2s_model.encoder import EncoderConfig
from r2s_model.grounding.objects import ObjectSet
from r2s_model.llm import build_tiny_llm
from r2s_model.model import R2SModel, RelevantPrediction, SegmentationOutput
from r2s_model.objects.parser import ParserConfig
from r2s_model.prompts import NO_TARGET, REL, SEG, name_matches
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

    def encode_scene(
        self, points: np.ndarray, colors: np.ndarray | None, max_points: int | None = None
    ) -> SceneEncoding:
        return self._model.encode_scene(points, colors, max_points)

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


def name_objects(
    scene: SceneEncoding, relevant: dict[str, int], target: tuple[str, int] | None
) -> SceneEncoding:
    """Gives the taught objects labels the taught names are read from, as if the (random)
    parser had read them so: "red box" -> ("red", "box"); a bare category gets a colour no test
    instruction states ("lamp" -> ("silver", "lamp"))."""
    for name, index in [*relevant.items(), *([target] if target else [])]:
        *color, category = name.split()
        scene.object_labels[index] = (" ".join(color) or "silver", category)
    return scene


def teach(
    model: R2SModel,
    scene: SceneEncoding,
    instruction: str,
    relevant: dict[str, int],
    target: tuple[str, int] | None,
    steps: int = 150,
) -> None:
    """Fits a tiny model to one instruction on one encoded scene, as the recipe trains: the LLM
    (teacher forced) to write the relevant names with [REL] and the target's with [SEG], then
    the grounding head, on those states, to choose the given proposals (`relevant`: name ->
    proposal index; `target` (name, index) or None for no target)."""
    prompts = model.prompts
    objects = scene.objects
    name_objects(scene, relevant, target)
    tokens = model.scene_tokens(objects.category_probs, objects.color_probs)
    sequences = [
        prompts.two_stage_sequence(instruction, list(relevant), target and target[0]),
        prompts.single_stage_sequence(instruction, target and target[0]),
    ]
    model.train()
    trainable = [p for p in model.llm.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=2e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        model.teacher_forced(tokens, sequences)[0].backward()
        optimizer.step()
    with torch.no_grad():
        _, hidden, ids = model.teacher_forced(tokens, sequences)
    words = hidden[0][: len(prompts.question(instruction))][None].float()
    word_valid = torch.ones(words.shape[:2], dtype=torch.bool)
    states = hidden[0][model.state_slots(ids[0], REL)][None].float()
    relevant_match = name_matches(list(relevant), scene.object_labels)
    target_match = name_matches([target[0] if target else NO_TARGET], scene.object_labels)
    two_stage = hidden[0][model.state_slots(ids[0], SEG)]
    single = hidden[1][model.state_slots(ids[1], SEG)]
    state = two_stage if model.config.mode == "two_stage" else single
    count = len(objects)
    target_label = torch.tensor([count if target is None else target[1]])
    objects_1 = ObjectSet.stack([objects])
    priors = torch.tensor([list(relevant.values())]).reshape(1, -1)
    head = model.grounding
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        logits = head.target_logits(
            state.float(), objects_1, priors, torch.ones_like(priors).bool(), words, word_valid,
            target_match,
        )  # fmt: skip
        loss = torch.nn.functional.cross_entropy(logits, target_label)
        if relevant:
            relevant_logits = head.relevant_logits(
                states, torch.ones(1, len(relevant)).bool(), objects_1, words, word_valid,
                relevant_match[None],
            )  # fmt: skip
            loss = loss + torch.nn.functional.cross_entropy(
                relevant_logits[0], torch.tensor(list(relevant.values()))
            )
        loss.backward()
        optimizer.step()
    model.eval()
