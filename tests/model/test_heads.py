"""The spatial encoding, the grounding head and the pairwise geometry it reads."""

import pytest
import torch

from r2s_model.grounding.head import GroundingHead
from r2s_model.grounding.objects import NUM_RELATION_FEATURES, ObjectSet, relation_features
from r2s_model.spatial import SpatialEncoding

B, S = 2, 12
K, R, H, D, C, L = 6, 3, 40, 16, 5, 4  # objects, [REL] states, LLM width, features, names


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- SpatialEncoding ---------------------------------------------------------------------------


def _boxes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    scene_min = torch.tensor([[-2.0, -3.0, 0.0], [0.0, 0.0, 0.0]])
    scene_max = torch.tensor([[4.0, 3.0, 2.5], [8.0, 6.0, 3.0]])
    span = scene_max - scene_min
    centroids = scene_min[:, None] + torch.rand(B, S, 3) * span[:, None]
    extents = 0.05 + 2.0 * torch.rand(B, S, 3)
    return centroids, extents, scene_min, scene_max


def test_spatial_encoding_shape_and_dtype() -> None:
    encoding = SpatialEncoding(out_dim=20, num_frequencies=6)
    out = encoding(*_boxes())
    assert out.shape == (B, S, 20)
    assert out.dtype == torch.float32
    # Degenerate padding (zero extents, centroid at origin) must stay finite.
    centroids, extents, scene_min, scene_max = _boxes()
    assert torch.isfinite(encoding(centroids * 0, extents * 0, scene_min, scene_max)).all()


def test_spatial_encoding_distinguishes_positions_and_sizes() -> None:
    encoding = SpatialEncoding(out_dim=32)
    centroids, extents, scene_min, scene_max = _boxes()
    base = encoding(centroids, extents, scene_min, scene_max)
    moved = encoding(centroids + torch.tensor([0.3, 0.0, 0.0]), extents, scene_min, scene_max)
    resized = encoding(centroids, extents * 1.5, scene_min, scene_max)
    assert (base - moved).norm(dim=-1).min() > 1e-2
    assert (base - resized).norm(dim=-1).min() > 1e-2


def test_spatial_encoding_translation_invariant() -> None:
    encoding = SpatialEncoding(out_dim=32)
    centroids, extents, scene_min, scene_max = _boxes()
    shift = torch.tensor([[5.0, -7.0, 1.5], [-3.0, 2.0, 0.25]])
    base = encoding(centroids, extents, scene_min, scene_max)
    shifted = encoding(centroids + shift[:, None], extents, scene_min + shift, scene_max + shift)
    torch.testing.assert_close(shifted, base, atol=1e-4, rtol=0)


# --- ObjectSet and relation_features ----------------------------------------------------------


def _objects(count: int = K, valid: list[int] | None = None) -> ObjectSet:
    """B scenes of `count` random objects; scene b has valid[b] valid ones (the rest padding)."""
    valid = valid or [count] * B
    low = torch.rand(B, count, 3) * 4
    mask = torch.arange(count)[None] < torch.tensor(valid)[:, None]
    return ObjectSet(
        torch.randn(B, count, D),
        torch.rand(B, count, C).softmax(-1),
        torch.rand(B, count, L).softmax(-1),
        low,
        low + 0.1 + torch.rand(B, count, 3),
        mask,
    )


def _pad(objects: ObjectSet, extra: int) -> ObjectSet:
    """The same objects with `extra` invalid slots of large garbage appended."""

    def grow(value: torch.Tensor) -> torch.Tensor:
        if value.dtype == torch.bool:
            return torch.cat([value, value.new_zeros(B, extra)], 1)
        return torch.cat([value, 1e3 * torch.randn(B, extra, value.shape[-1])], 1)

    return ObjectSet(*(grow(getattr(objects, n)) for n in ObjectSet.__dataclass_fields__))


