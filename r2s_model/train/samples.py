"""Instruction samples over cached object proposals: names for the answers, proposal indices
for the grounding labels.

A ground-truth object is represented by the proposal that overlaps it best (point IoU); below
`MIN_MATCH_IOU` it has no proposal and its label is ignored (the parser missed it, nothing
downstream can choose it).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from r2s_model.data.io import SceneArrays, SyntheticDataset
from r2s_model.grounding.objects import ObjectSet
from r2s_model.objects.cache import CachedScene, ObjectCache
from r2s_model.prompts import USE_NAMES, name_matches, noun
from r2s_model.synthetic.programs import FUNCTIONS

MIN_MATCH_IOU = 0.25
# A proposal with at least this share of its points on the target is a part of the target.
TARGET_PART_SHARE = 0.5
# Programs that the target alone fits: without it the question has no target (a superlative
# would pick another object instead).
SOLE_FIT_PROGRAMS = ("color", "relation", "function")
# Reference nodes that name their objects directly ("the black cabinet", "the door").
DIRECT_REFERENCES = ("color", "category")


def sole_fit(program: dict[str, Any]) -> bool:
    """Whether only the target fits `program`, and a relation's reference is named directly:
    a nested one ("the lamp on the black cabinet") is the one stage 1 most often gets wrong, and
    a target that is no longer related to a wrong prior is no reason to answer "none"."""
    if program["type"] not in SOLE_FIT_PROGRAMS:
        return False
    reference = program.get("reference", [])
    nodes = reference if isinstance(reference, list) else [reference]
    return all(node["type"] in DIRECT_REFERENCES for node in nodes)


UNMATCHED = -1
# The [REL] of a no-target question's asked name (`asked_name`): no object is annotated for it.
ASKED = -2


def stated_labels(program: dict[str, Any] | list[Any]) -> set[tuple[str, str]]:
    """Every (colour, category) a program states: {("red", "box")} for "the chair near the red
    box"."""
    nodes = program if isinstance(program, list) else [program]
    stated = set()
    for node in nodes:
        if "color" in node and "category" in node:
            stated.add((node["color"], node["category"]))
        for key in ("of", "reference"):
            if key in node:
                stated |= stated_labels(node[key])
    return stated


def asked(program: dict[str, Any]) -> dict[str, Any]:
    """The node of a program that says what kind of object it asks for (innermost "of")."""
    while "of" in program:
        program = program["of"]
    return program


def object_name(
    scene: SceneArrays, object_id: int, stated: set[tuple[str, str]], use: str | None
) -> str:
    """How an answer names an object: by the `use` the question asks for where it fits the
    object ("something to sit on"), else by its category, after its colour where the question
    states that colour for an object of that category (`stated_labels`). An answer never
    states what the question does not give: which chair is "nearest the window", or whether
    the seat asked for is a chair or a sofa, the LLM cannot read from words, so a gold answer
    naming that chair's colour would teach it to guess, and the grounding head to trust the
    guess."""
    color, category = scene.color_of()[object_id], scene.category_of()[object_id]
    if use is not None and category in FUNCTIONS[use]:
        return USE_NAMES[use]
    return f"{color} {noun(category)}" if (color, category) in stated else noun(category)


def asked_name(scene: SceneArrays, record: dict[str, Any]) -> str | None:
    """The answer's name for a question with no target: what it asks for ("the lamp beside the
    green bed" -> "lamp", "something to sit on by the door" -> "something to sit on") where
    the scene has such objects, so that the LLM is not taught to tell from words alone that
    none of them is beside the bed (the grounding head answers "no target"); None ("nothing")
    where the scene has no object of that name, which the object tokens show."""
    node = asked(record["program"])
    if "function" in node:
        name = USE_NAMES[node["function"]]
    else:
        name = noun(node["category"])
        if "color" in node:
            name = f"{node['color']} {name}"
    labels = list(zip(scene.color_of().values(), scene.category_of().values(), strict=True))
    return name if name_matches([name], labels).any() else None


def cached_objects(cached: CachedScene) -> ObjectSet:
    """A cached scene's proposals (K objects) as the grounding head reads them."""
    features = torch.from_numpy(cached.object_features).float()
    return ObjectSet(
        features,
        torch.from_numpy(cached.object_category_probs).float(),
        torch.from_numpy(cached.object_color_probs).float(),
        torch.from_numpy(cached.object_box_min).float(),
        torch.from_numpy(cached.object_box_max).float(),
        torch.ones(len(features), dtype=torch.bool),
    )


