"""R2SModel: the scene parser, the LLM and the grounding head wired into two-stage R²S over
object proposals.

`encode_scene` runs the (frozen) parser once per scene: superpoints, object proposals, and one
LLM token per proposal (its category and colour evidence in the LLM's own word-embedding space),
whose KV-cache is the prefix every instruction on the scene continues. `segment` writes the
question after it; stage 1 generates the relevant objects' names, each followed by [REL], and the
grounding head picks, per [REL] state, one proposal (or none); stage 2 writes the target's name
(the likeliest, by the LLM, of the scene's objects named as the question names them, and
"nothing") and [SEG], and the head picks the target among all proposals with the chosen
relevant ones as priors and the question's word states as context, or answers that nothing
matches. The target mask is the chosen proposal's points.

The LLM's object tokens are parameter-free (a mixture of the category and colour names' word
embeddings), so the LLM's hidden states for a question on a scene depend only on the LLM and its
LoRA: training caches them once (r2s_model/train/states.py) and trains the grounding head on
the cache.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np
import torch
from torch import Tensor, nn
from transformers import DynamicCache

from r2s_model.config import R2SConfig
from r2s_model.grounding.head import GroundingHead
from r2s_model.grounding.objects import ObjectSet
from r2s_model.llm import (
    LLMBundle,
    load_llm,
    load_trainable_state_dict,
    set_training_mode,
    trainable_state_dict,
)
from r2s_model.objects.detect import detect_objects
from r2s_model.objects.parser import SceneParser
from r2s_model.objects.proposals import ObjectProposals
from r2s_model.prompts import (
    IGNORE_INDEX,
    NO_TARGET,
    REL,
    SCENE,
    SEG,
    PromptBuilder,
    TokenSequence,
    answer_names,
    name_matches,
    noun,
)
from r2s_model.scene import SceneEncoding, capped_neighbours
from r2s_model.validation import InvalidInstruction, clean_cloud, clean_instruction


class SegmentationStatus(StrEnum):
    """Outcome of one instruction; mirrors SegmentationResult.STATUS_* of the ROS interface."""

    OK = "ok"
    NO_TARGET = "no_target"
    EMPTY_SCENE = "empty_scene"
    INVALID_INSTRUCTION = "invalid_instruction"


@dataclass
class RelevantPrediction:
    """A relevant element from stage 1: mask (N,) bool over the input cloud's points."""

    name: str
    score: float
    mask: np.ndarray


@dataclass
class SegmentationOutput:
    """The answer to one instruction. target_mask (N,) bool over the input cloud's points."""

    status: SegmentationStatus
    instruction: str
    target_mask: np.ndarray
    target_score: float = 0.0
    answer: str = ""
    relevant: list[RelevantPrediction] = field(default_factory=list)
    reason: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    generated_tokens: int = 0  # by the LLM over both stages


def object_set(proposals: ObjectProposals) -> ObjectSet:
    """The proposals of one scene as the grounding head reads them (K objects)."""
    return ObjectSet(
        proposals.features,
        proposals.category_probs,
        proposals.color_probs,
        proposals.box_min,
        proposals.box_max,
        torch.ones(len(proposals), dtype=torch.bool, device=proposals.features.device),
    )


