"""Grounding-stage batches from cached states: labels, priors, padding, and the losses."""

import numpy as np
import torch

from r2s_model.config import AugmentationConfig
from r2s_model.grounding.head import GroundingHead
from r2s_model.grounding.objects import ObjectSet
from r2s_model.train.grounding import (
    IGNORE,
    GroundingBatch,
    GroundingTraining,
    removed_target,
    score_cached,
    stack_batch,
    training_priors,
)
from r2s_model.train.samples import ASKED, UNMATCHED, InstructionSample
from r2s_model.train.states import SampleStates

H, D, C, L = 16, 8, 5, 4


def objects(count: int) -> ObjectSet:
    low = torch.rand(count, 3)
    return ObjectSet(
        torch.randn(count, D), torch.rand(count, C).softmax(-1), torch.rand(count, L).softmax(-1),
        low, low + 0.5, torch.ones(count, dtype=torch.bool),
    )  # fmt: skip


def sample(
    sample_id: str, scene_id: str, relevant: list[int], target: int | None, parts: tuple = ()
):
    return InstructionSample(
        sample_id, scene_id, "relation", "question", ["name"] * len(relevant),
        None if target is None else "name", relevant, target, np.zeros(5, np.float32), parts,
    )  # fmt: skip


def states(relevant: int, words: int = 3) -> SampleStates:
    return SampleStates(
        torch.randn(words, H).half(), torch.randn(relevant, H).half(), torch.randn(H).half(),
        torch.randn(H).half(),
    )  # fmt: skip


SCENES = {"small": objects(3), "large": objects(5)}
# What the parser read of each object, (colour, category).
LABELS = {
    "small": [("red", "chair"), ("red", "box"), ("green", "chair")],
    "large": [
        ("white", "bed"),
        ("red", "lamp"),
        ("white", "lamp"),
        ("grey", "box"),
        ("red", "box"),
    ],
}