def _box(low: list[float], high: list[float]) -> ObjectSet:
    one = torch.ones(1, 1, 1)
    return ObjectSet(
        one, one, one, torch.tensor([[low]]), torch.tensor([[high]]), torch.ones(1, 1).bool()
    )


def _relation(candidate: ObjectSet, anchor: ObjectSet) -> torch.Tensor:
    """The 12 relation features of one candidate box to one anchor box."""
    features = relation_features(candidate, anchor.box_min, anchor.box_max)
    assert features.shape == (1, 1, 1, NUM_RELATION_FEATURES)
    return features[0, 0, 0]


OFFSET, DISTANCE, HORIZONTAL, GAP, ABOVE, BELOW, OVERLAP = slice(0, 3), 3, 4, 5, 6, 7, 8
VOLUME, FOOTPRINT = 9, 10


def test_a_box_resting_on_another_is_above_it_and_overlaps_it() -> None:
    """A cup (0.1 m cube) standing on a table top: touching, no gap, fully over the table."""
    table = _box([0.0, 0.0, 0.0], [1.0, 1.0, 0.75])
    cup = _box([0.4, 0.4, 0.75], [0.5, 0.5, 0.85])
    on = _relation(cup, table)
    assert on[ABOVE] == pytest.approx(0.0, abs=1e-6)
    assert on[GAP] == pytest.approx(0.0, abs=1e-6)
    assert on[OVERLAP] == pytest.approx(1.0)
    assert on[BELOW] == pytest.approx(-0.85)  # the table's bottom is far below the cup's top
    assert on[OFFSET].tolist() == pytest.approx([-0.05, -0.05, 0.425])
    assert on[VOLUME] < 0 and on[FOOTPRINT] < 0  # the cup is the smaller one
    under = _relation(table, cup)
    assert under[BELOW] == pytest.approx(0.0, abs=1e-6) and under[ABOVE] == pytest.approx(-0.85)