class R2SModel(nn.Module):
    """Two-stage (or, for the ablation, single-stage) reasoning segmentation over objects."""

    def __init__(self, config: R2SConfig, llm: LLMBundle) -> None:
        super().__init__()
        self.config = config
        self.llm_bundle = set_training_mode(llm, config.llm_mode, lora_rank=config.lora_rank)
        self.llm = self.llm_bundle.model
        self.parser = SceneParser(config.parser).requires_grad_(False)
        parser = config.parser
        self.grounding = GroundingHead(
            llm.hidden_size,
            parser.dim,
            len(parser.categories),
            len(parser.colors),
            dim=config.grounding_dim,
            num_layers=config.grounding_layers,
            max_priors=config.max_relevant,
        )
        self.prompts = PromptBuilder(llm.tokenizer)
        self.register_buffer("category_words", self._word_rows(parser.categories), False)
        self.register_buffer("color_words", self._word_rows(parser.colors), False)

    @classmethod
    def build(cls, config: R2SConfig) -> R2SModel:
        """A fresh model around the LLM named by `config.llm_source`."""
        return cls(config, load_llm(config.llm_source))

    @property
    def device(self) -> torch.device:
        return self.grounding.kind.weight.device

    def train(self, mode: bool = True) -> R2SModel:
        """The parser stays in eval mode: it is frozen, its statistics included."""
        super().train(mode)
        self.parser.eval()
        return self

    def trainable_state(self) -> dict[str, Tensor]:
        """What a checkpoint holds: every parameter and buffer outside the LLM (the frozen
        parser's included, so a checkpoint is self-contained), plus the LLM's trainable
        parameters (LoRA, special-token rows) under ``llm.``."""
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("llm.")}
        state.update({f"llm.{k}": v for k, v in trainable_state_dict(self.llm_bundle).items()})
        return state

    def load_trainable_state(self, state: dict[str, Tensor]) -> None:
        """Inverse of `trainable_state`; ValueError naming missing, extra or misshapen keys."""
        own = {k: v for k, v in state.items() if not k.startswith("llm.")}
        expected = {k: v for k, v in self.state_dict().items() if not k.startswith("llm.")}
        problems = [f"missing {k}" for k in sorted(expected.keys() - own.keys())]
        problems += [f"unexpected {k}" for k in sorted(own.keys() - expected.keys())]
        problems += [
            f"{k}: {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
            for k, v in own.items()
            if k in expected and v.shape != expected[k].shape
        ]
        if problems:
            raise ValueError("; ".join(problems[:8]) + (" ..." if len(problems) > 8 else ""))
        llm_state = {k.removeprefix("llm."): v for k, v in state.items() if k.startswith("llm.")}
        load_trainable_state_dict(self.llm_bundle, llm_state)
        self.load_state_dict(own, strict=False)

    # ---- the LLM's view of the objects ---------------------------------------------------

    def _word_rows(self, names: tuple[str, ...]) -> Tensor:
        """(len(names), H): each name's mean input-embedding row ("trash_can" read as words)."""
        table = self.llm.get_input_embeddings()
        rows = []
        for name in names:
            ids = torch.tensor(self.prompts.text(" " + noun(name)))
            rows.append(table(ids).detach().float().mean(0))
        return torch.stack(rows)

    def scene_tokens(self, category_probs: Tensor, color_probs: Tensor) -> Tensor:
        """(K, C) and (K, L) probabilities -> (K, H) LLM tokens: the expected colour word plus
        the expected category word, scaled to the norm of a word embedding."""
        words = category_probs @ self.category_words + color_probs @ self.color_words
        scale = self.category_words.norm(dim=-1).mean()
        return words / words.norm(dim=-1, keepdim=True).clamp_min(1e-6) * scale

    def embed(self, ids: Tensor, scene_tokens: Tensor | None) -> Tensor:
        """Token ids (B, L) -> embeddings with the <scene> slots filled, in order, from
        scene_tokens (B·K, H) (every row's tokens concatenated)."""
        embeds = self.llm.get_input_embeddings()(ids)
        slots = ids == self.prompts.ids[SCENE]
        if scene_tokens is not None and slots.any():
            values = scene_tokens.reshape(-1, embeds.shape[-1]).to(embeds.dtype)
            embeds = embeds.masked_scatter(slots[..., None], values)
        return embeds

    def run_prefix(self, objects: ObjectSet) -> tuple[DynamicCache, int]:
        """The LLM's KV-cache after one scene's object tokens, and its length."""
        ids = self.prompts.scene_prefix(len(objects))
        cache = DynamicCache()
        _run(self, ids, self.scene_tokens(objects.category_probs, objects.color_probs), cache)
        return cache, len(ids)

    # ---- inference -----------------------------------------------------------------------

    @torch.no_grad()
    def encode_scene(
        self, points: np.ndarray, colors: np.ndarray | None = None, max_points: int | None = None
    ) -> SceneEncoding:
        """Validates and encodes a cloud once: points (N, 3), colors (N, 3) in [0, 1] or uint8.
        At most `max_points` of them are encoded (the config's `limits.max_points` when None,
        never more; a fixed-seed uniform sample), and masks still cover every input point.
        Reuse the result for every instruction while the scene is unchanged."""
        limits = self.config.limits
        if max_points is not None:
            limits = replace(limits, max_points=min(max_points, limits.max_points))
        cloud = clean_cloud(points, colors, limits)
        if len(cloud.points) < limits.min_points:
            return SceneEncoding(cloud, None, None, None, 0, 0.0, 0.0)
        parser = self.parser
        detected = detect_objects(parser, cloud.points, cloud.colors, self.config.superpoints)
        start = time.perf_counter()
        objects = object_set(detected.proposals)
        prefix, length = self.run_prefix(objects)
        prefix_ms = (time.perf_counter() - start) * 1000
        timings = detected.timings_ms
        labels = objects.labels(parser.config.colors, parser.config.categories)
        capped, nearest = capped_neighbours(np.asarray(points), cloud)
        return SceneEncoding(
            cloud,
            objects,
            detected.point_objects(),
            prefix,
            length,
            timings.get("superpoints", 0.0),
            timings["encode"] + timings["proposals"] + prefix_ms,
            labels,
            capped,
            nearest,
        )

    @torch.no_grad()
    def segment(
        self,
        scene: SceneEncoding,
        instruction: object,
        on_relevant: Callable[[list[RelevantPrediction]], None] | None = None,
    ) -> SegmentationOutput:
        """Segments the target of `instruction` in a scene from `encode_scene`: stage 1 names
        and selects the relevant objects, stage 2 the target with them as priors.
        `on_relevant` gets stage 1's elements before stage 2 starts (two-stage mode only); an
        exception it raises abandons the call."""
        config = self.config
        empty = np.zeros(scene.cloud.num_input, dtype=bool)
        try:
            text = clean_instruction(instruction, config.limits)
        except InvalidInstruction as error:
            status, reason = SegmentationStatus.INVALID_INSTRUCTION, str(error)
            return SegmentationOutput(status, str(instruction)[:200], empty, reason=reason)
        if scene.is_empty:
            reason = f"{len(scene.cloud.points)} valid points (minimum {config.limits.min_points})"
            return SegmentationOutput(SegmentationStatus.EMPTY_SCENE, text, empty, reason=reason)
        try:
            return self._answer(scene, text, on_relevant)
        finally:
            # The next instruction starts from the scene again (crop takes tokens to remove).
            extra = scene.prefix.get_seq_length() - scene.prefix_length
            if extra:
                scene.prefix.crop(-extra)

    def _answer(
        self,
        scene: SceneEncoding,
        text: str,
        on_relevant: Callable[[list[RelevantPrediction]], None] | None,
    ) -> SegmentationOutput:
        config, prompts = self.config, self.prompts
        empty = np.zeros(scene.cloud.num_input, dtype=bool)
        timings = {"superpoints": scene.superpoints_ms, "encode": scene.encode_ms}
        objects = ObjectSet.stack([scene.objects])
        cache = scene.prefix
        start = time.perf_counter()
        two_stage = config.mode == "two_stage"
        question = prompts.question(text)
        prompt = prompts.stage1_prompt() if two_stage else prompts.single_stage_prompt()
        hidden, logits = _run(self, question + prompt, None, cache)
        words = hidden[: len(question)][None]
        word_valid = torch.ones(words.shape[:2], dtype=torch.bool, device=self.device)
        relevant: list[RelevantPrediction] = []
        chosen: list[int] = []
        generated_tokens = 0
        answer: list[int] = []
        if two_stage:
            generated, states = _generate(
                self, logits, cache, config.stage1_max_new_tokens, REL, config.max_relevant
            )
            generated_tokens += len(generated)
            names = prompts.relevant_names(generated)[: len(states)]
            if len(states):
                valid = torch.ones(1, len(states), dtype=torch.bool, device=self.device)
                match = name_matches(names, scene.object_labels).to(self.device)
                logits = self.grounding.relevant_logits(
                    states[None], valid, objects, words, word_valid, match[None]
                )[0]
                for name, probabilities in zip(names, logits.softmax(-1), strict=True):
                    score, index = probabilities.max(0)
                    index = int(index)
                    if index < len(scene.objects) and index not in chosen:
                        chosen.append(index)
                        relevant.append(
                            RelevantPrediction(name, float(score), scene.point_mask(index))
                        )
            timings["stage1"] = _ms_since(start)
            if on_relevant is not None:
                on_relevant(relevant)
            start = time.perf_counter()
            logits = _run(self, prompts.stage2_prompt(), None, cache)[1]
        options = answer_names(text, scene.object_labels, config.parser.colors)
        generated, states, name = _name_target(self, logits, cache, options)
        answer = generated
        match = name_matches([name], scene.object_labels).to(self.device)
        named_absent = name != NO_TARGET and not bool(match.any())
        priors = torch.tensor([chosen], dtype=torch.long, device=self.device).reshape(1, -1)
        logits = self.grounding.target_logits(
            states[:1], objects, priors, torch.ones_like(priors, dtype=torch.bool), words,
            word_valid, match,
        )[0]  # fmt: skip
        probabilities = logits.softmax(-1)
        score, index = probabilities[:-1].max(0)
        index = int(index)
        timings["stage2" if two_stage else "stage1"] = _ms_since(start)
        found = float(score) >= config.score_threshold and float(score) > float(probabilities[-1])
        found = found and not named_absent
        if found:
            reason = ""
        elif named_absent:
            reason = f"the answer '{name}' fits no object in the scene"
        else:
            reason = "the model found no object matching the instruction"
        return SegmentationOutput(
            status=SegmentationStatus.OK if found else SegmentationStatus.NO_TARGET,
            instruction=text,
            target_mask=scene.point_mask(index) if found else empty,
            target_score=float(score),
            answer=prompts.answer_text(answer),
            relevant=relevant,
            reason=reason,
            timings_ms=timings,
            generated_tokens=generated_tokens + len(generated),
        )

    # ---- training ------------------------------------------------------------------------

    def teacher_forced(
        self, scene_tokens: Tensor, sequences: list[TokenSequence], *, with_loss: bool = True
    ) -> tuple[Tensor | None, Tensor, Tensor]:
        """Runs B answer sequences after one scene's prefix of object tokens (K, H): the prefix
        once, its KV-cache repeated for the B continuations, as inference shares it.

        Returns the LM loss over the answer tokens (None without `with_loss`: the LM head, a
        fifth of the LLM's work, is then skipped), the last hidden states (B, L, H) of the
        sequences and their ids (B, L), right-padded with EOS.
        """
        prefix = self.prompts.scene_prefix(len(scene_tokens))
        cache = DynamicCache()
        _run(self, prefix, scene_tokens, cache)
        cache.batch_repeat_interleave(len(sequences))
        length = max(len(s.ids) for s in sequences)
        rows = len(sequences)
        ids = torch.full((rows, length), self.prompts.eos_id, device=self.device)
        labels = torch.full_like(ids, IGNORE_INDEX)
        attention = torch.zeros(rows, len(prefix) + length, dtype=torch.long, device=self.device)
        attention[:, : len(prefix)] = 1
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence.ids)] = torch.tensor(sequence.ids)
            labels[row, : len(sequence.ids)] = torch.tensor(sequence.labels)
            attention[row, len(prefix) : len(prefix) + len(sequence.ids)] = 1
        embeds = self.embed(ids, None)
        if not with_loss:
            decoder = self.llm.get_decoder()
            output = decoder(inputs_embeds=embeds, attention_mask=attention, past_key_values=cache)
            return None, output.last_hidden_state, ids
        output = self.llm(
            inputs_embeds=embeds,
            attention_mask=attention,
            past_key_values=cache,
            labels=labels,
            output_hidden_states=True,
        )
        return output.loss, output.hidden_states[-1], ids

    def state_slots(self, ids: Tensor, token: str) -> Tensor:
        """(B, L) bool: the positions holding `token` ([REL] or [SEG])."""
        return ids == self.prompts.ids[token]