def logits(head: GroundingHead, batch: GroundingBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Both stages' logits of a batch, with its own priors."""
    words = (batch.words, batch.word_valid)
    relevant = head.relevant_logits(
        batch.relevant_states, batch.relevant_valid, batch.objects, *words, batch.relevant_match
    )
    target = head.target_logits(
        batch.target_states, batch.objects, batch.priors, batch.prior_valid, *words,
        batch.target_match,
    )  # fmt: skip
    return relevant, target


def test_labels_priors_and_padding_of_a_batch() -> None:
    samples = [
        sample("a", "small", [0, UNMATCHED], 1),
        sample("b", "large", [], None),
        sample("c", "small", [2], UNMATCHED),
    ]
    cached = {"a": states(2, words=4), "b": states(0, words=2), "c": states(1)}
    batch = stack_batch(samples, SCENES, LABELS, cached, True, [[0], [], [2, 1]])
    # The question's words, right-padded to the longest question.
    assert batch.word_valid.tolist() == [[True] * 4, [True] * 2 + [False] * 2, [True] * 3 + [False]]
    torch.testing.assert_close(batch.words[1, :2], cached["b"].words.float())
    assert not batch.words[1, 2:].any()
    assert batch.objects.valid.tolist() == [
        [True] * 3 + [False] * 2,
        [True] * 5,
        [True] * 3 + [False] * 2,
    ]
    # "none" is the column after the (padded) objects; an unmatched target is ignored.
    assert batch.target_labels.tolist() == [1, 5, IGNORE]
    assert batch.relevant_labels.tolist() == [[0, IGNORE], [IGNORE, IGNORE], [2, IGNORE]]
    assert batch.relevant_valid.tolist() == [[True, True], [False, False], [True, False]]
    assert batch.priors.tolist() == [[0, 0], [0, 0], [2, 1]]
    assert batch.prior_valid.tolist() == [[True, False], [False, False], [True, True]]
    torch.testing.assert_close(batch.target_states[0], cached["a"].two_stage.float())
    single = stack_batch(samples, SCENES, LABELS, cached, False, [[], [], []])
    torch.testing.assert_close(single.target_states[2], cached["c"].single_stage.float())
    assert single.priors.shape == (3, 0)


def test_a_batch_without_any_matched_label_has_a_zero_loss_not_nan() -> None:
    """Every object of the batch missed by the parser: nothing to learn, and nothing must
    become NaN (an all-ignored cross-entropy is 0/0)."""
    head = GroundingHead(H, D, C, L, dim=16, num_layers=1)
    samples = [sample("a", "small", [UNMATCHED], UNMATCHED), sample("b", "large", [], UNMATCHED)]
    batch = stack_batch(samples, SCENES, LABELS, {"a": states(1), "b": states(0)}, True, [[], []])
    for two_stage in (True, False):
        losses = GroundingTraining(head, two_stage)(batch)
        assert all(float(value.detach()) == 0.0 for value in losses.values()), losses
        head.zero_grad()
        losses["total"].backward()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


def test_the_losses_are_cross_entropies_over_the_labelled_rows() -> None:
    torch.manual_seed(0)
    head = GroundingHead(H, D, C, L, dim=16, num_layers=1).eval()
    samples = [sample("a", "small", [0, UNMATCHED], 1), sample("c", "small", [2], UNMATCHED)]
    batch = stack_batch(samples, SCENES, LABELS, {"a": states(2), "c": states(1)}, True, [[0], [2]])
    losses = GroundingTraining(head, True)(batch)
    relevant, target = logits(head, batch)
    expected_target = -target.log_softmax(-1)[0, 1]
    expected_relevant = -(relevant.log_softmax(-1)[0, 0, 0] + relevant.log_softmax(-1)[1, 0, 2]) / 2
    torch.testing.assert_close(losses["target"], expected_target)
    torch.testing.assert_close(losses["relevant"], expected_relevant)
    torch.testing.assert_close(losses["total"], expected_target + expected_relevant)


def test_padding_words_and_objects_change_no_score() -> None:
    """A question scored beside a longer one in a larger scene (its words and objects padded)
    gets the scores it gets alone; its words do change them."""
    torch.manual_seed(0)
    head = GroundingHead(H, D, C, L, dim=16, num_layers=1).eval()
    short, long = sample("a", "small", [0], 1), sample("b", "large", [1, 2], 3)
    cached = {"a": states(1, words=2), "b": states(2, words=6)}

    def scores(samples: list, priors: list, cached: dict) -> tuple[torch.Tensor, torch.Tensor]:
        relevant, target = logits(head, stack_batch(samples, SCENES, LABELS, cached, True, priors))
        return target[0, [0, 1, 2, -1]], relevant[0, 0, [0, 1, 2, -1]]

    with torch.no_grad():
        alone = scores([short], [[0]], cached)
        together = scores([short, long], [[0], [1, 2]], cached)
        other_words = {**cached, "a": states(1, words=2)}
        other_words["a"].relevant, other_words["a"].two_stage = (
            cached["a"].relevant, cached["a"].two_stage,
        )  # fmt: skip
        reworded = scores([short], [[0]], other_words)
    for one, two in zip(alone, together, strict=True):
        torch.testing.assert_close(one, two, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(alone[0], reworded[0])


def test_name_matches_mark_the_objects_a_name_fits() -> None:
    """Each [REL]'s and the target's name against what the parser read of each object: a bare
    category fits every object of it, a colour narrows it."""
    named = InstructionSample(
        "n", "small", "relation", "the chair by the Red box", ["chair", "red box"], "chair",
        [0, 1], 0, np.zeros(3, np.float32),
    )  # fmt: skip
    nothing = InstructionSample(
        "z", "large", "no_target", "the red bed", ["red lamp"], None, [1], None,
        np.zeros(5, np.float32),
    )  # fmt: skip
    cached = {"n": states(2), "z": states(1)}
    batch = stack_batch([named, nothing], SCENES, LABELS, cached, True, [[], []])
    assert batch.relevant_match[0].tolist() == [[1, 0, 1, 0, 0], [0, 1, 0, 0, 0]]
    assert batch.target_match[0].tolist() == [1, 0, 1, 0, 0]  # padding objects match nothing
    assert batch.relevant_match[1].tolist() == [[0, 1, 0, 0, 0], [0] * 5]
    assert batch.target_match[1].tolist() == [0] * 5


def test_a_no_target_questions_asked_name_gets_a_prior_of_that_name_and_no_label() -> None:
    """ "the lamp near the bed" with no such lamp: stage 1 lists "lamp" first, as it lists a
    target first; nothing is annotated for it, and training gives stage 2 one of the scene's
    lamps as a prior, as stage 1 chooses one at inference."""
    asked = InstructionSample(
        "a", "large", "no_target", "the lamp near the bed", ["lamp", "white bed"], "lamp",
        [ASKED, 0], None, np.zeros(5, np.float32),
    )  # fmt: skip
    keep_all = AugmentationConfig(drop_prob=0.0, add_prob=0.0)
    rng = np.random.default_rng(0)
    chosen = {training_priors(asked, LABELS["large"], keep_all, 4, rng)[0] for _ in range(50)}
    assert chosen == {1, 2}  # the red and the white lamp, both drawn
    assert training_priors(asked, LABELS["large"], keep_all, 4, rng)[1:] == [0]
    batch = stack_batch([asked], SCENES, LABELS, {"a": states(2)}, True, [[1, 0]])
    assert batch.relevant_labels.tolist() == [[IGNORE, 0]]
    assert batch.target_labels.tolist() == [5]  # "none"
    torch.testing.assert_close(batch.relevant_match[0, 0], torch.tensor([0.0, 1, 1, 0, 0]))


def test_a_sample_without_its_target_learns_none_in_the_scene_left() -> None:
    """The target's parts (and its matched proposal) leave the scene: they are no longer
    objects, priors or relevant labels, and the target label is "none"."""
    relation = sample("a", "large", [3, 1], 1, parts=(1, 4))
    superlative = sample("b", "large", [0], 2)
    always = AugmentationConfig(drop_prob=0.0, add_prob=1.0, max_distractors=4,
                                remove_target_prob=1.0)  # fmt: skip
    rng = np.random.default_rng(0)
    assert removed_target(relation, always, rng) == [1, 4]
    assert removed_target(superlative, always, rng) == []
    assert removed_target(relation, AugmentationConfig(), rng) == []  # off by default
    for _ in range(20):
        priors = training_priors(relation, LABELS["large"], always, 4, rng, [1, 4])
        assert 3 in priors and not {1, 4} & set(priors)
    batch = stack_batch(
        [relation, superlative], SCENES, LABELS, {"a": states(2), "b": states(1)}, True,
        [[3], [0]], [[1, 4], []],
    )  # fmt: skip
    assert batch.objects.valid.tolist() == [[True, False, True, True, False], [True] * 5]
    assert batch.target_labels.tolist() == [5, 2]
    assert batch.relevant_labels.tolist() == [[3, IGNORE], [0, IGNORE]]
    losses = GroundingTraining(GroundingHead(H, D, C, L, dim=16, num_layers=1), True)(batch)
    assert torch.isfinite(losses["total"])


def test_recall_on_cached_states_counts_only_annotated_relevant_objects() -> None:
    """An asked name has no annotated object: it adds a choice, never a missed object."""
    torch.manual_seed(0)
    head = GroundingHead(H, D, C, L, dim=16, num_layers=1).eval()
    head.relevant_scorer.match_weight.data.fill_(1000.0)  # each [REL] picks what its name fits
    asked = InstructionSample(
        "a", "large", "no_target", "the lamp near the bed", ["lamp", "white bed"], "lamp",
        [ASKED, 0], None, np.zeros(5, np.float32),
    )  # fmt: skip
    scores = score_cached(
        head, [asked], SCENES, LABELS, {"a": states(2)}, two_stage=True, score_threshold=0.5
    )
    # A lamp and the bed chosen; the bed is the one annotated object, and it was found.
    assert scores["relevant_recall"] == 1.0 and scores["relevant_precision"] == 0.5