def match_objects(
    instance: np.ndarray, point_objects: np.ndarray, num_proposals: int
) -> dict[int, tuple[int, float]]:
    """instance (N,) ground-truth ids (0 = none), point_objects (N,) proposal of each point ->
    {object id: (best proposal or UNMATCHED, its IoU)}."""
    ids, inverse = np.unique(instance, return_inverse=True)
    table = np.zeros((len(ids), num_proposals), np.int64)
    np.add.at(table, (inverse, point_objects), 1)
    union = table.sum(1, keepdims=True) + table.sum(0, keepdims=True) - table
    iou = table / np.maximum(union, 1)
    matches = {}
    for row, object_id in enumerate(ids.tolist()):
        if object_id == 0:
            continue
        best = int(iou[row].argmax())
        matches[object_id] = (
            best if iou[row, best] >= MIN_MATCH_IOU else UNMATCHED,
            iou[row, best],
        )
    return matches


@dataclass
class InstructionSample:
    """One instruction on one scene. relevant_objects / target_object are proposal indices
    (UNMATCHED when the parser has no proposal for that object); target_object is None for a
    no-target sample, whose target_name is its `asked_name`. A no-target sample with an asked
    name lists it first among its relevant names, as a sample with a target lists the target,
    so that stage 1's answer does not tell the two apart; its relevant object is ASKED.
    target_ious (K,) float32: each
    proposal's IoU with the target (zeros for no target), what a chosen proposal would score.
    target_parts: the proposals mostly on the target, where removing them leaves the question
    without a target (`sole_fit`); empty otherwise."""

    sample_id: str
    scene_id: str
    category: str
    question: str
    relevant_names: list[str]
    target_name: str | None
    relevant_objects: list[int]
    target_object: int | None
    target_ious: np.ndarray
    target_parts: tuple[int, ...] = ()


def scene_samples(
    scene: SceneArrays, cached: CachedScene, records: list[dict[str, Any]], max_relevant: int
) -> list[InstructionSample]:
    """The samples of one scene's records."""
    point_objects = cached.superpoint_object[scene.superpoints]
    count = len(cached.object_features)
    matches = match_objects(scene.instance, point_objects, count)
    samples = []
    for record in records:
        stated = stated_labels(record["program"])
        use = asked(record["program"]).get("function")
        targets = record["target_ids"]
        relevant = record["relevant_ids"]
        names = [object_name(scene, i, stated, use) for i in relevant]
        proposals = [matches.get(i, (UNMATCHED, 0.0))[0] for i in relevant]
        if targets:
            target_name = object_name(scene, targets[0], stated, use)
        elif (target_name := asked_name(scene, record)) is not None:
            names, proposals = [target_name, *names], [ASKED, *proposals]
        ious = np.zeros(count, np.float32)
        parts: tuple[int, ...] = ()
        if targets:
            truth = np.isin(scene.instance, targets)
            inside = np.bincount(point_objects[truth], minlength=count)
            sizes = np.bincount(point_objects, minlength=count)
            ious = (inside / np.maximum(sizes + truth.sum() - inside, 1)).astype(np.float32)
            if sole_fit(record["program"]):
                share = inside / np.maximum(sizes, 1)
                parts = tuple(np.flatnonzero(share >= TARGET_PART_SHARE).tolist())
        samples.append(
            InstructionSample(
                sample_id=record["sample_id"],
                scene_id=record["scene_id"],
                category=record["category"],
                question=record["question"],
                relevant_names=names[:max_relevant],
                target_name=target_name,
                relevant_objects=proposals[:max_relevant],
                target_object=matches.get(targets[0], (UNMATCHED, 0.0))[0] if targets else None,
                target_ious=ious,
                target_parts=parts,
            )
        )
    return samples


def by_scene(dataset: SyntheticDataset) -> dict[str, list[dict[str, Any]]]:
    """A split's records grouped by scene, scenes in sorted order."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in dataset.records:
        grouped[record["scene_id"]].append(record)
    return dict(sorted(grouped.items()))


def load_split(
    dataset: SyntheticDataset, cache: ObjectCache, max_relevant: int, max_scenes: int | None = None
) -> tuple[dict[str, ObjectSet], list[InstructionSample]]:
    """The objects and samples of a split's first `max_scenes` scenes in sorted order (all
    when None)."""
    objects, samples = {}, []
    for scene_id, records in list(by_scene(dataset).items())[:max_scenes]:
        cached = cache.scene(scene_id)
        objects[scene_id] = cached_objects(cached)
        samples += scene_samples(dataset.scene(scene_id), cached, records, max_relevant)
    return objects, samples