# The steps of `segment`, as functions of the model so that tests can drive them one by one.


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _run(
    model: R2SModel, ids: list[int], scene_tokens: Tensor | None, cache: DynamicCache
) -> tuple[Tensor, Tensor]:
    """Feeds ids (L,) through the LLM on top of `cache` -> last-layer hidden states (L, H) and
    the next-token logits (V,) after the last id."""
    tensor = torch.tensor([ids], device=model.device)
    output = model.llm(
        inputs_embeds=model.embed(tensor, scene_tokens),
        past_key_values=cache,
        use_cache=True,
        output_hidden_states=True,
    )
    return output.hidden_states[-1][0].float(), output.logits[0, -1]


def _generate(
    model: R2SModel,
    logits: Tensor,
    cache: DynamicCache,
    max_new_tokens: int,
    state_token: str,
    max_states: int,
) -> tuple[list[int], Tensor]:
    """Greedy continuation of `cache`, whose next-token logits (V,) are `logits` (`_run`'s).

    Returns the generated ids and the hidden states (K, H) the LLM produced with `state_token`
    as input (as in teacher forcing), stopping at EOS, after `max_states` of them, or at
    `max_new_tokens`. The <scene> placeholder is never generated.
    """
    prompts = model.prompts
    state_id = prompts.ids[state_token]
    logits = logits.clone()
    generated: list[int] = []
    states: list[Tensor] = []
    for _ in range(max_new_tokens):
        logits[prompts.ids[SCENE]] = float("-inf")
        token = int(logits.argmax())
        if token == prompts.eos_id:
            break
        generated.append(token)
        hidden, logits = _run(model, [token], None, cache)
        if token == state_id:
            states.append(hidden[-1])
            if len(states) >= max_states:
                break
    empty = torch.zeros(0, model.llm_bundle.hidden_size, device=model.device)
    return generated, torch.stack(states) if states else empty


