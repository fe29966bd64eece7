"""Candidate programs of each reasoning category for one room, before they are checked.

Candidates are grouped in families (near, directional, size superlative, ...) and come in a
random order in which every family is equally likely to be next, so common structures (four
directions times several viewpoints) do not crowd out rare ones (between, under).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from r2s_model.synthetic.facts import SceneFacts, category_program
from r2s_model.synthetic.furniture import FURNITURE, SceneObject
from r2s_model.synthetic.palette import PALETTES
from r2s_model.synthetic.programs import DIRECTIONAL, FUNCTIONS

SIZE_MEASURES = ("largest", "smallest", "tallest", "shortest")
# Plausible "X on Y" / "X under Y"; no-target questions may also ask the implausible ones
# ("the chair on the bed").
ON_THINGS = ("cup", "bottle", "box", "lamp", "plant", "monitor", "tv")
ON_SUPPORTS = ("table", "desk", "cabinet", "shelf")
UNDER_THINGS = ("box", "trash_can", "stool")
UNDER_HOSTS = ("table", "desk")
_LOOSE_ON = (ON_THINGS + ("chair", "stool"), ON_SUPPORTS + ("bed", "sofa"))
_LOOSE_UNDER = (UNDER_THINGS + ("chair", "cup", "plant"), UNDER_HOSTS + ("bed", "shelf"))
_MAX_REFERENCE_CHAINS = 12


@dataclass(frozen=True)
class Candidate:
    family: str
    program: dict
    viewpoint: str | None = None  # kind of viewpoint, for phrasing


def relation_program(of: dict, relation: str, reference: dict | list, **viewpoint: dict) -> dict:
    return {"type": "relation", "of": of, "relation": relation, "reference": reference, **viewpoint}


def superlative_program(of: dict, measure: str, reference: dict | None = None) -> dict:
    program = {"type": "superlative", "of": of, "measure": measure}
    return program if reference is None else {**program, "reference": reference}


def _plausible(relation: str, of_categories: tuple[str, ...], reference: str, loose: bool) -> bool:
    if relation in ("on", "under"):
        things, hosts = {
            ("on", False): (ON_THINGS, ON_SUPPORTS),
            ("on", True): _LOOSE_ON,
            ("under", False): (UNDER_THINGS, UNDER_HOSTS),
            ("under", True): _LOOSE_UNDER,
        }[relation, loose]
        return reference in hosts and all(c in things for c in of_categories)
    return True


def _relations_to(
    facts: SceneFacts,
    of: dict,
    of_categories: tuple[str, ...],
    references: list[tuple[dict, SceneObject]],
    loose: bool,
) -> list[Candidate]:
    """Relation programs over `of` to each of `references` (program, object) of other
    categories: near, far, on, under where plausible, and each direction from each viewpoint."""
    candidates = []
    for reference, item in references:
        if item.category in of_categories:
            continue
        for relation in ("near", "far_from", "on", "under"):
            if _plausible(relation, of_categories, item.category, loose):
                candidates.append(Candidate(relation, relation_program(of, relation, reference)))
        for kind, viewpoint in facts.viewpoints:
            for relation in DIRECTIONAL:
                program = relation_program(of, relation, reference, viewpoint=viewpoint)
                candidates.append(Candidate("directional", program, kind))
    return candidates


def relations_of(
    facts: SceneFacts, of: dict, of_categories: tuple[str, ...], loose: bool = False
) -> list[Candidate]:
    """Relation programs over `of` to every single (or pair) reference of other categories."""
    candidates = _relations_to(facts, of, of_categories, facts.singles, loose)
    for reference, pair in facts.pairs:
        if all(o.category not in of_categories for o in pair):
            candidates.append(Candidate("between", relation_program(of, "between", reference)))
    return candidates


def _distances_to(
    of: dict, of_categories: tuple[str, ...], references: list[tuple[dict, SceneObject]]
) -> list[Candidate]:
    return [
        Candidate("distance", superlative_program(of, measure, reference))
        for reference, item in references
        if item.category not in of_categories
        for measure in ("closest", "farthest")
    ]


def superlatives_of(facts: SceneFacts, of: dict, of_categories: tuple[str, ...]) -> list[Candidate]:
    """Size superlatives over `of`, and distance ones to every single of other categories."""
    sizes = [Candidate("size", superlative_program(of, m)) for m in SIZE_MEASURES]
    return sizes + _distances_to(of, of_categories, facts.singles)


def _groups(facts: SceneFacts, least: int) -> Iterator[tuple[str, dict]]:
    """Furniture categories with at least `least` members, and their programs."""
    for category in FURNITURE:
        if len(facts.members.get(category, [])) >= least:
            yield category, category_program(category)


def spatial_relation(facts: SceneFacts) -> list[Candidate]:
    return [c for category, of in _groups(facts, 2) for c in relations_of(facts, of, (category,))]


def comparison(facts: SceneFacts) -> list[Candidate]:
    return [
        candidate
        for category, of in _groups(facts, 2)
        for candidate in superlatives_of(facts, of, (category,))
    ]


def attribute(facts: SceneFacts) -> list[Candidate]:
    return [
        Candidate(category, program)
        for category, _ in _groups(facts, 2)
        for program, item in facts.singles
        if item.category == category and program["type"] == "color"
    ]


def affordance(facts: SceneFacts) -> list[Candidate]:
    candidates = []
    for function, categories in FUNCTIONS.items():
        of = {"type": "function", "function": function}
        count = facts.count(of)
        if count == 1:
            candidates.append(Candidate("function", of))
        elif count >= 2:
            candidates += relations_of(facts, of, categories)
            candidates += superlatives_of(facts, of, categories)
    return candidates


def no_target(facts: SceneFacts) -> list[Candidate]:
    candidates = []
    for category, of in _groups(facts, 1):
        candidates += relations_of(facts, of, (category,), loose=True)
        present = {o.color for o in facts.members[category]}
        for color in PALETTES[category]:
            if color not in present:
                program = {"type": "color", "category": category, "color": color}
                candidates.append(Candidate("color", program))
    return candidates


def ordered(candidates: list[Candidate], rng: np.random.Generator) -> list[Candidate]:
    """A random order in which each family is equally likely to come next (weighted sampling
    without replacement, each candidate weighing 1 / its family's size)."""
    sizes = Counter(candidate.family for candidate in candidates)
    weights = np.array([1.0 / sizes[candidate.family] for candidate in candidates])
    keys = np.log(rng.random(len(candidates))) / weights
    return [candidates[i] for i in np.argsort(-keys, kind="stable")]


def multi_hop(facts: SceneFacts, rng: np.random.Generator) -> list[Candidate]:
    """Relations and distance superlatives whose reference is itself a (non-directional)
    relation or a superlative that selects one object: up to a dozen such references are found
    first, then every category not involved in one is related to it."""
    inner = [
        candidate
        for category, of in _groups(facts, 2)
        for candidate in relations_of(facts, of, (category,))
        + superlatives_of(facts, of, (category,))
        if candidate.family not in ("directional", "between")
    ]
    by_id = facts.by_id
    chains: list[tuple[dict, SceneObject]] = []
    involved: list[set[str]] = []
    for candidate in ordered(inner, rng):
        if len(chains) == _MAX_REFERENCE_CHAINS:
            break
        result = facts.answer(candidate.program)
        if result is not None and len(result[0]) == 1:
            chains.append((candidate.program, by_id[result[0][0]]))
            involved.append({by_id[i].category for i in result[0] + result[1]})
    candidates = []
    for chain, categories in zip(chains, involved, strict=True):
        for category, of in _groups(facts, 2):
            if category not in categories:
                candidates += _relations_to(facts, of, (category,), [chain], loose=False)
                candidates += _distances_to(of, (category,), [chain])
    return candidates