def test_apart_boxes_have_their_gap_and_no_overlap() -> None:
    left = _box([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    right = _box([3.0, 4.0, 0.0], [4.0, 5.0, 1.0])  # 2 m apart in x, 3 m in y
    relation = _relation(right, left)
    assert relation[GAP] == pytest.approx(13**0.5)
    assert relation[OVERLAP] == 0.0
    assert relation[DISTANCE] == pytest.approx(5.0) and relation[HORIZONTAL] == pytest.approx(5.0)
    assert relation[VOLUME] == pytest.approx(0.0) and relation[FOOTPRINT] == pytest.approx(0.0)


def test_relation_features_are_antisymmetric_where_they_should_be() -> None:
    """Swapping candidate and anchor negates offsets and log ratios, keeps distances and gap,
    and swaps `above` with `below`."""
    objects = _objects()
    forward = relation_features(objects, objects.box_min, objects.box_max)  # (B, K, K, 12)
    backward = forward.transpose(1, 2)
    assert forward.shape == (B, K, K, NUM_RELATION_FEATURES)
    torch.testing.assert_close(forward[..., OFFSET], -backward[..., OFFSET])
    for index in (DISTANCE, HORIZONTAL, GAP, OVERLAP):
        torch.testing.assert_close(forward[..., index], backward[..., index])
    torch.testing.assert_close(forward[..., ABOVE], backward[..., BELOW])
    for index in (VOLUME, FOOTPRINT):
        torch.testing.assert_close(forward[..., index], -backward[..., index])


def test_stacked_sets_pad_with_invalid_objects_outside_the_scene_box() -> None:
    one, two = _box([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]), _box([-2.0, 1.0, 0.0], [5.0, 2.0, 3.0])
    two = ObjectSet(*(torch.cat([v, v], 1)[0] for v in vars(two).values()))
    stacked = ObjectSet.stack([ObjectSet(*(v[0] for v in vars(one).values())), two])
    assert len(stacked) == 2 and stacked.valid.tolist() == [[True, False], [True, True]]
    low, high = stacked.scene_box()
    assert low.tolist() == [[0.0, 0.0, 0.0], [-2.0, 1.0, 0.0]]
    assert high.tolist() == [[1.0, 1.0, 1.0], [5.0, 2.0, 3.0]]


# --- GroundingHead ----------------------------------------------------------------------------


def _head() -> GroundingHead:
    return GroundingHead(H, D, C, L, dim=32, num_layers=2, max_priors=4).eval()


def _inputs(objects: ObjectSet) -> dict[str, torch.Tensor]:
    states = torch.randn(B, R, H)
    state_valid = torch.tensor([[True, True, True], [True, False, False]])
    priors = torch.tensor([[2, 0], [1, 0]])
    prior_valid = torch.tensor([[True, True], [True, False]])
    return {
        "states": states,
        "state_valid": state_valid,
        "priors": priors,
        "prior_valid": prior_valid,
        "words": torch.randn(B, 5, H),
        "word_valid": torch.tensor([[True] * 5, [True] * 3 + [False] * 2]),
        "relevant_match": (torch.rand(B, R, len(objects)) < 0.3).float(),
        "target_match": (torch.rand(B, len(objects)) < 0.3).float(),
    }


def _logits(head: GroundingHead, objects: ObjectSet, inputs: dict) -> tuple:
    words = (inputs["words"], inputs["word_valid"])
    relevant = head.relevant_logits(
        inputs["states"], inputs["state_valid"], objects, *words, inputs["relevant_match"]
    )
    target = head.target_logits(
        inputs["states"][:, 0], objects, inputs["priors"], inputs["prior_valid"], *words,
        inputs["target_match"],
    )  # fmt: skip
    return relevant, target


@torch.no_grad()
def test_output_shapes_and_padded_objects_never_win() -> None:
    head, objects = _head(), _objects(valid=[K, 3])
    inputs = _inputs(objects)
    relevant, target = _logits(head, objects, inputs)
    assert relevant.shape == (B, R, K + 1) and target.shape == (B, K + 1)
    assert torch.isfinite(relevant).all() and torch.isfinite(target).all()
    assert (relevant[1, :, 3:K] == torch.finfo(torch.float32).min).all()
    assert (target[1, 3:K] == torch.finfo(torch.float32).min).all()
    assert (target.softmax(-1)[1, 3:K] == 0).all() and (relevant.softmax(-1)[1, :, 3:K] == 0).all()
    no_priors = (torch.zeros(B, 0).long(), torch.zeros(B, 0).bool())
    words = (inputs["words"], inputs["word_valid"])
    single = head.target_logits(
        inputs["states"][:, 0], objects, *no_priors, *words, inputs["target_match"]
    )
    assert single.shape == (B, K + 1)


@torch.no_grad()
def test_scores_follow_the_objects_when_they_are_permuted() -> None:
    """No object order is built in: permuting the objects permutes their logits, "none" stays."""
    head, objects = _head(), _objects()
    inputs = _inputs(objects)
    order = torch.randperm(K)
    permuted = ObjectSet(*(getattr(objects, n)[:, order] for n in ObjectSet.__dataclass_fields__))
    moved = dict(
        inputs,
        priors=torch.argsort(order)[inputs["priors"]],  # the same prior objects
        relevant_match=inputs["relevant_match"][..., order],
        target_match=inputs["target_match"][:, order],
    )
    relevant, target = _logits(head, objects, inputs)
    relevant_p, target_p = _logits(head, permuted, moved)
    torch.testing.assert_close(relevant_p[..., :K], relevant[..., order], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(target_p[:, :K], target[:, order], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(relevant_p[..., K], relevant[..., K], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(target_p[:, K], target[:, K], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_padding_objects_priors_and_states_changes_nothing() -> None:
    head, objects = _head(), _objects(valid=[K, 4])
    inputs = _inputs(objects)
    relevant, target = _logits(head, objects, inputs)
    padded = _pad(objects, 3)
    more = dict(inputs)
    more["states"] = torch.cat([inputs["states"], 1e3 * torch.randn(B, 2, H)], 1)
    more["state_valid"] = torch.cat([inputs["state_valid"], torch.zeros(B, 2).bool()], 1)
    more["priors"] = torch.cat([inputs["priors"], torch.tensor([[K + 1], [K + 2]])], 1)
    more["prior_valid"] = torch.cat([inputs["prior_valid"], torch.zeros(B, 1).bool()], 1)
    more["words"] = torch.cat([inputs["words"], 1e3 * torch.randn(B, 2, H)], 1)
    more["word_valid"] = torch.cat([inputs["word_valid"], torch.zeros(B, 2).bool()], 1)
    more["relevant_match"] = torch.cat(
        [inputs["relevant_match"], torch.zeros(B, R, 3)], 2
    )  # padded objects fit no name, padded [REL]s fit nothing
    more["relevant_match"] = torch.cat([more["relevant_match"], torch.zeros(B, 2, K + 3)], 1)
    more["target_match"] = torch.cat([inputs["target_match"], torch.zeros(B, 3)], 1)
    relevant_p, target_p = _logits(head, padded, more)
    valid = objects.valid
    for row in range(B):
        columns = [*valid[row].nonzero().flatten().tolist(), -1]  # the valid objects and "none"
        count = int(inputs["state_valid"][row].sum())
        torch.testing.assert_close(
            relevant_p[row, :count][:, columns],
            relevant[row, :count][:, columns],
            atol=1e-5,
            rtol=1e-5,
        )
        torch.testing.assert_close(
            target_p[row, columns], target[row, columns], atol=1e-5, rtol=1e-5
        )


def test_gradients_reach_every_parameter_of_the_head() -> None:
    head = _head().train()
    objects = _objects(valid=[K, 4])
    relevant, target = _logits(head, objects, _inputs(objects))
    (relevant.logsumexp(-1).sum() + target.logsumexp(-1).sum()).backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@torch.no_grad()
def test_priors_change_the_target_scores() -> None:
    """Stage 2 reads its priors: other prior objects, other target logits."""
    head, objects = _head(), _objects()
    inputs = _inputs(objects)
    _, target = _logits(head, objects, inputs)
    _, other = _logits(head, objects, dict(inputs, priors=inputs["priors"] + 1))
    assert (target - other).abs().max() > 1e-3


@torch.no_grad()
def test_the_words_and_the_name_match_change_the_scores() -> None:
    """Both stages read the question's words and which objects fit the written name."""
    head, objects = _head(), _objects()
    inputs = _inputs(objects)
    relevant, target = _logits(head, objects, inputs)
    reworded = dict(inputs, words=torch.randn(B, 5, H))
    renamed = dict(
        inputs,
        relevant_match=1 - inputs["relevant_match"],
        target_match=1 - inputs["target_match"],
    )
    for other in (reworded, renamed):
        relevant_o, target_o = _logits(head, objects, other)
        assert (relevant - relevant_o).abs().max() > 1e-3
        assert (target - target_o).abs().max() > 1e-3


@torch.no_grad()
def test_each_prior_s_geometry_comes_with_whether_it_fits_the_target_name() -> None:
    """For "the chair farthest from the box" distances count from the box, not from the other
    chairs: the relation features of every (object, prior) pair end with the prior's name
    match."""
    head, objects = _head(), _objects()
    inputs = _inputs(objects)
    seen = []
    head.relation.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    _logits(head, objects, inputs)
    fits = inputs["target_match"].gather(1, inputs["priors"])  # (B, P)
    assert seen[0].shape == (B, K, 2, NUM_RELATION_FEATURES + 1)
    assert torch.equal(seen[0][..., -1], fits[:, None, :].expand(B, K, 2))