def _name_target(
    model: R2SModel, logits: Tensor, cache: DynamicCache, names: list[str]
) -> tuple[list[int], Tensor, str]:
    """Stage 2's answer, restricted to the scene: on `cache`, whose next-token logits (V,) are
    `logits`, the likeliest by the LLM of " <name>[SEG]" for the names of `names`
    (`answer_names` of the scene's objects and the question's colours) and " nothing[SEG]" is
    written; a free answer could name anything. Returns the written ids, the [SEG] state (1, H)
    and the name written; `cache` is left as it was.

    Exact branch and bound: the options starting with the likeliest first token are scored
    in one batch; an option whose first token alone is less likely than the best complete
    option cannot win (later tokens only lower a score), so only the others are scored next.
    """
    prompts = model.prompts
    candidates = [*dict.fromkeys(names), NO_TARGET]
    options = [prompts.text(" " + name) + [prompts.ids[SEG]] for name in candidates]
    first = logits.float().log_softmax(-1)
    bound = [float(first[option[0]]) for option in options]
    leading = options[max(range(len(options)), key=bound.__getitem__)][0]
    pending = [row for row, option in enumerate(options) if option[0] == leading]
    scores: dict[int, float] = {}
    states: dict[int, Tensor] = {}
    while pending:
        found, found_states = _score_options(model, cache, [options[row] for row in pending])
        for row, score, state in zip(pending, found, found_states, strict=True):
            scores[row], states[row] = bound[row] + score, state
        best = max(scores, key=scores.__getitem__)
        pending = [
            row for row in range(len(options)) if row not in scores and bound[row] > scores[best]
        ]
    return options[best], states[best][None], candidates[best]


