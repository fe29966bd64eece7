"""Reasoning instructions for a generated room: questions, answers, targets and relevant objects.

Each sample comes from a program (docs/relations.md) that is clear-cut in the room: evaluated
with the generator's margins on the true geometry and on the scanned points, it selects exactly
the targets, so the question is never ambiguous. Categories are balanced as far as the room
allows, with about one sample in eight asking for something that is not there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from r2s_model.synthetic import candidates as pools
from r2s_model.synthetic.candidates import Candidate
from r2s_model.synthetic.facts import SceneFacts
from r2s_model.synthetic.rooms import Room
from r2s_model.synthetic.templates import (
    AFFORDANCE_FUNCTION_FRAMES,
    AFFORDANCE_RELATION_FRAMES,
    AFFORDANCE_SUPERLATIVE_FRAMES,
    FUNCTION_WORDS,
    GENERIC_FRAMES,
    Phraser,
    answer_text,
    compose,
)

REASONING_CATEGORIES = (
    "spatial_relation",
    "comparison",
    "attribute",
    "affordance",
    "multi_hop",
    "no_target",
)
NO_TARGET_ANSWER = "no such object"
_NO_TARGET_SHARE = 1 / 8
# Candidates checked per category and room at most: bounds the time of crowded rooms.
_MAX_CHECKS = 400
_PHRASING_TRIES = 4


@dataclass
class Sample:
    question: str
    answer: str
    category: str  # one of REASONING_CATEGORIES
    target_ids: list[int]  # [] for no_target
    relevant_ids: list[int]  # targets, references (recursively), compared objects
    program: dict


_POOLS: dict[str, Callable[[SceneFacts, np.random.Generator], list[Candidate]]] = {
    "spatial_relation": lambda facts, rng: pools.spatial_relation(facts),
    "comparison": lambda facts, rng: pools.comparison(facts),
    "attribute": lambda facts, rng: pools.attribute(facts),
    "affordance": lambda facts, rng: pools.affordance(facts),
    "multi_hop": pools.multi_hop,
    "no_target": lambda facts, rng: pools.no_target(facts),
}


class _Writer:
    """Turns candidates into samples, keeping questions and programs unique in the room."""

    def __init__(self, facts: SceneFacts, rng: np.random.Generator) -> None:
        self.facts, self.rng = facts, rng
        self.questions: set[str] = set()
        self.programs: set[str] = set()

        def pick(options: tuple[str, ...]) -> str:
            return options[rng.integers(len(options))]

        self.phraser = Phraser(facts.count, facts.raised, pick)
        self.canonical = Phraser(facts.count, facts.raised, lambda options: options[0])

    def samples(self, category: str) -> Iterator[Sample]:
        """Samples of `category`, lazily. Each next sample comes from a family drawn at random
        (near, directional, size, ...), so families that rarely give a clear-cut program still
        get their share."""
        families: dict[str, list[Candidate]] = {}
        for candidate in pools.ordered(_POOLS[category](self.facts, self.rng), self.rng):
            families.setdefault(candidate.family, []).append(candidate)
        queues = {family: iter(members) for family, members in families.items()}
        family, checks = None, 0
        while queues and checks < _MAX_CHECKS:
            if family is None:
                family = list(queues)[self.rng.integers(len(queues))]
            candidate = next(queues[family], None)
            if candidate is None:
                del queues[family]
                family = None
                continue
            checks += 1
            sample = self._sample(category, candidate)
            if sample is not None:
                yield sample
                family = None

    def _sample(self, category: str, candidate: Candidate) -> Sample | None:
        """The sample of a candidate if its program is clear-cut, new and has the number of
        targets the category needs."""
        key = json.dumps(candidate.program, sort_keys=True)
        if key in self.programs:
            return None
        result = self.facts.answer(candidate.program)
        if result is None or len(result[0]) != (0 if category == "no_target" else 1):
            return None
        question = self._question(category, candidate)
        if question is None:
            return None
        self.programs.add(key)
        self.questions.add(question)
        targets, needed = result
        return Sample(
            question=question,
            answer=self._answer(candidate.program, targets),
            category=category,
            target_ids=targets,
            relevant_ids=targets + needed,
            program=candidate.program,
        )

    def _answer(self, program: dict, targets: list[int]) -> str:
        if not targets:
            return NO_TARGET_ANSWER
        target = self.facts.by_id[targets[0]]
        return answer_text(program, target.category, target.color, self.canonical)

    def _question(self, category: str, candidate: Candidate) -> str | None:
        """A phrasing not used yet in this room, or None."""
        for _ in range(_PHRASING_TRIES):
            question = self._phrase(category, candidate)
            if question not in self.questions:
                return question
        return None

    def _phrase(self, category: str, candidate: Candidate) -> str:
        program, rng, phraser = candidate.program, self.rng, self.phraser
        frames = GENERIC_FRAMES
        words: dict[str, str] = {}
        if category == "affordance":
            of = program if program["type"] == "function" else program["of"]
            function = FUNCTION_WORDS[of["function"]]
            words = {
                "verb": phraser.pick(function.verbs),
                "something": phraser.pick(function.somethings),
            }
            if program["type"] == "function":
                frames = AFFORDANCE_FUNCTION_FRAMES
            elif program["type"] == "relation":
                frames = AFFORDANCE_RELATION_FRAMES
                words["where"] = phraser.where(program)
            else:
                frames = AFFORDANCE_SUPERLATIVE_FRAMES
        phrase = phraser.phrase(program)
        frame = frames[rng.integers(len(frames))]
        return compose(frame, phrase, candidate.viewpoint, rng, **words)


def _quotas(count: int, rng: np.random.Generator) -> dict[str, int]:
    """About one in eight no-target samples, the rest spread evenly (remainders at random)."""
    quotas = dict.fromkeys(REASONING_CATEGORIES, 0)
    # Rounded at random, so the share is one in eight on average whatever the count.
    expected = count * _NO_TARGET_SHARE
    quotas["no_target"] = int(expected) + int(rng.random() < expected - int(expected))
    positive = REASONING_CATEGORIES[:-1]
    base, remainder = divmod(count - quotas["no_target"], len(positive))
    for category in positive:
        quotas[category] = base
    for index in rng.choice(len(positive), remainder, replace=False):
        quotas[positive[index]] += 1
    return quotas


def generate_instructions(room: Room, rng: np.random.Generator, count: int) -> list[Sample]:
    """Up to `count` unambiguous samples for `room`, balanced over REASONING_CATEGORIES as the
    room allows (a category the room cannot fill passes its share to the others), in random
    order, no question twice."""
    writer = _Writer(SceneFacts(room), rng)
    streams = {category: writer.samples(category) for category in REASONING_CATEGORIES}
    samples: list[Sample] = []
    for category, quota in _quotas(count, rng).items():
        samples += [sample for _, sample in zip(range(quota), streams[category], strict=False)]
    # Shares a category could not fill go round the other positive categories in turn.
    open_categories = list(REASONING_CATEGORIES[:-1])
    turn = 0
    while len(samples) < count and open_categories:
        category = open_categories[turn % len(open_categories)]
        sample = next(streams[category], None)
        if sample is None:
            open_categories.remove(category)
        else:
            samples.append(sample)
            turn += 1
    return [samples[i] for i in rng.permutation(len(samples))]
