"""The token sequences of both R²S stages, shared by training and inference.

Layout (placeholders are replaced by embeddings before the LLM sees them):

    prefix   <scene>×Q "\\nQuestion: {instruction}\\n"          shared by both stages (KV-cached)
    stage 1  "List the objects related to the question.\\nAnswer:"
             -> " bed[REL], window[REL]"
    stage 2  "Related objects: bed<prior>, window<prior>. Pay attention to them.\\nAnswer:"
             -> " the chair left of the bed[SEG]"
    single   "Answer:" -> " the chair left of the bed[SEG]"

Pieces are tokenised separately and concatenated, so a special token never merges with text.
Text (templates, instructions, names) is tokenised as plain text: a user's "<scene>", "[SEG]" or
"<|endoftext|>" becomes the ids of those characters, never a special token's id; special ids are
only ever placed by the builder itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from r2s_model.llm import SPECIAL_TOKENS

REL, SEG, SCENE, PRIOR = SPECIAL_TOKENS
IGNORE_INDEX = -100
NO_RELEVANT = "none"


@dataclass
class TokenSequence:
    """ids (L,) of prompt + answer; labels are IGNORE_INDEX on the prompt."""

    ids: list[int]
    labels: list[int]


class PromptBuilder:
    """Builds the id sequences of `docs` above for one tokenizer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, num_scene_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.num_scene_tokens = num_scene_tokens
        self.ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
        self.eos_id = tokenizer.eos_token_id
        # Every id a text must not produce: ours and the base tokenizer's special tokens.
        self._special_ids = {*self.ids.values(), *tokenizer.all_special_ids}
        self._special_strings = sorted(
            {*SPECIAL_TOKENS, *tokenizer.all_special_tokens}, key=len, reverse=True
        )
        self._stage1 = self.text("List the objects related to the question.\nAnswer:")
        self._single = self.text("Answer:")

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

    def prefix(self, instruction: str) -> list[int]:
        return [self.ids[SCENE]] * self.num_scene_tokens + self.text(f"\nQuestion: {instruction}\n")

    def stage1_prompt(self) -> list[int]:
        return list(self._stage1)

    def stage2_prompt(self, names: list[str]) -> list[int]:
        ids = self.text("Related objects:")
        for index, name in enumerate(names):
            ids += self.text((", " if index else " ") + name) + [self.ids[PRIOR]]
        if not names:
            ids += self.text(" " + NO_RELEVANT)
        return ids + self.text(". Pay attention to them.\nAnswer:")

    def single_stage_prompt(self) -> list[int]:
        return list(self._single)

    def relevant_answer(self, names: list[str]) -> list[int]:
        ids: list[int] = []
        for index, name in enumerate(names):
            ids += self.text((", " if index else " ") + name) + [self.ids[REL]]
        if not names:
            ids += self.text(" " + NO_RELEVANT)
        return ids + [self.eos_id]

    def target_answer(self, answer: str) -> list[int]:
        return self.text(" " + answer) + [self.ids[SEG], self.eos_id]

    def sequence(self, prompt: list[int], answer: list[int]) -> TokenSequence:
        return TokenSequence(prompt + answer, [IGNORE_INDEX] * len(prompt) + answer)

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