def _score_options(
    model: R2SModel, cache: DynamicCache, options: list[list[int]]
) -> tuple[list[float], Tensor]:
    """Each option's log-probability after its first token on a copy of `cache`, in one
    right-padded batch, and the last-layer state (B, H) at its last token."""
    prompts = model.prompts
    length = max(len(option) for option in options)
    ids = torch.full((len(options), length), prompts.eos_id, device=model.device)
    past = cache.get_seq_length()
    attention = torch.zeros(len(options), past + length, dtype=torch.long, device=model.device)
    attention[:, :past] = 1
    for row, option in enumerate(options):
        ids[row, : len(option)] = torch.tensor(option)
        attention[row, past : past + len(option)] = 1
    branch = copy.deepcopy(cache)
    branch.batch_repeat_interleave(len(options))
    output = model.llm(inputs_embeds=model.embed(ids, None), attention_mask=attention,
                       past_key_values=branch, output_hidden_states=True)  # fmt: skip
    following = output.logits.float().log_softmax(-1)
    scores = [
        sum(float(following[row, step - 1, option[step]]) for step in range(1, len(option)))
        for row, option in enumerate(options)
    ]
    last = torch.tensor([len(option) - 1 for option in options], device=model.device)
    states = output.hidden_states[-1][torch.arange(len(options)), last].float()
    return scores, states
