"""Touching superpoints, and their grouping into objects, on a scene of known boxes."""

import numpy as np
import torch

from r2s_model.objects.graph import superpoint_adjacency
from r2s_model.objects.parser import CATEGORIES, COLORS, ParsedScene
from r2s_model.objects.proposals import build_proposals
from r2s_model.objects.targets import majority_instance
from r2s_model.synthetic.furniture import CATEGORIES as GENERATED_CATEGORIES
from r2s_model.synthetic.palette import COLORS as GENERATED_COLORS
from tests.objects.conftest import BoxScene


def test_vocabularies_are_the_generators() -> None:
    assert tuple(GENERATED_CATEGORIES) == CATEGORIES
    assert tuple(GENERATED_COLORS) == COLORS


def superpoint_instances(scene: BoxScene) -> np.ndarray:
    return majority_instance(scene.superpoints, scene.instance, int(scene.superpoints.max()) + 1)


def test_adjacency_links_touching_superpoints_only(box_scene: BoxScene) -> None:
    count = int(box_scene.superpoints.max()) + 1
    edges = superpoint_adjacency(box_scene.points, box_scene.superpoints, count)
    owner = superpoint_instances(box_scene)
    pairs = {tuple(sorted(p)) for p in owner[edges].tolist() if p[0] != p[1]}
    # The table stands on the floor and carries the cup; the chair stands on the floor.
    assert pairs == {(1, 2), (2, 3), (1, 4)}
    assert (edges[:, 0] < edges[:, 1]).all()
    assert len(np.unique(edges, axis=0)) == len(edges)
    # Every object's own superpoints are connected among themselves.
    for instance in range(1, 5):
        mine = np.flatnonzero(owner == instance)
        inside = edges[np.isin(edges, mine).all(1)]
        assert len(mine) == 1 or set(np.unique(inside)) == set(mine)


def oracle_parse(
    scene: BoxScene, *, wrong_links: tuple[int, int] | None = None, how_many: int = 0
) -> ParsedScene:
    """A ParsedScene that knows the truth: one-hot categories and certain links, except
    `how_many` confident same-object links between the objects `wrong_links` (-1: all)."""
    count = int(scene.superpoints.max()) + 1
    owner = superpoint_instances(scene)
    edges = superpoint_adjacency(scene.points, scene.superpoints, count)
    same = owner[edges[:, 0]] == owner[edges[:, 1]]
    if wrong_links is not None:
        pairs = np.sort(owner[edges], axis=1)
        between = np.flatnonzero((pairs == sorted(wrong_links)).all(1))
        assert len(between) >= 3, "the objects must touch along several superpoint pairs"
        same[between if how_many < 0 else between[:how_many]] = True
    category = np.array([CATEGORIES.index(scene.categories[i]) for i in owner])
    logits = torch.full((count, len(CATEGORIES)), -5.0)
    logits[torch.arange(count), torch.from_numpy(category)] = 5.0
    point_counts = torch.bincount(torch.from_numpy(scene.superpoints), minlength=count)
    return ParsedScene(
        features=torch.from_numpy(owner).float()[:, None].repeat(1, 4),
        semantic_logits=logits,
        color_logits=torch.zeros(count, len(COLORS)),
        edges=torch.from_numpy(edges),
        link_logits=torch.from_numpy(np.where(same, 5.0, -5.0)).float(),
        centroids=torch.zeros(count, 3),
        point_counts=point_counts,
        batch=torch.zeros(count, dtype=torch.long),
    )


def proposals_of(parsed: ParsedScene, scene: BoxScene):
    return build_proposals(
        parsed,
        torch.from_numpy(scene.points),
        torch.from_numpy(scene.superpoints),
        link_threshold=0.5,
    )


def test_proposals_recover_the_known_objects(box_scene: BoxScene) -> None:
    proposals = proposals_of(oracle_parse(box_scene), box_scene)
    assert len(proposals) == 4
    objects = proposals.point_objects(torch.from_numpy(box_scene.superpoints)).numpy()
    for instance in range(1, 5):
        chosen = objects[box_scene.instance == instance]
        assert len(np.unique(chosen)) == 1  # the object is one proposal
        proposal = int(chosen[0])
        assert (objects == proposal).sum() == (box_scene.instance == instance).sum()
        truth = box_scene.points[box_scene.instance == instance]
        np.testing.assert_allclose(proposals.box_min[proposal], truth.min(0), atol=1e-6)
        np.testing.assert_allclose(proposals.box_max[proposal], truth.max(0), atol=1e-6)
        category = CATEGORIES[int(proposals.category_probs[proposal].argmax())]
        assert category == box_scene.categories[instance]
        # Features pool over the object's superpoints (here each holds its instance id).
        assert torch.allclose(proposals.features[proposal], torch.full((4,), float(instance)))
    assert int(proposals.point_counts.sum()) == len(box_scene.points)


def test_one_wrong_link_does_not_chain_two_objects(box_scene: BoxScene) -> None:
    """A confident same-object link on one of the many superpoint pairs where the chair
    stands on the floor is outvoted by the others (average linkage); links on all of them
    merge the two."""
    assert (
        len(proposals_of(oracle_parse(box_scene, wrong_links=(1, 4), how_many=1), box_scene)) == 4
    )
    assert (
        len(proposals_of(oracle_parse(box_scene, wrong_links=(1, 4), how_many=-1), box_scene)) == 3
    )
