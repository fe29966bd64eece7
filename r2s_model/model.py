"""R2SModel: the encoder, compressor, LLM and mask decoder wired into two-stage R²S.

Training (`forward`) teacher-forces both stages on a batch. Inference encodes a scene once
(`encode_scene`) and answers each instruction on it (`segment`): both stages continue one
KV-cache, so the prefix they share (scene tokens + question) is run once, stage 1 extends it,
the cache is cropped back to the prefix and stage 2 extends it again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import torch
from torch import Tensor, nn
from transformers import DynamicCache

from r2s_model.compressor import SceneCompressor
from r2s_model.config import R2SConfig
from r2s_model.decoder import DecoderOutput, MaskDecoder
from r2s_model.encoder import SceneEncoder
from r2s_model.llm import (
    LLMBundle,
    load_llm,
    load_trainable_state_dict,
    set_training_mode,
    trainable_state_dict,
)
from r2s_model.losses import set_mask_loss
from r2s_model.prompts import IGNORE_INDEX, PRIOR, REL, SCENE, SEG, PromptBuilder, TokenSequence
from r2s_model.scene import SceneEncoding, SceneTokens, capped_neighbours, pad_by_scene
from r2s_model.spatial import SpatialEncoding
from r2s_model.superpoints import compute_superpoints
from r2s_model.validation import InvalidInstruction, clean_cloud, clean_instruction


@dataclass
class TrainingSample:
    """One instruction on one scene of a TrainingBatch; masks are superpoint fractions (S_b,).

    target (S_b,) float, None for a no-target sample; relevant (R, S_b) and distractors
    (D, S_b) float, with their names in the same order.
    """

    scene: int
    instruction: str
    answer: str
    target: Tensor | None
    relevant_names: list[str]
    relevant: Tensor
    distractor_names: list[str]
    distractors: Tensor

    def map_masks(self, function: Callable[[Tensor], Tensor]) -> TrainingSample:
        """A copy with `function` applied to every mask tensor."""
        return dataclasses.replace(
            self,
            target=None if self.target is None else function(self.target),
            relevant=function(self.relevant),
            distractors=function(self.distractors),
        )


@dataclass
class TrainingBatch:
    """B scenes concatenated point-wise plus the instruction samples on them.

    points (N, 3) float32, colors (N, 3) float32 in [0, 1], superpoints (N,) int64 ids that are
    contiguous over the whole batch (scene b's after scene b-1's), batch (N,) int64 sorted.
    """

    points: Tensor
    colors: Tensor
    superpoints: Tensor
    batch: Tensor
    samples: list[TrainingSample]

    def to(self, device: torch.device) -> TrainingBatch:
        return TrainingBatch(
            self.points.to(device),
            self.colors.to(device),
            self.superpoints.to(device),
            self.batch.to(device),
            [sample.map_masks(lambda masks: masks.to(device)) for sample in self.samples],
        )


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


class R2SModel(nn.Module):
    """Two-stage (or, for the ablation, single-stage) reasoning segmentation."""

    def __init__(self, config: R2SConfig, llm: LLMBundle) -> None:
        super().__init__()
        self.config = config
        self.llm_bundle = set_training_mode(llm, config.llm_mode, lora_rank=config.lora_rank)
        self.llm = self.llm_bundle.model
        hidden = llm.hidden_size
        self.encoder = SceneEncoder(config.encoder)
        dim = self.encoder.out_dim
        self.spatial = SpatialEncoding(dim, config.spatial_frequencies)
        self.compressor = SceneCompressor(
            dim,
            hidden,
            hidden,
            num_queries=config.num_scene_tokens,
            hidden_dim=config.compressor_dim,
            num_layers=config.compressor_layers,
        )
        self.decoder = MaskDecoder(
            hidden, dim, d_model=config.decoder_dim, num_layers=config.decoder_layers
        )
        # A relevant element becomes one LLM token: its pooled features and its own box.
        self.prior_projector = nn.Sequential(
            nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.prompts = PromptBuilder(llm.tokenizer, config.num_scene_tokens)

    @classmethod
    def build(cls, config: R2SConfig) -> R2SModel:
        """A fresh model around the LLM named by `config.llm_source`."""
        return cls(config, load_llm(config.llm_source))

    @property
    def device(self) -> torch.device:
        return self.prior_projector[0].weight.device

    def trainable_state(self) -> dict[str, Tensor]:
        """What training changes: every parameter and buffer outside the LLM, plus the LLM's
        trainable parameters (LoRA, special-token rows) under ``llm.``."""
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

    # ---- shared pieces -------------------------------------------------------------------

    def scene_tokens(
        self, points: Tensor, colors: Tensor, superpoints: Tensor, batch: Tensor, num_scenes: int
    ) -> SceneTokens:
        """Encoder + spatial encoding for B scenes -> padded per-superpoint tokens."""
        encoded = self.encoder(points, colors, superpoints, batch)
        features, mask = pad_by_scene(encoded.features, encoded.batch, num_scenes)
        centroids, _ = pad_by_scene(encoded.centroids, encoded.batch, num_scenes)
        extents, _ = pad_by_scene(encoded.extents, encoded.batch, num_scenes)
        counts, _ = pad_by_scene(encoded.point_counts.float(), encoded.batch, num_scenes)
        scene_min = points.new_full((num_scenes, 3), float("inf"))
        scene_max = points.new_full((num_scenes, 3), float("-inf"))
        index = batch[:, None].expand(-1, 3)
        scene_min = scene_min.scatter_reduce(0, index, points, "amin")
        scene_max = scene_max.scatter_reduce(0, index, points, "amax")
        tokens = features + self.spatial(centroids, extents, scene_min, scene_max)
        return SceneTokens(tokens, mask, centroids, extents, counts, scene_min, scene_max)

    def compress(self, scene: SceneTokens, instructions: list[str]) -> Tensor:
        """(B,) instructions on their scenes -> (B, Q, H) scene tokens for the LLM."""
        ids = [self.prompts.text(text) for text in instructions]
        length = max(1, max(len(i) for i in ids))
        padded = torch.zeros(len(ids), length, dtype=torch.long, device=self.device)
        text_mask = torch.zeros(len(ids), length, dtype=torch.bool, device=self.device)
        for row, sequence in enumerate(ids):
            padded[row, : len(sequence)] = torch.tensor(sequence, device=self.device)
            text_mask[row, : len(sequence)] = True
        # The LLM may run in another dtype (bfloat16 inference) than the R2S modules.
        text = self.llm.get_input_embeddings()(padded).to(scene.tokens.dtype)
        return self.compressor(scene.tokens, scene.mask, text, text_mask)

    def prior_tokens(self, scene: SceneTokens, row: int, masks: Tensor) -> Tensor:
        """Relevant elements as LLM tokens: masks (R, S) float weights over superpoints of scene
        `row` -> (R, H). Features are pooled under the mask; the element's box is encoded too."""
        weights = masks * scene.point_counts[row] * scene.mask[row]
        norm = weights.sum(1, keepdim=True).clamp_min(1e-6)
        pooled = (weights @ scene.tokens[row]) / norm
        centroid = (weights @ scene.centroids[row]) / norm
        inside = (masks > 0.5) & scene.mask[row]
        # The element's box spans its superpoints' boxes (each taken as centroid ± extent / 2).
        low = scene.centroids[row] - scene.extents[row] / 2
        high = scene.centroids[row] + scene.extents[row] / 2
        big = torch.finfo(low.dtype).max
        box_min = torch.where(inside[..., None], low, big).amin(1)
        box_max = torch.where(inside[..., None], high, -big).amax(1)
        extent = torch.where(inside.any(1, keepdim=True), box_max - box_min, 0.0).detach()
        box = self.spatial(
            centroid[None],
            extent[None],
            scene.scene_min[row : row + 1],
            scene.scene_max[row : row + 1],
        )[0]
        return self.prior_projector(torch.cat([pooled, box], dim=-1))

    def embed(self, ids: Tensor, scene_tokens: Tensor | None, priors: Tensor | None) -> Tensor:
        """Token ids (B, L) -> embeddings with <scene> and <prior> placeholders filled in order
        from scene_tokens (B, Q, H) and priors (P, H) (all samples' priors concatenated)."""
        embeds = self.llm.get_input_embeddings()(ids)
        for token, values in ((SCENE, scene_tokens), (PRIOR, priors)):
            slots = ids == self.prompts.ids[token]
            if values is not None and slots.any():
                values = values.reshape(-1, embeds.shape[-1]).to(embeds.dtype)
                embeds = embeds.masked_scatter(slots[..., None], values)
        return embeds

    def decode_masks(self, states: list[Tensor], scene: SceneTokens) -> DecoderOutput:
        """Hidden states at [REL]/[SEG], states[b] (K_b, H) -> decoder output (B, K_max, S)."""
        count = max(1, max(len(s) for s in states))
        hidden = scene.tokens.new_zeros(len(states), count, states[0].shape[-1] if states else 1)
        valid = torch.zeros(len(states), count, dtype=torch.bool, device=hidden.device)
        for row, sample_states in enumerate(states):
            hidden[row, : len(sample_states)] = sample_states
            valid[row, : len(sample_states)] = True
        return self.decoder(hidden, valid, scene.tokens, scene.mask)

    # ---- inference -----------------------------------------------------------------------

    @torch.no_grad()
    def encode_scene(self, points: np.ndarray, colors: np.ndarray | None = None) -> SceneEncoding:
        """Validates and encodes a cloud once: points (N, 3), colors (N, 3) in [0, 1] or uint8.
        Reuse the result for every instruction while the scene is unchanged."""
        limits = self.config.limits
        cloud = clean_cloud(points, colors, limits)
        if len(cloud.points) < limits.min_points:
            return SceneEncoding(cloud, None, None, 0.0, 0.0)
        start = time.perf_counter()
        superpoints = compute_superpoints(cloud.points, cloud.colors, self.config.superpoints)
        superpoints_ms = _ms_since(start)

        start = time.perf_counter()
        device = self.device
        superpoint_ids = torch.from_numpy(superpoints).to(device)
        tokens = self.scene_tokens(
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
    def segment(
        self,
        scene: SceneEncoding,
        instruction: object,
        on_relevant: Callable[[list[RelevantPrediction]], None] | None = None,
    ) -> SegmentationOutput:
        """Segments the target of `instruction` in a scene from `encode_scene`: stage 1 names
        and segments the relevant elements, stage 2 the target with them as priors.
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

        timings = {"superpoints": scene.superpoints_ms, "encode": scene.encode_ms}
        tokens = scene.tokens
        start = time.perf_counter()
        prompts = self.prompts
        cache = DynamicCache()
        prefix = prompts.prefix(text)
        _run(self, prefix, self.compress(tokens, [text]), None, cache)
        relevant: list[RelevantPrediction] = []
        priors = None
        names: list[str] = []
        generated_tokens = 0
        if config.mode == "two_stage":
            generated, states = _generate(
                self, prompts.stage1_prompt(), None, cache,
                config.stage1_max_new_tokens, REL, config.max_relevant,
            )  # fmt: skip
            generated_tokens += len(generated)
            names = prompts.relevant_names(generated)[: len(states)]
            relevant, masks = _relevant_elements(self, scene, names, states)
            names = [element.name for element in relevant]
            if relevant:
                priors = self.prior_tokens(tokens, 0, masks)
            cache.crop(len(prefix) - cache.get_seq_length())  # negative: tokens to drop
            timings["stage1"] = _ms_since(start)
            if on_relevant is not None:
                on_relevant(relevant)
            start = time.perf_counter()
            prompt = prompts.stage2_prompt(names)
        else:
            prompt = prompts.single_stage_prompt()
        generated, states = _generate(
            self, prompt, priors, cache, config.stage2_max_new_tokens, SEG, 1
        )
        if len(states) == 0:  # the LLM never emitted [SEG]: ask for it explicitly
            states = _run(self, [prompts.ids[SEG]], None, None, cache)[0]
        output = self.decode_masks([states[:1]], tokens)
        probability = output.mask_logits[0, 0].sigmoid()
        score = float(output.score_logits[0, 0].sigmoid())
        target = (probability > config.mask_threshold) & tokens.mask[0]
        timings["stage2" if config.mode == "two_stage" else "stage1"] = _ms_since(start)
        found = score >= config.score_threshold and bool(target.any())
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

    # ---- training ------------------------------------------------------------------------

    def forward(self, batch: TrainingBatch) -> dict[str, Tensor]:
        """Teacher-forced losses of a batch: {'total', 'lm_stage1', 'lm_stage2', 'relevant_*',
        'target_*'} scalars ('lm_stage1' and 'relevant_*' are zero in single-stage mode)."""
        num_scenes = int(batch.batch.max()) + 1
        scenes = self.scene_tokens(
            batch.points, batch.colors, batch.superpoints, batch.batch, num_scenes
        )
        index = torch.tensor([s.scene for s in batch.samples], device=self.device)
        scene = scenes.select(index)
        size = scene.mask.shape[1]
        # Sample masks cover their scene's S_b superpoints; the batch is padded to S_max.
        samples = [
            s.map_masks(lambda m: nn.functional.pad(m, (0, size - m.shape[-1])))
            for s in batch.samples
        ]
        scene_tokens = self.compress(scene, [s.instruction for s in samples])
        prefixes = [self.prompts.prefix(s.instruction) for s in samples]
        weights = scene.point_counts
        zero = scene.tokens.sum() * 0.0
        losses: dict[str, Tensor] = {"lm_stage1": zero}

        if self.config.mode == "two_stage":
            stage1 = [
                self.prompts.sequence(
                    prefix + self.prompts.stage1_prompt(),
                    self.prompts.relevant_answer(sample.relevant_names),
                )
                for prefix, sample in zip(prefixes, samples, strict=True)
            ]
            losses["lm_stage1"], states = self._teacher_forced(stage1, scene_tokens, None, REL)
            relevant = self.decode_masks(states, scene)
            targets = [s.relevant.float() for s in samples]
            for name, value in set_mask_loss(
                relevant, targets, weights, self.config.mask_loss, match=True
            ).items():
                losses[f"relevant_{name}"] = value
            stage2, priors = self._stage2_inputs(prefixes, samples, scene)
        else:
            stage2 = [
                self.prompts.sequence(
                    prefix + self.prompts.single_stage_prompt(),
                    self.prompts.target_answer(sample.answer),
                )
                for prefix, sample in zip(prefixes, samples, strict=True)
            ]
            priors = None
        losses["lm_stage2"], states = self._teacher_forced(stage2, scene_tokens, priors, SEG)
        target = self.decode_masks(states, scene)
        targets = [
            s.target[None].float() if s.target is not None else scene.tokens.new_zeros(0, size)
            for s in samples
        ]
        for name, value in set_mask_loss(
            target, targets, weights, self.config.mask_loss, match=False
        ).items():
            losses[f"target_{name}"] = value
        lm = self.config.lm_loss_weight * (losses["lm_stage1"] + losses["lm_stage2"])
        losses["total"] = lm + losses["target_total"] + losses.get("relevant_total", zero)
        return losses

    def _stage2_inputs(
        self, prefixes: list[list[int]], samples: list[TrainingSample], scene: SceneTokens
    ) -> tuple[list[TokenSequence], Tensor | None]:
        """Stage-2 sequences with priors from the annotated relevant objects, augmented (in
        training mode) by dropping true ones and adding distractors."""
        sequences, priors = [], []
        augment = self.config.augmentation
        for row, (prefix, sample) in enumerate(zip(prefixes, samples, strict=True)):
            names, masks = list(sample.relevant_names), sample.relevant
            if self.training:
                keep = torch.rand(len(names)) >= augment.drop_prob
                names = [n for n, k in zip(names, keep.tolist(), strict=True) if k]
                masks = masks[keep.to(masks.device)]
                if len(sample.distractor_names) and torch.rand(()) < augment.add_prob:
                    count = int(torch.randint(1, augment.max_distractors + 1, ()))
                    chosen = torch.randperm(len(sample.distractor_names))[:count]
                    names += [sample.distractor_names[i] for i in chosen.tolist()]
                    masks = torch.cat([masks, sample.distractors[chosen.to(masks.device)]])
            names, masks = names[: self.config.max_relevant], masks[: self.config.max_relevant]
            if names:
                priors.append(self.prior_tokens(scene, row, masks.float()))
            sequences.append(
                self.prompts.sequence(
                    prefix + self.prompts.stage2_prompt(names),
                    self.prompts.target_answer(sample.answer),
                )
            )
        return sequences, torch.cat(priors) if priors else None

    def _teacher_forced(
        self,
        sequences: list[TokenSequence],
        scene_tokens: Tensor,
        priors: Tensor | None,
        state_token: str,
    ) -> tuple[Tensor, list[Tensor]]:
        """LM loss of right-padded sequences and the last hidden states at `state_token`."""
        length = max(len(s.ids) for s in sequences)
        ids = torch.full((len(sequences), length), self.prompts.eos_id, device=self.device)
        labels = torch.full_like(ids, IGNORE_INDEX)
        attention = torch.zeros_like(ids)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence.ids)] = torch.tensor(sequence.ids)
            labels[row, : len(sequence.ids)] = torch.tensor(sequence.labels)
            attention[row, : len(sequence.ids)] = 1
        output = self.llm(
            inputs_embeds=self.embed(ids, scene_tokens, priors),
            attention_mask=attention,
            labels=labels,
            output_hidden_states=True,
        )
        hidden = output.hidden_states[-1]
        # Only answer positions count: a name could contain the token text, the prompt cannot.
        slots = (ids == self.prompts.ids[state_token]) & (labels != IGNORE_INDEX)
        return output.loss, [hidden[row][slots[row]] for row in range(len(sequences))]


# The steps of `segment`, as functions of the model so that tests can drive them one by one.


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


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
    priors: Tensor | None,
    cache: DynamicCache,
    max_new_tokens: int,
    state_token: str,
    max_states: int,
) -> tuple[list[int], Tensor]:
    """Greedy continuation of `cache` after `prompt` (its <prior> slots filled from `priors`).

    Returns the generated ids and the hidden states (K, H) the LLM produced with `state_token`
    as input (as in teacher forcing), stopping at EOS, after `max_states` of them, or at
    `max_new_tokens`. Placeholder tokens are never generated.
    """
    prompts = model.prompts
    banned = [prompts.ids[SCENE], prompts.ids[PRIOR]]
    state_id = prompts.ids[state_token]
    hidden, logits = _run(model, prompt, None, priors, cache)
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
