"""Inference: encode a scene once, then answer instructions on it.

Both stages continue one KV-cache: the shared prefix (scene tokens + question) is run once,
stage 1 extends it, the cache is cropped back to the prefix and stage 2 extends it again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from transformers import DynamicCache

from r2s_model.prompts import PRIOR, REL, SCENE, SEG
from r2s_model.scene import SceneEncoding, SceneTokens, capped_neighbours
from r2s_model.superpoints import compute_superpoints
from r2s_model.validation import InvalidInstruction, clean_cloud, clean_instruction

if TYPE_CHECKING:
    from r2s_model.model import R2SModel


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


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


@torch.no_grad()
def encode_scene(model: R2SModel, points: np.ndarray, colors: np.ndarray | None) -> SceneEncoding:
    """Validates a cloud and encodes it: points (N, 3), colors (N, 3) in [0, 1] or uint8."""
    limits = model.config.limits
    cloud = clean_cloud(points, colors, limits)
    if len(cloud.points) < limits.min_points:
        return SceneEncoding(cloud, None, None, 0.0, 0.0)
    start = time.perf_counter()
    superpoints = compute_superpoints(cloud.points, cloud.colors, model.config.superpoints)
    superpoints_ms = _ms_since(start)

    start = time.perf_counter()
    device = model.device
    superpoint_ids = torch.from_numpy(superpoints).to(device)
    tokens = model.scene_tokens(
        torch.from_numpy(cloud.points).to(device),
        torch.from_numpy(cloud.colors).to(device),
        superpoint_ids,
        torch.zeros(len(superpoints), dtype=torch.long, device=device),
        num_scenes=1,
    )
    capped, nearest = capped_neighbours(np.asarray(points), cloud)
    return SceneEncoding(
        cloud, superpoint_ids, tokens, superpoints_ms, _ms_since(start), capped, nearest
    )


@torch.no_grad()
def segment(model: R2SModel, scene: SceneEncoding, instruction: object) -> SegmentationOutput:
    """Answers one instruction on an encoded scene."""
    empty = np.zeros(scene.cloud.num_input, dtype=bool)
    try:
        text = clean_instruction(instruction, model.config.limits)
    except InvalidInstruction as error:
        return SegmentationOutput(
            SegmentationStatus.INVALID_INSTRUCTION, str(instruction)[:200], empty, reason=str(error)
        )
    if scene.is_empty:
        reason = (
            f"{len(scene.cloud.points)} valid points (minimum {model.config.limits.min_points})"
        )
        return SegmentationOutput(SegmentationStatus.EMPTY_SCENE, text, empty, reason=reason)

    timings = {"superpoints": scene.superpoints_ms, "encode": scene.encode_ms}
    tokens = scene.tokens
    start = time.perf_counter()
    prompts = model.prompts
    cache = DynamicCache()
    prefix = prompts.prefix(text)
    _run(model, prefix, model.compress(tokens, [text]), None, cache)
    relevant: list[RelevantPrediction] = []
    priors = None
    names: list[str] = []
    generated_tokens = 0
    if model.config.mode == "two_stage":
        generated, states = _generate(
            model, prompts.stage1_prompt(), None, None, cache,
            model.config.stage1_max_new_tokens, REL, model.config.max_relevant,
        )  # fmt: skip
        generated_tokens += len(generated)
        names = prompts.relevant_names(generated)[: len(states)]
        relevant, masks = _relevant_elements(model, scene, names, states)
        names = [element.name for element in relevant]
        if relevant:
            priors = model.prior_tokens(tokens, 0, masks)
        cache.crop(len(prefix) - cache.get_seq_length())  # negative: tokens to drop
        timings["stage1"] = _ms_since(start)
        start = time.perf_counter()
        prompt = prompts.stage2_prompt(names)
    else:
        prompt = prompts.single_stage_prompt()
    generated, states = _generate(
        model, prompt, None, priors, cache, model.config.stage2_max_new_tokens, SEG, 1
    )
    if len(states) == 0:  # the LLM never emitted [SEG]: ask for it explicitly
        states = _run(model, [prompts.ids[SEG]], None, None, cache)[0]
    output = model.decode_masks([states[:1]], tokens)
    probability = output.mask_logits[0, 0].sigmoid()
    score = float(output.score_logits[0, 0].sigmoid())
    target = (probability > model.config.mask_threshold) & tokens.mask[0]
    timings["stage2" if model.config.mode == "two_stage" else "stage1"] = _ms_since(start)
    found = score >= model.config.score_threshold and bool(target.any())
    return SegmentationOutput(
        status=SegmentationStatus.OK if found else SegmentationStatus.NO_TARGET,
        instruction=text,
        target_mask=scene.point_mask(target) if found else empty,
        target_score=score,
        answer=prompts.answer_text(generated),
        relevant=relevant,
        reason="" if found else "the model found no object matching the instruction",
        timings_ms=timings,
        generated_tokens=generated_tokens + len(generated),
    )


def _relevant_elements(
    model: R2SModel, scene: SceneEncoding, names: list[str], states: Tensor
) -> tuple[list[RelevantPrediction], Tensor]:
    """Decodes stage-1 [REL] states (K, H) and keeps confident, non-empty elements."""
    if len(states) == 0:
        return [], states
    tokens: SceneTokens = scene.tokens
    output = model.decode_masks([states], tokens)
    probabilities = output.mask_logits[0].sigmoid() * tokens.mask[0]
    scores = output.score_logits[0].sigmoid()
    masks = probabilities > model.config.mask_threshold
    keep = (scores >= model.config.score_threshold) & masks.any(1)
    elements = [
        RelevantPrediction(names[k], float(scores[k]), scene.point_mask(masks[k]))
        for k in keep.nonzero().flatten().tolist()
    ]
    return elements, probabilities[keep]


def _run(
    model: R2SModel,
    ids: list[int],
    scene_tokens: Tensor | None,
    priors: Tensor | None,
    cache: DynamicCache,
) -> tuple[Tensor, Tensor]:
    """Feeds ids (L,) through the LLM on top of `cache` -> last-layer hidden states (L, H) and
    the next-token logits (V,) after the last id."""
    tensor = torch.tensor([ids], device=model.device)
    output = model.llm(
        inputs_embeds=model.embed(tensor, scene_tokens, priors),
        past_key_values=cache,
        use_cache=True,
        output_hidden_states=True,
    )
    return output.hidden_states[-1][0], output.logits[0, -1]


def _generate(
    model: R2SModel,
    prompt: list[int],
    scene_tokens: Tensor | None,
    priors: Tensor | None,
    cache: DynamicCache,
    max_new_tokens: int,
    state_token: str,
    max_states: int,
) -> tuple[list[int], Tensor]:
    """Greedy continuation of `cache` after `prompt`.

    Returns the generated ids and the hidden states (K, H) the LLM produced with `state_token`
    as input (as in teacher forcing), stopping at EOS, after `max_states` of them, or at
    `max_new_tokens`. Placeholder tokens are never generated.
    """
    prompts = model.prompts
    banned = [prompts.ids[SCENE], prompts.ids[PRIOR]]
    state_id = prompts.ids[state_token]
    hidden, logits = _run(model, prompt, scene_tokens, priors, cache)
    generated: list[int] = []
    states: list[Tensor] = []
    for _ in range(max_new_tokens):
        logits[banned] = float("-inf")
        token = int(logits.argmax())
        if token == prompts.eos_id:
            break
        generated.append(token)
        hidden, logits = _run(model, [token], None, None, cache)
        if token == state_id:
            states.append(hidden[-1])
            if len(states) >= max_states:
                break
    empty = torch.zeros(0, hidden.shape[-1], device=hidden.device, dtype=hidden.dtype)
    return generated, torch.stack(states) if states else empty
