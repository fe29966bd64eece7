"""The token sequences of both R²S stages, shared by training and inference.

Layout (<scene> placeholders are replaced by one object token each before the LLM sees them):

    scene prefix   <scene>×K "\\n"                        once per scene (KV-cached, shared)
    question       "Question: {instruction}\\n"
    stage 1        "Related:" -> " green chair[REL], table[REL]" <eos>
    stage 2        "\\nTarget:" -> " lamp[SEG]" <eos>     (" nothing[SEG]" when none)
    single stage   question + "Target:" -> " lamp[SEG]" <eos>

Answers name objects as the question does: the category, with the colour only where the
question states it for that object, or the use where the question asks for one
(`answer_names`).

The hidden states the LLM produces with [REL]/[SEG] as input are what the grounding head
scores the objects with. Pieces are tokenised separately and concatenated, so a special token
never merges with text. Text (templates, instructions, names) is tokenised as plain text: a
user's "<scene>", "[SEG]" or "<|endoftext|>" becomes the ids of those characters, never a
special token's id; special ids are only ever placed by the builder itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from r2s_model.llm import SPECIAL_TOKENS
from r2s_model.synthetic.programs import FUNCTIONS

REL, SEG, SCENE = SPECIAL_TOKENS
IGNORE_INDEX = -100
NO_RELEVANT = "none"
NO_TARGET = "nothing"
# How answers name what a question asks for by its use (programs.FUNCTIONS): "something to sit
# on" fits every chair, sofa, bed and stool.
USE_NAMES = {
    "sit": "something to sit on",
    "sleep": "something to sleep on",
    "put_things_on": "something to put things on",
    "store_things": "something to store things in",
    "light": "something to light the room",
    "watch": "something to watch",
    "throw_away": "something to throw things away in",
    "drink_from": "something to drink from",
}


def noun(category: str) -> str:
    """How text names a category: "trash_can" -> "trash can"."""
    return category.replace("_", " ")


def uses(category: str) -> list[str]:
    """The `USE_NAMES` that fit an object of `category`: ["something to watch"] for "tv"."""
    return [USE_NAMES[use] for use, categories in FUNCTIONS.items() if category in categories]


def answer_names(
    question: str, labels: list[tuple[str, str]], colors: tuple[str, ...] = ()
) -> list[str]:
    """The names an answer to `question` may give the objects whose (colour, category) labels
    are `labels`, each once: every category ("lamp"), "white lamp" where the question says
    "white" ("brown" counts for "wooden brown"), and every use that fits one ("something to
    sit on"). Stage 2 chooses among them; training names an object with its colour only where
    the question states it for that object, which words alone do not tell ("the lamp on the
    white desk"), and by its use where the question asks for a use.

    Each colour of the vocabulary `colors` that the question says is also offered with every
    category of the scene, so that "the green chair" in a room of blue chairs can be answered
    with a name no object fits, which is an answer of no target."""
    said = [color for color in colors if _says(question, color)]
    names = []
    for color, category in labels:
        names.append(noun(category))
        if _says(question, color):
            names.append(f"{color} {noun(category)}")
    names += [use for _, category in labels for use in uses(category)]
    categories = dict.fromkeys(category for _, category in labels)
    names += [f"{color} {noun(category)}" for color in said for category in categories]
    return list(dict.fromkeys(names))


def _says(question: str, color: str) -> bool:
    """Whether `question` states `color` by its last word ("brown" for "wooden brown")."""
    word = color.split()[-1]
    return re.search(rf"\b{re.escape(word)}\b", question, flags=re.IGNORECASE) is not None


def name_matches(names: list[str], labels: list[tuple[str, str]]) -> Tensor:
    """(len(names), K) float32: 1 where names[i] fits object k, whose (colour, category) label
    is labels[k]: the name is its category, alone or after its colour ("chair" fits every
    chair, "red chair" the red ones), or one of its uses ("something to sit on")."""
    fitting = [
        {noun(category), f"{color} {noun(category)}", *uses(category)} for color, category in labels
    ]
    return torch.tensor([[float(name in fit) for fit in fitting] for name in names]).reshape(
        len(names), len(labels)
    )


@dataclass
class TokenSequence:
    """ids (L,) of prompt + answer; labels are IGNORE_INDEX on the prompt."""

    ids: list[int]
    labels: list[int]

    def __add__(self, other: TokenSequence) -> TokenSequence:
        return TokenSequence(self.ids + other.ids, self.labels + other.labels)


class PromptBuilder:
    """Builds the id sequences of `docs` above for one tokenizer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
        self.eos_id = tokenizer.eos_token_id
        # Every id a text must not produce: ours and the base tokenizer's special tokens.
        self._special_ids = {*self.ids.values(), *tokenizer.all_special_ids}
        self._special_strings = sorted(
            {*SPECIAL_TOKENS, *tokenizer.all_special_tokens}, key=len, reverse=True
        )
        self._newline = self.text("\n")
        self._stage1 = self.text("Related:")
        self._stage2 = [self.eos_id, *self.text("\nTarget:")]
        self._single = self.text("Target:")

    def text(self, text: str) -> list[int]:
        """The ids of `text` as plain text: special-token strings in it are split into ordinary
        tokens (the one place user text is tokenised, so an instruction can never inject one)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
        if self._special_ids.isdisjoint(ids):
            return ids
        # A tokenizer that ignores split_special_tokens: break each special string with a
        # zero-width space, which no special token contains.
        for special in self._special_strings:
            text = text.replace(special, special[0] + "\u200b" + special[1:])
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if not self._special_ids.isdisjoint(ids):
            raise ValueError(f"text {text!r} still tokenises to special ids")
        return ids

    def scene_prefix(self, num_objects: int) -> list[int]:
        return [self.ids[SCENE]] * num_objects + self._newline

    def question(self, instruction: str) -> list[int]:
        return self.text(f"Question: {instruction}\n")

    def stage1_prompt(self) -> list[int]:
        return list(self._stage1)

    def stage2_prompt(self) -> list[int]:
        """What follows stage 1's answer (its <eos> included) in the same sequence."""
        return list(self._stage2)

    def single_stage_prompt(self) -> list[int]:
        return list(self._single)

    def relevant_answer(self, names: list[str]) -> list[int]:
        ids: list[int] = []
        for index, name in enumerate(names):
            ids += self.text((", " if index else " ") + name) + [self.ids[REL]]
        if not names:
            ids += self.text(" " + NO_RELEVANT)
        return ids + [self.eos_id]

    def target_answer(self, name: str | None) -> list[int]:
        return self.text(" " + (name or NO_TARGET)) + [self.ids[SEG], self.eos_id]

    def two_stage_sequence(
        self, instruction: str, relevant: list[str], target: str | None
    ) -> TokenSequence:
        """Question, stage 1 and stage 2 in one sequence (after the scene prefix)."""
        return (
            self.prompt(self.question(instruction) + self.stage1_prompt())
            + self.answer(self.relevant_answer(relevant))
            + self.prompt(self.stage2_prompt()[1:])
            + self.answer(self.target_answer(target))
        )

    def single_stage_sequence(self, instruction: str, target: str | None) -> TokenSequence:
        return self.prompt(self.question(instruction) + self.single_stage_prompt()) + self.answer(
            self.target_answer(target)
        )

    @staticmethod
    def prompt(ids: list[int]) -> TokenSequence:
        return TokenSequence(ids, [IGNORE_INDEX] * len(ids))

    @staticmethod
    def answer(ids: list[int]) -> TokenSequence:
        return TokenSequence(ids, list(ids))

    def relevant_names(self, generated: list[int]) -> list[str]:
        """Names preceding each [REL] in stage-1 output ids, in order."""
        names, current = [], []
        for token in generated:
            if token == self.ids[REL]:
                names.append(self.tokenizer.decode(current).strip(" ,.") or "object")
                current = []
            elif token != self.eos_id:
                current.append(token)
        return names

    def answer_text(self, generated: list[int]) -> str:
        """Generated text with the special tokens removed."""
        special = set(self.ids.values()) | {self.eos_id}
        return self.tokenizer.decode([t for t in generated if t not in special]).strip()
